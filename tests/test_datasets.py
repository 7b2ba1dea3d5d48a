"""The suite's converters on tiny files written here, the suite's skipping, and (where present) the real
shared data."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tagrouter.cli import app
from tagrouter.evaluation.datasets.dcrouter import OUTPUT_TOKENS, convert_dcrouter
from tagrouter.evaluation.datasets.routellm import (
    FIXED_OUTPUT_TOKENS,
    STRONG,
    WEAK,
    convert_gsm8k,
    convert_mmlu,
    convert_mt_bench,
)
from tagrouter.evaluation.loading import history_arrays
from tagrouter.records import read_history

PRICES = "model,kind,litellm_key,price_source,input_usd_per_1M,output_usd_per_1M,note\n" + (
    "mistralai/Mixtral-8x7B-Instruct-v0.1,open,x,y,0.9,0.9,\ngpt-4-1106-preview,api,x,y,10.0,30.0,\n"
)


def _gz(path: Path, text: str) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)


def _csv(rows: list[dict]) -> str:
    lines = [",".join(rows[0])]
    for row in rows:
        lines.append(",".join(f'"{v}"' if isinstance(v, str) and "," in v else str(v) for v in row.values()))
    return "\n".join(lines) + "\n"


@pytest.fixture()
def dcrouter_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "llmrouter_dcrouter"
    folder.mkdir()
    prompts = [
        {
            "prompt_id": "p0",
            "prompt": "What is 2+2?",
            "split": "train",
            "task": "math",
            "prompt_tokens_cl100k": 6,
        },
        {
            "prompt_id": "p1",
            "prompt": "Capital of France?",
            "split": "test",
            "task": "qa",
            "prompt_tokens_cl100k": 4,
        },
        {
            "prompt_id": "p2",
            "prompt": "What is 2+2?",
            "split": "test",
            "task": "math",
            "prompt_tokens_cl100k": 6,
        },
    ]
    _gz(folder / "prompts.jsonl.gz", "".join(json.dumps(p) + "\n" for p in prompts))
    outcomes = [
        {"prompt_id": p, "model": m, "score": s, "accept": int(s >= 0.5)}
        for p, m, s in [
            ("p0", "small", 1.0),
            ("p0", "big", 0.4),
            ("p1", "small", 0.0),
            ("p1", "big", 0.5),
            ("p2", "small", 0.0),  # the duplicate's outcomes are dropped
            ("p2", "big", 0.0),
        ]
    ]
    _gz(folder / "outcomes.csv.gz", _csv(outcomes))
    (folder / "models.csv").write_text(
        "model,size,input_usd_per_1M,output_usd_per_1M,api_id,service\n"
        "small,7B,0.2,0.2,a,N\nbig,70B,0.9,0.9,b,N\n",
        encoding="utf-8",
    )
    return folder


def test_dcrouter_dedupes_by_text_and_thresholds_the_score(dcrouter_dir):
    converted = convert_dcrouter(dcrouter_dir)
    got = {(r.query_id, r.model): r.outcome for r in converted.records}
    assert got == {
        ("p0", "small"): "win",
        ("p0", "big"): "loss",
        ("p1", "small"): "loss",
        ("p1", "big"): "win",
    }
    record = next(r for r in converted.records if r.query_id == "p0" and r.model == "big")
    assert record.output_tokens == OUTPUT_TOKENS
    assert record.cost == pytest.approx((6 + OUTPUT_TOKENS) * 0.9 / 1e6)
    assert converted.catalog.names == ["small", "big"]
    assert converted.notes[0].startswith("1 prompts whose text occurred before were dropped")


@pytest.fixture()
def routellm_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "routellm"
    folder.mkdir()
    (tmp_path / "prices_usd_per_1M_tokens.csv").write_text(PRICES, encoding="utf-8")
    mmlu = [
        {
            "subject": "a",
            "prompt": f"Question {i}?",
            "mixtral_8x7b_instruct_correct": i % 2 == 0,
            "gpt_4_1106_preview_correct": True,
        }
        for i in range(10)
    ]
    _gz(folder / "mmlu_responses.csv.gz", _csv(mmlu))
    gsm8k = [
        {
            "prompt": "Add 1 and 1.",
            "mistralai/Mixtral-8x7B-Instruct-v0.1": False,
            STRONG: True,
            "mistralai/Mixtral-8x7B-Instruct-v0.1_response": "x" * 40,
            "gpt-4-1106-preview_response": "y" * 80,
        }
    ]
    with gzip.open(folder / "gsm8k_responses.csv.gz", "wt", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(gsm8k[0]))
        writer.writeheader()
        writer.writerows(gsm8k)
    _gz(
        folder / "mt_bench_question.jsonl.gz",
        json.dumps({"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]})
        + "\n",
    )
    judgements = [
        {"question_id": 81, "model": model, "turn": turn, "score": score}
        for model, turn, score in [
            ("mistralai/Mixtral-8x7B-Instruct-v0.1", 1, 9),
            ("mistralai/Mixtral-8x7B-Instruct-v0.1", 2, 7),
            ("gpt-4-1106-preview", 1, 8),
            ("gpt-4-1106-preview", 2, 10),
        ]
    ]
    _gz(folder / "mt_bench_judgements.jsonl.gz", "".join(json.dumps(j) + "\n" for j in judgements))
    return folder


def test_mmlu_correctness_prices_and_a_seeded_sample(routellm_dir):
    converted = convert_mmlu(routellm_dir)
    assert len(converted.records) == 20 and converted.catalog.names == [WEAK, STRONG]
    weak = [r for r in converted.records if r.model == WEAK]
    assert [r.outcome for r in weak[:2]] == ["win", "loss"]
    assert weak[0].cost == pytest.approx((round(len("Question 0?") / 4) + FIXED_OUTPUT_TOKENS) * 0.9 / 1e6)
    sample = convert_mmlu(routellm_dir, sample=4, seed=1)
    again = convert_mmlu(routellm_dir, sample=4, seed=1)
    assert [r.query_id for r in sample.records] == [r.query_id for r in again.records]
    assert len({r.query_id for r in sample.records}) == 4
    assert any("sample of 4 of the 10" in n for n in sample.notes)


def test_gsm8k_output_tokens_from_the_answers(routellm_dir):
    converted = convert_gsm8k(routellm_dir)
    by_model = {r.model: r for r in converted.records}
    assert by_model[WEAK].outcome == "loss" and by_model[STRONG].outcome == "win"
    assert (by_model[WEAK].output_tokens, by_model[STRONG].output_tokens) == (10, 20)
    assert by_model[STRONG].cost == pytest.approx((round(len("Add 1 and 1.") / 4) * 10 + 20 * 30) / 1e6)


def test_mt_bench_both_turns_accept_at_8(routellm_dir):
    converted = convert_mt_bench(routellm_dir)
    got = {(r.query_id, r.model): (r.outcome, r.query, r.earlier) for r in converted.records}
    assert got[("mt81-turn1", WEAK)] == ("win", "Write a poem.", None)
    assert got[("mt81-turn2", WEAK)] == ("loss", "Now shorter.", "Write a poem.")
    assert got[("mt81-turn1", STRONG)][0] == "win" and got[("mt81-turn2", STRONG)][0] == "win"
    second = next(r for r in converted.records if r.query_id == "mt81-turn2")
    assert second.input_tokens == round(len("Write a poem.\n\nNow shorter.") / 4)  # the whole prompt
    # evaluation routes on the turns joined, as every router compared sees them
    arrays = history_arrays(converted.records, converted.catalog)
    assert arrays.queries == ["Write a poem.", "Write a poem.\n\nNow shorter."]
    assert arrays.history.earlier is None


def test_data_commands_write_history_and_catalogue(dcrouter_dir, tmp_path):
    out = tmp_path / "converted"
    result = CliRunner().invoke(app, ["data", "dcrouter", "--data", str(dcrouter_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(read_history(out / "history.jsonl")) == 4
    assert "note: outcome: score >= 0.5" in result.output


def test_suite_skips_absent_data_sets_with_a_line(tmp_path, monkeypatch):
    (tmp_path / "README.md").write_text("x\n<!-- results:start -->\n<!-- results:end -->\n", encoding="utf-8")
    empty = tmp_path / "data"
    empty.mkdir()
    args = ["bench", "suite", "--data", str(empty), "--out", str(tmp_path / "suite")]
    result = CliRunner().invoke(app, [*args, "--readme", str(tmp_path / "README.md")])
    assert result.exit_code == 0, result.output
    assert "skipped alpacaeval" in result.output and "skipped mt_bench" in result.output
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "Skipped: alpacaeval (no " in readme


def test_the_real_dcrouter_data_has_one_outcome_per_model_and_distinct_prompt(shared_data):
    converted = convert_dcrouter(shared_data / "llmrouter_dcrouter")
    queries = {r.query_id for r in converted.records}
    assert len(converted.records) == 9 * len(queries) == 9 * (6108 - 119)


def test_the_real_routellm_data_converts(shared_data):
    assert len(convert_gsm8k(shared_data / "routellm").records) == 2 * 1319
    assert len(convert_mt_bench(shared_data / "routellm").records) == 2 * 160
