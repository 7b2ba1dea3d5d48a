"""The routing curve: operating points, their normalised cost, the upper hull, its area, and the knob sweep.

A router gives operating points (C, AR): total dollars over the queries and the share of accepted answers.
With C_lo = cost of the cheapest single model and (C_best, AR_best) = the single model with the highest
accept rate (ties: the cheaper), the normalised cost is x = (C − C_lo) / (C_best − C_lo), and H is the
non-decreasing upper convex hull of the points plus (0, AR_cheapest), flat beyond its last point. H is
piecewise linear, so integrating it between its breakpoints is exact.

The curve has 41 operating points: a pair sends the top share q = k/40 of queries, ranked by
score(strong) − score(weak), to the strong model; a pool takes argmax(score − λ · cost), with λ_0 = 0 and λ_k
(k = 1..40) the least λ whose expected cost of the routed queries is at most E_0 − k/40 · (E_0 − E_cheapest):
the knob's whole range in equal expected-cost steps. Both the self-tuning (:mod:`tagrouter.tuning`) and the
evaluation (:mod:`tagrouter.evaluation`) draw their curves from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagrouter.deciding import choose

#: operating points per routing curve
N_POINTS = 41


# ---- normalisation and the hull ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """The single models' points that normalise a setup: the cheapest and the best (highest AR)."""

    cost_lo: float
    ar_cheapest: float
    cost_best: float
    ar_best: float

    @classmethod
    def from_singles(cls, costs: Sequence[float], ars: Sequence[float]) -> Reference:
        """From each single model's total cost and accept rate (same order)."""
        costs, ars = np.asarray(costs, dtype=float), np.asarray(ars, dtype=float)
        if costs.shape != ars.shape or costs.ndim != 1 or len(costs) < 2:
            raise ValueError("need the cost and accept rate of at least two single models, in one order")
        cheapest = int(np.lexsort((-ars, costs))[0])  # cheapest; among equal costs the better one
        best = int(np.lexsort((costs, -ars))[0])  # highest AR; among equal ARs the cheaper one
        if costs[best] <= costs[cheapest]:
            raise ValueError("the best single model is also the cheapest: there is nothing to route")
        return cls(float(costs[cheapest]), float(ars[cheapest]), float(costs[best]), float(ars[best]))

    def normalise(self, cost: np.ndarray | float) -> np.ndarray:
        """x = (C − C_lo) / (C_best − C_lo)."""
        return (np.asarray(cost, dtype=float) - self.cost_lo) / (self.cost_best - self.cost_lo)

    def dollars(self, x: np.ndarray | float) -> np.ndarray:
        """Inverse of :meth:`normalise`."""
        return self.cost_lo + np.asarray(x, dtype=float) * (self.cost_best - self.cost_lo)


@dataclass(frozen=True)
class Hull:
    """The non-decreasing upper convex hull H, as its vertices (x ascending, y non-decreasing)."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        """H(x): linear between vertices, flat beyond the last one (and before the first)."""
        return np.interp(x, self.x, self.y)

    def first_reaching(self, level: float) -> float | None:
        """The least x with H(x) ≥ ``level``, or None when H never reaches it."""
        if self.y[-1] < level - 1e-12:
            return None
        k = int(np.argmax(self.y >= level - 1e-12))
        if k == 0:
            return float(self.x[0])
        x0, x1, y0, y1 = self.x[k - 1], self.x[k], self.y[k - 1], self.y[k]
        return float(x0 + (level - y0) / (y1 - y0) * (x1 - x0))


def hull(x: Sequence[float], y: Sequence[float], ar_cheapest: float) -> Hull:
    """H of the points (x, y) plus (0, ``ar_cheapest``): the upper concave envelope, cut at its highest
    vertex (beyond it H stays flat: a router can always spend less than it may)."""
    px = np.append(np.asarray(x, dtype=float), 0.0)
    py = np.append(np.asarray(y, dtype=float), float(ar_cheapest))
    if px.shape != py.shape:
        raise ValueError("x and y must have the same length")
    order = np.lexsort((-py, px))  # by x, the highest y first among equal x
    vertices: list[tuple[float, float]] = []
    last_x = None
    for i in order:
        if px[i] == last_x:
            continue  # a lower point at the same x
        last_x = px[i]
        point = (float(px[i]), float(py[i]))
        # pop while the last two vertices and the new point do not turn clockwise (not strictly concave)
        while len(vertices) >= 2 and _cross(vertices[-2], vertices[-1], point) >= 0:
            vertices.pop()
        vertices.append(point)
    hx, hy = np.array(vertices).T
    top = int(np.argmax(hy))  # the concave envelope rises to its maximum, then falls: drop the fall
    return Hull(hx[: top + 1], hy[: top + 1])


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def area(h: Hull, level: float = 0.0, positive_part: bool = False) -> float:
    """∫₀¹ (H(x) − level) dx, or ∫₀¹ max(0, H(x) − level) dx with ``positive_part`` (exact)."""
    breaks = [0.0, 1.0, *h.x[(h.x > 0) & (h.x < 1)]]
    if positive_part:
        crossing = h.first_reaching(level)
        if crossing is not None and 0 < crossing < 1:
            breaks.append(crossing)
    xs = np.unique(breaks)
    ys = h(xs) - level
    if positive_part:
        ys = np.maximum(ys, 0.0)
    return float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)))


def realised(choice: np.ndarray, accepted: np.ndarray, costs: np.ndarray) -> tuple[float, float]:
    """(total dollars, accept rate) of choosing model ``choice[i]`` for query i."""
    rows = np.arange(len(choice))
    return float(costs[rows, choice].sum()), float(accepted[rows, choice].mean())


# ---- the knob sweep ---------------------------------------------------------------------------------------
def pair_choices(scores: np.ndarray, n_points: int = N_POINTS) -> list[np.ndarray]:
    """Per point, the chosen column (0 weak, 1 strong): the top share q = k/(n_points−1) by gap goes strong."""
    gap = scores[:, 1] - scores[:, 0]
    order = np.argsort(-gap, kind="stable")
    out = []
    for k in range(n_points):
        choice = np.zeros(len(gap), dtype=np.intp)
        choice[order[: round(k / (n_points - 1) * len(gap))]] = 1
        out.append(choice)
    return out


def pool_knobs(scores: np.ndarray, expected_costs: np.ndarray, n_points: int = N_POINTS) -> list[float]:
    """λ_0 = 0 and, for k ≥ 1, the least λ at which the expected cost of argmax(score − λ · cost) is at most
    E_0 − k/(n_points−1) · (E_0 − E_cheapest) (see the module docstring).

    The expected cost only falls as λ rises and changes only where two models swap places for a query, at
    λ = Δscore / Δcost; a binary search over those swap points finds each λ exactly."""
    candidates = _swap_points(scores, expected_costs)
    start = float(_expected_cost(scores, expected_costs, np.zeros(1))[0])
    cheapest = float(expected_costs.min(axis=1).mean())
    targets = start - np.arange(1, n_points) / (n_points - 1) * (start - cheapest)
    targets += 1e-12 * max(abs(start), 1.0)  # rounding of the means must not miss the last target
    lo, hi = np.zeros(len(targets), dtype=np.intp), np.full(len(targets), len(candidates) - 1)
    while (lo < hi).any():
        mid = (lo + hi) // 2
        low_enough = _expected_cost(scores, expected_costs, candidates[mid]) <= targets
        hi = np.where(low_enough, mid, hi)
        lo = np.where(low_enough, lo, np.minimum(mid + 1, hi))
    return [0.0, *candidates[hi].tolist()]


def _swap_points(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """0 and every λ > 0 (nudged just past) at which two models swap places for some query, sorted."""
    a, b = np.triu_indices(scores.shape[1], k=1)
    d_score, d_cost = scores[:, a] - scores[:, b], costs[:, a] - costs[:, b]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = d_score / d_cost
    ratio = ratio[(d_cost != 0) & (ratio > 0) & np.isfinite(ratio)]
    return np.concatenate(([0.0], np.unique(ratio) * (1 + 1e-9)))


def _expected_cost(scores: np.ndarray, costs: np.ndarray, knobs: np.ndarray) -> np.ndarray:
    """Mean cost of argmax(score − λ · cost) per λ in ``knobs`` (vectorised over λ)."""
    utility = scores[None] - np.asarray(knobs, dtype=float)[:, None, None] * costs[None]
    picked = utility.argmax(axis=2)
    return np.take_along_axis(np.broadcast_to(costs, utility.shape), picked[..., None], axis=2)[..., 0].mean(
        axis=1
    )


def pool_choices(
    scores: np.ndarray, expected_costs: np.ndarray, n_points: int = N_POINTS
) -> list[np.ndarray]:
    """Per point, the chosen column of argmax(score − λ_k · expected cost)."""
    return [
        choose(scores, expected_costs, "utility", k) for k in pool_knobs(scores, expected_costs, n_points)
    ]


def fast_pool_knobs(scores: np.ndarray, expected: np.ndarray, n_points: int = N_POINTS) -> list[float]:
    """The knobs of :func:`pool_knobs`, computed from each query's path of choices as λ grows (at most one
    step per model) instead of a binary search: the same knobs, many times faster (what the self-tuning
    sweeps for every candidate)."""
    n, m = scores.shape
    rows = np.arange(n)
    current = scores.argmax(axis=1)
    events_at, events_delta = [], []
    for _ in range(m - 1):
        s_cur, c_cur = scores[rows, current], expected[rows, current]
        cheaper = c_cur[:, None] - expected
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(cheaper > 0, (s_cur[:, None] - scores) / cheaper, np.inf)
        nxt = ratio.argmin(axis=1)
        at = ratio[rows, nxt]
        step = np.isfinite(at)
        if not step.any():
            break
        events_at.append(at[step])
        events_delta.append(expected[rows[step], nxt[step]] - c_cur[step])
        current = np.where(step, nxt, current)
    start = float(expected[rows, scores.argmax(axis=1)].mean())
    cheapest = float(expected.min(axis=1).mean())
    targets = start - np.arange(1, n_points) / (n_points - 1) * (start - cheapest)
    targets += 1e-12 * max(abs(start), 1.0)
    if not events_at:
        return [0.0] * n_points
    at, delta = np.concatenate(events_at), np.concatenate(events_delta)
    order = np.argsort(at, kind="stable")
    at, spent = at[order], np.minimum.accumulate(start + np.cumsum(delta[order]) / n)
    picks = np.minimum(np.searchsorted(-spent, -targets, side="left"), len(at) - 1)
    return [0.0, *(np.maximum(at[picks], 0.0) * (1 + 1e-9)).tolist()]


def fast_pool_choices(scores: np.ndarray, expected: np.ndarray) -> list[np.ndarray]:
    """Chosen column per query at each of :func:`fast_pool_knobs`."""
    return [(scores - k * expected).argmax(axis=1) for k in fast_pool_knobs(scores, expected)]


# ---- the curve of a set of scores -------------------------------------------------------------------------
def routing_auc(scores: np.ndarray, accepted: np.ndarray, costs: np.ndarray, expected: np.ndarray) -> float:
    """Hull AUC of the 41-point routing curve of ``scores`` on these queries (a pair when ``scores`` has two
    columns: column 1 the strong model; else a pool swept with :func:`fast_pool_knobs`)."""
    choices = pair_choices(scores) if scores.shape[1] == 2 else fast_pool_choices(scores, expected)
    points = np.array([realised(c, accepted, costs) for c in choices])
    ref = _subset_reference(accepted, costs)
    if ref.cost_best <= ref.cost_lo:  # no cost range to route over: every candidate is as good
        return float(accepted.mean(axis=0).max())
    return area(hull(ref.normalise(points[:, 0]), points[:, 1], ref.ar_cheapest))


def _subset_reference(accepted: np.ndarray, costs: np.ndarray) -> Reference:
    """The normalisation of these queries; where the cheapest model is also the best, the dearest model
    stands in for the best (so that the curve still has a cost range)."""
    total, ar = costs.sum(axis=0), accepted.mean(axis=0)
    try:
        return Reference.from_singles(total, ar)
    except ValueError:
        lo, hi = int(np.argmin(total)), int(np.argmax(total))
        return Reference(float(total[lo]), float(ar[lo]), float(total[hi]), float(ar[hi]))


@dataclass(frozen=True)
class OperatingPoint:
    """A knob (pair: gap threshold θ; pool: utility λ) and what the queries it was chosen on gave there:
    accept rate and mean dollars per query, next to the best single model's."""

    rule: str
    knob: float
    accept_rate: float
    mean_cost: float
    best_single: str
    best_single_accept_rate: float
    best_single_mean_cost: float


def knob_settings(scores: np.ndarray, expected: np.ndarray) -> tuple[str, list[tuple[float, np.ndarray]]]:
    """The decider rule and the curve's 41 settings of ``scores``, each a knob and the column it chooses per
    query: a pair (two columns), gap thresholds θ at the 41 shares sent to the dearer model by
    ``expected`` (the threshold halfway between neighbouring gaps); a pool, the 41 λ of
    :func:`fast_pool_knobs`."""
    if scores.shape[1] != 2:
        return "utility", [
            (k, apply_knob("utility", k, scores, expected)) for k in fast_pool_knobs(scores, expected)
        ]
    strong = int(np.argmax(expected.mean(axis=0)))
    gap = scores[:, strong] - scores[:, 1 - strong]
    ranked = np.sort(gap)[::-1]
    settings = []
    for choice in pair_choices(np.column_stack([-gap, gap])):
        k = int(choice.sum())
        if k == 0:
            theta = ranked[0] + 1.0
        elif k == len(gap):
            theta = ranked[-1] - 1.0
        else:
            theta = (ranked[k - 1] + ranked[k]) / 2
        settings.append((float(theta), apply_knob("gap", float(theta), scores, expected)))
    return "gap", settings


def apply_knob(rule: str, knob: float, scores: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """The column chosen per query at ``knob``: ``gap``, the dearer of two models (by ``expected``) when its
    score exceeds the other's by more than the knob; ``utility``, argmax(score − knob · expected cost)."""
    if rule == "gap":
        strong = int(np.argmax(expected.mean(axis=0)))
        return np.where(scores[:, strong] - scores[:, 1 - strong] > knob, strong, 1 - strong)
    return (scores - knob * expected).argmax(axis=1)
