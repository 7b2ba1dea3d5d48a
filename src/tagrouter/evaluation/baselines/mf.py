"""Matrix-factorisation router after RouteLLM's ``MFModel``, in numpy.

RouteLLM scores a (model, query) pair as ``s(m, q) = h · (normalize(P_m) ⊙ W q)``: the query embedding q
projected by W (no bias), multiplied elementwise by the model's L2-normalised learned embedding P_m, and
a linear head h (no bias); a battle "a beats b" has logit ``s(a, q) − s(b, q)`` and the model is trained
with binary cross-entropy on judged battles. Our judged battles are each pool model against AlpacaEval's
reference answer (text_davinci_003), so the reference gets its own learned embedding and
``P(m accepted | q) = σ(s(m, q) − s(ref, q) + b_m)``. The per-model bias b_m is our addition: accept
rates of 70-98 % are far from RouteLLM's balanced battles, and without it no weight decay fits them (in
pairwise form it cancels into b_a − b_b). Training: full-batch Adam with L2 weight decay on W, P and h
(RouteLLM: mini-batch Adam with weight decay); the decay is chosen on a training-fold holdout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from tagrouter.evaluation.base import FoldData
from tagrouter.evaluation.baselines.features import QueryFeatures, TaggerFor
from tagrouter.evaluation.baselines.tuning import accept_rates, select

DIM = 16
STEPS = 100
LEARNING_RATE = 0.01
DECAY_GRID = (3e-4, 1e-3, 3e-3)


@dataclass
class MFParameters:
    """W (features × dim), P (models + reference × dim, reference last), h (dim), b (models)."""

    w: np.ndarray
    p: np.ndarray
    h: np.ndarray
    b: np.ndarray

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """P(accepted) per row of ``x`` and model (n × M)."""
        return expit(self._logits(x.astype(np.float32))[0]).astype(np.float64)

    def _logits(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        norms = np.linalg.norm(self.p, axis=1, keepdims=True)
        u = self.p / norms
        d = u[:-1] - u[-1]  # model minus reference, M × dim
        z = x @ self.w
        a = z * self.h
        return a @ d.T + self.b, z, a, d, u, norms

    def gradients(self, x: np.ndarray, y: np.ndarray, decay: float) -> tuple[np.ndarray, ...]:
        """Gradients of mean BCE + decay/2 · ‖(w, p, h)‖² with respect to (w, p, h, b)."""
        logits, z, a, d, u, norms = self._logits(x)
        g = (expit(logits) - y) / y.size
        grad_d = g.T @ a
        grad_a = g @ d
        grad_h = (grad_a * z).sum(axis=0)
        grad_w = x.T @ (grad_a * self.h)
        grad_u = np.vstack([grad_d, -grad_d.sum(axis=0, keepdims=True)])
        grad_p = (grad_u - u * (u * grad_u).sum(axis=1, keepdims=True)) / norms
        grad_b = g.sum(axis=0)
        return grad_w + decay * self.w, grad_p + decay * self.p, grad_h + decay * self.h, grad_b


def train_mf(x: np.ndarray, y: np.ndarray, decay: float, seed: int) -> MFParameters:
    """Fit the MF model to acceptance ``y`` (n × M) from features ``x`` (n × d) by full-batch Adam."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    x, y = x.astype(np.float32), y.astype(np.float32)  # single precision: twice as fast, plenty here
    params = MFParameters(
        w=(rng.uniform(-1, 1, (d, DIM)) / np.sqrt(d)).astype(np.float32),
        p=rng.normal(size=(y.shape[1] + 1, DIM)).astype(np.float32),
        h=(rng.uniform(-1, 1, DIM) / np.sqrt(DIM)).astype(np.float32),
        b=logit(accept_rates(y)).astype(np.float32),
    )
    names = ("w", "p", "h", "b")
    first = {n: np.zeros_like(getattr(params, n)) for n in names}
    second = {n: np.zeros_like(getattr(params, n)) for n in names}
    beta1, beta2 = 0.9, 0.999
    for step in range(1, STEPS + 1):
        for name, grad in zip(names, params.gradients(x, y, decay), strict=True):
            first[name] = beta1 * first[name] + (1 - beta1) * grad
            second[name] = beta2 * second[name] + (1 - beta2) * grad**2
            m_hat = first[name] / (1 - beta1**step)
            v_hat = second[name] / (1 - beta2**step)
            setattr(params, name, getattr(params, name) - LEARNING_RATE * m_hat / (np.sqrt(v_hat) + 1e-8))
    return params


class MFRouter:
    """RouteLLM-style matrix factorisation on query features (embedding, or embedding ⊕ tags)."""

    def __init__(
        self, name: str = "mf", *, tags: bool = False, tagger_for: TaggerFor | None = None, seed: int = 0
    ) -> None:
        self.name = name
        self.seed = seed
        self.features = QueryFeatures(tags, tagger_for)

    def fit(self, train: FoldData) -> None:
        x = self.features.fit_transform(train.queries, train.embeddings)
        y = train.accepted.astype(np.float64)

        def fit_predict(decays: Sequence[float], tr: np.ndarray, ho: np.ndarray) -> list[np.ndarray]:
            return [train_mf(x[tr], y[tr], c, self.seed).probabilities(x[ho]) for c in decays]

        self.decay = select(DECAY_GRID, fit_predict, y, splits=1, seed=self.seed)
        self._params = train_mf(x, y, self.decay, self.seed)

    def predict(self, queries: list[str], embeddings: np.ndarray) -> np.ndarray:
        return self._params.probabilities(self.features.transform(queries, embeddings))
