"""``tagrouter eval`` on small synthetic histories: known routing, no leakage, the CLI, bad input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tagrouter.catalog import Catalog, ModelCard
from tagrouter.evaluation.baselines import BASELINES
from tagrouter.evaluation.loading import history_arrays
from tagrouter.evaluation.protocol import Benchmark, Setup, fold_ids, fold_run
from tagrouter.evaluation.runner import router_factories, run_eval
from tagrouter.evaluation.significance import bootstrap_differences, compare, seed_interval
from tagrouter.evaluation.tagrouter_method import SharedFits, TagRouterMethod
from tagrouter.records import History, HistoryRecord, write_history
from tagrouter.router import TagRouter
from tagrouter.scoring import SmoothedScorer

CODE = ["a Python function that sorts a list", "a SQL query joining two tables", "a JavaScript loop"]
PROSE = ["a poem about the autumn sea", "a love letter in old English", "a short story about a dragon"]
CATALOG = Catalog(
    models=[
        ModelCard(name="coder", input_usd_per_1m=0.1, output_usd_per_1m=0.1),
        ModelCard(name="general", input_usd_per_1m=10.0, output_usd_per_1m=10.0),
    ]
)


def topic_history(n: int = 60, context: bool = True) -> list[HistoryRecord]:
    """``coder`` (cheap) is always right on code and always wrong on prose; ``general`` (dear) is always
    right; the context model ``judge`` fails prose half of the time."""
    records = []
    for i in range(n):
        code = i % 2 == 0
        topic = CODE if code else PROSE
        query = f"Write {topic[i % 3]}, variant {i}."
        outcomes = {"coder": "win" if code else "loss", "general": "win"}
        if context:
            outcomes["judge"] = "win" if code or i % 4 == 1 else "loss"
        for model, outcome in outcomes.items():
            records.append(HistoryRecord(query_id=f"q{i}", query=query, model=model, outcome=outcome))
    return records


def test_tagrouter_finds_the_topic_where_the_cheap_model_is_always_right(tmp_path):
    results = run_eval(topic_history(), CATALOG, tmp_path, routers=["tagrouter", "random"], seeds=[0, 1])
    setup = results["setups"]["pair:coder>general"]
    ours = setup["routers"]["tagrouter"]
    # the oracle: code to the coder, prose to the general model; a perfect router's AUC is 1 − s²/2 = 0.875
    assert setup["mixture"]["auc"] == pytest.approx(0.75)
    assert ours["auc_mean"] > 0.85 > setup["routers"]["random"]["auc_mean"]
    assert ours["ar"] == pytest.approx(1.0)  # its own default knob keeps the general model's AR
    assert ours["shortfall"] == pytest.approx(0.0)
    assert ours["cost"] < 0.6 * setup["singles"]["general"]["cost"]
    best = max(s["ar"] for s in setup["singles"].values())
    for r in setup["routers"].values():
        assert r["shortfall"] >= max(0.0, best - r["ar"]) - 1e-12  # a mean of per-seed shortfalls
    assert setup["lead"]["mixture"]["verdict"] == "ahead"
    assert setup["lead"]["best_other"]["against"] == "random"
    saved = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert saved["setups"]["pair:coder>general"]["routers"]["tagrouter"]["auc_mean"] == ours["auc_mean"]
    assert set(saved["environment"]) >= {"python", "tagrouter", "numpy", "scikit-learn", "wordllama"}
    assert saved["data"]["context_models"] == ["judge"]


def benchmark(arrays, embeddings: np.ndarray) -> Benchmark:
    """The benchmark of ``arrays`` (with its records, as ``run_eval`` builds it)."""
    return Benchmark(
        arrays.queries,
        embeddings,
        arrays.models,
        arrays.outcomes,
        arrays.costs,
        arrays.known,
        arrays.history,
        arrays.rows,
    )


def test_the_tagrouter_router_is_what_tagrouter_fit_gives_by_default():
    records = topic_history(40)
    arrays = history_arrays(records, CATALOG)
    bench = benchmark(arrays, np.zeros((40, 2)))
    setup = Setup("pair:coder>general", "pair", ("coder", "general"), ("judge",))
    train = bench.fold_data(setup, np.arange(30))
    assert len(train.history) == 30 * 3 and set(train.history.query_id) == {f"q{i}" for i in range(30)}
    method = TagRouterMethod("tagrouter", CATALOG, SharedFits())
    method.fit(train)
    public = TagRouter.fit(train.history, CATALOG)  # the default tagger, built by fit itself
    test = arrays.queries[30:]
    assert np.array_equal(method.predict(test, np.zeros((10, 2))), public.model.score(test)[1])
    assert method.chosen_knob() == public.decider.knob  # tested at the knob it would deploy


def _flipped(bench: Benchmark, rows: np.ndarray) -> Benchmark:
    """The same benchmark with every outcome of ``rows`` turned around (win <-> loss), context included,
    in its arrays and its records."""
    outcomes = bench.outcomes.copy()
    outcomes[rows] = np.where(outcomes[rows] == 2, 0, 2)
    h, flip = bench.history, np.isin(bench.record_rows, rows)
    history = History(
        h.query_id,
        h.query,
        h.model,
        np.where(flip, np.where(h.outcome == 2, 0, 2), h.outcome),
        h.output_tokens,
    )
    return Benchmark(
        bench.queries,
        bench.embeddings,
        bench.models,
        outcomes,
        bench.costs,
        bench.known,
        history,
        bench.record_rows,
    )


@pytest.mark.parametrize("name", ["tagrouter", "knn", "knn-easiness", "forc", "sw-ranking", "mlp"])
def test_no_test_outcome_reaches_a_fit_an_inner_choice_or_theta(name):
    records = topic_history(50)
    arrays = history_arrays(records, CATALOG)
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(50, 8))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    bench = benchmark(arrays, embeddings)
    setup = Setup("pair:coder>general", "pair", ("coder", "general"), ("judge",))
    factory = router_factories(CATALOG, SharedFits())[name]
    test_rows = np.flatnonzero(fold_ids(50, 0) == 2)
    before = fold_run(bench, setup, factory, 0, 2)
    after = fold_run(_flipped(bench, test_rows), setup, factory, 0, 2)
    assert np.array_equal(before.test_rows, test_rows)
    assert np.array_equal(before.scores, after.scores)
    assert before.knob == after.knob
    # and the training outcomes do matter (the check above is not vacuous)
    train_rows = np.flatnonzero(fold_ids(50, 0) != 2)
    changed = fold_run(_flipped(bench, train_rows), setup, factory, 0, 2)
    assert not np.array_equal(before.scores, changed.scores) or before.knob != changed.knob


def test_missing_outcomes_drop_the_query_from_the_setup_and_leave_context_cells_unknown():
    records = [r for r in topic_history(30) if not (r.query_id == "q3" and r.model == "coder")]
    records = [r for r in records if not (r.query_id == "q5" and r.model == "judge")]
    arrays = history_arrays(records, CATALOG)
    assert arrays.known.sum() == 30 * 3 - 2
    bench = benchmark(arrays, np.zeros((30, 1)))
    setup = Setup("pair:coder>general", "pair", ("coder", "general"), ("judge",))
    assert len(bench.for_setup(setup).queries) == 29
    history = bench.for_setup(setup).fold_data(setup, np.arange(29)).history
    assert len(history) == 29 * 3 - 1  # the unknown context cell is left out, not counted as a loss
    assert "q3" not in history.query_id


def test_a_model_judged_twice_on_a_query_counts_with_its_last_record_everywhere():
    records = topic_history(30)
    again = HistoryRecord(query_id="q0", query=records[0].query, model="coder", outcome="loss")
    arrays = history_arrays([*records, again], CATALOG)
    assert arrays.outcomes[0, 0] == 2 and arrays.known.sum() == 30 * 3  # the later record counts
    assert any("1 answers judged again" in note for note in arrays.notes)
    train = benchmark(arrays, np.zeros((30, 1))).fold_data(
        Setup("pair:coder>general", "pair", ("coder", "general"), ("judge",)), np.arange(30)
    )
    assert len(train.history) == 30 * 3  # one record per judged query and model: what TagRouter learns
    table = TagRouter.fit(train.history, CATALOG, scorer=SmoothedScorer()).table
    assert table.records == 30 * 3
    assert table.model_counts[table.model_index["coder"]].tolist() == [14, 0, 16]  # q0 is a loss now
    assert not train.accepted[0, 0]


def test_costs_come_from_the_record_else_tokens_and_prices():
    records = [
        HistoryRecord(query_id="1", query="x" * 40, model="coder", outcome="win", cost=0.5),
        HistoryRecord(query_id="1", query="x" * 40, model="general", outcome="win", output_tokens=100),
        HistoryRecord(query_id="2", query="y" * 400, model="general", outcome="loss"),
        HistoryRecord(query_id="2", query="y" * 400, model="coder", outcome="tie", input_tokens=7),
    ]
    arrays = history_arrays(records, CATALOG, default_output_tokens=50)
    assert arrays.costs[0, 0] == 0.5
    assert arrays.costs[0, 1] == pytest.approx((10 + 100) * 10 / 1e6)  # 40 chars / 4 in, 100 out
    assert arrays.costs[1, 1] == pytest.approx((100 + 100) * 10 / 1e6)  # the model's mean output tokens
    assert arrays.costs[1, 0] == pytest.approx((7 + 50) * 0.1 / 1e6)  # no counts of coder: the default
    assert any("50 output tokens assumed" in note for note in arrays.notes)


def test_intervals_over_seeds_and_queries():
    assert seed_interval([0.1]) is None
    low, high = seed_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2 - 4.302653 / np.sqrt(3)) and high == pytest.approx(
        2 + 4.302653 / np.sqrt(3)
    )
    # a router that is always right against one that always picks the weak model
    accepted = np.column_stack([np.arange(40) % 2 == 0, np.ones(40, dtype=bool)])
    costs = np.column_stack([np.ones(40), np.full(40, 10.0)])
    good = np.array([[np.where(accepted[:, 0], 0, 1)] * 41])  # 1 seed × 41 points × 40 queries
    weak = np.zeros_like(good)
    diffs = bootstrap_differences(accepted, costs, good, weak, resamples=200)
    assert np.isfinite(diffs).all() and (diffs > 0).all()
    assert compare("weak", [float(diffs.mean())], diffs).verdict == "ahead"
    assert compare("self", [0.0], np.zeros(10)).verdict == "within noise"


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from tagrouter.cli import main

    monkeypatch.setattr(sys, "argv", ["tagrouter", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_cli_eval_end_to_end(tmp_path, monkeypatch, capsys):
    write_history(tmp_path / "h.jsonl", topic_history(40))
    CATALOG.save(tmp_path / "c.yaml")
    out = tmp_path / "out"
    args = ["eval", str(tmp_path / "h.jsonl"), "--catalog", str(tmp_path / "c.yaml"), "--out", str(out)]
    code, stdout, _ = _main(monkeypatch, capsys, *args, "--routers", "tagrouter,knn", "--seeds", "0")
    assert code == 0
    assert "pair:coder>general: 40 queries" in stdout
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    routers = saved["setups"]["pair:coder>general"]["routers"]
    assert set(routers) == {"tagrouter", "knn"}
    assert {"auc_mean", "apgr_mean", "pauc_mean", "uplift_mean", "cost_saving_mean", "curve"} <= set(
        routers["knn"]
    )
    assert (
        saved["protocol"]["command"].startswith("tagrouter eval ")
        and "--routers tagrouter,knn" in saved["protocol"]["command"]
    )
    assert "| `tagrouter` |" in (out / "results.md").read_text(encoding="utf-8")
    assert (out / "pair_coder_to_general.png").stat().st_size > 1000


def test_cli_eval_on_the_core_install_skips_the_plots_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the bench extra has
    write_history(tmp_path / "h.jsonl", topic_history(40))
    CATALOG.save(tmp_path / "c.yaml")
    out = tmp_path / "out"
    args = ["eval", str(tmp_path / "h.jsonl"), "--catalog", str(tmp_path / "c.yaml"), "--out", str(out)]
    code, stdout, stderr = _main(monkeypatch, capsys, *args, "--routers", "knn", "--seeds", "0")
    assert code == 0 and "Traceback" not in stderr
    assert stdout.splitlines()[-1].endswith(
        "plots skipped: matplotlib is not installed (pip install 'tagrouter[bench]' to draw them)"
    )
    assert json.loads((out / "results.json").read_text(encoding="utf-8"))["setups"]
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| `knn` |" in markdown and ".png" not in markdown and not list(out.glob("*.png"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("pair", "--pair coder:nobody: model 'nobody' is unknown"),
        ("no-pool-model", "catalogue model(s) general have no records in the history"),
        ("extra-card", "catalogue model(s) idle have no records in the history"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_status_2(tmp_path, monkeypatch, capsys, change, message):
    records = topic_history(20)
    catalog = CATALOG
    extra: list[str] = []
    if change == "pair":
        extra = ["--pair", "coder:nobody"]
    elif change == "no-pool-model":
        records = [r for r in records if r.model != "general"]
    else:
        catalog = Catalog(
            models=[*CATALOG.models, ModelCard(name="idle", input_usd_per_1m=1, output_usd_per_1m=1)]
        )
    write_history(tmp_path / "h.jsonl", records)
    catalog.save(tmp_path / "c.yaml")
    args = [
        "eval",
        str(tmp_path / "h.jsonl"),
        "--catalog",
        str(tmp_path / "c.yaml"),
        "--out",
        str(tmp_path / "o"),
    ]
    code, _, stderr = _main(monkeypatch, capsys, *args, *extra)
    assert code == 2
    assert message in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr


def test_every_baseline_is_offered_by_default():
    factories = router_factories(CATALOG, SharedFits())
    assert set(BASELINES) <= set(factories)
