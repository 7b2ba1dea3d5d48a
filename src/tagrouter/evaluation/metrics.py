"""Quality-cost metrics of a router's operating points: hull AUC, APGR, PAUC, uplift, cost saving.

The operating points, their normalisation x = (C − C_lo) / (C_best − C_lo) and the hull H are the routing
curve's (:mod:`tagrouter.curves`); every metric below is read off H, and every integral is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagrouter.curves import Reference, area, hull


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
    auc = area(h)
    pauc = area(h, ref.ar_best, positive_part=True)
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
