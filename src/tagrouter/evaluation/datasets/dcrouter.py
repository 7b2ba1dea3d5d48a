"""LLMRouter's DCRouter data (``llmrouter_dcrouter/``: 6,108 prompts × 9 models, 14 task types,
correctness scores) -> history records and a catalogue.

- Prompts: deduplicated by text, the first occurrence kept (119 texts occur twice, some with different
  scores); the given train/test split is ignored (the evaluation cross-validates).
- Outcome: score ≥ 0.5 -> ``win``, else ``loss`` (scores are 0/1 but for a few F1-style values).
- Cost: the prompt's cl100k tokens × input price + a fixed :data:`OUTPUT_TOKENS` × output price (the data
  holds no answers, so no output lengths); prices are the nominal NVIDIA NIM prices of ``models.csv``.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

from tagrouter.catalog import Catalog, ModelCard
from tagrouter.evaluation.datasets.common import Converted, require
from tagrouter.records import HistoryRecord

OUTPUT_TOKENS = 256
ACCEPT_SCORE = 0.5
#: (weak, strong): the cheapest model against the most accepted one.
PAIRS = (("gemma-2-9b-it", "llama-3.1-nemotron-51b-instruct"),)


def convert_dcrouter(data: str | Path) -> Converted:
    """The history of every model on every distinct prompt, and the 9-model catalogue."""
    data = Path(data)
    prompts: dict[str, tuple[str, int]] = {}  # prompt_id -> (text, tokens), first text occurrence only
    seen: set[str] = set()
    duplicates = 0
    with gzip.open(require(data / "prompts.jsonl.gz", "DCRouter prompts"), "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["prompt"] in seen:
                duplicates += 1
                continue
            seen.add(row["prompt"])
            prompts[row["prompt_id"]] = (row["prompt"], int(row["prompt_tokens_cl100k"]))
    catalog = _catalog(require(data / "models.csv", "DCRouter model list"))
    records = []
    path = require(data / "outcomes.csv.gz", "DCRouter outcomes")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["prompt_id"] not in prompts:
                continue
            text, tokens = prompts[row["prompt_id"]]
            card = catalog[row["model"]]
            records.append(
                HistoryRecord(
                    query_id=row["prompt_id"],
                    query=text,
                    model=row["model"],
                    outcome="win" if float(row["score"]) >= ACCEPT_SCORE else "loss",
                    input_tokens=tokens,
                    output_tokens=OUTPUT_TOKENS,
                    cost=round(card.cost(tokens, OUTPUT_TOKENS), 12),
                )
            )
    notes = [
        f"{duplicates} prompts whose text occurred before were dropped (the first occurrence kept); "
        "the given train/test split is ignored",
        f"outcome: score >= {ACCEPT_SCORE} -> win, else loss",
        f"cost: prompt tokens (cl100k) x input price + {OUTPUT_TOKENS} assumed output tokens x output price "
        "(nominal NVIDIA NIM prices)",
    ]
    return Converted(records, catalog, notes)


def _catalog(path: Path) -> Catalog:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return Catalog(
        models=[
            ModelCard(
                name=r["model"],
                input_usd_per_1m=float(r["input_usd_per_1M"]),
                output_usd_per_1m=float(r["output_usd_per_1M"]),
            )
            for r in rows
        ]
    )
