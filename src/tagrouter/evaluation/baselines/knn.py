"""RouterBench-style kNN router: a model's acceptance probability is its accept rate over the k training
queries nearest (cosine) to the query, optionally shrunk toward its overall accept rate.

RouterBench's ``KNNRouter`` defaults to k = 50 and its evaluation configuration sweeps k ∈ {5, 10, 40}; ``knn``
chooses k from those values (:data:`K_GRID`) by inner 3-fold cross-validation on the training fold (Brier
score), ``knn-50`` keeps RouterBench's default :data:`ROUTERBENCH_K`. With a prior a > 0 the estimate is (accepted among the k + a · overall rate) / (k + a); the
``knn-prior`` variant chooses a from :data:`PRIOR_GRID` together with k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.neighbors import NearestNeighbors

from tagrouter.evaluation.base import FoldData
from tagrouter.evaluation.baselines.features import QueryFeatures, TaggerFor
from tagrouter.evaluation.baselines.tuning import accept_rates, select

K_GRID = (5, 10, 40, 50)
#: RouterBench's ``KNNRouter`` default
ROUTERBENCH_K = 50
PRIOR_GRID = (0.0, 10.0, 30.0, 100.0)


def knn_probabilities(
    train_x: np.ndarray, train_y: np.ndarray, query_x: np.ndarray, settings: Sequence[tuple[int, float]]
) -> list[np.ndarray]:
    """For each (k, prior) of ``settings``: shrunk neighbour accept rates (n_query × M) of ``query_x``
    among the rows of ``train_x`` (one neighbour search for all settings)."""
    k_max = min(max(k for k, _ in settings), len(train_x))
    index = NearestNeighbors(n_neighbors=k_max, metric="cosine", algorithm="brute").fit(train_x)
    neighbours = index.kneighbors(query_x, return_distance=False)  # nearest first
    overall = accept_rates(train_y)
    out = []
    for k, prior in settings:
        k = min(k, k_max)
        counts = train_y[neighbours[:, :k]].sum(axis=1)
        out.append((counts + prior * overall) / (k + prior))
    return out


class KNNRouter:
    """kNN over query features (embedding, or embedding ⊕ tags); see the module docstring."""

    def __init__(
        self,
        name: str = "knn",
        *,
        ks: Sequence[int] = K_GRID,
        priors: Sequence[float] = (0.0,),
        tags: bool = False,
        tagger_for: TaggerFor | None = None,
        seed: int = 0,
    ) -> None:
        self.name = name
        self.grid = [(k, a) for a in priors for k in ks]
        self.seed = seed
        self.features = QueryFeatures(tags, tagger_for)

    def fit(self, train: FoldData) -> None:
        self._x = self.features.fit_transform(train.queries, train.embeddings)
        self._y = train.accepted.astype(np.float64)
        self.k, self.prior = select(
            self.grid,
            lambda cs, tr, ho: knn_probabilities(self._x[tr], self._y[tr], self._x[ho], cs),
            self._y,
            seed=self.seed,
        )

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        x = self.features.transform(queries, embeddings)
        return knn_probabilities(self._x, self._y, x, [(self.k, self.prior)])[0]
