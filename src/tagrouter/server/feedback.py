"""Durable feedback: a SQLite store (WAL mode) of judged outcomes and of recent requests, and the writer
that applies both in batches.

The store keeps every feedback record (idempotent by feedback id) so that the router can be rebuilt at
start-up, and the most recent requests (request id → query, model) so that feedback can cite a request
id. The :class:`FeedbackWriter` runs all store writes and the router updates in one background thread,
one batch at a time (group commit): a feedback call returns only after its record is committed and the
router has learned from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tagrouter.errors import DataError
from tagrouter.records import HistoryRecord, query_id

log = logging.getLogger("tagrouter.server")

#: Requests to remember wait up to this long to be written together (feedback is written at once).
REQUEST_FLUSH_S = 0.05

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    feedback_id TEXT NOT NULL UNIQUE,
    query TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    request_id TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    query TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Feedback:
    """One judged outcome, as sent to ``POST /v1/feedback`` (either ``request_id`` or ``query``)."""

    feedback_id: str
    outcome: Literal["win", "tie", "loss"]
    model: str | None = None
    query: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class FeedbackResult:
    """What became of a feedback: ``recorded`` (new) or ``duplicate`` (its id was already stored)."""

    status: Literal["recorded", "duplicate"]
    feedback_id: str
    model: str
    query: str

    def record(self, outcome: Literal["win", "tie", "loss"]) -> HistoryRecord:
        """The history record this feedback adds (query id = hash of the query text)."""
        return HistoryRecord(
            query_id=query_id(self.query), query=self.query, model=self.model, outcome=outcome
        )


class UnknownRequestError(DataError):
    """Feedback cited a request id that the gateway does not remember."""


class FeedbackConflictError(DataError):
    """A feedback id was sent again with a different query, model or outcome."""


class FeedbackStore:
    """SQLite store of feedback and recent requests; use it from one thread at a time."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["normal", "full"] = "normal",
        keep_requests: int = 100_000,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.keep_requests = keep_requests
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise DataError(
                    f"feedback store schema version {row[0]}, expected {SCHEMA_VERSION}", path=self.path
                )
        except sqlite3.DatabaseError as exc:
            raise DataError(f"cannot open the feedback store as SQLite ({exc})", path=self.path) from None
        self._since_prune = 0

    def apply(
        self, requests: Sequence[tuple[str, str, str]], feedback: Sequence[Feedback]
    ) -> list[FeedbackResult | DataError]:
        """In one transaction: remember ``requests`` (request id, query, model), then store each feedback.

        Returns, per feedback, its result or the error that rejects it (nothing is stored for those).
        """
        now = time.time()
        results: list[FeedbackResult | DataError] = []
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR IGNORE INTO requests (request_id, query, model, created_at) VALUES (?, ?, ?, ?)",
                [(rid, q, m, now) for rid, q, m in requests],
            )
            for item in feedback:
                results.append(self._store_one(item, now))
            self._since_prune += len(requests)
            if self._since_prune >= 1000:
                db.execute(
                    "DELETE FROM requests WHERE seq <= (SELECT MAX(seq) FROM requests) - ?",
                    (self.keep_requests,),
                )
                self._since_prune = 0
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return results

    def _store_one(self, item: Feedback, now: float) -> FeedbackResult | DataError:
        query, model = item.query, item.model
        if item.request_id is not None:
            row = self._db.execute(
                "SELECT query, model FROM requests WHERE request_id = ?", (item.request_id,)
            ).fetchone()
            if row is None:
                return UnknownRequestError(
                    f"unknown request id {item.request_id!r}: the gateway remembers the last "
                    f"{self.keep_requests} requests; send the query text instead",
                    field="request_id",
                )
            query, model = row[0], model or row[1]
        if query is None or model is None:
            return DataError("feedback needs a request_id, or a query and a model", field="query")
        inserted = self._db.execute(
            "INSERT OR IGNORE INTO feedback (feedback_id, query, model, outcome, request_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (item.feedback_id, query, model, item.outcome, item.request_id, now),
        ).rowcount
        if not inserted:
            stored = self._db.execute(
                "SELECT query, model, outcome FROM feedback WHERE feedback_id = ?", (item.feedback_id,)
            ).fetchone()
            if tuple(stored) != (query, model, item.outcome):
                return FeedbackConflictError(
                    f"feedback id {item.feedback_id!r} was already stored with another query, model or outcome",
                    field="feedback_id",
                )
        return FeedbackResult("recorded" if inserted else "duplicate", item.feedback_id, model, query)

    def records(self) -> list[HistoryRecord]:
        """Every stored feedback as a history record, oldest first."""
        rows = self._db.execute("SELECT query, model, outcome FROM feedback ORDER BY seq").fetchall()
        return [HistoryRecord(query_id=query_id(q), query=q, model=m, outcome=o) for q, m, o in rows]

    def count(self) -> int:
        """Number of stored feedback records."""
        return int(self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def close(self) -> None:
        """Checkpoint the WAL into the database file and close."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()


@dataclass
class _Pending:
    requests: list[tuple[str, str, str]]
    feedback: list[tuple[Feedback, asyncio.Future[FeedbackResult]]]


class FeedbackWriter:
    """Applies remembered requests and feedback to the store, and new records to the router, in batches.

    ``learn`` is called (in the writer thread) with the records that a batch newly stored.
    """

    def __init__(self, store: FeedbackStore, learn: Callable[[list[HistoryRecord]], None]) -> None:
        self.store = store
        self._learn = learn
        self._pending = _Pending([], [])
        self._wakeup = asyncio.Event()  # something is queued
        self._urgent = asyncio.Event()  # feedback (or closing) is queued: apply now
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        #: feedback records in the store (kept here so that health checks never touch the database)
        self.stored = store.count()

    def start(self) -> None:
        """Start the background loop (call from the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tagrouter-feedback-writer")

    def remember(self, request_id: str, query: str, model: str) -> None:
        """Queue a served request so that feedback can cite its id (fire and forget)."""
        self._pending.requests.append((request_id, query, model))
        self._wakeup.set()

    async def submit(self, item: Feedback) -> FeedbackResult:
        """Store ``item`` and teach the router; returns once both are done. Raises the store's
        :class:`DataError` when the feedback is rejected."""
        if self._closing:
            raise RuntimeError("the gateway is shutting down")
        future: asyncio.Future[FeedbackResult] = asyncio.get_running_loop().create_future()
        self._pending.feedback.append((item, future))
        self._wakeup.set()
        self._urgent.set()
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Apply everything queued, then stop and close the store."""
        self._closing = True
        self._wakeup.set()
        self._urgent.set()
        if self._task is not None:
            await self._task
        await asyncio.to_thread(self.store.close)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._urgent.is_set():  # only requests to remember: gather more of them first
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), REQUEST_FLUSH_S)
            self._wakeup.clear()
            self._urgent.clear()
            batch, self._pending = self._pending, _Pending([], [])
            if batch.requests or batch.feedback:
                try:
                    results = await asyncio.to_thread(self._apply, batch)
                except Exception as exc:  # the store failed: every feedback of the batch fails with it
                    log.exception("feedback batch failed")
                    results = [exc] * len(batch.feedback)
                for (_, future), result in zip(batch.feedback, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
            if self._closing and not (self._pending.requests or self._pending.feedback):
                return

    def _apply(self, batch: _Pending) -> list[FeedbackResult | DataError]:
        results = self.store.apply(batch.requests, [item for item, _ in batch.feedback])
        new = [
            result.record(item.outcome)
            for (item, _), result in zip(batch.feedback, results, strict=True)
            if isinstance(result, FeedbackResult) and result.status == "recorded"
        ]
        self.stored += len(new)
        if new:
            try:
                self._learn(new)
            except Exception:  # stored durably: the router learns them at the next start
                log.exception("the router could not learn %d stored feedback records", len(new))
        return results
