"""Tagger backends that generate free-form tags with a language model (transformers, OpenAI-compatible
endpoints), the tag cache and teacher-driven vocabulary building. Heavy dependencies load on first use."""
