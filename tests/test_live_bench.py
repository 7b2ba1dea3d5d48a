"""``tagrouter bench live`` on a small judged history it builds itself: the results schema and its summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tagrouter.cli import app
from tagrouter.records import HistoryRecord, write_history

TOPICS = {
    "python code function": {"small": 0.2, "coder": 0.95, "large": 0.9},
    "poem about the sea": {"small": 0.8, "coder": 0.3, "large": 0.9},
    "history of rome": {"small": 0.5, "coder": 0.5, "large": 0.95},
}
PRICES = {"small": 0.1, "coder": 1.0, "large": 10.0}


def write_data(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    records = []
    for i in range(240):
        topic = list(TOPICS)[i % 3]
        query = f"{topic} question {i} {rng.choice(['please', 'now', 'today'])}"
        for model, rate in TOPICS[topic].items():
            outcome = "win" if rng.random() < rate else "loss"
            records.append(
                HistoryRecord(
                    query_id=str(i),
                    query=query,
                    model=model,
                    outcome=outcome,
                    input_tokens=20,
                    output_tokens=200,
                )
            )
    history = folder / "history.jsonl"
    write_history(history, records)
    catalog = folder / "catalog.yaml"
    catalog.write_text(
        "models:\n"
        + "".join(
            f"- {{name: {m}, input_usd_per_1m: {p}, output_usd_per_1m: {p}}}\n" for m, p in PRICES.items()
        )
    )
    return history, catalog


def test_bench_live_writes_the_results_schema(tmp_path: Path) -> None:
    history, catalog = write_data(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "bench", "live", str(history), "--catalog", str(catalog), "--out", str(out),
            "--seeds", "0,1", "--checkpoints", "3", "--new-model", "coder",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in results["runs"]] == [0, 1]
    for run in results["runs"]:
        assert run["queries"] == {"seed": 24, "stream": 144, "test": 72}
        assert [p["stream_seen"] for p in run["checkpoints"]] == [48, 96, 144]
        for point in run["checkpoints"]:
            live, full = point["live"], point["full"]
            assert 0.0 <= live["auc"] <= 1.0 and 0.0 <= full["auc"] <= 1.0
            assert 0.0 <= live["exploration_cost_share"] <= 0.05  # the budget (2%) on expected dollars
            assert 0.0 <= live["new_model_share"] <= 1.0 and 0.0 <= full["new_model_share"] <= 1.0
            assert live["cost"] > 0 and 0.0 <= live["accept_rate"] <= 1.0
    summary = results["summary"]
    assert set(summary) >= {
        "gap_closed_mean",
        "live_below_static_seeds",
        "exploration_cost_share_mean",
        "new_model_share_ratio",
    }
    assert summary["exploration_cost_share_mean"] == np.mean(
        [r["checkpoints"][-1]["live"]["exploration_cost_share"] for r in results["runs"]]
    )
    assert "| seed |" in (out / "results.md").read_text()


def test_a_seed_without_a_gap_has_no_gap_fraction_and_the_summary_is_strict_json() -> None:
    """A seed whose full-information refit is not above static has nothing to close: its fraction is None
    (not NaN, which strict JSON readers refuse), and the mean is over the seeds with a gap."""
    from tagrouter.evaluation.live_replay import summarise

    def run(seed: int, static: float, live: float, full: float) -> dict:
        last = {"live": {"auc": live, "exploration_cost_share": 0.01}, "full": {"auc": full}}
        return {"seed": seed, "static": {"auc": static}, "checkpoints": [last]}

    summary = summarise([run(0, 0.80, 0.81, 0.82), run(1, 0.90, 0.91, 0.89)], None)
    assert summary["gap_closed"][0] == pytest.approx(0.5)
    assert summary["gap_closed"][1] is None
    assert summary["gap_closed_mean"] == pytest.approx(0.5)
    assert summary["gap_closed_of_means"] == pytest.approx((0.86 - 0.85) / (0.855 - 0.85))
    json.dumps(summary, allow_nan=False)


def test_the_replay_routes_a_later_turn_on_its_conversation_as_the_evaluation_does(monkeypatch) -> None:
    """A record with earlier turns reaches the replay as the earlier turns and the turn joined (the text
    every router of ``tagrouter eval`` sees), not as the last message alone."""
    from tagrouter.catalog import Catalog
    from tagrouter.conversation import joined
    from tagrouter.evaluation import live_replay

    seen: list[str] = []

    def capture(records, catalog):
        seen.extend(r.query for r in records)
        raise RuntimeError("captured")

    monkeypatch.setattr(live_replay.Judgements, "of", capture)
    records = [
        HistoryRecord(
            query_id="1", query="and in French?", earlier="Translate hello", model="a", outcome="win"
        ),
        HistoryRecord(query_id="2", query="a first turn", model="a", outcome="loss"),
    ]
    catalog = Catalog.model_validate(
        {"models": [{"name": "a", "input_usd_per_1m": 1, "output_usd_per_1m": 1}]}
    )
    with pytest.raises(RuntimeError, match="captured"):
        live_replay.run_replay(records, catalog, [0])
    assert seen == [joined("Translate hello", "and in French?"), "a first turn"]
