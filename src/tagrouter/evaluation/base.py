"""The interface every benchmarked router implements, TagRouter and baselines alike.

Note (2026-11-27, harness owner): ``FoldData`` gained an optional field ``outcomes`` (win/tie/loss codes of
the pool models, for methods that weigh ties, e.g. the paper's scorer); it defaults to None, so existing
code is unaffected. ``accepted`` stays the field every method should use.

A router method sees only training-fold data in ``fit`` and returns, in ``predict``, one score per
(test query, pool model); the runner turns those scores into operating points with the same sweep for
every method, so methods differ only in what they predict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class FoldData:
    """What a router may see of a set of queries.

    - ``queries``: query texts (n)
    - ``embeddings``: L2-normalised query embeddings from the default embedder (n × d)
    - ``accepted``: accepted (win or tie) per query and *pool* model (n × M), bool
    - ``context_accepted``: the same for the other AlpacaEval models, not routable (n × K), bool; the
      same matrix is offered to every method that can use it
    - ``costs``: dollars per query and pool model (n × M)
    - ``models``: the M pool model names, in column order
    - ``outcomes``: optional outcome codes per query and pool model (n × M): 0 win, 1 tie, 2 loss;
      ``accepted == (outcomes != 2)``
    """

    queries: list[str]
    embeddings: np.ndarray
    accepted: np.ndarray
    context_accepted: np.ndarray
    costs: np.ndarray
    models: list[str]
    outcomes: np.ndarray | None = None

    def subset(self, rows: np.ndarray) -> FoldData:
        return FoldData(
            queries=[self.queries[i] for i in rows],
            embeddings=self.embeddings[rows],
            accepted=self.accepted[rows],
            context_accepted=self.context_accepted[rows],
            costs=self.costs[rows],
            models=self.models,
            outcomes=None if self.outcomes is None else self.outcomes[rows],
        )


class RouterMethod(Protocol):
    """A router under test. ``predict`` must not read test outcomes: it receives test queries with their
    texts and embeddings only (``accepted`` and ``context_accepted`` of the test fold are hidden)."""

    name: str

    def fit(self, train: FoldData) -> None: ...

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        """Scores (n_test × M); higher means more likely to be accepted. Probability-like where possible,
        since the pool sweep trades score against cost."""
        ...
