"""The interface every benchmarked router implements, TagRouter and baselines alike.

A router method sees only training-fold data in ``fit`` and returns, in ``predict``, one score per
(test query, pool model); the runner turns those scores into operating points with the same sweep for
every method, so methods differ only in what they predict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tagrouter.records import History


@dataclass(frozen=True)
class FoldData:
    """What a router may see of a set of queries.

    - ``queries``: query texts (n)
    - ``embeddings``: L2-normalised query embeddings from the default embedder (n × d)
    - ``accepted``: accepted (win or tie) per query and *pool* model (n × M), bool
    - ``context_accepted``: the same for the context models of the history (judged but not routable,
      n × K), bool; the same matrix is offered to every method that can use it
    - ``context_known``: whether each context cell was judged at all (n × K), bool; an unjudged cell is
      unknown (its ``context_accepted`` is False and means nothing); None: every cell is known
    - ``costs``: dollars per query and pool model (n × M)
    - ``models``: the M pool model names, in column order
    - ``outcomes``: optional outcome codes per query and pool model (n × M): 0 win, 1 tie, 2 loss;
      ``accepted == (outcomes != 2)``
    - ``history``: the judged records these arrays view (pool and context models, one record per judged
      query and model, with their real ids, names, outcomes and token counts): what ``TagRouter.fit``
      learns from; None where a fold is built from arrays only
    """

    queries: list[str]
    embeddings: np.ndarray
    accepted: np.ndarray
    context_accepted: np.ndarray
    costs: np.ndarray
    models: list[str]
    outcomes: np.ndarray | None = None
    context_known: np.ndarray | None = None
    history: History | None = None

    @property
    def context_mask(self) -> np.ndarray:
        """``context_known``, or all True when every context cell is known."""
        if self.context_known is None:
            return np.ones(self.context_accepted.shape, dtype=bool)
        return self.context_known

    def subset(self, rows: np.ndarray) -> FoldData:
        """The fold of ``rows`` only (its history too)."""
        history = None
        if self.history is not None:
            wanted = {self.queries[i] for i in rows}
            history = self.history.taken(np.fromiter((q in wanted for q in self.history.query), bool))
        return FoldData(
            queries=[self.queries[i] for i in rows],
            embeddings=self.embeddings[rows],
            accepted=self.accepted[rows],
            context_accepted=self.context_accepted[rows],
            costs=self.costs[rows],
            models=self.models,
            outcomes=None if self.outcomes is None else self.outcomes[rows],
            context_known=None if self.context_known is None else self.context_known[rows],
            history=history,
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
