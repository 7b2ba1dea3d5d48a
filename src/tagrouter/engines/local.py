"""The local engine: every stage in this process, one batch or block at a time (the default)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

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
from tagrouter.model import Progress
from tagrouter.records import ReadReport
from tagrouter.tagging.base import Tagger
from tagrouter.tagging.embedded import EmbeddedTagger, prototype_sums, student_vocabulary
from tagrouter.tagging.teacher import KeyphraseTeacher


class LocalEngine:
    """Runs the stages of :mod:`tagrouter.engines.stages` in this process, streaming the history's
    batches (files are read twice: once for the distinct queries, once for the table)."""

    name = "local"

    def parts(self, source: HistorySource) -> list[Part]:
        """All files as one part, so that a query id's text is checked across files with row numbers."""
        if source.history is not None:
            return [MemoryPart(source.history)]
        return [FilePart(tuple(source.files), source.on_error, source.models)]

    def survey(self, parts: Sequence[Part], report: ReadReport) -> Survey:
        survey = Survey()
        for index, part in enumerate(parts):
            for batch in part.batches(report):
                survey.add(index, *survey_batch(batch))
        return survey

    def student(
        self, texts: Sequence[str], options: StudentOptions, progress: Progress | None
    ) -> EmbeddedTagger:
        embedder = default_embedder()
        teacher, blocks = KeyphraseTeacher(embedder=embedder), query_blocks(len(texts))
        taught, counts = [], Counter()
        for block in blocks:
            tags, block_counts = teach_block(teacher, texts[block])
            taught.append(tags)
            counts.update(block_counts)
            if progress:
                progress("teacher tagging", min(block.stop, len(texts)), len(texts))
        vocabulary = student_vocabulary(
            counts, embedder, min_count=options.min_count, merge_distance=options.merge_distance
        )
        sums = sum(
            prototype_sums(vocabulary, texts[block], tags, embedder)
            for block, tags in zip(blocks, taught, strict=True)
        )
        return EmbeddedTagger.from_sums(vocabulary, sums, fine=options.fine, embedder=embedder)

    def tag(self, texts: Sequence[str], tagger: Tagger, progress: Progress | None) -> Tags:
        codes = TagCodes()
        for block in query_blocks(len(texts)):
            codes.add(tag_block(tagger, texts[block]))
            if progress:
                progress("tagging queries", min(block.stop, len(texts)), len(texts))
        return codes.finished()

    def count(
        self,
        parts: Sequence[Part],
        positions: dict[int, list[np.ndarray]],
        plan: Plan,
        progress: Progress | None,
    ) -> Counted:
        counted, report = Counted.zero(len(plan.tags.tags), len(plan.models)), ReadReport()
        for index, part in enumerate(parts):
            for number, batch in enumerate(part.batches(report)):
                counted = counted.merged(count_batch(plan, batch, positions[index][number], index, number))
                if progress:
                    progress("counting tags", report.rows_read, report.rows_read)
        return counted
