"""Errors that TagRouter raises on bad input, each with a message a user can act on."""

from __future__ import annotations

from pathlib import Path


class TagRouterError(Exception):
    """Base class of every error TagRouter raises on purpose."""


class DataError(TagRouterError, ValueError):
    """Bad input data: says which file, which row, which field and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.row = row
        self.field = field
        where = []
        if self.path is not None:
            where.append(self.path)
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ArtifactError(TagRouterError):
    """A saved router directory is missing, damaged or of an incompatible version."""
