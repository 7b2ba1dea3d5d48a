"""TagDecider: choose a model from per-model scores and expected costs, and calibrate its threshold.

Rules (``knob`` is the one number that trades quality for cost; raising it always sends traffic to
cheaper models, never to dearer ones):

- ``gap`` (the paper's two-model rule): take the strong (dearer) model only when
  score(strong) − score(cheap) > θ. θ = 0 is the paper's default.
- ``within`` (the paper's N-model rule): find the best score s*, then take the cheapest model whose score is
  at least s* − θ. With two models it makes the same choices as ``gap`` for θ ≥ 0.
- ``utility``: take argmax_m score(m) − λ · cost(m), with λ in score units per dollar (λ < 0 favours dearer
  models). For probability-like scores this traces a better quality-cost curve over many models than
  ``within``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from tagrouter.errors import DataError


class Rule(StrEnum):
    """The decision rules (see the module docstring)."""

    GAP = "gap"
    WITHIN = "within"
    UTILITY = "utility"


@dataclass(frozen=True)
class Calibration:
    """What a calibrated knob achieved on the calibration queries (:func:`calibrate`)."""

    knob: float
    strong_share: float
    mean_cost: float
    target: float
    achieved: float
    queries: int = 0

    def to_dict(self) -> dict[str, float]:
        return {
            "knob": self.knob,
            "strong_share": self.strong_share,
            "mean_cost_usd": self.mean_cost,
            "target": self.target,
            "achieved": self.achieved,
            "queries": self.queries,
        }


@dataclass(frozen=True)
class Decider:
    """The routing policy: a decision rule and its knob (θ for ``gap`` and ``within``, λ in score units
    per dollar for ``utility``), plus how the knob was set (``calibration``, when it was calibrated).

    A decider is a small value applied to a fitted model's scores; many deciders can share one model.
    A rule name or knob it cannot use raises :class:`~tagrouter.errors.DataError`.
    """

    rule: Rule = Rule.WITHIN
    knob: float = 0.0
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "rule", Rule(self.rule))
        except ValueError:
            raise DataError(
                f"unknown decision rule {self.rule!r}; expected one of {', '.join(Rule)}", field="rule"
            ) from None
        if not isinstance(self.knob, (int, float)) or not math.isfinite(self.knob):
            raise DataError(f"the knob must be a finite number, got {self.knob!r}", field="knob")
        object.__setattr__(self, "knob", float(self.knob))
        if self.rule is Rule.WITHIN and self.knob < 0:
            raise DataError(
                f"the 'within' rule takes a knob θ ≥ 0 (a score margin), got {self.knob:g}", field="knob"
            )

    def check(self, n_models: int) -> None:
        """Raise :class:`DataError` unless this rule can decide among ``n_models`` models."""
        if self.rule is Rule.GAP and n_models != 2:
            raise DataError(
                f"the 'gap' rule needs exactly two models, the catalogue has {n_models}; "
                "use 'within' or 'utility'",
                field="rule",
            )

    def choose(self, scores: np.ndarray, costs: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """Index of the chosen model for each row of ``scores`` (n × M); ``costs`` is (M,) or (n × M);
        ``allowed`` (n × M, bool; default all) limits the choice of each row to its allowed models."""
        return choose(scores, costs, self.rule, self.knob, allowed)

    def rank(self, scores: np.ndarray, costs: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """Every model per query, best choice first, then by the rule's preference (for fallbacks); the
        models that ``allowed`` rules out come last."""
        scores = np.atleast_2d(scores)
        costs = np.broadcast_to(costs, scores.shape)
        preference = scores - self.knob * costs if self.rule is Rule.UTILITY else scores
        if allowed is not None:
            preference = np.where(allowed, preference, -np.inf)
        order = np.argsort(-preference, axis=1, kind="stable")
        first = self.choose(scores, costs, allowed)
        rest = order[order != first[:, None]].reshape(len(order), -1)
        return np.concatenate([first[:, None], rest], axis=1)

    def with_knob(self, knob: float, calibration: Calibration | None = None) -> Decider:
        return Decider(rule=self.rule, knob=float(knob), calibration=calibration)

    def to_dict(self) -> dict:
        out: dict = {"rule": str(self.rule), "knob": self.knob}
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Decider:
        saved = dict(data.get("calibration") or {})
        calibration = None
        if saved:
            saved["mean_cost"] = saved.pop("mean_cost_usd")
            calibration = Calibration(**saved)
        return cls(rule=data["rule"], knob=float(data["knob"]), calibration=calibration)


def default_decider(n_models: int) -> Decider:
    """The paper's ``gap`` rule for two models, ``utility`` for more (θ = λ = 0: the best score)."""
    return Decider(Rule.GAP if n_models == 2 else Rule.UTILITY)


def choose(
    scores: np.ndarray, costs: np.ndarray, rule: Rule, knob: float, allowed: np.ndarray | None = None
) -> np.ndarray:
    """Vectorised decision for all queries at once; see the module docstring for the rules. With
    ``allowed`` (n × M, bool, at least one per row), each row chooses among its allowed models only, as if
    the others were not in the catalogue."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    costs = np.broadcast_to(np.asarray(costs, dtype=float), scores.shape)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    if rule == "gap":
        if scores.shape[1] != 2:
            raise DataError(f"the 'gap' rule needs exactly two models, got {scores.shape[1]}")
        strong = costs.argmax(axis=1)
        cheap = 1 - strong
        rows = np.arange(len(scores))
        gap = scores[rows, strong] - scores[rows, cheap]  # ±inf when one of the two is ruled out
        return np.where(gap > knob, strong, cheap)
    if rule == "within":
        eligible = scores >= scores.max(axis=1, keepdims=True) - knob - 1e-12
        masked = np.where(eligible, costs, np.inf)
        # cheapest eligible; among equal costs, the best score
        best = masked.min(axis=1, keepdims=True)
        tie_break = np.where(masked == best, scores, -np.inf)
        return tie_break.argmax(axis=1)
    if rule == "utility":
        return (scores - knob * costs).argmax(axis=1)
    raise DataError(f"unknown decision rule {rule!r}; expected one of {', '.join(Rule)}")


def knob_range(scores: np.ndarray, costs: np.ndarray, rule: Rule) -> tuple[float, float]:
    """A knob interval whose ends give the dearest and the cheapest choices this rule can make."""
    scores = np.atleast_2d(scores)
    spread = float(scores.max() - scores.min()) + 1.0
    if rule == "gap":
        return -spread, spread
    if rule == "within":
        return 0.0, spread
    cost_steps = np.diff(np.unique(np.asarray(costs, dtype=float)))
    smallest = float(cost_steps.min()) if len(cost_steps) else 1.0
    reach = spread / max(smallest, 1e-12) * 2
    return -reach, reach  # a negative λ favours dearer models


def calibrate(
    scores: np.ndarray,
    costs: np.ndarray,
    rule: Rule,
    *,
    strong_share: float | None = None,
    strong_index: int | None = None,
    mean_cost: float | None = None,
    iterations: int = 80,
) -> Calibration:
    """Find the knob that sends ``strong_share`` of the calibration queries to the model ``strong_index``
    (default: the dearest), or that makes the mean cost per query ``mean_cost`` dollars.

    Both quantities only fall as the knob rises, so a bisection finds the smallest knob at which the value
    is at or below the target: a cost budget or traffic cap is never exceeded on the calibration queries
    (unless even the cheapest choice exceeds it, then that choice is returned). The
    result is exact up to one query's share (a step of 1/n) for ``strong_share``.
    """
    if (strong_share is None) == (mean_cost is None):
        raise DataError("give exactly one target: strong_share or mean_cost")
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    costs = np.broadcast_to(np.asarray(costs, dtype=float), scores.shape)
    strong = int(costs.mean(axis=0).argmax()) if strong_index is None else strong_index
    if strong_share is not None and not 0.0 <= strong_share <= 1.0:
        raise DataError(f"strong_share must be between 0 and 1, got {strong_share}")
    target = strong_share if strong_share is not None else mean_cost
    rows = np.arange(len(scores))

    def measure(knob: float) -> tuple[float, float]:
        picked = choose(scores, costs, rule, knob)
        return float(np.mean(picked == strong)), float(costs[rows, picked].mean())

    def value(knob: float) -> float:
        share, cost = measure(knob)
        return share if strong_share is not None else cost

    lo, hi = knob_range(scores, costs, rule)
    if value(lo) <= target:
        hi = lo
    elif value(hi) > target:
        lo = hi
    else:
        for _ in range(iterations):
            mid = (lo + hi) / 2
            if value(mid) <= target:
                hi = mid
            else:
                lo = mid
    knob = hi  # the value at hi is at or below the target, unless even the cheapest setting exceeds it
    share, cost = measure(knob)
    return Calibration(
        knob=knob,
        strong_share=share,
        mean_cost=cost,
        target=float(target),
        achieved=share if strong_share is not None else cost,
        queries=len(scores),
    )
