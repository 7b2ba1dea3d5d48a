"""The stages of a fit, each a function of one part of the history, whose results add up exactly.

A fit reads the history twice and tags each distinct query once:

1. *survey* (first read): each batch of records (:class:`Part`) gives its distinct queries and models
   (:func:`survey_batch`); put together in reading order (:class:`Survey`) they number every distinct
   query by its first appearance;
2. without a tagger, the default student is distilled from the distinct queries, in blocks of
   :data:`QUERY_BLOCK` (:func:`query_blocks`): teacher tags (:func:`teach_block`) → vocabulary counts
   (integers, added up) → the vocabulary → prototype sums (exact integer sums,
   :func:`~tagrouter.tagging.embedded.prototype_sums`) → the student;
3. the tagger tags the distinct queries, block by block (:func:`tag_block`, put together in block order
   by :class:`TagCodes`): every engine makes the very same tagger calls, so near-tied tags cannot resolve
   differently;
4. *count* (second read): each batch's records are counted by their query's tag codes
   (:func:`count_batch`) into integer arrays of a fixed (tags × models × outcomes) layout, which add up in
   any order to the same table; the records of the tuning sample's queries come back with them.

Every engine calls these same functions on the same blocks; only where they run and how their results
travel differ, so the local and the Ray fit give the same table count for count and the same scores bit
for bit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from tagrouter.errors import DataError
from tagrouter.records import OUTCOMES, History, ReadReport, iter_history
from tagrouter.scoring import TagTable
from tagrouter.tagging.base import Tagger
from tagrouter.tagging.vocabulary import tag_counts
from tagrouter.tuning import TuningSample

OnError = Literal["raise", "skip"]
#: Distinct queries per block (teacher, prototypes, tagging), and per teacher or tagger call.
QUERY_BLOCK = 2048
TAG_BATCH = 256


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


# ---- 1. survey ------------------------------------------------------------------------------------------
def survey_batch(batch: History) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """Stage: the distinct queries (id -> text, in order of first appearance), models and earlier
    conversation turns (id -> text, for the queries that have them) of a batch."""
    return batch.unique_queries(), list(dict.fromkeys(batch.model)), batch.unique_earlier()


@dataclass
class Survey:
    """The distinct queries and models of a history, numbered by first appearance, the earlier
    conversation turns of the queries that have them (by number), and for every batch of every part the
    numbers of its distinct queries (what the count stage looks their tags up by). Batches must be added
    in reading order (part by part, batch by batch)."""

    ids: dict[str, int] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    models: dict[str, None] = field(default_factory=dict)
    positions: dict[int, list[np.ndarray]] = field(default_factory=dict)
    earlier: dict[int, str] = field(default_factory=dict)

    def add(self, part: int, queries: dict[str, str], models: Sequence[str], earlier: dict[str, str]) -> None:
        """Add the next batch of part ``part``; a query id with two texts (or two earlier turns) is a
        :class:`DataError`."""
        numbers = np.empty(len(queries), dtype=np.int64)
        for i, (qid, text) in enumerate(queries.items()):
            number = self.ids.setdefault(qid, len(self.texts))
            if number == len(self.texts):
                self.texts.append(text)
            elif self.texts[number] != text:
                raise DataError(f"query id {qid!r} has two different query texts", field="query")
            numbers[i] = number
        for qid, text in earlier.items():
            if self.earlier.setdefault(self.ids[qid], text) != text:
                raise DataError(f"query id {qid!r} has two different earlier turns", field="earlier")
        self.positions.setdefault(part, []).append(numbers)
        self.models.update(dict.fromkeys(models))


# ---- 2. the student's blocks ----------------------------------------------------------------------------
def query_blocks(count: int) -> list[slice]:
    """The blocks of :data:`QUERY_BLOCK` distinct queries that every engine works on."""
    return [slice(start, start + QUERY_BLOCK) for start in range(0, count, QUERY_BLOCK)]


def teach_block(teacher: Tagger, texts: Sequence[str]) -> tuple[list[list[str]], Counter[str]]:
    """Stage: the teacher's tags of a block of queries (:data:`TAG_BATCH` at a time) and their
    vocabulary counts."""
    tags = [t for i in range(0, len(texts), TAG_BATCH) for t in teacher.tag(list(texts[i : i + TAG_BATCH]))]
    return tags, tag_counts(tags)


# ---- 3. tags --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaggedBlock:
    """A block's tags: the block's distinct tags, and each query's (without repeats) as codes into them."""

    tags: list[str]
    codes: np.ndarray
    lengths: np.ndarray


def tag_block(tagger: Tagger, texts: Sequence[str]) -> TaggedBlock:
    """Stage: the tags of a block of distinct queries, :data:`TAG_BATCH` per tagger call."""
    index: dict[str, int] = {}
    codes: list[int] = []
    lengths = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), TAG_BATCH):
        for i, tags in enumerate(tagger.tag(list(texts[start : start + TAG_BATCH])), start=start):
            unique = dict.fromkeys(tags)
            codes += [index.setdefault(t, len(index)) for t in unique]
            lengths[i] = len(unique)
    return TaggedBlock(list(index), np.asarray(codes, dtype=np.int32), lengths)


@dataclass
class TagCodes:
    """Every distinct query's tags as codes into ``tags`` (in order of first appearance): query ``i``'s
    are ``codes[offsets[i]:offsets[i + 1]]``. Blocks must be added in order."""

    tags: dict[str, int] = field(default_factory=dict)
    _codes: list[np.ndarray] = field(default_factory=list)
    _lengths: list[np.ndarray] = field(default_factory=list)

    def add(self, block: TaggedBlock) -> None:
        names = [self.tags.setdefault(t, len(self.tags)) for t in block.tags]
        self._codes.append(np.asarray(names, dtype=np.int32)[block.codes])
        self._lengths.append(block.lengths)

    def finished(self) -> Tags:
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        codes = np.concatenate(self._codes) if self._codes else np.zeros(0, np.int32)
        return Tags(list(self.tags), codes, offsets)


@dataclass(frozen=True)
class Tags:
    """Every distinct query's tags: query ``i``'s are ``tags[codes[offsets[i]:offsets[i + 1]]]``."""

    tags: list[str]
    codes: np.ndarray
    offsets: np.ndarray

    def of(self, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The codes of queries ``numbers``, one run per query, and the runs' lengths."""
        starts = self.offsets[numbers]
        lengths = self.offsets[numbers + 1] - starts
        within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return self.codes[np.repeat(starts, lengths) + within], lengths

    def lists(self, numbers: Sequence[int]) -> list[list[str]]:
        """The tags of queries ``numbers`` as names."""
        return [[self.tags[c] for c in self.codes[self.offsets[i] : self.offsets[i + 1]]] for i in numbers]


# ---- 4. count -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What every count task needs: the tags, the models (the table's columns) and which query numbers
    are in the tuning sample."""

    tags: Tags
    models: list[str]
    sampled: np.ndarray  # bool per distinct query


@dataclass(frozen=True)
class Counted:
    """Integer counts of some records in the table's fixed layout: ``counts[tag, model, outcome]``,
    ``model_counts[model, outcome]``, output-token sums (float64: exact for whole token counts) and
    counts per model, and the records of sampled queries (reading position, query number, model column,
    outcome). Parts add up exactly, in any order."""

    counts: np.ndarray
    model_counts: np.ndarray
    token_sums: np.ndarray
    token_counts: np.ndarray
    sample: np.ndarray  # (records × 6) int64: part, batch, row, query number, model column, outcome

    @classmethod
    def zero(cls, tags: int, models: int) -> Counted:
        return cls(
            np.zeros((tags, models, len(OUTCOMES)), np.int64),
            np.zeros((models, len(OUTCOMES)), np.int64),
            np.zeros(models),
            np.zeros(models, np.int64),
            np.zeros((0, 6), np.int64),
        )

    def merged(self, other: Counted) -> Counted:
        return Counted(
            self.counts + other.counts,
            self.model_counts + other.model_counts,
            self.token_sums + other.token_sums,
            self.token_counts + other.token_counts,
            np.concatenate([self.sample, other.sample]),
        )

    def table(self, plan: Plan) -> TagTable:
        return TagTable(
            plan.tags.tags, plan.models, self.counts.astype(float), self.model_counts.astype(float)
        )

    def tokens(self, plan: Plan) -> dict[str, tuple[float, int]]:
        """Per model with known output tokens: (their sum, how many records have a count)."""
        return {
            m: (float(s), int(n))
            for m, s, n in zip(plan.models, self.token_sums, self.token_counts, strict=True)
            if n
        }


def count_batch(plan: Plan, batch: History, numbers: np.ndarray, part: int, number: int) -> Counted:
    """Stage: the counts of a batch whose distinct queries have the query numbers ``numbers`` (from the
    survey of the same batch); ``part`` and ``number`` place its sampled records in reading order."""
    queries = batch.unique_queries()
    if len(queries) != len(numbers):
        raise DataError("the history changed between the two reads of a fit")
    local = {qid: i for i, qid in enumerate(queries)}
    query = numbers[np.fromiter((local[q] for q in batch.query_id), np.intp, count=len(batch))]
    column = {m: j for j, m in enumerate(plan.models)}
    model = np.fromiter((column[m] for m in batch.model), np.intp, count=len(batch))
    outcome = batch.outcome.astype(np.intp)
    counted = Counted.zero(len(plan.tags.tags), len(plan.models))
    np.add.at(counted.model_counts, (model, outcome), 1)
    codes, lengths = plan.tags.of(query)
    np.add.at(counted.counts, (codes, np.repeat(model, lengths), np.repeat(outcome, lengths)), 1)
    known = ~np.isnan(batch.output_tokens)
    np.add.at(counted.token_sums, model[known], batch.output_tokens[known])
    np.add.at(counted.token_counts, model[known], 1)
    rows = np.flatnonzero(plan.sampled[query])
    sample = np.column_stack(
        [np.full(len(rows), part), np.full(len(rows), number), rows, query[rows], model[rows], outcome[rows]]
    ).astype(np.int64)
    return Counted(counted.counts, counted.model_counts, counted.token_sums, counted.token_counts, sample)


def tuning_sample(
    plan: Plan, texts: Sequence[str], counted: Counted, earlier: dict[int, str] | None = None
) -> TuningSample:
    """The tuning sample of a pass: the sampled queries' texts, tags, outcome codes (per model of the
    plan; a model judged several times on one query counts with its last outcome in reading order) and
    earlier conversation turns (``earlier``: by query number, for the queries that have them)."""
    numbers = np.flatnonzero(plan.sampled)
    row = np.full(len(plan.sampled), -1, dtype=np.int64)
    row[numbers] = np.arange(len(numbers))
    sample = counted.sample[np.lexsort(counted.sample[:, 2::-1].T)]  # by part, batch, row
    cell = row[sample[:, 3]] * len(plan.models) + sample[:, 4]
    _, from_end = np.unique(cell[::-1], return_index=True)
    last = len(cell) - 1 - from_end  # each (query, model)'s last record
    codes = np.full(len(numbers) * len(plan.models), -1, dtype=np.intp)
    codes[cell[last]] = sample[last, 5]
    before = [earlier.get(int(i)) for i in numbers] if earlier else None
    return TuningSample(
        [texts[i] for i in numbers],
        plan.tags.lists(numbers),
        codes.reshape(len(numbers), len(plan.models)),
        list(plan.models),
        before if before and any(before) else None,
    )
