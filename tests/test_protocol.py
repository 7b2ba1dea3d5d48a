"""The fold protocol: folds, what a method may see, operating points and θ chosen on training folds."""

import numpy as np
import pytest

from tagrouter.curves import pair_choices, pool_choices, pool_knobs
from tagrouter.errors import DataError
from tagrouter.evaluation.base import FoldData
from tagrouter.evaluation.protocol import (
    Benchmark,
    Setup,
    apply_knob,
    choose_knob,
    fold_ids,
    make_setups,
    out_of_fold,
    select_setups,
)


def synthetic_bench(n: int = 50, seed: int = 0) -> Benchmark:
    """Models a (cheap), b (dear) and c (context); outcomes random, queries unique."""
    rng = np.random.default_rng(seed)
    outcomes = rng.integers(0, 3, size=(n, 3))
    costs = np.column_stack([np.full(n, 1.0), np.full(n, 10.0), np.full(n, 5.0)])
    embeddings = rng.normal(size=(n, 4))
    return Benchmark([f"query {i}" for i in range(n)], embeddings, ["a", "b", "c"], outcomes, costs)


PAIR = Setup("pair:a>b", "pair", ("a", "b"), context=("c",))


class Memoriser:
    """Remembers every training outcome it is shown; predicts 0.5 for any query it has not seen."""

    name = "memoriser"

    def __init__(self, log: list) -> None:
        self.log = log

    def fit(self, train: FoldData) -> None:
        self.seen = {q: row.astype(float) for q, row in zip(train.queries, train.accepted, strict=True)}
        self.log.append(set(train.queries))

    def predict(self, queries, embeddings):
        return np.array([self.seen.get(q, np.full(2, 0.5)) for q in queries])


def test_folds_follow_the_design_formula():
    folds = fold_ids(805, 3)
    assert np.array_equal(folds, np.random.default_rng(3).permutation(805) % 5)
    assert sorted(np.bincount(folds).tolist()) == [161] * 5


def test_setups_are_the_pairs_then_the_pool_with_every_other_model_as_context():
    setups = make_setups(["a", "b", "c", "x", "y"], pool=["a", "b", "c"], pairs=[("a", "x")])
    assert [(s.name, s.kind, s.models, s.context) for s in setups] == [
        ("pair:a>x", "pair", ("a", "x"), ("y",)),
        ("pool:3", "pool", ("a", "b", "c"), ("x", "y")),
    ]
    # a two-model pool is its pair
    assert [s.name for s in make_setups(["a", "b", "z"], pool=["a", "b"])] == ["pair:a>b"]
    assert select_setups(setups, ["pool:3"])[0].models == ("a", "b", "c")
    with pytest.raises(DataError, match="unknown setup"):
        select_setups(setups, ["pool:9"])


def test_a_setup_keeps_the_queries_all_its_models_were_judged_on():
    bench = synthetic_bench(n=20)
    bench.known[3, 0] = False  # model a not judged on query 3
    bench.known[4, 2] = False  # context model c not judged on query 4
    restricted = bench.for_setup(PAIR)
    assert len(restricted.queries) == 19 and "query 3" not in restricted.queries
    data = restricted.fold_data(PAIR, np.arange(19))
    assert data.context_known is not None and data.context_known.sum() == 18
    assert not data.context_accepted[restricted.queries.index("query 4"), 0]  # unknown, not a loss to count
    with pytest.raises(DataError, match="only 9 queries"):
        bench.restricted(np.arange(11, 20)).for_setup(PAIR)


def test_no_test_outcome_reaches_fit():
    # A memoriser returns the true outcomes of anything it was fitted on. Out of fold, it must only ever
    # have seen other queries: every out-of-fold score is its "unseen" 0.5. Fitting on all rows (leakage)
    # would return 0/1 scores here.
    bench, log = synthetic_bench(), []
    run = out_of_fold(bench, PAIR, lambda *_: Memoriser(log), seed=0)
    assert np.all(run.scores == 0.5)
    folds = fold_ids(50, 0)
    assert len(log) == 5
    for fold, seen in enumerate(log):
        test = {f"query {i}" for i in np.flatnonzero(folds == fold)}
        assert not seen & test
        assert len(seen) + len(test) == 50


def test_fold_data_offers_pool_and_context_columns_only():
    bench = synthetic_bench()
    data = bench.fold_data(PAIR, np.array([0, 1, 2]))
    assert data.models == ["a", "b"]
    assert np.array_equal(data.accepted, bench.outcomes[:3, :2] != 2)
    assert np.array_equal(data.context_accepted[:, 0], bench.outcomes[:3, 2] != 2)
    assert data.costs.tolist() == [[1.0, 10.0]] * 3


def test_pair_sweep_sends_the_top_share_by_gap():
    scores = np.array(
        [[0.75, 0.25], [0.25, 0.875], [0.5, 0.75], [0.25, 0.5]]
    )  # gaps -0.5, 0.625, 0.25, 0.25 (tie: stable)
    choices = pair_choices(scores, n_points=5)  # shares 0, 1/4, 1/2, 3/4, 1
    assert [c.tolist() for c in choices] == [
        [0, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 1, 1, 1],
        [1, 1, 1, 1],
    ]


def test_pool_sweep_spans_best_score_to_all_cheapest_in_equal_cost_steps():
    # three models costing 1, 2, 4; query 0 prefers the dearest, query 1 the middle one
    scores = np.array([[0.1, 0.2, 0.9], [0.1, 0.5, 0.3]])
    costs = np.broadcast_to([1.0, 2.0, 4.0], scores.shape)
    knobs = pool_knobs(scores, costs, n_points=5)
    choices = pool_choices(scores, costs, n_points=5)
    assert knobs[0] == 0.0
    assert choices[0].tolist() == [2, 1]  # best score
    assert choices[-1].tolist() == [0, 0]  # everything to the cheapest
    expected = [float(costs[[0, 1], c].mean()) for c in choices]
    assert all(a >= b for a, b in zip(expected, expected[1:], strict=False))
    # E_0 = 3, E_cheapest = 1: targets 2.5, 2, 1.5, 1. Query 0 leaves model 2 for model 0 at
    # λ = 0.8 / 3 ≈ 0.267 (expected cost (1 + 2) / 2 = 1.5); query 1 leaves model 1 at λ = 0.4.
    # Target 2.5 and 2 both need λ just past 0.267 (1.5 is the next reachable value), then 1 at 0.4.
    assert knobs[1] == pytest.approx(0.8 / 3, rel=1e-6)
    assert knobs[2] == pytest.approx(0.8 / 3, rel=1e-6)
    assert knobs[4] == pytest.approx(0.4, rel=1e-6)


def test_theta_for_a_pair_is_the_cheapest_setting_reaching_the_best_single():
    # strong (b) is accepted everywhere; weak (a) fails on queries 0 and 1, which the scores rank first.
    accepted = np.array([[False, True], [False, True], [True, True], [True, True]])
    train = FoldData(
        queries=["q0", "q1", "q2", "q3"],
        embeddings=np.zeros((4, 2)),
        accepted=accepted,
        context_accepted=np.zeros((4, 0), dtype=bool),
        costs=np.array([[1.0, 10.0]] * 4),
        models=["a", "b"],
    )
    scores = np.array([[0.0, 0.9], [0.1, 0.8], [0.5, 0.4], [0.6, 0.3]])  # gaps 0.9, 0.7, -0.1, -0.3
    knob = choose_knob(PAIR, scores, train)
    assert knob == pytest.approx((0.7 - 0.1) / 2)  # between the 2nd and 3rd gap: two queries go strong
    assert apply_knob(PAIR, scores, np.zeros_like(scores), knob).tolist() == [1, 1, 0, 0]


class OwnKnob(Memoriser):
    """A memoriser that deploys a knob of its own: every query to the strong model."""

    def chosen_knob(self):
        return -10.0


def test_a_method_with_its_own_knob_is_tested_at_it():
    from tagrouter.evaluation.protocol import fold_run

    bench = synthetic_bench(60)
    own = fold_run(bench, PAIR, lambda setup, seed: OwnKnob([]), 0, 0)
    assert own.knob == -10.0
    plain = fold_run(bench, PAIR, lambda setup, seed: Memoriser([]), 0, 0)
    assert plain.knob != -10.0
    oof = out_of_fold(bench, PAIR, lambda setup, seed: OwnKnob([]), 0)
    assert (oof.theta_choice == 1).all()
