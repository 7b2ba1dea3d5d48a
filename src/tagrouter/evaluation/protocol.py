"""The evaluation protocol: setups, folds, out-of-fold predictions and operating points.

- A setup is a pool (the catalogue's models) or a pair (weak, strong). Its queries are those on which every
  model of the setup was judged; its context models are every other model of the history outside the pool
  and the setup: their outcomes on the training queries are offered to every method (never routed to).
- Folds: ``fold[i] = default_rng(seed).permutation(n)[i] % 5`` over the setup's n queries; every method is
  fitted on the four training folds and predicts the fifth, so each query gets exactly one out-of-fold
  score row per seed.
- A method's ``fit`` sees the training rows only; ``predict`` sees query texts and embeddings only.
- Operating points, 41 per curve (the knob sweep of :mod:`tagrouter.curves`): a pair sends the top share
  q = k/40 of queries, ranked by score(strong) − score(weak), to the strong model; a pool takes
  argmax(score − λ · cost) with cost = each model's mean dollars per query over the training folds, λ_0 = 0
  and λ_k (k = 1..40) the least λ whose expected cost (those training means) of the routed queries is at
  most E_0 − k/40 · (E_0 − E_cheapest): the knob's whole range in equal expected-cost steps, set from the
  method's own scores.
- The chosen operating point θ: a method that deploys a knob of its own (``chosen_knob()``, TagRouter's
  self-tuned default) is tested at it; for the others, on the training folds' in-sample predictions, the
  cheapest setting whose training accept rate reaches the best single model's training accept rate (a
  pair: the gap threshold θ; a pool: λ, from the 41-step grid built as above); then applied unchanged to
  the test fold. The **shortfall** is how far the accept rate there falls below the best single model's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tagrouter.curves import pair_choices, pool_choices, pool_knobs
from tagrouter.deciding import choose
from tagrouter.errors import DataError
from tagrouter.evaluation.base import FoldData, RouterMethod
from tagrouter.records import History

N_FOLDS = 5
SEEDS = (0, 1, 2, 3, 4)
#: a setup needs at least this many queries (two per fold for training and test)
MIN_QUERIES = 2 * N_FOLDS


@dataclass(frozen=True)
class Setup:
    """A routing problem: a pair (models = (weak, strong)) or a pool; ``context``: the models whose
    outcomes are offered as extra signal."""

    name: str
    kind: Literal["pair", "pool"]
    models: tuple[str, ...]
    context: tuple[str, ...] = ()


def make_setups(
    models: Sequence[str], pool: Sequence[str], pairs: Sequence[tuple[str, str]] = ()
) -> list[Setup]:
    """The pairs (``pair:WEAK>STRONG``), then the pool (``pool:N``; a two-model pool is the pair of its
    models, cheaper first as listed). Context: every model of ``models`` outside the pool and the setup."""
    routable = set(pool)

    def context(setup_models: Sequence[str]) -> tuple[str, ...]:
        return tuple(m for m in models if m not in routable and m not in setup_models)

    setups = [Setup(f"pair:{w}>{s}", "pair", (w, s), context((w, s))) for w, s in pairs]
    if len(pool) == 2:
        if tuple(pool) not in pairs:
            setups.append(Setup(f"pair:{pool[0]}>{pool[1]}", "pair", tuple(pool), context(pool)))
    else:
        setups.append(Setup(f"pool:{len(pool)}", "pool", tuple(pool), context(pool)))
    return setups


def select_setups(setups: Sequence[Setup], names: Sequence[str] | None) -> list[Setup]:
    """The setups named in ``names`` (all when empty), with a clear error for an unknown name."""
    if not names:
        return list(setups)
    known = {s.name: s for s in setups}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DataError(f"unknown setup(s) {', '.join(unknown)}; choose from: {', '.join(known)}")
    return [known[n] for n in names]


def fold_ids(n: int, seed: int) -> np.ndarray:
    """Fold of each query: ``permutation(n, seed) % 5`` with numpy's ``default_rng(seed)``."""
    return np.random.default_rng(seed).permutation(n) % N_FOLDS


_OUTCOME_CODE = {"win": 0, "tie": 1, "loss": 2}


@dataclass
class Benchmark:
    """Every query's text, embedding, outcome code and cost for every model of the history.

    ``outcomes``: n × K codes (0 win, 1 tie, 2 loss); ``known``: whether the model was judged on the query
    (None: every cell); ``costs``: n × K dollars (NaN where unknown: a context model without a price).
    ``history``: the judged records these arrays view (one per judged query and model; ``record_rows``:
    each record's query row), which the folds hand on to the methods (None: arrays only)."""

    queries: list[str]
    embeddings: np.ndarray
    models: list[str]
    outcomes: np.ndarray
    costs: np.ndarray
    known: np.ndarray | None = None
    history: History | None = None
    record_rows: np.ndarray | None = None
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {m: i for i, m in enumerate(self.models)}
        if self.known is None:
            self.known = np.ones(self.outcomes.shape, dtype=bool)

    @property
    def accepted(self) -> np.ndarray:
        return (self.outcomes != 2) & self.known

    def columns(self, models: Sequence[str]) -> list[int]:
        return [self.index[m] for m in models]

    def complete_rows(self, setup: Setup) -> np.ndarray:
        """The queries on which every model of ``setup`` was judged."""
        return np.flatnonzero(self.known[:, self.columns(setup.models)].all(axis=1))

    def restricted(self, rows: np.ndarray) -> Benchmark:
        """The benchmark of ``rows`` only (in order)."""
        history, record_rows = self._records_of(rows, self.models)
        return Benchmark(
            [self.queries[i] for i in rows],
            self.embeddings[rows],
            self.models,
            self.outcomes[rows],
            self.costs[rows],
            self.known[rows],
            history,
            record_rows,
        )

    def _records_of(
        self, rows: np.ndarray, models: Sequence[str]
    ) -> tuple[History | None, np.ndarray | None]:
        """The records of the queries ``rows`` and the ``models`` (in reading order), and their query rows
        numbered as in ``rows``."""
        if self.history is None or self.record_rows is None:
            return None, None
        position = np.full(len(self.queries), -1, dtype=np.intp)
        position[rows] = np.arange(len(rows))
        wanted = set(models)
        keep = (position[self.record_rows] >= 0) & np.fromiter(
            (m in wanted for m in self.history.model), dtype=bool, count=len(self.history)
        )
        return self.history.taken(keep), position[self.record_rows[keep]]

    def for_setup(self, setup: Setup) -> Benchmark:
        """The benchmark of ``setup``: its complete queries only (see :meth:`complete_rows`)."""
        rows = self.complete_rows(setup)
        if len(rows) < MIN_QUERIES:
            raise DataError(
                f"setup {setup.name}: only {len(rows)} queries have outcomes of all its models; "
                f"need at least {MIN_QUERIES}"
            )
        costs = self.costs[np.ix_(rows, self.columns(setup.models))]
        if not np.isfinite(costs).all():
            raise DataError(f"setup {setup.name}: some answers have no cost and no price to compute one")
        return self if len(rows) == len(self.queries) else self.restricted(rows)

    def fold_data(self, setup: Setup, rows: np.ndarray) -> FoldData:
        """What a method may see of ``rows`` for ``setup`` (outcomes included: training rows only)."""
        pool, context = self.columns(setup.models), self.columns(setup.context)
        context_known = self.known[np.ix_(rows, context)]
        return FoldData(
            queries=[self.queries[i] for i in rows],
            embeddings=self.embeddings[rows],
            accepted=self.accepted[np.ix_(rows, pool)],
            context_accepted=self.accepted[np.ix_(rows, context)],
            costs=self.costs[np.ix_(rows, pool)],
            models=list(setup.models),
            outcomes=self.outcomes[np.ix_(rows, pool)],
            context_known=None if context_known.all() else context_known,
            history=self._records_of(rows, [*setup.models, *setup.context])[0],
        )


# ---- the chosen operating point θ ------------------------------------------------------------------------
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


@dataclass(frozen=True)
class FoldRun:
    """One method fitted on one training split: its test rows, their scores, the expected costs (training
    means) and the knob θ chosen on the training rows."""

    test_rows: np.ndarray
    scores: np.ndarray
    expected_costs: np.ndarray
    knob: float


def fold_run(bench: Benchmark, setup: Setup, factory: MethodFactory, seed: int, fold: int) -> FoldRun:
    """Fit a fresh method on every fold of ``seed`` but ``fold`` and score ``fold`` (the test rows)."""
    m = len(setup.models)
    folds = fold_ids(len(bench.queries), seed)
    train_rows, test_rows = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
    train = bench.fold_data(setup, train_rows)
    method = factory(setup, seed)
    method.fit(train)
    test_scores = _checked(method, [bench.queries[i] for i in test_rows], bench.embeddings[test_rows], m)
    train_scores = _checked(method, train.queries, train.embeddings, m)
    expected = np.broadcast_to(train.costs.mean(axis=0), test_scores.shape)
    own = getattr(method, "chosen_knob", None)
    knob = own() if own is not None else None
    return FoldRun(
        test_rows, test_scores, expected, choose_knob(setup, train_scores, train) if knob is None else knob
    )


def out_of_fold(bench: Benchmark, setup: Setup, factory: MethodFactory, seed: int) -> OutOfFold:
    """Fit a fresh method on each training split and predict its test fold (see the module docstring)."""
    n, m = len(bench.queries), len(setup.models)
    scores, expected, theta_choice = np.empty((n, m)), np.empty((n, m)), np.empty(n, dtype=np.intp)
    for fold in range(N_FOLDS):
        run = fold_run(bench, setup, factory, seed, fold)
        scores[run.test_rows] = run.scores
        expected[run.test_rows] = run.expected_costs
        theta_choice[run.test_rows] = apply_knob(setup, run.scores, run.expected_costs, run.knob)
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
