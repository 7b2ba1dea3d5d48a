"""Labelled answer pairs for checking a judge: the file format and converters from public judgements.

A label file is JSONL, one pair per line::

    {"id": "q1-m1", "query": "...", "answer_a": "...", "answer_b": "...", "label": "A", "source": "..."}

``label`` is ``A`` (answer A is better), ``B`` or ``tie``, as given by humans or a stronger judge;
``source`` (optional) says where the label comes from. Converters:

- AlpacaEval 1.0 (:func:`alpacaeval_pairs`): answer A is the reference ``text_davinci_003``, answer B the
  judged model's, both from ``model_outputs_with_verdicts.jsonl.gz``; the label is annotator
  ``alpaca_eval_gpt4``'s preference (2 = B, 1 = A, 0 / 1.5 / no verdict = tie, as in the history converter).
- MT-bench (:func:`mtbench_pairs`, RouteLLM's ``mt_bench_judgements.jsonl.gz``): the first turn of each
  question, answered by the two models; GPT-4 scored each answer 1–10 on its own, so the label is the
  better-scored answer, a tie on equal scores. Answer A is the model whose name sorts first.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tagrouter.errors import DataError, from_validation_error
from tagrouter.fileio import atomic_write_text

Label = Literal["A", "B", "tie"]


class LabelledPair(BaseModel):
    """Two answers to one query and which one is better (``A``, ``B`` or ``tie``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    query: str = Field(min_length=1)
    answer_a: str
    answer_b: str
    label: Label
    source: str | None = None


def read_labels(path: str | Path) -> list[LabelledPair]:
    """Read and validate a label file; errors name the file, row and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError("label file not found", path=path)
    opener = gzip.open if path.suffix == ".gz" else open
    pairs = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                pairs.append(LabelledPair.model_validate_json(line))
            except ValidationError as exc:
                raise from_validation_error(
                    exc, path=path, row=number, known_fields=LabelledPair.model_fields
                ) from None
    if not pairs:
        raise DataError("no labelled pairs in the file", path=path)
    return pairs


def write_labels(path: str | Path, pairs: Sequence[LabelledPair]) -> None:
    atomic_write_text(path, "".join(p.model_dump_json(exclude_none=True) + "\n" for p in pairs))


def sample_pairs(pairs: Sequence[LabelledPair], size: int | None, seed: int = 0) -> list[LabelledPair]:
    """``size`` pairs drawn at random (seeded), in their original order; all of them without ``size``."""
    if size is None or size >= len(pairs):
        return list(pairs)
    return [pairs[i] for i in sorted(random.Random(seed).sample(range(len(pairs)), size))]


def _raw_outputs(path: Path, models: set[str]) -> dict[str, dict[int, str]]:
    if not path.is_file():
        raise DataError("raw model outputs not found", path=path)
    outputs: dict[str, dict[int, str]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["model_dir"] in models:
                outputs.setdefault(row["model_dir"], {})[int(row["idx"])] = row["output"]
    return outputs


def alpacaeval_pairs(data: str | Path, models: Sequence[str]) -> list[LabelledPair]:
    """AlpacaEval 1.0 pairs (reference vs each of ``models``) with GPT-4's labels; see the module docstring."""
    from tagrouter.evaluation.datasets.alpacaeval import ANNOTATOR, REFERENCE, load_alpacaeval

    data = Path(data)
    dataset = load_alpacaeval(data)
    dataset.check_models(models)
    outputs = _raw_outputs(data / "model_outputs_with_verdicts.jsonl.gz", {REFERENCE, *models})
    label_of: dict[str, Label] = {"win": "B", "loss": "A", "tie": "tie"}
    pairs = []
    for model in models:
        for idx, outcome in sorted(dataset.outcomes[model].items()):
            if idx in outputs.get(model, {}) and idx in outputs.get(REFERENCE, {}):
                pairs.append(
                    LabelledPair(
                        id=f"alpacaeval-{idx}-{model}",
                        query=dataset.instructions[idx],
                        answer_a=outputs[REFERENCE][idx],
                        answer_b=outputs[model][idx],
                        label=label_of[outcome],
                        source=f"{ANNOTATOR}: {REFERENCE} (A) vs {model} (B)",
                    )
                )
    return pairs


_ANSWER = re.compile(
    r"\[The Start of Assistant's Answer\]\n(.*)\n\[The End of Assistant's Answer\]", re.DOTALL
)


def mtbench_pairs(folder: str | Path) -> list[LabelledPair]:
    """MT-bench first-turn pairs of RouteLLM's two models, labelled by GPT-4's scores (module docstring)."""
    folder = Path(folder)
    questions: dict[int, str] = {}
    with gzip.open(folder / "mt_bench_question.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            questions[int(row["question_id"])] = row["turns"][0]
    answers: dict[int, dict[str, tuple[str, float]]] = {}
    path = folder / "mt_bench_judgements.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            found = _ANSWER.search(row["user_prompt"])
            if row["turn"] != 1 or found is None or float(row["score"]) < 0:
                continue
            answers.setdefault(int(row["question_id"]), {})[row["model"]] = (
                found.group(1),
                float(row["score"]),
            )
    pairs = []
    for qid, by_model in sorted(answers.items()):
        if len(by_model) != 2 or qid not in questions:
            continue
        (model_a, (text_a, score_a)), (model_b, (text_b, score_b)) = sorted(by_model.items())
        label: Label = "A" if score_a > score_b else "B" if score_b > score_a else "tie"
        pairs.append(
            LabelledPair(
                id=f"mtbench-{qid}",
                query=questions[qid],
                answer_a=text_a,
                answer_b=text_b,
                label=label,
                source=f"GPT-4 single-answer scores: {model_a} {score_a:g} (A) vs {model_b} {score_b:g} (B)",
            )
        )
    return pairs
