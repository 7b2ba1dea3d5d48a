"""The runner on synthetic setups with known answers, the report writers, and TagRouter as a method."""

import json
from dataclasses import replace

import numpy as np
import pytest

from tagrouter.errors import DataError
from tagrouter.evaluation.protocol import Benchmark, Setup
from tagrouter.evaluation.report import END, START, results_markdown, suite_block, update_readme
from tagrouter.evaluation.runner import evaluate_setup


def hard_easy_bench(n: int = 100) -> Benchmark:
    """Weak model a fails exactly on the 'hard' queries (first embedding coordinate > 0); strong b and the
    context model c always succeed. a costs $1 per query, b $10. The coordinate keeps a margin of 0.5 from
    0, so a threshold learnt between training values separates test queries exactly."""
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(n, 3))
    embeddings[:, 0] += np.sign(embeddings[:, 0]) * 0.5
    hard = embeddings[:, 0] > 0
    outcomes = np.zeros((n, 3), dtype=int)
    outcomes[hard, 0] = 2
    costs = np.column_stack([np.ones(n), np.full(n, 10.0), np.full(n, 5.0)])
    return Benchmark([f"q{i}" for i in range(n)], embeddings, ["a", "b", "c"], outcomes, costs)


class FirstCoordinate:
    """Predicts the strong model's advantage from the first embedding coordinate (the true signal)."""

    name = "first-coordinate"

    def fit(self, train) -> None:
        pass

    def predict(self, queries, embeddings):
        return np.column_stack([np.zeros(len(queries)), embeddings[:, 0]])


class Constant:
    name = "constant"

    def fit(self, train) -> None:
        pass

    def predict(self, queries, embeddings):
        return np.tile([0.0, 1.0], (len(queries), 1))


def test_a_router_that_knows_the_hard_queries_reaches_the_strong_models_ar_at_the_oracles_cost():
    bench = hard_easy_bench()
    setup = Setup("pair:a>b", "pair", ("a", "b"))
    result = evaluate_setup(bench, setup, {"perfect": lambda *_: FirstCoordinate()}, seeds=[0, 1])
    hard = int((bench.embeddings[:, 0] > 0).sum())
    assert result["singles"]["a"] == {"ar": pytest.approx(1 - hard / 100), "cost": pytest.approx(100.0)}
    assert result["oracle"] == {"ar": pytest.approx(1.0), "cost": pytest.approx(100 + 9 * hard)}
    assert result["mixture"]["auc"] == pytest.approx((1 - hard / 100 + 1.0) / 2)
    perfect = result["routers"]["perfect"]
    # θ from the training folds: exactly the hard queries go strong -> AR 1 at the oracle's cost
    assert perfect["ar"] == pytest.approx(1.0)
    assert perfect["cost"] == pytest.approx(100 + 9 * hard)
    # with s = the hard share, x = s costs exactly the oracle's dollars, and H rises from (0, 1 − s) to (s, 1):
    # AUC = s (2 − s) / 2 + (1 − s) = 1 − s²/2 and APGR = (AUC − (1 − s)) / s = 1 − s/2 (up to the 1/40 grid)
    share = hard / 100
    assert perfect["auc_mean"] == pytest.approx(1 - share * share / 2, abs=0.03)
    assert perfect["auc_std"] == pytest.approx(0.0, abs=1e-9)  # the same score order whatever the folds
    assert perfect["apgr_mean"] == pytest.approx(1 - share / 2, abs=0.03)
    assert perfect["cost_saving_mean"] == pytest.approx(1 - (100 + 9 * hard) / 1000, abs=0.03)
    assert len(perfect["curve"]) == 41
    assert perfect["curve"][0] == [pytest.approx(0.0), pytest.approx(1 - share)]
    assert perfect["curve"][-1] == [pytest.approx(1.0), pytest.approx(1.0)]


def test_a_router_without_information_cannot_beat_the_mixture_by_much():
    bench = hard_easy_bench()
    setup = Setup("pair:a>b", "pair", ("a", "b"))
    result = evaluate_setup(bench, setup, {"constant": lambda *_: Constant()}, seeds=[0])
    assert result["routers"]["constant"]["auc_mean"] < result["mixture"]["auc"] + 0.03


def test_pool_setup_has_41_points_from_best_score_to_cheapest():
    bench = hard_easy_bench()
    setup = Setup("pool:3", "pool", ("a", "c", "b"))
    result = evaluate_setup(bench, setup, {"perfect": lambda *_: FirstCoordinate3()}, seeds=[0])
    curve = result["routers"]["perfect"]["curve"]
    assert len(curve) == 41
    assert curve[-1][0] == pytest.approx(0.0)  # everything to the cheapest model a: x = 0
    assert result["routers"]["perfect"]["apgr_mean"] is None
    assert result["routers"]["perfect"]["ar"] == pytest.approx(1.0)


class FirstCoordinate3:
    name = "first-coordinate-3"

    def fit(self, train) -> None:
        pass

    def predict(self, queries, embeddings):
        hard = (embeddings[:, 0] > 0).astype(float)
        return np.column_stack([1 - hard, np.full(len(queries), 0.99), np.ones(len(queries))])


def test_report_and_readme_block(tmp_path):
    bench = hard_easy_bench()
    setup = Setup("pool:3", "pool", ("a", "c", "b"))
    factories = {"tagrouter": lambda *_: FirstCoordinate3(), "other": lambda *_: Constant3()}
    summary = evaluate_setup(bench, setup, factories, seeds=[0, 1])
    results = {
        "protocol": {"seeds": [0, 1], "command": "tagrouter eval h.jsonl --catalog c.yaml --out o"},
        "data": {"queries": 100, "pool": ["a", "c", "b"], "context_models": [], "notes": ["a note"]},
        "setups": {"pool:3": summary},
    }
    assert summary["lead"]["best_other"]["against"] == "other"
    assert summary["lead"]["mixture"]["verdict"] == "ahead"
    text = results_markdown(results, title="toy")
    assert "| `tagrouter` |" in text and "pool_3.png" in text and "a note" in text
    assert "`tagrouter` vs `other`" in text and "ahead beyond noise" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n## Results\n{START}\nOLD-BLOCK\n{END}\n\nmore\n", encoding="utf-8")
    block = suite_block(
        {"toy": results}, command="tagrouter bench suite", runtime_s=12.0, skipped=["x (absent)"]
    )
    update_readme(readme, block)
    new = readme.read_text(encoding="utf-8")
    assert "OLD-BLOCK" not in new and new.startswith("# Title") and new.endswith("\n\nmore\n")
    auc = summary["routers"]["tagrouter"]["auc_mean"]
    assert f"| toy | pool:3 | 100 | {auc:.4f}" in new and "Skipped: x (absent)." in new
    readme.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(DataError, match="results:start"):
        update_readme(readme, block)


class Constant3:
    name = "constant-3"

    def fit(self, train) -> None:
        pass

    def predict(self, queries, embeddings):
        return np.tile([0.5, 0.6, 0.7], (len(queries), 1))


def test_tagrouter_method_on_one_real_fold_beats_the_mixture_line_on_an_easy_pair(tmp_path, shared_data):
    from tagrouter.evaluation.suite import by_name, run_dataset

    name = "pair:llama-2-7b-chat-hf>gpt4"
    results = run_dataset(
        by_name("alpacaeval"),
        shared_data / "alpaca_eval",
        tmp_path,
        command="test",
        seeds=[0],
        routers=["tagrouter"],
        setups=[name],
    )
    setup = results["setups"][name]
    assert setup["mixture"]["auc"] == pytest.approx((0.7142857 + 0.9602484) / 2, abs=1e-6)
    assert setup["routers"]["tagrouter"]["auc_mean"] > setup["mixture"]["auc"]
    saved = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert saved["setups"].keys() == results["setups"].keys()
    assert len(saved["data"]["context_models"]) > 30  # every judged model outside the pool and the pairs
    assert list((tmp_path / ".cache").glob("embeddings-*.npy"))
    assert not (tmp_path / "history.jsonl").exists()  # the data stays outside the results


def test_cli_writes_results_tables_and_plots(tmp_path, shared_data):
    from typer.testing import CliRunner

    from tagrouter.cli import app

    out = tmp_path / "out"
    args = [
        "bench",
        "alpacaeval",
        "--data",
        str(shared_data / "alpaca_eval"),
        "--out",
        str(out),
        "--setups",
        "pool:8",
    ]
    result = CliRunner().invoke(app, [*args, "--routers", "random", "--seeds", "0"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["protocol"]["seeds"] == [0]
    assert (out / "pool_8.png").stat().st_size > 1000
    assert "| `random` |" in (out / "results.md").read_text(encoding="utf-8")
    bad = CliRunner().invoke(app, [*args, "--routers", "nope"])
    assert bad.exit_code != 0 and "unknown router" in str(bad.exception or bad.output)


class KeywordGenerator:
    """A stand-in tagging LLM: the query's first long words as a JSON list; counts the queries asked."""

    asked: list[str] = []

    def generate(self, queries):
        KeywordGenerator.asked += list(queries)
        return [json.dumps([w.lower() for w in q.split() if len(w) > 6][:3]) for q in queries]


def test_bench_runs_with_a_generative_tagger_spec_fitted_per_training_set(tmp_path, monkeypatch, shared_data):
    from typer.testing import CliRunner

    from tagrouter.cli import app
    from tagrouter.tagging.registry import BACKENDS

    keywords = replace(BACKENDS["openai"], generator=lambda parsed: KeywordGenerator())
    monkeypatch.setitem(BACKENDS, "openai", keywords)
    KeywordGenerator.asked = []
    spec = "openai:keywords@http://127.0.0.1:9/v1?min_count=4"
    args = [
        "bench",
        "alpacaeval",
        "--data",
        str(shared_data / "alpaca_eval"),
        "--setups",
        "pair:vicuna-13b>gpt-3.5-turbo-0301",
    ]
    args += ["--routers", "tagrouter,knn+tags", "--seeds", "0", "--tagger", spec]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    # one generation per distinct query over the five training sets, no teacher tags computed
    assert len(KeywordGenerator.asked) == len(set(KeywordGenerator.asked)) == 805
    assert not list((tmp_path / "a" / ".cache").glob("teacher-tags-*"))
    saved = json.loads((tmp_path / "a" / "results.json").read_text(encoding="utf-8"))
    assert saved["protocol"]["tagger"] == spec
    assert f"--tagger '{spec}'" in saved["protocol"]["command"]
    setup = saved["setups"]["pair:vicuna-13b>gpt-3.5-turbo-0301"]
    assert setup["routers"]["tagrouter"]["auc_mean"] > setup["mixture"]["auc"]
    # two worker processes give the same numbers
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--workers", "2"])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "b" / "results.json").read_text(encoding="utf-8"))
    other = again["setups"]["pair:vicuna-13b>gpt-3.5-turbo-0301"]["routers"]
    for router in ("tagrouter", "knn+tags"):
        assert other[router]["auc_mean"] == pytest.approx(setup["routers"][router]["auc_mean"], abs=1e-12)
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c"), "--tagger", "keyphrase"])
    assert bad.exit_code != 0 and "teacher only" in str(bad.exception or bad.output)
