"""Stand-ins that the README's rehearsals and the benchmark scripts run, never imported by the runtime
package (``tests/test_layout.py`` checks it):

- ``replay``: an OpenAI-compatible upstream that replays recorded answers and can misbehave on request
  (extra ``server``).
- ``judge``: an OpenAI-compatible pairwise judge that answers by a rule (extra ``server``).
- ``loopback``: free ports, waiting for a server process to come up, a process's CPU time (the test suite
  and the gateway benchmark scripts).

Scaffolding that only the tests use lives in ``tests/`` (``threaded.py``: an ASGI app on a loopback port in
a thread; ``stand_in.py``: a download-free tokenizer and random-weight Qwen2 for the transformers backend,
which ``scripts/bench_taggers.py`` borrows).
"""
