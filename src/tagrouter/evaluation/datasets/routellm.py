"""RouteLLM's evaluation data (``routellm/``: Mixtral-8x7B-Instruct vs gpt-4-1106-preview) -> history
records and a two-model catalogue.

- ``mmlu``: 14,042 questions, correctness per model -> ``win`` / ``loss``; optionally a seeded sample.
- ``gsm8k``: 1,319 questions, correctness -> ``win`` / ``loss``; output tokens = answer characters / 4.
- ``mt_bench``: 80 two-turn questions, GPT-4's 1-10 score per turn; accept = score ≥ :data:`MT_BENCH_ACCEPT`.
  Both turns are separate queries: turn 1 is the first user message, turn 2 the second user message with
  the first as its ``earlier`` turn (what the gateway reads of the conversation at that turn; evaluation
  routes on the two joined, :mod:`tagrouter.evaluation.loading`).

Prices: ``prices_usd_per_1M_tokens.csv`` (LiteLLM's table of December 2023; Mixtral at Together AI's
40-70B tier, $0.90 / $0.90 per 1M tokens; gpt-4-1106-preview $10 / $30). Input tokens: characters / 4
(no counts in the data). Output tokens: see above; for MMLU and MT-bench (no answer lengths in these
files) a fixed :data:`FIXED_OUTPUT_TOKENS` is assumed.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from tagrouter.conversation import joined
from tagrouter.evaluation.datasets.common import Converted, catalog_of, read_prices, require
from tagrouter.records import HistoryRecord

WEAK, STRONG = "Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
#: names of the two models in the price table
_PRICE_KEYS = {WEAK: "mistralai/Mixtral-8x7B-Instruct-v0.1", STRONG: "gpt-4-1106-preview"}
MT_BENCH_ACCEPT = 8
FIXED_OUTPUT_TOKENS = 256
CHARS_PER_TOKEN = 4


def _prices(data: Path) -> dict[str, tuple[float, float]]:
    table = read_prices(data.parent / "prices_usd_per_1M_tokens.csv")
    return {name: table[key] for name, key in _PRICE_KEYS.items() if key in table}


def _records(
    rows: Iterable[tuple[str, str, str, bool, int]], prices: dict, earlier: Mapping[str, str] | None = None
) -> list[HistoryRecord]:
    """Records of (query id, query, model, accepted, output tokens) rows, with their cost; ``earlier``:
    the earlier conversation turns of the query ids that are later turns (their input tokens count them)."""
    catalog = catalog_of(prices, [WEAK, STRONG])
    earlier = earlier or {}
    records = []
    for qid, query, model, accepted, output_tokens in rows:
        before = earlier.get(qid)
        input_tokens = round(len(query if before is None else joined(before, query)) / CHARS_PER_TOKEN)
        records.append(
            HistoryRecord(
                query_id=qid,
                query=query,
                earlier=before,
                model=model,
                outcome="win" if accepted else "loss",
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost=round(catalog[model].cost(input_tokens, output_tokens), 12),
            )
        )
    return records


def _common_notes(prices: dict) -> list[str]:
    return [
        f"prices per 1M tokens (in / out): {WEAK} ${prices[WEAK][0]:g} / ${prices[WEAK][1]:g}, "
        f"{STRONG} ${prices[STRONG][0]:g} / ${prices[STRONG][1]:g}",
        "input tokens: characters / 4",
    ]


def convert_mmlu(data: str | Path, sample: int | None = None, seed: int = 0) -> Converted:
    """MMLU correctness of both models; ``sample``: keep that many questions, drawn with ``seed``."""
    data = Path(data)
    path = require(data / "mmlu_responses.csv.gz", "RouteLLM MMLU responses")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    notes = ["outcome: correct -> win, wrong -> loss"]
    keep = range(len(rows))
    if sample is not None and sample < len(rows):
        keep = sorted(np.random.default_rng(seed).choice(len(rows), sample, replace=False).tolist())
        notes.append(f"a random sample of {sample} of the {len(rows)} questions (numpy default_rng({seed}))")
    prices = _prices(data)
    columns = {WEAK: "mixtral_8x7b_instruct_correct", STRONG: "gpt_4_1106_preview_correct"}
    records = _records(
        (
            (f"mmlu-{i}", rows[i]["prompt"], model, rows[i][column] == "True", FIXED_OUTPUT_TOKENS)
            for i in keep
            for model, column in columns.items()
        ),
        prices,
    )
    notes += [
        *_common_notes(prices),
        f"output tokens: {FIXED_OUTPUT_TOKENS} assumed (no answers in the file)",
    ]
    return Converted(records, catalog_of(prices, [WEAK, STRONG]), notes)


def convert_gsm8k(data: str | Path) -> Converted:
    """GSM8K correctness of both models; output tokens from the answers' lengths."""
    data = Path(data)
    path = require(data / "gsm8k_responses.csv.gz", "RouteLLM GSM8K responses")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    prices = _prices(data)
    columns = {WEAK: "mistralai/Mixtral-8x7B-Instruct-v0.1", STRONG: "gpt-4-1106-preview"}
    records = _records(
        (
            (
                f"gsm8k-{i}",
                row["prompt"],
                model,
                row[column] == "True",
                round(len(row[f"{column}_response"]) / CHARS_PER_TOKEN),
            )
            for i, row in enumerate(rows)
            for model, column in columns.items()
        ),
        prices,
    )
    notes = [
        "outcome: correct -> win, wrong -> loss",
        *_common_notes(prices),
        "output tokens: answer characters / 4",
    ]
    return Converted(records, catalog_of(prices, [WEAK, STRONG]), notes)


def convert_mt_bench(data: str | Path) -> Converted:
    """MT-bench: GPT-4's score per turn, both turns as queries (see the module docstring)."""
    data = Path(data)
    turns: dict[int, list[str]] = {}
    with gzip.open(
        require(data / "mt_bench_question.jsonl.gz", "MT-bench questions"), "rt", encoding="utf-8"
    ) as f:
        for line in f:
            row = json.loads(line)
            turns[int(row["question_id"])] = row["turns"]
    rows, earlier = [], {}
    path = require(data / "mt_bench_judgements.jsonl.gz", "MT-bench judgements")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            qid, turn = int(row["question_id"]), int(row["turn"])
            model = WEAK if row["model"] == _PRICE_KEYS[WEAK] else row["model"]
            name = f"mt{qid}-turn{turn}"
            if turn > 1:
                earlier[name] = "\n\n".join(turns[qid][: turn - 1])
            rows.append((name, turns[qid][turn - 1], model, float(row["score"]) >= MT_BENCH_ACCEPT))
    rows.sort(key=lambda r: (r[0], r[2]))
    prices = _prices(data)
    records = _records(((*r, FIXED_OUTPUT_TOKENS) for r in rows), prices, earlier)
    notes = [
        f"accept: GPT-4 score >= {MT_BENCH_ACCEPT} of 10 -> win, else loss",
        "both turns are queries: turn 1 = the first user message, turn 2 = the second, with the first as "
        "its earlier turn (evaluation routes on both joined)",
        *_common_notes(prices),
        f"output tokens: {FIXED_OUTPUT_TOKENS} assumed (no answer lengths in the file)",
    ]
    return Converted(records, catalog_of(prices, [WEAK, STRONG]), notes)
