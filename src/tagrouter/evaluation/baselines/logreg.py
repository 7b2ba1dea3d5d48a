"""Logistic-regression router, the analogue of RouteLLM's BERT classifier on our offline embeddings: one
L2-regularised logistic regression per pool model predicts its acceptance from the query embedding. The
inverse regularisation C (shared by all models) is chosen on a training-fold holdout."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from tagrouter.evaluation.base import FoldData
from tagrouter.evaluation.baselines.tuning import accept_rates, select

C_GRID = (0.3, 1.0, 3.0)


class PerModelLogistic:
    """One logistic regression per column of ``accepted``; a column with a single class predicts its
    (smoothed) rate."""

    def __init__(self, c: float) -> None:
        self.c = c

    def fit(self, x: np.ndarray, accepted: np.ndarray) -> PerModelLogistic:
        rates = accept_rates(accepted)
        self._models: list[LogisticRegression | float] = []
        for column, rate in zip(accepted.T, rates, strict=True):
            if column.min() == column.max():
                self._models.append(float(rate))
            else:
                self._models.append(LogisticRegression(C=self.c, max_iter=500).fit(x, column))
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        columns = [
            np.full(len(x), m) if isinstance(m, float) else m.predict_proba(x)[:, 1] for m in self._models
        ]
        return np.stack(columns, axis=1)


class LogRegRouter:
    """Per-model logistic regression on query embeddings (the BERT-router analogue)."""

    def __init__(self, name: str = "logreg", *, seed: int = 0) -> None:
        self.name = name
        self.seed = seed

    def fit(self, train: FoldData) -> None:
        x, y = train.embeddings.astype(np.float64), train.accepted

        def fit_predict(cs: Sequence[float], tr: np.ndarray, ho: np.ndarray) -> list[np.ndarray]:
            return [PerModelLogistic(c).fit(x[tr], y[tr]).predict_proba(x[ho]) for c in cs]

        self.c = select(C_GRID, fit_predict, y.astype(np.float64), splits=1, seed=self.seed)
        self._model = PerModelLogistic(self.c).fit(x, y)

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(embeddings.astype(np.float64))
