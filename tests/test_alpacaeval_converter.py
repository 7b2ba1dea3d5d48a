"""The AlpacaEval converter on a tiny hand-made copy of the data layout, checked by hand."""

import pytest

from tagrouter.cli import app
from tagrouter.errors import DataError
from tagrouter.evaluation.datasets.alpacaeval import load_alpacaeval
from tagrouter.records import read_history


def test_outcomes_tokens_and_costs_by_hand(tiny_data):
    data = load_alpacaeval(tiny_data)
    assert data.outcomes == {"cheap": {0: "win", 1: "loss", 2: "tie"}, "dear": {0: "tie", 1: "tie", 2: "win"}}
    records = {(r.model, r.query_id): r for r in data.records(["cheap", "dear"])}
    # cheap on idx 1: 5 tokens in at $0.2/M + 20 out at $0.4/M
    assert records[("cheap", "1")].cost == pytest.approx((5 * 0.2 + 20 * 0.4) / 1e6)
    # dear on idx 0: 3 in at $10/M + 100 out at $30/M
    assert records[("dear", "0")].cost == pytest.approx((3 * 10 + 100 * 30) / 1e6)
    # dear on idx 2: output tokens imputed as the mean of 100 and 200
    assert records[("dear", "2")].output_tokens == 150
    assert data.imputed(["cheap", "dear"]) == [("dear", 2)]
    assert (
        records[("dear", "2")].query == "Name a colour."
        and records[("dear", "2")].reference == "text_davinci_003"
    )
    catalog = data.catalog(["cheap", "dear"])
    assert (catalog["dear"].input_usd_per_1m, catalog["dear"].output_usd_per_1m) == (10, 30)


def test_unknown_model_is_a_clear_error(tiny_data):
    with pytest.raises(DataError, match="model 'gpt5' has no usable"):
        load_alpacaeval(tiny_data).records(["gpt5"])


def test_cli_writes_history_and_catalog(tiny_data, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["data", "alpacaeval", "--data", str(tiny_data), "--pool", "cheap,dear", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "imputed" not in result.output and "lack an output token count" in result.output
    records = read_history(out / "history.jsonl")
    assert len(records) == 6 and {r.model for r in records} == {"cheap", "dear"}
    assert "name: dear" in (out / "catalog.yaml").read_text()
