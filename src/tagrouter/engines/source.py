"""Where a fit's history comes from: files (streamed) or records already in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tagrouter.engines.stages import OnError
from tagrouter.records import History, HistoryRecord, as_history, history_files

Paths = str | Path | Sequence[str | Path]


@dataclass(frozen=True)
class HistorySource:
    """History files (each a path or a glob pattern, resolved at once; with ``models``, only those
    models' records of them), or a history in memory."""

    files: tuple[Path, ...] = ()
    history: History | None = None
    on_error: OnError = "raise"
    models: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        source: HistorySource | History | Sequence[HistoryRecord] | Paths,
        on_error: OnError = "raise",
        models: frozenset[str] = frozenset(),
    ) -> HistorySource:
        """``source`` as a history source: a :class:`History`, a list of records, or paths and patterns
        (a history source is itself)."""
        if isinstance(source, HistorySource):
            return source
        if isinstance(source, str | Path) or (
            not isinstance(source, History) and len(source) and isinstance(source[0], str | Path)
        ):
            return cls(files=tuple(history_files(source)), on_error=on_error, models=models)
        history = as_history(source)
        return cls(history=history.of_models(models) if models else history)
