"""From logged queries to judged history: ``tagrouter collect``, ``tagrouter judge-check`` and the judging
that the gateway's shadow judging shares.

Modules: :mod:`~.sampling` (which queries), :mod:`~.client` (calls to OpenAI-compatible endpoints),
:mod:`~.budget` (the dollar limit), :mod:`~.cache` (resumable runs), :mod:`~.answering` (model answers),
:mod:`~.judging` (the judge prompt, verdict parsing, both orders), :mod:`~.run` (a collection run and its
cost estimate), :mod:`~.labels` and :mod:`~.checking` (a judge's agreement with labelled pairs).
"""
