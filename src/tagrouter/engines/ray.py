"""The Ray engine: the stages of :mod:`tagrouter.engines.stages` on Ray Data (extra ``ray``).

Each history file (or each slice of an in-memory history) is one row of a Ray dataset, and so is each
block of distinct queries (:func:`~tagrouter.engines.stages.query_blocks`); tasks read and validate their
part or work on their block, and every stage's result travels back pickled. Results that add up (vocabulary
counts, fixed-point prototype sums, the integer counts of the table) are added on the driver as they arrive:
integer sums, so the order does not matter (merging on the driver measured 2.4 s where a Ray ``groupby``
took 40 s). Results that are put together (distinct queries, tags) are put back in reading or block order
first. The teacher-tagged queries stay in Ray's object store between the counts and the sums. What every
task of a stage needs (the teacher, the vocabulary, the tagger, the count plan) is put in the object store
once and loaded once per worker process; taggers pickle without their embedding table: each worker loads
WordLlama from its installed package, once.

Tasks reserve ``cpus_per_task`` CPUs (fractional: on 2 CPUs, workers reserving whole CPUs deadlocked
Ray Data's operators). ``address`` is a cluster's (``"auto"``: the one ``ray start`` began on this host,
``ray://HOST:10001`` a remote one); without it a local Ray instance is started, or the running one used.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagrouter.embedding import default_embedder
from tagrouter.engines.source import HistorySource
from tagrouter.engines.stages import (
    Counted,
    FilePart,
    MemoryPart,
    Part,
    Plan,
    StudentOptions,
    Survey,
    TagCodes,
    Tags,
    count_batch,
    query_blocks,
    survey_batch,
    tag_block,
    teach_block,
)
from tagrouter.errors import DataError, TagRouterError
from tagrouter.model import Progress
from tagrouter.records import BATCH_ROWS, ReadReport
from tagrouter.tagging.base import Tagger
from tagrouter.tagging.embedded import EmbeddedTagger, prototype_sums, student_vocabulary
from tagrouter.tagging.teacher import KeyphraseTeacher
from tagrouter.tagging.vocabulary import Vocabulary

Batch = dict[str, np.ndarray]


def _ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise DataError("the ray engine needs Ray Data: pip install 'tagrouter[ray]'") from None
    return ray


@dataclass
class RayEngine:
    """Runs the fit's stages on Ray Data (see the module docstring)."""

    address: str | None = None
    cpus_per_task: float = 0.5
    name = "ray"

    def parts(self, source: HistorySource) -> list[Part]:
        """One part per file; an in-memory history in slices of ``BATCH_ROWS`` records."""
        if source.history is None:
            return [FilePart((path,), source.on_error, source.models) for path in source.files]
        history = source.history
        return [MemoryPart(history.sliced(i, i + BATCH_ROWS)) for i in range(0, len(history), BATCH_ROWS)]

    def survey(self, parts: Sequence[Part], report: ReadReport) -> Survey:
        """The distinct queries in order of first appearance: batches are added to the survey in reading
        order (part by part, batch by batch, as the local engine reads them) as soon as every batch
        before them has arrived; only the batches that arrive early wait on the driver."""
        survey, early, batches = Survey(), {}, {}
        part, number = 0, 0  # the next batch in reading order
        rows = [{"index": i, "part": pickle.dumps(p)} for i, p in enumerate(parts)]
        for result in self._map(self._rows(rows), _survey, None):
            if isinstance(result[-1], ReadReport):  # a part's last payload: its number of batches, its report
                batches[result[0]] = result[1]
                _add_report(report, result[2])
            else:
                early[result[0], result[1]] = result[2:]
            while True:
                if (part, number) in early:
                    survey.add(part, *early.pop((part, number)))
                    number += 1
                elif batches.get(part) == number:
                    part, number = part + 1, 0
                else:
                    break
        return survey

    def student(
        self, texts: Sequence[str], options: StudentOptions, progress: Progress | None
    ) -> EmbeddedTagger:
        embedder = default_embedder()
        teacher = KeyphraseTeacher(embedder=embedder)
        tagged = self._stage(self._blocks(texts), _teach, teacher).materialize()
        counts: Counter[str] = Counter()
        for batch in tagged.select_columns(["counts"]).iter_batches(batch_size=None, batch_format="numpy"):
            for raw in batch["counts"]:
                counts.update(pickle.loads(raw))
        if progress:
            progress("teacher tagging", len(texts), len(texts))
        vocabulary = student_vocabulary(
            counts, embedder, min_count=options.min_count, merge_distance=options.merge_distance
        )
        sums = sum(self._map(tagged.select_columns(["queries", "tags"]), _sum_prototypes, vocabulary))
        return EmbeddedTagger.from_sums(vocabulary, sums, fine=options.fine, embedder=embedder)

    def tag(self, texts: Sequence[str], tagger: Tagger, progress: Progress | None) -> Tags:
        """The tags of the distinct queries, block by block, put together in block order."""
        blocks = sorted(self._map(self._blocks(texts), _tag, tagger), key=lambda item: item[0])
        codes = TagCodes()
        for _, block in blocks:
            codes.add(block)
        if progress:
            progress("tagging queries", len(texts), len(texts))
        return codes.finished()

    def count(
        self,
        parts: Sequence[Part],
        positions: dict[int, list[np.ndarray]],
        plan: Plan,
        progress: Progress | None,
    ) -> Counted:
        rows = [{"index": i, "part": pickle.dumps((p, positions.get(i, [])))} for i, p in enumerate(parts)]
        counted, read = Counted.zero(len(plan.tags.tags), len(plan.models)), 0
        for result in self._map(self._rows(rows), _count, plan):
            counted = counted.merged(result)
            read += int(result.model_counts.sum())
            if progress:
                progress("counting tags", read, read)
        return counted

    # ---- running stages ---------------------------------------------------------------------------
    def _start(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)

    def _rows(self, rows: list[dict[str, Any]]) -> Any:
        """A dataset of one block per row."""
        self._start()
        return _ray().data.from_items(rows, override_num_blocks=max(1, len(rows)))

    def _blocks(self, texts: Sequence[str]) -> Any:
        """A dataset of the blocks of distinct queries (:func:`query_blocks`), one row each."""
        return self._rows(
            [{"index": i, "queries": json.dumps(texts[b])} for i, b in enumerate(query_blocks(len(texts)))]
        )

    def _stage(self, dataset: Any, stage: Callable[[Batch, Any], Any], shared: Any) -> Any:
        """``stage(batch, shared)`` on every row of ``dataset``, as Ray tasks; ``shared`` is put in the
        object store once and loaded once per worker process."""
        ref = _ray().put(shared)
        return dataset.map_batches(
            _run, batch_size=1, fn_kwargs={"stage": stage, "shared": [ref]}, num_cpus=self.cpus_per_task
        )

    def _map(self, dataset: Any, stage: Callable[[Batch, Any], Iterator[Any]], shared: Any) -> Iterator[Any]:
        """The results of a stage that yields pickled payloads, as they arrive; a :class:`TagRouterError`
        raised in a worker (a bad row, say) is raised here."""
        for batch in self._stage(dataset, stage, shared).iter_batches(batch_size=None, batch_format="numpy"):
            for payload in batch["payload"]:
                value = pickle.loads(payload)
                if isinstance(value, TagRouterError):
                    raise value
                yield value


_loaded: dict[str, Any] = {}


def _run(batch: Batch, stage: Callable[[Batch, Any], Any], shared: list[Any]) -> Any:
    """A task of a stage: ``stage(batch, the shared value)``; bad input becomes a payload, not a crash."""
    key = shared[0].hex()
    if key not in _loaded:
        _loaded.clear()  # one stage's value at a time per worker process
        _loaded[key] = _ray().get(shared[0])
    try:
        yield from stage(batch, _loaded[key])
    except TagRouterError as exc:
        yield _payload(exc)


def _payload(value: Any) -> Batch:
    return {"payload": np.array([pickle.dumps(value)], dtype=object)}


def _add_report(report: ReadReport, part: ReadReport) -> None:
    report.rows_read += part.rows_read
    report.skipped += part.skipped


def _survey(batch: Batch, _: None) -> Iterator[Batch]:
    """Stage task: validate a part's records; its distinct queries and models per batch (with the
    part's index and the batch's number), then its number of batches and its read report."""
    for index, raw in zip(batch["index"], batch["part"], strict=True):
        report, number = ReadReport(), 0
        for number, records in enumerate(pickle.loads(raw).batches(report), start=1):
            yield _payload((int(index), number - 1, *survey_batch(records)))
        yield _payload((int(index), number, report))


def _count(batch: Batch, plan: Plan) -> Iterator[Batch]:
    """Stage task: a part's counts, one per batch of records."""
    for index, raw in zip(batch["index"], batch["part"], strict=True):
        part, positions = pickle.loads(raw)
        for number, records in enumerate(part.batches(ReadReport())):
            yield _payload(count_batch(plan, records, positions[number], int(index), number))


def _teach(batch: Batch, teacher: Tagger) -> Iterator[Batch]:
    """Stage task: the teacher's tags of a block of queries, and their vocabulary counts."""
    tags, counts = teach_block(teacher, json.loads(batch["queries"][0]))
    yield {
        "queries": batch["queries"],
        "tags": np.array([json.dumps(tags)], dtype=object),
        "counts": np.array([pickle.dumps(counts)], dtype=object),
    }


def _sum_prototypes(batch: Batch, vocabulary: Vocabulary) -> Iterator[Batch]:
    """Stage task: the prototype sums of a block of teacher-tagged queries."""
    texts, tags = json.loads(batch["queries"][0]), json.loads(batch["tags"][0])
    yield _payload(prototype_sums(vocabulary, texts, tags, default_embedder()))


def _tag(batch: Batch, tagger: Tagger) -> Iterator[Batch]:
    """Stage task: the tags of a block of distinct queries, with the block's index."""
    yield _payload((int(batch["index"][0]), tag_block(tagger, json.loads(batch["queries"][0]))))
