"""History records: one judged answer of one model to one query, and readers for JSONL, CSV and Parquet.

A record says how a model's answer to a query was judged against a reference answer: ``win``, ``tie`` or
``loss``. Readers validate every row and fail with the file, row and field at fault; with
``on_error="skip"`` they skip bad rows instead and report how many were skipped and why.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tagrouter.errors import DataError, from_validation_error
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
    #: the conversation's user turns before this query (their text, most recent last), when the query is
    #: a later turn of a conversation (:func:`tagrouter.chat.earlier_text`); None for a first turn
    earlier: str | None = Field(default=None, min_length=1)

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
#: Records per batch of :func:`iter_history`.
BATCH_ROWS = 65_536
#: Rows per Parquet batch read at once.
PARQUET_BATCH = 8192
_OPTIONAL_TEXT = ("reference", "judge", "judge_prompt", "earlier")


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
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    else:
        raise DataError("unknown file type: expected .jsonl, .csv or .parquet (optionally .gz)", path=path)


def _open_text(path: Path):
    if path.suffix == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def read_history(
    paths: str | Path | Sequence[str | Path],
    *,
    on_error: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
) -> list[HistoryRecord]:
    """Read and validate history records from one or more files (or glob patterns) into a list.

    Raises :class:`DataError` naming file, row and field on the first bad row, unless ``on_error="skip"``,
    in which case bad rows are skipped and listed in ``report``. A query id that appears with two
    different query texts is always an error. A model judged several times on one query counts each time.
    For large histories use :func:`iter_history`, which streams columnar batches instead.
    """
    return list(_validated(history_files(paths), on_error, report or ReadReport()))


def iter_history(
    paths: str | Path | Sequence[str | Path],
    *,
    batch_rows: int = BATCH_ROWS,
    on_error: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
) -> Iterator[History]:
    """Stream the records of files (or glob patterns) as :class:`History` batches of up to ``batch_rows``
    records, validated exactly as :func:`read_history` does (same errors, same skipping); only one batch of
    records is held at a time (plus each query id's first text, to check that it names one query)."""
    batch: list[HistoryRecord] = []
    for record in _validated(history_files(paths), on_error, report or ReadReport()):
        batch.append(record)
        if len(batch) == batch_rows:
            yield History.from_records(batch)
            batch = []
    if batch:
        yield History.from_records(batch)


def history_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """The files of ``paths``: each an existing file or a glob pattern (``hist/*.parquet``) matching at
    least one; a missing file or a pattern that matches nothing is a :class:`DataError`."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for raw in map(str, paths):
        if glob.has_magic(raw):
            matched = sorted(Path(p) for p in glob.glob(raw, recursive=True) if Path(p).is_file())
            if not matched:
                raise DataError("no file matches this pattern", path=raw)
            files += matched
        elif Path(raw).is_file():
            files.append(Path(raw))
        else:
            raise DataError("file not found", path=raw)
    return files


def _validated(
    files: Sequence[Path], on_error: Literal["raise", "skip"], report: ReadReport
) -> Iterator[HistoryRecord]:
    """The valid records of ``files``, in order (see :func:`read_history` for what is checked). Each query
    id's text (with its earlier turns) is remembered by its hash (and where it was first seen), not as text."""
    texts: dict[str, tuple[tuple[int, int], Path, int]] = {}
    for path in files:
        for number, raw in _raw_rows(path):
            try:
                record = HistoryRecord.model_validate(raw)
            except ValidationError as exc:
                error = from_validation_error(
                    exc, path=path, row=number, known_fields=HistoryRecord.model_fields
                )
                if on_error == "skip":
                    report.skipped.append(f"{path} row {number}: {error.field}: {error.reason}")
                    continue
                raise error from None
            key = (hash(record.query), hash(record.earlier))
            first = texts.setdefault(record.query_id, (key, path, number))
            if first[0] != key:
                what = "query", "query text"
                if first[0][0] == key[0]:
                    what = "earlier", "earlier turns"
                raise DataError(
                    f"query id {record.query_id!r} has a different {what[1]} than at {first[1]} row {first[2]}",
                    path=path,
                    row=number,
                    field=what[0],
                )
            report.rows_read += 1
            yield record


def write_history(path: str | Path, records: Iterable[HistoryRecord]) -> None:
    """Write records as JSONL, atomically; unset optional fields are left out."""
    lines = [json.dumps(r.model_dump(exclude_none=True), ensure_ascii=False) for r in records]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


@dataclass(frozen=True, eq=False)
class History:
    """Judged records as columns, one entry per record: what :meth:`TagRouter.fit` learns from.

    ``outcome`` holds codes (0 win, 1 tie, 2 loss, the order of :data:`OUTCOMES`); ``output_tokens`` is NaN
    where unknown. ``earlier`` holds each record's earlier conversation turns (None for a first turn), or is
    None when no record has any. Build one from records with :meth:`from_records`, or straight from arrays
    (the benchmark does, for speed). A query id always names one query text.
    """

    query_id: list[str]
    query: list[str]
    model: list[str]
    outcome: np.ndarray
    output_tokens: np.ndarray
    earlier: list[str | None] | None = None

    def __post_init__(self) -> None:
        n = len(self.query_id)
        if not (len(self.query) == len(self.model) == len(self.outcome) == len(self.output_tokens) == n):
            raise DataError("history columns must have one entry per record each")
        if self.earlier is not None and len(self.earlier) != n:
            raise DataError("history columns must have one entry per record each")
        if n and (self.outcome.min() < 0 or self.outcome.max() >= len(OUTCOMES)):
            raise DataError("history outcome codes must be 0 (win), 1 (tie) or 2 (loss)")

    @classmethod
    def from_records(cls, records: Sequence[HistoryRecord]) -> History:
        code = {name: i for i, name in enumerate(OUTCOMES)}
        return cls(
            query_id=[r.query_id for r in records],
            query=[r.query for r in records],
            model=[r.model for r in records],
            outcome=np.fromiter((code[r.outcome] for r in records), dtype=np.int8, count=len(records)),
            output_tokens=np.fromiter(
                (np.nan if r.output_tokens is None else r.output_tokens for r in records),
                dtype=float,
                count=len(records),
            ),
            earlier=[r.earlier for r in records] if any(r.earlier for r in records) else None,
        )

    def __len__(self) -> int:
        return len(self.query_id)

    def of_models(self, models: frozenset[str]) -> History:
        """The records of ``models`` only."""
        return self.taken(np.fromiter((m in models for m in self.model), dtype=bool, count=len(self)))

    def of_queries(self, query_ids: frozenset[str]) -> History:
        """The records of the queries ``query_ids`` only."""
        return self.taken(np.fromiter((q in query_ids for q in self.query_id), dtype=bool, count=len(self)))

    def taken(self, keep: np.ndarray) -> History:
        """The records where the boolean mask ``keep`` is true."""
        index = np.flatnonzero(keep)
        return History(
            [self.query_id[i] for i in index],
            [self.query[i] for i in index],
            [self.model[i] for i in index],
            self.outcome[keep],
            self.output_tokens[keep],
            None if self.earlier is None else [self.earlier[i] for i in index],
        )

    @classmethod
    def concatenated(cls, parts: Sequence[History]) -> History:
        """The records of ``parts``, in order."""
        has_earlier = any(p.earlier is not None for p in parts)
        return cls(
            [q for p in parts for q in p.query_id],
            [q for p in parts for q in p.query],
            [m for p in parts for m in p.model],
            np.concatenate([p.outcome for p in parts] or [np.zeros(0, np.int8)]),
            np.concatenate([p.output_tokens for p in parts] or [np.zeros(0)]),
            [e for p in parts for e in (p.earlier or [None] * len(p))] if has_earlier else None,
        )

    def sliced(self, start: int, stop: int) -> History:
        """Records ``start`` to ``stop`` (exclusive)."""
        return History(
            self.query_id[start:stop],
            self.query[start:stop],
            self.model[start:stop],
            self.outcome[start:stop],
            self.output_tokens[start:stop],
            None if self.earlier is None else self.earlier[start:stop],
        )

    def deduplicated(self) -> tuple[History, int]:
        """The records with one per (query, model): where a model was judged several times on a query,
        its last record counts (the one rule wherever one outcome per query and model is needed:
        evaluation, the tuning sample of a fit); and how many earlier records were dropped."""
        keep = last_judgments(self.query_id, self.model)
        return (self, 0) if keep.all() else (self.taken(keep), int((~keep).sum()))

    def unique_queries(self) -> dict[str, str]:
        """Query id -> text, in order of first appearance; two texts under one id raise :class:`DataError`."""
        texts: dict[str, str] = {}
        for number, (qid, text) in enumerate(zip(self.query_id, self.query, strict=True), start=1):
            if texts.setdefault(qid, text) != text:
                raise DataError(f"query id {qid!r} has two different query texts", row=number, field="query")
        return texts

    def unique_earlier(self) -> dict[str, str]:
        """Query id -> the earlier turns' text, for the queries that have one (empty: no conversations);
        two under one id raise :class:`DataError`."""
        found: dict[str, str] = {}
        for number, (qid, text) in enumerate(zip(self.query_id, self.earlier or (), strict=False), start=1):
            if text and found.setdefault(qid, text) != text:
                raise DataError(
                    f"query id {qid!r} has two different earlier turns", row=number, field="earlier"
                )
        return found


def last_judgments(query_ids: Sequence[str], models: Sequence[str]) -> np.ndarray:
    """Which records count where one outcome per (query, model) is needed: the last of each pair."""
    seen: set[tuple[str, str]] = set()
    keep = np.zeros(len(query_ids), dtype=bool)
    for i in range(len(query_ids) - 1, -1, -1):
        key = (query_ids[i], models[i])
        if key not in seen:
            seen.add(key)
            keep[i] = True
    return keep


def as_history(records: History | Sequence[HistoryRecord]) -> History:
    """``records`` as a :class:`History` (records given as a list are converted)."""
    return records if isinstance(records, History) else History.from_records(records)
