"""The Ray engine: the stages of :mod:`tagrouter.engines.stages` on Ray Data (extra ``ray``).

Each history file (or each slice of an in-memory history) is one row of a Ray dataset; tasks read and
validate their part, and every stage's partial result (distinct queries, vocabulary counts, prototype sums,
partial tag tables) travels back pickled and is added up on the driver as it arrives (merging partial
tables on the driver measured 2.4 s where a Ray ``groupby`` took 40 s). The teacher-tagged queries stay in
Ray's object store between the counts and the sums. What every task of a stage needs (the teacher, the
vocabulary, the student) is put in the object store once and loaded once per worker process; taggers pickle
without their embedding table: each worker loads WordLlama from its installed package, once.

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
    StudentOptions,
    add_query_texts,
    partial_table,
    query_texts,
    teacher_tags,
)
from tagrouter.errors import DataError, TagRouterError
from tagrouter.model import Progress
from tagrouter.records import BATCH_ROWS, ReadReport
from tagrouter.tagging.base import Tagger
from tagrouter.tagging.embedded import EmbeddedTagger, prototype_sums, student_vocabulary
from tagrouter.tagging.teacher import KeyphraseTeacher
from tagrouter.tagging.vocabulary import Vocabulary, tag_counts

#: Distinct queries per block of the query dataset, and per teacher call.
QUERY_BLOCK = 2048
TEACHER_BATCH = 256

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

    def distinct_queries(self, parts: Sequence[Part], report: ReadReport) -> dict[str, str]:
        """The distinct queries in order of first appearance (parts and their batches are put back in
        order on the driver, as the local engine reads them)."""
        found: list[tuple[int, int, dict[str, str]]] = []
        for result in self._map(self._parts(parts), _read_queries, None):
            if isinstance(result, ReadReport):
                _add_report(report, result)
            else:
                found.append(result)
        texts: dict[str, str] = {}
        for _, _, part in sorted(found, key=lambda item: item[:2]):
            add_query_texts(texts, part)
        return texts

    def student(
        self, texts: Sequence[str], options: StudentOptions, progress: Progress | None
    ) -> EmbeddedTagger:
        ray, embedder = _ray(), default_embedder()
        self._start()
        blocks = [json.dumps(list(texts[i : i + QUERY_BLOCK])) for i in range(0, len(texts), QUERY_BLOCK)]
        queries = ray.data.from_items([{"queries": b} for b in blocks], override_num_blocks=len(blocks))
        teacher = KeyphraseTeacher(embedder=embedder)
        tagged = self._stage(queries, _teach, teacher).materialize()
        counts: Counter[str] = Counter()
        for batch in tagged.select_columns(["counts"]).iter_batches(batch_size=None, batch_format="numpy"):
            for raw in batch["counts"]:
                counts.update(pickle.loads(raw))
        if progress:
            progress("teacher tagging", len(texts), len(texts))
        vocabulary = student_vocabulary(
            counts, embedder, min_count=options.min_count, merge_distance=options.merge_distance
        )
        sums = np.zeros((len(vocabulary), embedder.dim))
        for part in self._map(tagged.select_columns(["queries", "tags"]), _sum_prototypes, vocabulary):
            sums += part
        return EmbeddedTagger.from_sums(vocabulary, sums, fine=options.fine, embedder=embedder)

    def count(
        self, parts: Sequence[Part], tagger: Tagger, report: ReadReport, progress: Progress | None
    ) -> Counted:
        counted: Counted | None = None
        for result in self._map(self._parts(parts), _count_table, tagger):
            if isinstance(result, ReadReport):
                _add_report(report, result)
                if progress:
                    progress("counting tags", report.rows_read, report.rows_read)
            else:
                counted = result if counted is None else counted.merged(result)
        return counted or Counted()

    # ---- running stages ---------------------------------------------------------------------------
    def _start(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)

    def _parts(self, parts: Sequence[Part]) -> Any:
        """A dataset of one row (and block) per part."""
        self._start()
        return _ray().data.from_items(
            [{"index": i, "part": pickle.dumps(p)} for i, p in enumerate(parts)],
            override_num_blocks=max(1, len(parts)),
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


def _read_queries(batch: Batch, _: None) -> Iterator[Batch]:
    """Stage task: validate a part's records; its distinct queries per batch (with the part's index and
    the batch's number), then its read report."""
    for index, raw in zip(batch["index"], batch["part"], strict=True):
        report = ReadReport()
        for number, records in enumerate(pickle.loads(raw).batches(report)):
            yield _payload((int(index), number, query_texts(records)))
        yield _payload(report)


def _count_table(batch: Batch, tagger: Tagger) -> Iterator[Batch]:
    """Stage task: a part's partial tag tables (one per batch of records), then its read report."""
    for raw in batch["part"]:
        report = ReadReport()
        for records in pickle.loads(raw).batches(report):
            yield _payload(partial_table(tagger, records))
        yield _payload(report)


def _teach(batch: Batch, teacher: Tagger) -> Iterator[Batch]:
    """Stage task: the teacher's tags of a block of queries, and their vocabulary counts."""
    texts = json.loads(batch["queries"][0])
    tags = [
        t
        for i in range(0, len(texts), TEACHER_BATCH)
        for t in teacher_tags(teacher, texts[i : i + TEACHER_BATCH])
    ]
    yield {
        "queries": batch["queries"],
        "tags": np.array([json.dumps(tags)], dtype=object),
        "counts": np.array([pickle.dumps(tag_counts(tags))], dtype=object),
    }


def _sum_prototypes(batch: Batch, vocabulary: Vocabulary) -> Iterator[Batch]:
    """Stage task: the prototype sums of a block of teacher-tagged queries."""
    texts, tags = json.loads(batch["queries"][0]), json.loads(batch["tags"][0])
    yield _payload(prototype_sums(vocabulary, texts, tags, default_embedder()))
