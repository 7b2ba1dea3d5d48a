"""RouterBench-style MLP router: a small multi-layer perceptron on the standardised query embedding with
one sigmoid output per pool model (multi-label), predicting each model's acceptance. One hidden layer of
32 ReLU units trained by L-BFGS (full batch, at most 30 iterations, fixed seed); the L2 penalty alpha is
chosen on a training-fold holdout. On ~650 queries a lightly penalised MLP overfits badly (worse Brier
score than predicting the accept rates), hence the strong penalties of the grid."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from tagrouter.evaluation.base import FoldData
from tagrouter.evaluation.baselines.tuning import select

ALPHA_GRID = (50.0, 200.0)
HIDDEN = 32
ITERATIONS = 30


class MLPRouter:
    """Multi-label MLP classifier on query embeddings (see the module docstring)."""

    def __init__(self, name: str = "mlp", *, seed: int = 0) -> None:
        self.name = name
        self.seed = seed

    def fit(self, train: FoldData) -> None:
        x, y = train.embeddings.astype(np.float64), train.accepted.astype(int)

        def fit_predict(alphas: Sequence[float], tr: np.ndarray, ho: np.ndarray) -> list[np.ndarray]:
            return [self._fitted(a, x[tr], y[tr]).predict_proba(x[ho]) for a in alphas]

        self.alpha = select(ALPHA_GRID, fit_predict, y.astype(np.float64), splits=1, seed=self.seed)
        self._network = self._fitted(self.alpha, x, y)

    def _fitted(self, alpha: float, x: np.ndarray, y: np.ndarray) -> Pipeline:
        network = MLPClassifier(
            hidden_layer_sizes=(HIDDEN,),
            solver="lbfgs",
            alpha=alpha,
            max_iter=ITERATIONS,
            random_state=self.seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return make_pipeline(StandardScaler(), network).fit(x, y)

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        return self._network.predict_proba(embeddings.astype(np.float64))
