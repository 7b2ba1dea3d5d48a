"""The stages of a fit, each a function of one part of the history, whose results add up.

A fit is: validate a batch of records (:class:`Part`) → its distinct queries (:func:`query_texts`) →
teacher tags of a batch of queries → vocabulary counts (:func:`~tagrouter.tagging.vocabulary.tag_counts`,
added up) → the vocabulary (:func:`~tagrouter.tagging.embedded.student_vocabulary`) → prototype sums
(:func:`~tagrouter.tagging.embedded.prototype_sums`, float64, added up) → the student
(:meth:`EmbeddedTagger.from_sums`) → per-batch partial tables (:func:`partial_table`, merged) →
:meth:`RoutingModel.build`. Every engine calls these same functions; only where they run and how their
results travel differ.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from tagrouter.errors import DataError
from tagrouter.model import tag_history, token_stats
from tagrouter.records import History, ReadReport, iter_history
from tagrouter.scoring import TagTable
from tagrouter.tagging.base import Tagger

OnError = Literal["raise", "skip"]


class Part(Protocol):
    """A part of a history that a worker can read: yields validated :class:`History` batches."""

    def batches(self, report: ReadReport) -> Iterator[History]: ...


@dataclass(frozen=True)
class FilePart:
    """History files, streamed in validated batches (see :func:`~tagrouter.records.iter_history`); with
    ``models``, only those models' records."""

    paths: tuple[Path, ...]
    on_error: OnError = "raise"
    models: frozenset[str] = frozenset()

    def batches(self, report: ReadReport) -> Iterator[History]:
        for batch in iter_history(self.paths, on_error=self.on_error, report=report):
            yield batch.of_models(self.models) if self.models else batch


@dataclass(frozen=True)
class MemoryPart:
    """A history already in memory (validated when it was built)."""

    history: History

    def batches(self, report: ReadReport) -> Iterator[History]:
        report.rows_read += len(self.history)
        yield self.history


@dataclass(frozen=True)
class StudentOptions:
    """How the default student is built (see :meth:`EmbeddedTagger.from_teacher_tags`)."""

    min_count: int = 2
    merge_distance: float = 0.1
    fine: int = 8


@dataclass(frozen=True)
class Counted:
    """A partial tag table and the output-token statistics of the records it counts; parts add up, in
    any order, to the table and statistics of the whole."""

    table: TagTable = field(default_factory=TagTable)
    tokens: Mapping[str, tuple[float, int]] = field(default_factory=dict)

    def merged(self, other: Counted) -> Counted:
        tokens = dict(self.tokens)
        for model, (total, count) in other.tokens.items():
            before = tokens.get(model, (0.0, 0))
            tokens[model] = (before[0] + total, before[1] + count)
        return Counted(self.table.merged(other.table), tokens)


def query_texts(batch: History) -> dict[str, str]:
    """Stage: the distinct queries (id -> text) of a batch."""
    return batch.unique_queries()


def add_query_texts(into: dict[str, str], part: Mapping[str, str]) -> None:
    """Add a part's distinct queries to ``into``; a query id with two texts is a :class:`DataError`."""
    for qid, text in part.items():
        if into.setdefault(qid, text) != text:
            raise DataError(f"query id {qid!r} has two different query texts", field="query")


def teacher_tags(teacher: Tagger, texts: Sequence[str]) -> list[list[str]]:
    """Stage: the teacher's tags of a batch of queries."""
    return teacher.tag(list(texts))


def partial_table(tagger: Tagger, batch: History) -> Counted:
    """Stage: the tag table and token statistics of a batch (each distinct query tagged once)."""
    table = TagTable.count(tag_history(tagger, batch, None), batch.model, batch.outcome)
    return Counted(table, token_stats(batch))
