"""From history records and a catalogue to the evaluation's arrays: one outcome and one cost per (query,
model).

- Queries: in order of first appearance; models: the catalogue's, in its order, then every other model of
  the history (the context models) in order of first appearance.
- A model judged more than once on a query: the first record counts (the others are reported).
- A model not judged on a query: the cell is unknown (``known`` False), never a loss.
- Cost of an answer: the record's ``cost`` when given; else its tokens × the catalogue's prices, with input
  tokens = characters / 4 when not recorded (as the router estimates them) and output tokens, when not
  recorded, the model's mean over its records that have a count, else ``default_output_tokens``. A
  context model outside the catalogue without a cost field has no cost (NaN): it is never routed to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagrouter.catalog import Catalog
from tagrouter.errors import DataError
from tagrouter.model import CHARS_PER_TOKEN, DEFAULT_OUTPUT_TOKENS
from tagrouter.records import HistoryRecord

_CODE = {"win": 0, "tie": 1, "loss": 2}


@dataclass(frozen=True)
class HistoryArrays:
    """The history as arrays (see the module docstring) and what was assumed to build them."""

    queries: list[str]
    models: list[str]
    outcomes: np.ndarray  # n × K codes 0 win / 1 tie / 2 loss (2 where unknown)
    known: np.ndarray  # n × K bool
    costs: np.ndarray  # n × K dollars, NaN where unknown
    notes: list[str]


def history_arrays(
    records: Sequence[HistoryRecord],
    catalog: Catalog,
    *,
    default_output_tokens: float = DEFAULT_OUTPUT_TOKENS,
) -> HistoryArrays:
    """Arrays of ``records``; raises :class:`DataError` when a catalogue model has no record."""
    if not records:
        raise DataError("the history is empty")
    if len(catalog.names) < 2:
        raise DataError("the catalogue needs at least two models to route between")
    judged = dict.fromkeys(r.model for r in records)
    missing = [m for m in catalog.names if m not in judged]
    if missing:
        raise DataError(
            f"catalogue model(s) {', '.join(missing)} have no records in the history; every routable model "
            "needs judged history"
        )
    models = [*catalog.names, *(m for m in judged if m not in catalog)]
    column = {m: j for j, m in enumerate(models)}
    query_row: dict[str, int] = {}
    queries: list[str] = []
    for r in records:
        if r.query_id not in query_row:
            query_row[r.query_id] = len(queries)
            queries.append(r.query)
    n, k = len(queries), len(models)
    outcomes = np.full((n, k), 2, dtype=np.int8)
    known = np.zeros((n, k), dtype=bool)
    costs = np.full((n, k), np.nan)
    mean_output = _mean_output_tokens(records)
    counts = dict.fromkeys(("duplicate", "cost field", "input estimated", "output mean", "output default"), 0)
    for r in records:
        i, j = query_row[r.query_id], column[r.model]
        if known[i, j]:
            counts["duplicate"] += 1
            continue
        known[i, j] = True
        outcomes[i, j] = _CODE[r.outcome]
        if r.cost is not None:
            counts["cost field"] += 1
            costs[i, j] = r.cost
        elif r.model in catalog:
            if r.input_tokens is None:
                counts["input estimated"] += 1
            output = r.output_tokens
            if output is None:
                output = mean_output.get(r.model)
                counts["output mean" if output is not None else "output default"] += 1
            costs[i, j] = catalog[r.model].cost(
                r.input_tokens if r.input_tokens is not None else len(r.query) / CHARS_PER_TOKEN,
                output if output is not None else default_output_tokens,
            )
    return HistoryArrays(queries, models, outcomes, known, costs, _notes(counts, default_output_tokens))


def _mean_output_tokens(records: Sequence[HistoryRecord]) -> dict[str, float]:
    totals: dict[str, list[float]] = {}
    for r in records:
        if r.output_tokens is not None:
            total = totals.setdefault(r.model, [0.0, 0.0])
            total[0] += r.output_tokens
            total[1] += 1
    return {m: s / c for m, (s, c) in totals.items()}


def _notes(counts: dict[str, int], default_output_tokens: float) -> list[str]:
    """One line per assumption that was needed."""
    lines = {
        "duplicate": "answers judged again on the same query were ignored (the first record counts)",
        "cost field": "answers cost what their record's cost field says",
        "input estimated": "answers without input tokens: input tokens estimated as characters / 4",
        "output mean": "answers without output tokens: their model's mean output tokens in the history",
        "output default": f"answers without output tokens of a model with no counts at all: "
        f"{default_output_tokens:g} output tokens assumed",
    }
    return [f"{counts[key]} {text}" for key, text in lines.items() if counts[key]]
