"""The ``tagrouter vocab`` commands: tag vocabularies from a teacher (an LLM backend or the offline one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tagrouter.cli.common import err, progress_bar


def vocab_build(
    history: Annotated[list[Path], typer.Argument(help="History files (.jsonl, .csv, .parquet).")],
    out: Annotated[Path, typer.Option(help="Folder to write the vocabulary (and student) into.")],
    teacher: Annotated[
        str,
        typer.Option(
            help="Teacher spec: 'keyphrase' (offline), 'transformers:PATH_OR_ID[?...]' or 'openai:MODEL@URL[?...]'."
        ),
    ] = "keyphrase",
    cache: Annotated[
        Path | None, typer.Option(help="Teacher tag cache (JSONL; default OUT/teacher_tags.jsonl).")
    ] = None,
    min_count: Annotated[int, typer.Option(help="Drop tags seen in fewer queries than this.")] = 5,
    merge_distance: Annotated[
        float, typer.Option(help="Merge tags whose embeddings are within this cosine distance.")
    ] = 0.1,
    student: Annotated[
        bool, typer.Option(help="Also distil the tags into an embedded student tagger (OUT/student).")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Queries per teacher call (and per cache write).")] = 64,
    skip_bad_rows: Annotated[
        bool, typer.Option(help="Skip invalid history rows (and report them) instead of stopping.")
    ] = False,
) -> None:
    """Tag the history's queries with a teacher (cached: a rerun makes no teacher call), normalise and merge
    the tags into a vocabulary, and optionally distil an embedded student."""
    from tagrouter.records import ReadReport, read_history
    from tagrouter.tagging.teaching import build_from_teacher

    report = ReadReport()
    records = read_history(history, on_error="skip" if skip_bad_rows else "raise", report=report)
    err.print(report.summary())
    queries = list({r.query_id: r.query for r in records}.values())
    with progress_bar() as progress:
        result = build_from_teacher(
            queries,
            teacher,
            out,
            cache=cache,
            min_count=min_count,
            merge_distance=merge_distance,
            student=student,
            batch_size=batch_size,
            progress=progress,
        )
    typer.echo(
        f"{result.queries} queries: {result.teacher_calls} tagged by the teacher, {result.cache_hits} from "
        f"the cache; {result.distinct_tags} distinct tags -> vocabulary of {len(result.vocabulary)} "
        f"saved to {out}"
        + (f"; {result.untagged_queries} queries got no tag" if result.untagged_queries else "")
    )
    typer.echo(
        "top tags: "
        + ", ".join(
            f"{t} ({n})"
            for t, n in zip(result.vocabulary.tags[:10], result.vocabulary.counts[:10], strict=False)
        )
    )
    if result.student_dir:
        typer.echo(
            f"student tagger saved to {result.student_dir}: fit with --tagger embedded:{result.student_dir}"
        )
