"""AlpacaEval 1.0 -> history records and a catalogue.

Outcomes come from annotator ``alpaca_eval_gpt4`` (judge GPT-4, reference ``text_davinci_003``):
``preference`` 2 = win, 1 = loss, 0 or 1.5 = tie, empty = no verdict, counted as a tie.
Tokens: instruction tokens (cl100k) in, the model's output tokens (cl100k) out. Cost = tokens × the
price per 1M tokens of ``prices_usd_per_1M_tokens.csv``.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tagrouter.catalog import Catalog, ModelCard
from tagrouter.errors import DataError
from tagrouter.evaluation.datasets.common import Converted, read_prices
from tagrouter.records import HistoryRecord

ANNOTATOR = "alpaca_eval_gpt4"
REFERENCE = "text_davinci_003"
#: Models never to use (adversarial, null or duplicate files; see the data README).
EXCLUDED = frozenset({"NullModel", "gpt4_gamed", "falcon-7b-instruct"})
POOL_8 = (
    "llama-2-7b-chat-hf",
    "zephyr-7b-beta",
    "tulu-2-dpo-70b",
    "llama-2-70b-chat-hf",
    "gpt-3.5-turbo-1106",
    "claude-2",
    "gpt4_1106_preview",
    "gpt4",
)

#: (weak, strong) pairs of the benchmark.
PAIRS = (
    ("llama-2-7b-chat-hf", "gpt4"),
    ("gpt-3.5-turbo-1106", "gpt4_1106_preview"),
    ("zephyr-7b-beta", "claude-2"),
    ("tulu-2-dpo-70b", "gpt4_1106_preview"),
    ("vicuna-13b", "gpt-3.5-turbo-0301"),
    ("llama-2-13b-chat-hf", "llama-2-70b-chat-hf"),
)

_PREFERENCE = {
    "2": "win",
    "2.0": "win",
    "1": "loss",
    "1.0": "loss",
    "0": "tie",
    "0.0": "tie",
    "1.5": "tie",
    "": "tie",
}


@dataclass
class AlpacaEvalData:
    """The parsed AlpacaEval 1.0 files: instructions, outcomes, tokens and prices."""

    instructions: dict[int, str]
    outcomes: dict[str, dict[int, str]]
    instruction_tokens: dict[int, int]
    output_tokens: dict[str, dict[int, int]]
    prices: dict[str, tuple[float, float]]

    def output_tokens_of(self, model: str, idx: int) -> int:
        """Output tokens of ``model`` on ``idx``; where the data lacks the count (a few answers of a few
        models), the model's mean over its other answers, rounded (see :meth:`imputed`)."""
        counts = self.output_tokens[model]
        if idx in counts:
            return counts[idx]
        return round(sum(counts.values()) / len(counts))

    def imputed(self, models: Sequence[str]) -> list[tuple[str, int]]:
        """(model, idx) pairs whose output token count is imputed."""
        return [(m, i) for m in models for i in self.outcomes[m] if i not in self.output_tokens[m]]

    @property
    def models(self) -> list[str]:
        """Every judged model (exclusions removed), sorted."""
        return sorted(m for m in self.outcomes if m not in EXCLUDED)

    def cost(self, model: str, idx: int) -> float:
        """Dollars for ``model``'s answer to instruction ``idx``."""
        price_in, price_out = self.prices[model]
        return (self.instruction_tokens[idx] * price_in + self.output_tokens_of(model, idx) * price_out) / 1e6

    def records(self, models: Sequence[str]) -> list[HistoryRecord]:
        """One record per (instruction, model) for ``models``."""
        self.check_models(models)
        return [
            HistoryRecord(
                query_id=str(idx),
                query=self.instructions[idx],
                model=model,
                outcome=outcome,
                reference=REFERENCE,
                input_tokens=self.instruction_tokens[idx],
                output_tokens=self.output_tokens_of(model, idx),
                cost=round(self.cost(model, idx), 10),
            )
            for model in models
            for idx, outcome in sorted(self.outcomes[model].items())
        ]

    def catalog(self, models: Sequence[str]) -> Catalog:
        self.check_models(models)
        return Catalog(
            models=[
                ModelCard(name=m, input_usd_per_1m=self.prices[m][0], output_usd_per_1m=self.prices[m][1])
                for m in models
            ]
        )

    def check_models(self, models: Sequence[str]) -> None:
        for model in models:
            if model in EXCLUDED or model not in self.outcomes:
                raise DataError(
                    f"model {model!r} has no usable {ANNOTATOR} verdicts; "
                    f"choose from: {', '.join(self.models)}",
                    field="pool",
                )
            for table, what in ((self.prices, "price"), (self.output_tokens, "output token counts")):
                if model not in table:
                    raise DataError(f"model {model!r} has no {what}", field="pool")


def convert_alpacaeval(
    data: str | Path, pool: Sequence[str] = POOL_8, context: Sequence[str] = ()
) -> Converted:
    """History of the ``pool`` and ``context`` models, catalogue of the pool."""
    dataset = load_alpacaeval(data)
    models = [*pool, *(m for m in context if m not in pool)]
    imputed = dataset.imputed(models)
    notes = [
        f"outcomes of annotator {ANNOTATOR} against {REFERENCE}: preference 2 = win, 1 = loss, "
        "0 / 1.5 / empty = tie",
        "cost = instruction tokens x input price + output tokens x output price (cl100k counts)",
    ]
    if imputed:
        notes.append(f"{len(imputed)} answers lack an output token count; each got its model's mean")
    return Converted(dataset.records(models), dataset.catalog(list(pool)), notes)


def load_alpacaeval(data: str | Path) -> AlpacaEvalData:
    """Parse the AlpacaEval files in ``data`` (the ``alpaca_eval`` folder) and the price table beside it."""
    data = Path(data)
    if not (data / "instructions.jsonl").is_file():
        raise DataError("no instructions.jsonl here: expected the alpaca_eval data folder", path=data)
    instructions = {}
    with (data / "instructions.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            instructions[int(row["idx"])] = row["instruction"]
    outcomes: dict[str, dict[int, str]] = {}
    path = data / "verdicts.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            if row["annotator"] != ANNOTATOR:
                continue
            preference = row["preference"].strip()
            if preference not in _PREFERENCE:
                raise DataError(
                    f"expected 2, 1, 0, 1.5 or empty, got {preference!r}",
                    path=path,
                    row=number,
                    field="preference",
                )
            outcomes.setdefault(row["model_dir"], {})[int(row["idx"])] = _PREFERENCE[preference]
    instruction_tokens = {}
    with (data / "instruction_tokens.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            instruction_tokens[int(row["idx"])] = int(row["instruction_tokens_cl100k"])
    output_tokens: dict[str, dict[int, int]] = {}
    with gzip.open(data / "output_lengths.csv.gz", "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["model_dir"] in outcomes:
                output_tokens.setdefault(row["model_dir"], {})[int(row["idx"])] = int(
                    row["output_tokens_cl100k"]
                )
    prices = read_prices(data.parent / "prices_usd_per_1M_tokens.csv")
    return AlpacaEvalData(instructions, outcomes, instruction_tokens, output_tokens, prices)
