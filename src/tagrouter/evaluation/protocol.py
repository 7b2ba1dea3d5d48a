"""The benchmark protocol (DESIGN.md §3-§4): setups, folds, out-of-fold predictions and operating points.

- Folds: ``fold[i] = default_rng(seed).permutation(n)[i] % 5``; every method is fitted on the four training
  folds and predicts the fifth, so each query gets exactly one out-of-fold score row per seed.
- A method's ``fit`` sees the training rows only; ``predict`` sees query texts and embeddings only.
- Context models (not routable): every model of the data set outside the 8-model pool and the setup, so a
  setup offers the same context to every method.
- Operating points, 41 per curve: a pair sends the top share q = k/40 of queries, ranked by
  score(strong) − score(weak), to the strong model; a pool takes argmax(score − λ · cost) with cost = each
  model's mean dollars per query over the training folds, λ_0 = 0 and λ_k (k = 1..40) the least λ whose
  expected cost (those training means) of the routed queries is at most E_0 − k/40 · (E_0 − E_cheapest):
  the knob's whole range in equal expected-cost steps, set from the method's own scores.
- The chosen operating point θ: on the training folds' in-sample predictions, the cheapest setting whose
  training accept rate reaches the best single model's training accept rate (a pair: the gap threshold θ;
  a pool: λ, from the 41-step grid built as above); then applied unchanged to the test fold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tagrouter.deciding import choose
from tagrouter.errors import DataError
from tagrouter.evaluation.base import FoldData, RouterMethod
from tagrouter.evaluation.datasets.alpacaeval import POOL_8, AlpacaEvalData

N_FOLDS = 5
N_POINTS = 41
SEEDS = (0, 1, 2, 3, 4)
#: (weak, strong) pairs of DESIGN.md §3.
PAIRS = (
    ("llama-2-7b-chat-hf", "gpt4"),
    ("gpt-3.5-turbo-1106", "gpt4_1106_preview"),
    ("zephyr-7b-beta", "claude-2"),
    ("tulu-2-dpo-70b", "gpt4_1106_preview"),
    ("vicuna-13b", "gpt-3.5-turbo-0301"),
    ("llama-2-13b-chat-hf", "llama-2-70b-chat-hf"),
)
_OUTCOME_CODE = {"win": 0, "tie": 1, "loss": 2}


@dataclass(frozen=True)
class Setup:
    """A routing problem: a pair (models = (weak, strong)) or a pool."""

    name: str
    kind: Literal["pair", "pool"]
    models: tuple[str, ...]


def all_setups() -> list[Setup]:
    """The six pairs, then the 8-model pool, named ``pair:WEAK>STRONG`` and ``pool:8``."""
    pairs = [Setup(f"pair:{w}>{s}", "pair", (w, s)) for w, s in PAIRS]
    return [*pairs, Setup("pool:8", "pool", POOL_8)]


def select_setups(names: Sequence[str] | None) -> list[Setup]:
    """The setups named in ``names`` (all when empty), with a clear error for an unknown name."""
    setups = all_setups()
    if not names:
        return setups
    known = {s.name: s for s in setups}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DataError(f"unknown setup(s) {', '.join(unknown)}; choose from: {', '.join(known)}")
    return [known[n] for n in names]


def fold_ids(n: int, seed: int) -> np.ndarray:
    """Fold of each query: ``permutation(n, seed) % 5`` with numpy's ``default_rng(seed)``."""
    return np.random.default_rng(seed).permutation(n) % N_FOLDS


@dataclass
class Benchmark:
    """Every query's text, embedding, outcome code and cost for every model of the data set."""

    queries: list[str]
    embeddings: np.ndarray
    models: list[str]
    outcomes: np.ndarray  # n × K codes: 0 win, 1 tie, 2 loss
    costs: np.ndarray  # n × K dollars

    def __post_init__(self) -> None:
        self.index = {m: i for i, m in enumerate(self.models)}

    @classmethod
    def from_alpacaeval(cls, data: AlpacaEvalData, embeddings: np.ndarray) -> Benchmark:
        """Arrays from the loaded data; ``embeddings`` are the instructions' in index order."""
        ids = sorted(data.instructions)
        models = data.models
        data.check_models(models)
        missing = [m for m in models if len(data.outcomes[m]) != len(ids)]
        if missing:
            raise DataError(f"model(s) {', '.join(missing)} lack verdicts on some instructions")
        outcomes = np.array([[_OUTCOME_CODE[data.outcomes[m][i]] for m in models] for i in ids])
        costs = np.array([[data.cost(m, i) for m in models] for i in ids])
        return cls([data.instructions[i] for i in ids], embeddings, models, outcomes, costs)

    @property
    def accepted(self) -> np.ndarray:
        return self.outcomes != 2

    def columns(self, models: Sequence[str]) -> list[int]:
        return [self.index[m] for m in models]

    def context_models(self, setup: Setup) -> list[str]:
        """Models whose outcomes are offered as extra signal: all but the pool and the setup's."""
        routable = set(POOL_8) | set(setup.models)
        return [m for m in self.models if m not in routable]

    def fold_data(self, setup: Setup, rows: np.ndarray) -> FoldData:
        """What a method may see of ``rows`` for ``setup`` (outcomes included: training rows only)."""
        pool, context = self.columns(setup.models), self.columns(self.context_models(setup))
        return FoldData(
            queries=[self.queries[i] for i in rows],
            embeddings=self.embeddings[rows],
            accepted=self.accepted[np.ix_(rows, pool)],
            context_accepted=self.accepted[np.ix_(rows, context)],
            costs=self.costs[np.ix_(rows, pool)],
            models=list(setup.models),
            outcomes=self.outcomes[np.ix_(rows, pool)],
        )


# ---- operating points ------------------------------------------------------------------------------------
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


def _best_single(accepted: np.ndarray, costs: np.ndarray) -> int:
    ar, cost = accepted.mean(axis=0), costs.sum(axis=0)
    return int(np.lexsort((cost, -ar))[0])


def choose_knob(setup: Setup, scores: np.ndarray, train: FoldData) -> float:
    """θ (pair: gap threshold; pool: λ) from in-sample predictions on the training folds: the cheapest
    setting whose training accept rate reaches the best single model's (see the module docstring)."""
    accepted, costs = train.accepted, train.costs
    target = accepted[:, _best_single(accepted, costs)].mean() - 1e-12
    rows = np.arange(len(scores))
    if setup.kind == "pair":
        gap = scores[:, 1] - scores[:, 0]
        order = np.argsort(-gap, kind="stable")
        sorted_gap = gap[order]
        # k top queries strong: AR and cost by cumulative sums over the ranking
        delta_ar = (accepted[order, 1].astype(float) - accepted[order, 0]).cumsum()
        delta_cost = (costs[order, 1] - costs[order, 0]).cumsum()
        ar = (accepted[:, 0].sum() + np.concatenate(([0.0], delta_ar))) / len(gap)
        cost = costs[:, 0].sum() + np.concatenate(([0.0], delta_cost))
        feasible = np.flatnonzero(ar >= target)
        k = int(feasible[np.argmin(cost[feasible])])
        if k == 0:
            return float(sorted_gap[0] + 1.0)
        if k == len(gap):
            return float(sorted_gap[-1] - 1.0)
        return float((sorted_gap[k - 1] + sorted_gap[k]) / 2)
    expected = np.broadcast_to(costs.mean(axis=0), scores.shape)
    best_knob, best_cost = 0.0, np.inf
    for knob in pool_knobs(scores, expected):
        picked = choose(scores, expected, "utility", knob)
        ar, cost = accepted[rows, picked].mean(), costs[rows, picked].sum()
        if ar >= target and cost < best_cost:
            best_knob, best_cost = knob, cost
    return best_knob


def apply_knob(setup: Setup, scores: np.ndarray, expected_costs: np.ndarray, knob: float) -> np.ndarray:
    """Chosen columns at θ: strong when the gap exceeds θ (pair), argmax(score − λ · cost) (pool)."""
    if setup.kind == "pair":
        return (scores[:, 1] - scores[:, 0] > knob).astype(np.intp)
    return choose(scores, expected_costs, "utility", knob)


# ---- out-of-fold runs -------------------------------------------------------------------------------------
@dataclass
class OutOfFold:
    """One method, one setup, one seed: out-of-fold scores, the expected costs each prediction was made
    with (training means of its fold) and the choice at θ chosen on the training folds."""

    scores: np.ndarray
    expected_costs: np.ndarray
    theta_choice: np.ndarray


#: A fresh, unfitted method for (setup, seed).
MethodFactory = Callable[[Setup, int], RouterMethod]


def out_of_fold(bench: Benchmark, setup: Setup, factory: MethodFactory, seed: int) -> OutOfFold:
    """Fit a fresh method on each training split and predict its test fold (see the module docstring)."""
    n, m = len(bench.queries), len(setup.models)
    folds = fold_ids(n, seed)
    scores, expected, theta_choice = np.empty((n, m)), np.empty((n, m)), np.empty(n, dtype=np.intp)
    for fold in range(N_FOLDS):
        train_rows, test_rows = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        train = bench.fold_data(setup, train_rows)
        method = factory(setup, seed)
        method.fit(train)
        test_scores = _checked(method, [bench.queries[i] for i in test_rows], bench.embeddings[test_rows], m)
        train_scores = _checked(method, train.queries, train.embeddings, m)
        scores[test_rows] = test_scores
        expected[test_rows] = train.costs.mean(axis=0)
        knob = choose_knob(setup, train_scores, train)
        theta_choice[test_rows] = apply_knob(setup, test_scores, expected[test_rows], knob)
    return OutOfFold(scores, expected, theta_choice)


def _checked(method: RouterMethod, queries: list[str], embeddings: np.ndarray, m: int) -> np.ndarray:
    scores = np.asarray(method.predict(queries, embeddings), dtype=float)
    if scores.shape != (len(queries), m) or not np.isfinite(scores).all():
        raise ValueError(
            f"router {method.name!r} returned scores of shape {scores.shape} (or non-finite values); "
            f"expected {(len(queries), m)} finite scores"
        )
    return scores


def operating_choices(setup: Setup, run: OutOfFold) -> list[np.ndarray]:
    """The 41 operating points of an out-of-fold run, as chosen columns per query."""
    if setup.kind == "pair":
        return pair_choices(run.scores)
    return pool_choices(run.scores, run.expected_costs)
