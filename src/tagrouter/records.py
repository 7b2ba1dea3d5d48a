"""History records: one judged answer of one model to one query, and readers for JSONL, CSV and Parquet.

A record says how a model's answer to a query was judged against a reference answer: ``win``, ``tie`` or
``loss``. Readers validate every row and fail with the file, row and field at fault; with
``on_error="skip"`` they skip bad rows instead and report how many were skipped and why.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tagrouter.errors import DataError
from tagrouter.fileio import atomic_write_text

Outcome = Literal["win", "tie", "loss"]
OUTCOMES: tuple[str, ...] = ("win", "tie", "loss")


class HistoryRecord(BaseModel):
    """One judged answer: ``model`` answered query ``query_id`` and was judged ``outcome`` vs ``reference``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query_id: str = Field(min_length=1)
    query: str = Field(min_length=1)
    model: str = Field(min_length=1)
    outcome: Outcome
    reference: str | None = None
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    cost: float | None = Field(default=None, ge=0)
    #: who judged the outcome: the judge model and the version of its prompt (``tagrouter collect``)
    judge: str | None = None
    judge_prompt: str | None = None

    @field_validator("query_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("outcome", mode="before")
    @classmethod
    def _outcome_lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def accepted(self) -> bool:
        """An answer is acceptable when it wins or ties against the reference."""
        return self.outcome != "loss"


@dataclass
class ReadReport:
    """What a reader did: rows read, rows skipped and the reason for each skipped row."""

    rows_read: int = 0
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        reasons = Counter(reason.split(": ", 1)[-1] for reason in self.skipped)
        text = f"{self.rows_read} records read, {len(self.skipped)} rows skipped"
        if reasons:
            text += " (" + "; ".join(f"{n}× {r}" for r, n in reasons.most_common(5)) + ")"
        return text


_OPTIONAL_NUMERIC = ("input_tokens", "output_tokens", "cost")
_OPTIONAL_TEXT = ("reference", "judge", "judge_prompt")


def query_id(query: str) -> str:
    """The query id of a query text: a hash of the text, so that equal texts share an id."""
    return "q-" + hashlib.sha256(query.encode("utf-8")).hexdigest()[:20]


def _raw_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (row number, raw mapping) from a JSONL, CSV or Parquet file; row numbers count from 1."""
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix in (".jsonl", ".jsonl.gz", ".ndjson"):
        opener = _open_text(path)
        with opener as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"not valid JSON ({exc.msg} at column {exc.colno})", path=path, row=number
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError("expected a JSON object per line", path=path, row=number)
                yield number, obj
    elif suffix in (".csv", ".csv.gz"):
        with _open_text(path) as handle:
            reader = csv.DictReader(handle)
            for number, row in enumerate(reader, start=2):  # row 1 is the header
                if None in row:
                    raise DataError("more cells than header columns", path=path, row=number)
                yield (
                    number,
                    {
                        k: (None if v == "" and k in _OPTIONAL_NUMERIC + _OPTIONAL_TEXT else v)
                        for k, v in row.items()
                    },
                )
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(
                "reading Parquet needs pyarrow: pip install 'tagrouter[parquet]'", path=path
            ) from None
        for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield number, row
    else:
        raise DataError("unknown file type: expected .jsonl, .csv or .parquet (optionally .gz)", path=path)


def _open_text(path: Path):
    if path.suffix == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _validation_message(exc: ValidationError) -> tuple[str | None, str]:
    first = exc.errors()[0]
    field_name = ".".join(str(p) for p in first["loc"]) or None
    expected = first["msg"]
    if first["type"] == "literal_error":
        expected = f"expected one of {', '.join(OUTCOMES)}, got {first['input']!r}"
    elif first["type"] == "missing":
        expected = "required field is missing"
    elif first["type"] == "extra_forbidden":
        expected = f"unknown field; expected only {', '.join(HistoryRecord.model_fields)}"
    return field_name, expected


def read_history(
    paths: str | Path | Sequence[str | Path],
    *,
    on_error: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
) -> list[HistoryRecord]:
    """Read and validate history records from one or more files.

    Raises :class:`DataError` naming file, row and field on the first bad row, unless ``on_error="skip"``,
    in which case bad rows are skipped and listed in ``report``. A query id that appears with two
    different query texts is always an error. A model judged several times on one query counts each time.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    report = report if report is not None else ReadReport()
    records: list[HistoryRecord] = []
    texts: dict[str, tuple[str, str]] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError("file not found", path=path)
        for number, raw in _raw_rows(path):
            try:
                record = HistoryRecord.model_validate(raw)
            except ValidationError as exc:
                field_name, expected = _validation_message(exc)
                if on_error == "skip":
                    report.skipped.append(f"{path} row {number}: {field_name}: {expected}")
                    continue
                raise DataError(expected, path=path, row=number, field=field_name) from None
            where = f"{path} row {number}"
            earlier = texts.setdefault(record.query_id, (record.query, where))
            if earlier[0] != record.query:
                raise DataError(
                    f"query id {record.query_id!r} has a different query text than at {earlier[1]}",
                    path=path,
                    row=number,
                    field="query",
                )
            records.append(record)
            report.rows_read += 1
    return records


def write_history(path: str | Path, records: Iterable[HistoryRecord]) -> None:
    """Write records as JSONL, atomically; unset optional fields are left out."""
    lines = [json.dumps(r.model_dump(exclude_none=True), ensure_ascii=False) for r in records]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
