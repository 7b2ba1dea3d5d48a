"""What every command shares: the stderr console, the progress bar and reading query files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tagrouter.errors import DataError

err = Console(stderr=True)


@contextmanager
def progress_bar() -> Iterator:
    """A rich progress bar on stderr; yields a ``progress(stage, done, total)`` callback."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def read_queries(file: Path) -> list[str]:
    """Queries from a text file (one per line) or JSONL (a 'query' or 'text' field per line); an empty
    file is an error."""
    if not file.is_file():
        raise DataError("query file not found", path=file)
    queries = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if file.suffix in (".jsonl", ".ndjson"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg})", path=file, row=number) from None
            text = obj.get("query", obj.get("text")) if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    "expected a non-empty 'query' (or 'text') string", path=file, row=number, field="query"
                )
            queries.append(text)
        else:
            queries.append(line)
    if not queries:
        raise DataError(
            "no queries in the file (expected one per line, or JSONL with a 'query' field)", path=file
        )
    return queries


def queries_from(query: str | None, file: Path | None) -> list[str]:
    """The one query given as an argument, or the queries of ``--file``."""
    if (query is None) == (file is None):
        raise typer.BadParameter("give one query as an argument, or --file")
    return [query] if query is not None else read_queries(file)
