"""The embedding residual: a per-model linear correction of the tag scores from the query embedding.

Tags summarise a query; its embedding may carry signal the tags lose (the embedding baselines show it on
some histories). The residual is a ridge regression, one per routable model, of what the tag scores miss
(accepted − tag score, on inner out-of-fold tag scores, so the correction learns the scores' real errors and
their per-model bias) on the query embedding. A routed query's score is its tag score plus the
correction, clipped to (0, 1). Whether a history gets one is chosen by inner cross-validation on the
routing curve (:mod:`tagrouter.tuning`); decisions still explain through the tags and say how much the
correction moved them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import RidgeCV

from tagrouter.embedding import Embedder, default_embedder
from tagrouter.tagging.base import Tagger

#: Ridge penalties the fit chooses from, per model, by efficient leave-one-out (RidgeCV).
ALPHAS = tuple(np.logspace(-1, 4, 11).tolist())
#: Scores stay within (FLOOR, 1 − FLOOR) after the correction.
FLOOR = 1e-3


@dataclass(frozen=True, eq=False)
class EmbeddingResidual:
    """``weights`` (embedding dims × models) and ``intercept`` (models) of the correction."""

    weights: np.ndarray
    intercept: np.ndarray

    @classmethod
    def fit(cls, embeddings: np.ndarray, residuals: np.ndarray) -> EmbeddingResidual:
        """Ridge of ``residuals`` (n × M) on ``embeddings`` (n × d), the penalty per model by leave-one-out."""
        ridge = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(embeddings, residuals)
        return cls(np.asarray(ridge.coef_, float).T.copy(), np.asarray(ridge.intercept_, float).copy())

    def correction(self, embeddings: np.ndarray) -> np.ndarray:
        """The (n × M) correction of queries with these embeddings."""
        return embeddings @ self.weights + self.intercept

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "intercept": self.intercept}


def corrected(scores: np.ndarray, correction: np.ndarray) -> np.ndarray:
    """Tag scores plus the correction, clipped to (FLOOR, 1 − FLOOR)."""
    return np.clip(scores + correction, FLOOR, 1.0 - FLOOR)


def query_embedder(tagger: Tagger) -> Embedder:
    """The embedder of the tagger when it has one (the embedded default), else the default embedder."""
    return getattr(tagger, "embedder", None) or default_embedder()


def embed(tagger: Tagger, texts: Sequence[str]) -> np.ndarray:
    """Query embeddings in the space the residual was fitted in."""
    return np.asarray(query_embedder(tagger).embed(list(texts)), dtype=float)
