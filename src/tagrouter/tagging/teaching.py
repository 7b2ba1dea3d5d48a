"""A vocabulary from a teacher: tag the history's queries with any teacher (cached on disk), normalise and
merge the tags into a vocabulary, and optionally distil them into the embedded student tagger.

Output folder::

    OUT/
      vocabulary.json, tag_embeddings.npy   the vocabulary (``transformers:...?vocabulary=OUT`` aligns to it)
      teacher_tags.jsonl                    the teacher cache (default place), one line per query
      build.json                            what was built, from what
      student/                              with ``student=True``: the distilled embedded tagger
                                            (``--tagger embedded:OUT/student``)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tagrouter.embedding import Embedder, default_embedder
from tagrouter.errors import DataError
from tagrouter.fileio import atomic_write_json
from tagrouter.tagging.backends.cache import CachedTagger
from tagrouter.tagging.normalize import normalize_tag
from tagrouter.tagging.registry import parse_tagger, save_tagger_folder, teacher_from_spec
from tagrouter.tagging.vocabulary import Vocabulary, build_vocabulary

Progress = Callable[[str, int, int], None]
CACHE_FILE = "teacher_tags.jsonl"


@dataclass
class TeacherBuild:
    """The result of :func:`build_from_teacher`."""

    vocabulary: Vocabulary
    queries: int
    teacher_calls: int
    cache_hits: int
    distinct_tags: int
    untagged_queries: int
    student_dir: Path | None


def build_from_teacher(
    queries: Sequence[str],
    teacher_spec: str,
    out: Path,
    *,
    cache: Path | None = None,
    min_count: int = 5,
    merge_distance: float = 0.1,
    student: bool = False,
    batch_size: int = 64,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
) -> TeacherBuild:
    """Build ``out`` (see the module docstring) from ``teacher_spec``'s tags of ``queries``.

    The vocabulary is :func:`build_vocabulary` of the teacher's tags: normalised, tags seen in fewer than
    ``min_count`` queries dropped, near-duplicates within cosine distance ``merge_distance`` merged.
    """
    embedder = embedder or default_embedder()
    queries = list(dict.fromkeys(queries))
    namespace = parse_tagger(teacher_spec).identity()
    teacher = CachedTagger(
        teacher_from_spec(teacher_spec, embedder=embedder), cache or out / CACHE_FILE, namespace
    )
    tags: list[list[str]] = []
    for start in range(0, len(queries), batch_size):
        tags += teacher.tag(queries[start : start + batch_size])
        if progress:
            progress("teacher tagging", min(start + batch_size, len(queries)), len(queries))
    try:
        vocabulary = build_vocabulary(tags, embedder, min_count=min_count, merge_distance=merge_distance)
    except ValueError as exc:
        raise DataError(f"teacher {namespace} on {len(queries)} queries: {exc}", field="min_count") from None
    vocabulary.save(out)
    student_dir = None
    if student:
        from tagrouter.tagging.embedded import EmbeddedTagger

        student_dir = out / "student"
        tagger = EmbeddedTagger.from_teacher_tags(
            queries, tags, embedder=embedder, min_count=min_count, merge_distance=merge_distance
        )
        save_tagger_folder(tagger, student_dir)
    result = TeacherBuild(
        vocabulary=vocabulary,
        queries=len(queries),
        teacher_calls=teacher.calls,
        cache_hits=teacher.hits,
        distinct_tags=len({t for ts in tags for t in map(normalize_tag, ts) if t}),
        untagged_queries=sum(not ts for ts in tags),
        student_dir=student_dir,
    )
    atomic_write_json(
        out / "build.json",
        {
            "teacher": namespace,
            "queries": result.queries,
            "distinct_tags": result.distinct_tags,
            "untagged_queries": result.untagged_queries,
            "vocabulary_size": len(vocabulary),
            "min_count": min_count,
            "merge_distance": merge_distance,
            "embedder": getattr(embedder, "name", "unknown"),
            "student": str(student_dir) if student_dir else None,
            "top_tags": dict(zip(vocabulary.tags[:20], vocabulary.counts[:20], strict=True)),
        },
    )
    return result


__all__ = ["CACHE_FILE", "TeacherBuild", "build_from_teacher"]
