"""The local engine: every stage in this process, one batch at a time (the default)."""

from __future__ import annotations

from collections.abc import Sequence

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
)
from tagrouter.model import Progress
from tagrouter.records import ReadReport
from tagrouter.tagging.base import Tagger
from tagrouter.tagging.embedded import EmbeddedTagger


class LocalEngine:
    """Runs the stages of :mod:`tagrouter.engines.stages` in this process, streaming the history's
    batches (files are read twice: once for the distinct queries, once for the table)."""

    name = "local"

    def parts(self, source: HistorySource) -> list[Part]:
        """All files as one part, so that a query id's text is checked across files with row numbers."""
        if source.history is not None:
            return [MemoryPart(source.history)]
        return [FilePart(tuple(source.files), source.on_error, source.models)]

    def distinct_queries(self, parts: Sequence[Part], report: ReadReport) -> dict[str, str]:
        texts: dict[str, str] = {}
        for part in parts:
            for batch in part.batches(report):
                add_query_texts(texts, query_texts(batch))
        return texts

    def student(
        self, texts: Sequence[str], options: StudentOptions, progress: Progress | None
    ) -> EmbeddedTagger:
        return EmbeddedTagger.fit(
            texts,
            min_count=options.min_count,
            merge_distance=options.merge_distance,
            fine=options.fine,
            progress=progress,
        )

    def count(
        self, parts: Sequence[Part], tagger: Tagger, report: ReadReport, progress: Progress | None
    ) -> Counted:
        counted: Counted | None = None
        for part in parts:
            for batch in part.batches(report):
                partial = partial_table(tagger, batch)
                counted = partial if counted is None else counted.merged(partial)
                if progress:
                    progress("counting tags", report.rows_read, report.rows_read)
        return counted or Counted()
