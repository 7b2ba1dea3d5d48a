"""RouterBench-style MLP router: a small multi-layer perceptron on the query embedding with one sigmoid
output per pool model (multi-label), predicting each model's acceptance. The L2 penalty alpha is chosen by
inner CV; one hidden layer of 64 units, Adam, early stopping off, fixed seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.neural_network import MLPClassifier

from tagrouter.evaluation.base import FoldData
from tagrouter.evaluation.baselines.tuning import select

ALPHA_GRID = (1.0, 10.0)
HIDDEN = 32
EPOCHS = 50


class MLPRouter:
    """Multi-label MLP classifier on query embeddings (see the module docstring)."""

    def __init__(self, name: str = "mlp", *, seed: int = 0) -> None:
        self.name = name
        self.seed = seed

    def _network(self, alpha: float) -> MLPClassifier:
        return MLPClassifier(
            hidden_layer_sizes=(HIDDEN,),
            alpha=alpha,
            max_iter=EPOCHS,
            tol=0.0,
            n_iter_no_change=EPOCHS,
            random_state=self.seed,
        )

    def fit(self, train: FoldData) -> None:
        x, y = train.embeddings.astype(np.float64), train.accepted.astype(int)

        def fit_predict(alphas: Sequence[float], tr: np.ndarray, ho: np.ndarray) -> list[np.ndarray]:
            return [self._fitted(a, x[tr], y[tr]).predict_proba(x[ho]) for a in alphas]

        self.alpha = select(ALPHA_GRID, fit_predict, y.astype(np.float64), splits=1, seed=self.seed)
        self._network_fitted = self._fitted(self.alpha, x, y)

    def _fitted(self, alpha: float, x: np.ndarray, y: np.ndarray) -> MLPClassifier:
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return self._network(alpha).fit(x, y)

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        return self._network_fitted.predict_proba(embeddings.astype(np.float64))
