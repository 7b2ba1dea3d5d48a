"""Tagging: turn queries into short, readable tags from a normalised vocabulary.

Data flow: a *teacher* gives free-form tags to history queries -> ``normalize`` cleans them ->
``vocabulary`` drops rare tags and merges near-duplicates -> a *student* tagger tags new queries fast.
"""

from tagrouter.tagging.base import PersistentTagger, Tagger

__all__ = ["PersistentTagger", "Tagger"]
