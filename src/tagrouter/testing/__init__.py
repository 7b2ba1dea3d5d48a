"""Test scaffolding, not used at run time: stand-in models and servers for the test suite, the benchmark
scripts and offline demos.

- ``stand_in``: a download-free BPE tokenizer and a random-weight Qwen2 causal LM (the TagGenerator's
  architecture) for the transformers backend (extra ``transformers``).
- ``replay``: an OpenAI-compatible upstream that replays recorded answers and can misbehave on request
  (extra ``server``).
- ``threaded``: runs an ASGI app with uvicorn in a background thread on a free loopback port.
- ``loopback``: free ports, waiting for a server process to come up, a process's CPU time.
"""
