"""Routers that do not look at the query: a seeded random router and "always this model"."""

from __future__ import annotations

import numpy as np

from tagrouter.evaluation.base import FoldData


class RandomRouter:
    """Uniform random scores, reproducible from ``seed`` (re-seeded at every fit)."""

    def __init__(self, name: str = "random", *, seed: int = 0) -> None:
        self.name = name
        self.seed = seed

    def fit(self, train: FoldData) -> None:
        self._models = len(train.models)
        self._rng = np.random.default_rng(self.seed)

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        return self._rng.random((len(queries), self._models))


class SingleModelRouter:
    """Score 1 for ``model`` and 0 for every other pool model, whatever the query."""

    def __init__(self, model: str) -> None:
        self.name = f"single:{model}"
        self.model = model

    def fit(self, train: FoldData) -> None:
        if self.model not in train.models:
            raise ValueError(f"{self.model!r} is not in the pool {train.models}")
        self._column = train.models.index(self.model)
        self._models = len(train.models)

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        scores = np.zeros((len(queries), self._models))
        scores[:, self._column] = 1.0
        return scores
