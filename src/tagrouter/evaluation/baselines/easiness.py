"""Neighbour-easiness router: how easy a query is, judged by how often *every* model of the history
(pool and context models) was accepted on its nearest training queries, then mapped to each pool model's
acceptance by a per-model logistic regression.

easiness(q) = mean acceptance over the k nearest training queries (cosine) and all history models judged
on them, as a smoothed log-odds; for a training query its own row is left out. Each pool model gets
P(accepted | q) = σ(a_m + b_m · easiness(q)), fitted on the training queries. k is chosen on a
training-fold holdout.
A query-difficulty signal, as a baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import logit
from sklearn.neighbors import NearestNeighbors

from tagrouter.evaluation.base import FoldData
from tagrouter.evaluation.baselines.logreg import PerModelLogistic
from tagrouter.evaluation.baselines.tuning import select

K_GRID = (20, 50, 100)


def neighbour_easiness(
    train_x: np.ndarray,
    history: np.ndarray,
    known: np.ndarray,
    query_x: np.ndarray | None,
    ks: Sequence[int],
) -> list[np.ndarray]:
    """For each k of ``ks``: the smoothed log-odds of acceptance over the k nearest rows of ``train_x``
    and the judged cells (``known``) of ``history`` (n_train × models), one column per query.
    ``query_x`` None: the training rows themselves, each leaving itself out."""
    k_max = min(max(ks), len(train_x) - (query_x is None))
    index = NearestNeighbors(metric="cosine", algorithm="brute").fit(train_x)
    # kneighbors(None) leaves each training row out of its own neighbours
    neighbours = index.kneighbors(query_x, n_neighbors=k_max, return_distance=False)
    accepted_per_row, judged_per_row = (history * known).sum(axis=1), known.sum(axis=1)
    out = []
    for k in ks:
        k = min(k, k_max)
        accepted = accepted_per_row[neighbours[:, :k]].sum(axis=1)
        judged = judged_per_row[neighbours[:, :k]].sum(axis=1)
        out.append(logit((accepted + 0.5) / (judged + 1))[:, None])
    return out


class EasinessRouter:
    """Per-model logistic regression on the neighbours' cross-model accept rate (pool + context)."""

    def __init__(self, name: str = "knn-easiness", *, seed: int = 0) -> None:
        self.name = name
        self.seed = seed

    def fit(self, train: FoldData) -> None:
        x = train.embeddings.astype(np.float64)
        y = train.accepted
        history = np.hstack([y, train.context_accepted]).astype(np.float64)
        known = np.hstack([np.ones_like(y), train.context_mask]).astype(np.float64)

        def fit_predict(ks: Sequence[int], tr: np.ndarray, ho: np.ndarray) -> list[np.ndarray]:
            inside = neighbour_easiness(x[tr], history[tr], known[tr], None, ks)
            held = neighbour_easiness(x[tr], history[tr], known[tr], x[ho], ks)
            return [
                PerModelLogistic(1.0).fit(f, y[tr]).predict_proba(h)
                for f, h in zip(inside, held, strict=True)
            ]

        self.k = select(K_GRID, fit_predict, y.astype(np.float64), splits=1, seed=self.seed)
        self._x, self._history, self._known = x, history, known
        features = neighbour_easiness(x, history, known, None, [self.k])[0]
        self._model = PerModelLogistic(1.0).fit(features, y)

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        features = neighbour_easiness(
            self._x, self._history, self._known, embeddings.astype(np.float64), [self.k]
        )[0]
        return self._model.predict_proba(features)
