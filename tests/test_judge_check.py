"""tagrouter judge-check and the label converters: agreement, kappa and position bias of a judge served on
loopback, and label files from AlpacaEval 1.0 and MT-bench judgements."""

from __future__ import annotations

import gzip
import json
from contextlib import ExitStack

import pytest
from collect_support import answer_data, start_judge
from conftest import SHARED_DATA, needs_shared_data
from typer.testing import CliRunner

from tagrouter.cli import app
from tagrouter.collect.checking import cohen_kappa, estimate_check
from tagrouter.collect.judging import judge_messages, parse_judge
from tagrouter.collect.labels import LabelledPair, alpacaeval_pairs, mtbench_pairs, read_labels, write_labels
from tagrouter.errors import DataError
from tagrouter.testing.judge import always_first


def length_labels() -> list[LabelledPair]:
    """Pairs of the cheap and dear answers, labelled by the test judge's own rule (the longer is better)."""
    queries, answers, _ = answer_data()
    pairs = []
    for number, q in enumerate(queries):
        a, b = answers["cheap"][q], answers["dear"][q]
        if number % 2:  # swap half of them, so that both labels occur
            a, b = b, a
        label = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie"
        pairs.append(LabelledPair(id=f"p{number}", query=q, answer_a=a, answer_b=b, label=label))
    return pairs


def check(tmp_path, rule=None, *options: str) -> dict:
    write_labels(tmp_path / "labels.jsonl", length_labels())
    with ExitStack() as stack:
        spec, behaviour = start_judge(stack, **({"rule": rule} if rule else {}))
        result = CliRunner().invoke(
            app,
            ["judge-check", "--judge", spec, "--labels", str(tmp_path / "labels.jsonl"), "--json", *options],
        )
    assert result.exit_code == 0, result.output
    return {"calls": behaviour.calls, **json.loads(result.stdout)}


def test_a_judge_that_matches_the_labels(tmp_path):
    pairs = length_labels()
    result = check(tmp_path)
    assert result["calls"] == 2 * len(pairs)
    assert (result["judged"], result["agreement"], result["kappa"]) == (len(pairs), 1.0, 1.0)
    assert (result["position_bias_rate"], result["inconsistency_rate"], result["no_verdicts"]) == (
        0.0,
        0.0,
        0,
    )
    labels = [p.label for p in pairs]
    assert result["confusion"]["A"]["A"] == labels.count("A") and result["confusion"]["B"][
        "B"
    ] == labels.count("B")
    assert result["cost_usd"] == pytest.approx(
        (result["input_tokens"] * 1 + result["output_tokens"] * 2) / 1e6
    )


def test_a_position_biased_judge(tmp_path):
    pairs = length_labels()
    result = check(tmp_path, always_first)
    assert result["position_bias_rate"] == 1.0 and result["inconsistency_rate"] == 1.0
    ties = sum(p.label == "tie" for p in pairs)
    assert result["agreement"] == ties / len(pairs)  # every verdict is a tie
    assert result["kappa"] == 0.0


def test_sampled_check(tmp_path):
    result = check(tmp_path, None, "--sample", "4", "--seed", "3")
    assert (result["pairs"], result["judged"], result["calls"]) == (4, 4, 8)


def test_dry_run_estimates_the_cost_of_a_check(tmp_path):
    pairs = length_labels()[:3]
    write_labels(tmp_path / "labels.jsonl", pairs)
    judge = parse_judge("j@http://127.0.0.1:9/v1?input_usd_per_1m=1&output_usd_per_1m=2&malformed_retries=0")
    row = estimate_check(judge, pairs)
    chars = [sum(len(m["content"]) for m in judge_messages(p.query, p.answer_a, p.answer_b)) for p in pairs]
    assert row.calls == 6
    assert row.expected_usd == pytest.approx(sum(2 * (c / 4 * 1 + 150 * 2) / 1e6 for c in chars))
    shown = CliRunner().invoke(
        app,
        [
            "judge-check",
            "--judge",
            judge.identity + "?input_usd_per_1m=1",
            "--labels",
            str(tmp_path / "labels.jsonl"),
            "--dry-run",
        ],
    )
    assert shown.exit_code == 0 and "6 judge calls for 3 pairs" in shown.stdout


def test_cohen_kappa():
    assert cohen_kappa(["A", "B", "A", "B"], ["A", "B", "A", "B"]) == 1.0
    assert cohen_kappa(["A", "A", "B", "B"], ["A", "B", "A", "B"]) == 0.0
    # observed 0.75; chance (2·3 + 2·1) / 16 = 0.5 -> 0.5
    assert cohen_kappa(["A", "A", "B", "B"], ["A", "A", "A", "B"]) == pytest.approx(0.5)


def test_label_file_errors_name_row_and_field(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"id": "1", "query": "q", "answer_a": "a", "answer_b": "b", "label": "maybe"}\n')
    with pytest.raises(DataError, match=r"labels.jsonl, row 1, field 'label'"):
        read_labels(path)


def test_alpacaeval_labels(tiny_data, tmp_path):
    outputs = [
        {"model_dir": model, "generator": model, "idx": idx, "output": f"{model} says {idx}"}
        for model in ("cheap", "dear", "text_davinci_003")
        for idx in range(3)
    ]
    with gzip.open(tiny_data / "model_outputs_with_verdicts.jsonl.gz", "wt") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in outputs))
    pairs = alpacaeval_pairs(tiny_data, ["cheap", "dear"])
    assert [p.label for p in pairs] == ["B", "A", "tie", "tie", "tie", "B"]  # cheap 2/1/empty, dear 1.5/0/2
    assert (pairs[0].query, pairs[0].answer_a, pairs[0].answer_b) == (
        "Say hi.",
        "text_davinci_003 says 0",
        "cheap says 0",
    )
    out = tmp_path / "labels.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "judge-labels",
            "alpacaeval",
            "--data",
            str(tiny_data),
            "--models",
            "dear",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [p.label for p in read_labels(out)] == ["tie", "tie", "B"]


@needs_shared_data()
def test_mtbench_labels():
    pairs = mtbench_pairs(SHARED_DATA.parent / "routellm")
    assert len(pairs) == 80
    assert all(p.answer_a and p.answer_b for p in pairs)
    assert {p.label for p in pairs} == {"A", "B", "tie"}
    assert "gpt-4-1106-preview" in pairs[0].source and "(A)" in pairs[0].source
