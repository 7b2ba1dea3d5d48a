"""Is one router's AUC lead beyond noise? Two paired views of the difference A − B.

- Over seeds: the AUC difference of the two routers on each seed's cross-validation (the same folds for
  both), with a 95% t-interval of its mean (needs two seeds or more).
- Over queries: a paired bootstrap. Each resample draws the setup's queries with replacement (the same
  draw for both routers and every seed), recomputes every operating point of both routers from their
  pooled out-of-fold choices, the single models (hence the cost normalisation and the mixture) and the
  hull AUC, and takes the seed-mean difference; the 95% interval is the 2.5 and 97.5 percentiles.

A lead is *beyond noise* when both intervals lie above zero (behind when both lie below); otherwise it is
within noise. B may be the mixture of single models (no choices: its hull over the resampled singles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from tagrouter.curves import Reference
from tagrouter.evaluation.metrics import curve_metrics

RESAMPLES = 1000
LEVEL = 0.95
_CHUNK = 100


@dataclass(frozen=True)
class Comparison:
    """A − B in AUC: the mean over seeds, the two intervals and the verdict."""

    against: str
    difference: float
    seed_interval: tuple[float, float] | None
    bootstrap_interval: tuple[float, float]
    verdict: str  # "ahead", "behind" or "within noise"

    def to_dict(self) -> dict[str, Any]:
        return {
            "against": self.against,
            "auc_difference": self.difference,
            "seed_interval": None if self.seed_interval is None else list(self.seed_interval),
            "bootstrap_interval": list(self.bootstrap_interval),
            "verdict": self.verdict,
        }


def seed_interval(differences: Sequence[float], level: float = LEVEL) -> tuple[float, float] | None:
    """The t-interval of the mean of paired per-seed differences (None with fewer than two seeds)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return None
    half = student_t.ppf((1 + level) / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def bootstrap_differences(
    accepted: np.ndarray,
    costs: np.ndarray,
    choices_a: np.ndarray,
    choices_b: np.ndarray | None,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """Seed-mean AUC(A) − AUC(B) per resample of the queries (see the module docstring).

    ``accepted``, ``costs``: n × M of the setup's models; ``choices_*``: seeds × points × n chosen columns
    of the pooled out-of-fold runs; ``choices_b`` None: B is the mixture. Resamples whose single models
    leave nothing to route (the best is also the cheapest) are NaN."""
    n = len(accepted)
    rng = np.random.default_rng(seed)
    ar_a, cost_a = _per_query(accepted, costs, choices_a)
    ar_b, cost_b = _per_query(accepted, costs, choices_b) if choices_b is not None else (None, None)
    out = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(size)]).astype(
            float
        )
        single_ar, single_cost = weights @ accepted / n, weights @ costs
        points_a = (weights @ cost_a, weights @ ar_a / n)
        points_b = (weights @ cost_b, weights @ ar_b / n) if ar_b is not None else None
        for b in range(size):
            out[start + b] = _difference(single_cost[b], single_ar[b], points_a, points_b, b, choices_a.shape)
    return out


def _per_query(accepted: np.ndarray, costs: np.ndarray, choices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query (rows) and (seed, point) (columns): accepted and cost of the chosen model."""
    flat = choices.reshape(-1, choices.shape[-1]).T.astype(np.intp)  # n × (seeds · points)
    rows = np.arange(len(accepted))[:, None]
    return accepted[rows, flat].astype(float), costs[rows, flat]


def _difference(
    single_cost: np.ndarray,
    single_ar: np.ndarray,
    points_a: tuple[np.ndarray, np.ndarray],
    points_b: tuple[np.ndarray, np.ndarray] | None,
    b: int,
    shape: tuple[int, ...],
) -> float:
    try:
        ref = Reference.from_singles(single_cost, single_ar)
    except ValueError:
        return float("nan")
    seeds, n_points = shape[0], shape[1]

    def mean_auc(points: tuple[np.ndarray, np.ndarray]) -> float:
        cost, ar = points[0][b].reshape(seeds, n_points), points[1][b].reshape(seeds, n_points)
        return float(np.mean([curve_metrics(cost[s], ar[s], ref).auc for s in range(seeds)]))

    other = curve_metrics(single_cost, single_ar, ref).auc if points_b is None else mean_auc(points_b)
    return mean_auc(points_a) - other


def compare(
    against: str,
    seed_differences: Sequence[float],
    bootstrap: np.ndarray,
    level: float = LEVEL,
) -> Comparison:
    """The comparison from the per-seed differences and the bootstrap differences."""
    tail = (1 - level) / 2 * 100
    by_seed = seed_interval(seed_differences, level)
    finite = bootstrap[np.isfinite(bootstrap)]
    if not len(finite):  # no resample left anything to route: no bootstrap interval, no verdict
        return Comparison(
            against, float(np.mean(seed_differences)), by_seed, (np.nan, np.nan), "within noise"
        )
    low, high = (float(v) for v in np.percentile(finite, [tail, 100 - tail]))
    lows = [low] + ([by_seed[0]] if by_seed else [])
    highs = [high] + ([by_seed[1]] if by_seed else [])
    verdict = "ahead" if min(lows) > 0 else "behind" if max(highs) < 0 else "within noise"
    return Comparison(against, float(np.mean(seed_differences)), by_seed, (low, high), verdict)
