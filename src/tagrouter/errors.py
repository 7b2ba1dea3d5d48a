"""Errors that TagRouter raises on bad input, each with a message a user can act on."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


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
        self.reason = message
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


def _place(loc: tuple[int | str, ...], data: Any, *, missing: bool) -> list[int | str]:
    """The parts of an error location that are places in ``data`` (a missing field's name is kept)."""
    place, node = [], data
    for number, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            place.append(part)
            node = node[part]
        elif missing and number == len(loc) - 1:
            place.append(part)
    return place


def from_validation_error(
    exc: ValidationError,
    *,
    path: str | Path | None = None,
    row: int | None = None,
    rows_of: str | None = None,
    known_fields: Iterable[str] = (),
    data: Any = None,
    rename: Callable[[str], str] | None = None,
    error: type[DataError] | None = None,
) -> DataError:
    """The one translation of a pydantic ``ValidationError`` into a :class:`DataError` naming the field at
    fault (its first error). ``rows_of``: the name of a list field whose items are the rows of the file
    (e.g. ``models`` of a catalogue), so that ``models.2.name`` reads as row 3, field ``name``;
    ``known_fields`` lists the accepted fields in the message about an unknown one; ``data``, the validated
    input, if given, names the field by its place in it (without the tags pydantic adds to the location of
    a union member, such as ``str`` or ``function-after[...]``); ``rename`` maps that name to the one the
    error gives (e.g. the header a value came from); ``error``: the :class:`DataError` subclass to return."""
    first = exc.errors()[0]
    loc = (
        list(first["loc"]) if data is None else _place(first["loc"], data, missing=first["type"] == "missing")
    )
    if rows_of is not None and len(loc) > 1 and loc[0] == rows_of and isinstance(loc[1], int):
        row, loc = loc[1] + 1, loc[2:]
    kind = first["type"]
    if kind == "missing":
        message = "required field is missing"
    elif kind == "literal_error":
        message = f"expected {first.get('ctx', {}).get('expected', 'another value')}, got {first['input']!r}"
    elif kind == "extra_forbidden":
        known = list(known_fields)
        message = "unknown field" + (f"; expected only {', '.join(known)}" if known else "")
    else:
        message = first["msg"]
    field = ".".join(map(str, loc))
    if rename is not None:
        field = rename(field)
    return (error or DataError)(message, path=path, row=row, field=field or None)


def validated(model: type[M], data: Any) -> M:
    """``data`` validated as ``model``; a :class:`DataError` naming the first bad field by its place in
    ``data`` otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, data=data) from None
