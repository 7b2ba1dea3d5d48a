"""From history records and a catalogue to the evaluation's columnar history and its arrays: one outcome
and one cost per (query, model).

- Queries: in order of first appearance; models: the catalogue's, in its order, then every other model of
  the history (the context models) in order of first appearance.
- A model judged more than once on a query: the last record counts, as everywhere one outcome per query
  and model is needed (:meth:`~tagrouter.records.History.deduplicated`; the others are reported).
- A model not judged on a query: the cell is unknown (``known`` False), never a loss.
- Cost of an answer: the record's ``cost`` when given; else its tokens × the catalogue's prices, with the
  router's own estimates (:mod:`tagrouter.model`) where a count is missing: input tokens = characters / 4,
  output tokens the model's mean over its records that have a count, else ``default_output_tokens``. A
  context model outside the catalogue without a cost field has no cost (NaN): it is never routed to.
- A later turn of a conversation (a record with ``earlier`` turns): its query is the earlier turns and the
  turn joined (:func:`tagrouter.conversation.joined`), so that every router compared, the baselines among
  them, sees the same text (how a fit counts earlier turns is measured by ``scripts/bench_conversation.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagrouter.catalog import Catalog
from tagrouter.conversation import joined
from tagrouter.errors import DataError
from tagrouter.model import DEFAULT_OUTPUT_TOKENS, estimated_input_tokens, mean_output_tokens, token_stats
from tagrouter.records import OUTCOMES, History, HistoryRecord, last_judgments


@dataclass(frozen=True)
class HistoryArrays:
    """The history (one record per judged query and model, ``rows``: each record's query row) and its
    arrays (see the module docstring), with what was assumed to build them."""

    queries: list[str]
    models: list[str]
    outcomes: np.ndarray  # n × K codes 0 win / 1 tie / 2 loss (2 where unknown)
    known: np.ndarray  # n × K bool
    costs: np.ndarray  # n × K dollars, NaN where unknown
    notes: list[str]
    history: History
    rows: np.ndarray


def single_turns(records: Sequence[HistoryRecord]) -> list[HistoryRecord]:
    """``records`` with each later turn's query replaced by its earlier turns and the turn joined (see the
    module docstring): the text every router of an evaluation or a replay sees."""
    return [
        r
        if r.earlier is None
        else r.model_copy(update={"query": joined(r.earlier, r.query), "earlier": None})
        for r in records
    ]


def history_arrays(
    records: Sequence[HistoryRecord],
    catalog: Catalog,
    *,
    default_output_tokens: float = DEFAULT_OUTPUT_TOKENS,
) -> HistoryArrays:
    """Arrays of ``records``; raises :class:`DataError` when a catalogue model has no record."""
    if not records:
        raise DataError("the history is empty")
    records = single_turns(records)
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
    whole = History.from_records(records)
    keep = last_judgments(whole.query_id, whole.model)
    history = whole.taken(keep)
    kept = [records[i] for i in np.flatnonzero(keep)]
    n, k = len(queries), len(models)
    outcomes = np.full((n, k), 2, dtype=np.int8)
    known = np.zeros((n, k), dtype=bool)
    costs = np.full((n, k), np.nan)
    stats = token_stats(history)
    counts = dict.fromkeys(("duplicate", "cost field", "input estimated", "output mean", "output default"), 0)
    counts["duplicate"] = len(records) - len(kept)
    rows = np.fromiter((query_row[r.query_id] for r in kept), dtype=np.intp, count=len(kept))
    for i, r in zip(rows, kept, strict=True):
        j = column[r.model]
        known[i, j] = True
        outcomes[i, j] = OUTCOMES.index(r.outcome)
        if r.cost is not None:
            counts["cost field"] += 1
            costs[i, j] = r.cost
        elif r.model in catalog:
            if r.input_tokens is None:
                counts["input estimated"] += 1
            output = r.output_tokens if r.output_tokens is not None else mean_output_tokens(stats, r.model)
            if r.output_tokens is None:
                counts["output mean" if output is not None else "output default"] += 1
            costs[i, j] = catalog[r.model].cost(
                r.input_tokens if r.input_tokens is not None else estimated_input_tokens(r.query),
                output if output is not None else default_output_tokens,
            )
    notes = _notes(counts, default_output_tokens)
    return HistoryArrays(queries, models, outcomes, known, costs, notes, history, rows)


def _notes(counts: dict[str, int], default_output_tokens: float) -> list[str]:
    """One line per assumption that was needed."""
    lines = {
        "duplicate": "answers judged again on the same query were replaced by the later record",
        "cost field": "answers cost what their record's cost field says",
        "input estimated": "answers without input tokens: input tokens estimated as characters / 4",
        "output mean": "answers without output tokens: their model's mean output tokens in the history",
        "output default": f"answers without output tokens of a model with no counts at all: "
        f"{default_output_tokens:g} output tokens assumed",
    }
    return [f"{counts[key]} {text}" for key, text in lines.items() if counts[key]]
