"""Quality-cost metrics of a router's operating points: hull AUC, APGR, PAUC, uplift, cost saving.

A router gives operating points (C, AR): total dollars over the evaluated queries and the share of accepted
answers. With C_lo = cost of the cheapest single model and (C_best, AR_best) = the single model with the
highest accept rate (ties: the cheaper), the normalised cost is x = (C − C_lo) / (C_best − C_lo), and H is the
non-decreasing upper convex hull of the points plus (0, AR_cheapest), flat beyond its last point. Every
integral below is exact: H is piecewise linear, so integrating between its breakpoints is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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


def _integrate(h: Hull, level: float = 0.0, positive_part: bool = False) -> float:
    """∫₀¹ (H(x) − level) dx, or ∫₀¹ max(0, H(x) − level) dx with ``positive_part``."""
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


@dataclass(frozen=True)
class CurveMetrics:
    """The §4 metrics of one operating-point curve. ``apgr`` only for pairs; ``cost_saving`` is None when H
    never reaches AR_best within x ≤ 1."""

    auc: float
    pauc: float
    uplift: float
    cost_saving: float | None
    apgr: float | None


def curve_metrics(
    costs: Sequence[float], ars: Sequence[float], ref: Reference, *, pair: tuple[float, float] | None = None
) -> CurveMetrics:
    """Metrics of the operating points (total dollars, accept rate); ``pair`` = (AR_weak, AR_strong) adds
    APGR = (AUC − AR_weak) / (AR_strong − AR_weak)."""
    h = hull(ref.normalise(costs), ars, ref.ar_cheapest)
    auc = _integrate(h)
    pauc = _integrate(h, ref.ar_best, positive_part=True)
    uplift = float(h(1.0)) / ref.ar_best - 1.0
    reach = h.first_reaching(ref.ar_best)
    saving = None
    if reach is not None and reach <= 1.0:
        saving = 1.0 - float(ref.dollars(reach)) / ref.cost_best
    apgr = None
    if pair is not None:
        weak, strong = pair
        if strong == weak:
            raise ValueError("APGR is undefined when the two models have the same accept rate")
        apgr = (auc - weak) / (strong - weak)
    return CurveMetrics(auc=auc, pauc=pauc, uplift=uplift, cost_saving=saving, apgr=apgr)


def mixture_auc(costs: Sequence[float], ars: Sequence[float], ref: Reference) -> float:
    """AUC of the single models' own hull (send all to one model or mix two at random)."""
    return curve_metrics(costs, ars, ref).auc


def oracle_choice(accepted: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Per query (rows), the cheapest model that is accepted; the cheapest model when none is."""
    accepted = np.asarray(accepted, dtype=bool)
    costs = np.asarray(costs, dtype=float)
    masked = np.where(accepted, costs, np.inf)
    return np.where(accepted.any(axis=1), masked.argmin(axis=1), costs.argmin(axis=1))


def realised(choice: np.ndarray, accepted: np.ndarray, costs: np.ndarray) -> tuple[float, float]:
    """(total dollars, accept rate) of choosing model ``choice[i]`` for query i."""
    rows = np.arange(len(choice))
    return float(costs[rows, choice].sum()), float(accepted[rows, choice].mean())
