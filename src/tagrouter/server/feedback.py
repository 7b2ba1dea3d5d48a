"""Durable feedback: a SQLite store (WAL mode) of judged outcomes and of recent requests, and the writer
that applies both in batches.

The store keeps every feedback record (idempotent by feedback id) so that the router can be rebuilt at
start-up, and the most recent requests (request id → routing text, model, the hash of the client key that
made it and the propensity of its choice) so that feedback can cite a request id.

Feedback is untrusted input. Feedback on a request id is accepted only from the key that made the request
(or an admin key): :class:`FeedbackForbiddenError` otherwise. A request takes one verdict: a second one
with another feedback id is a :class:`FeedbackConflictError` unless it says ``correction``, which replaces
the first (the store writes a retraction of the first, weight −w, then the correction). Each stored
feedback carries the weight the learner gave it (:meth:`tagrouter.live.LiveLearner.weigh`, e.g. its
inverse-propensity weight, or 0 when its source is over its bound), so that every replica and every
restart learns the same weights. The routing text is capped (``max_routing_chars``), and the requests kept are bounded both in
number and in bytes of text: the oldest are dropped first.

The :class:`FeedbackWriter` runs all store writes in one background thread, one batch at a time (group
commit): a feedback call returns only after its record is committed. The router learns the new records at
a lower priority: at most once per ``learn_interval_s``, all that arrived meanwhile in one update, so that a
flood of feedback costs the routing of chat requests one update per interval, not one per feedback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tagrouter.errors import DataError
from tagrouter.live import Judged, WeightedOutcome
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
    created_at REAL NOT NULL,
    origin TEXT
);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    query TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""
#: Columns added since the first schema (table, column, SQL type), added to older stores when opened.
ADDED_COLUMNS = (
    ("feedback", "origin", "TEXT"),
    ("feedback", "source", "TEXT"),
    ("feedback", "propensity", "REAL"),
    ("feedback", "weight", "REAL"),
    ("feedback", "superseded", "INTEGER NOT NULL DEFAULT 0"),
    ("requests", "owner", "TEXT"),
    ("requests", "propensity", "REAL"),
)
#: A request to remember: request id, routing text, model, the owner key's hash (or None), propensity.
Remembered = tuple[str, str, str, str | None, float]


@dataclass(frozen=True)
class Feedback:
    """One judged outcome, as sent to ``POST /v1/feedback`` (either ``request_id`` or ``query``), with who
    sent it: ``source`` (the hash of the client key; None without keys), ``admin`` (an admin key may give
    feedback on any request) and whether it is a ``correction`` of the request's earlier verdict."""

    feedback_id: str
    outcome: Literal["win", "tie", "loss"]
    model: str | None = None
    query: str | None = None
    request_id: str | None = None
    source: str | None = None
    admin: bool = False
    correction: bool = False


@dataclass(frozen=True)
class FeedbackResult:
    """What became of a feedback: ``recorded`` (new) or ``duplicate`` (its id was already stored); what
    the learner learns from it (``learned``: outcomes with their weights, a retraction first when it
    corrects an earlier verdict)."""

    status: Literal["recorded", "duplicate"]
    feedback_id: str
    model: str
    query: str
    learned: tuple[WeightedOutcome, ...] = ()


class FeedbackForbiddenError(DataError):
    """Feedback cited a request that another client key made."""


class FeedbackLimitError(DataError):
    """The client key's feedback is over the learner's bound for the current window."""


class UnknownRequestError(DataError):
    """Feedback cited a request id that the gateway does not remember."""


class FeedbackConflictError(DataError):
    """A feedback id was sent again with a different query, model or outcome."""


@dataclass(frozen=True)
class FeedbackSql:
    """The statements that store one feedback, in one database's dialect (SQLite, PostgreSQL)."""

    find_request: str  # (request_id) -> query, model, owner, propensity
    #: (feedback_id, query, model, outcome, request_id, created_at, origin, source, propensity, weight)
    insert: str
    find_stored: str  # (feedback_id) -> query, model, outcome
    find_verdict: str  # (request_id) -> feedback_id, query, model, outcome, weight of its standing verdict
    supersede: str  # (feedback_id): mark a verdict replaced by a correction


SQLITE_SQL = FeedbackSql(
    find_request="SELECT query, model, owner, propensity FROM requests WHERE request_id = ?",
    insert="INSERT INTO feedback (feedback_id, query, model, outcome, request_id, created_at, origin, source, "
    "propensity, weight) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    find_stored="SELECT query, model, outcome FROM feedback WHERE feedback_id = ?",
    find_verdict="SELECT feedback_id, query, model, outcome, weight FROM feedback "
    "WHERE request_id = ? AND superseded = 0 AND COALESCE(weight, 1) >= 0 ORDER BY seq DESC LIMIT 1",
    supersede="UPDATE feedback SET superseded = 1 WHERE feedback_id = ?",
)

Weigh = Callable[[Judged], float]


def store_one(
    db: Any,
    sql: FeedbackSql,
    item: Feedback,
    now: float,
    origin: str,
    remembered: str,
    weigh: Weigh | None = None,
) -> FeedbackResult | DataError:
    """Store one feedback through ``db`` (a DB-API connection): resolve its request id to the query, model
    and propensity (refusing a key that did not make the request), insert it once per feedback id (a retry
    is a ``duplicate``, a reuse of the id with other content a conflict), and keep one verdict per request
    (a ``correction`` replaces it). ``weigh`` gives the weight the learner learns it with (default 1);
    ``remembered`` says which requests the store keeps, for the unknown-request error."""
    query, model, propensity = item.query, item.model, 1.0
    if item.request_id is not None:
        row = db.execute(sql.find_request, (item.request_id,)).fetchone()
        if row is None:
            return UnknownRequestError(
                f"unknown request id {item.request_id!r}: the gateway remembers {remembered}; "
                "send the query text instead",
                field="request_id",
            )
        owner = row[2]
        if owner is not None and not item.admin and item.source != owner:
            return FeedbackForbiddenError(
                f"request {item.request_id!r} was made with another client key: feedback on a request is "
                "accepted only from the key that made it (or an admin key)",
                field="request_id",
            )
        if model is not None and model != row[1]:
            return DataError(
                f"request {item.request_id!r} was answered by {row[1]!r}, not {model!r}; leave out 'model'",
                field="model",
            )
        query, model = row[0], row[1]
        propensity = 1.0 if row[3] is None else float(row[3])
    if query is None or model is None:
        return DataError("feedback needs a request_id, or a query and a model", field="query")
    stored = db.execute(sql.find_stored, (item.feedback_id,)).fetchone()
    if stored is not None:
        if tuple(stored) != (query, model, item.outcome):
            return FeedbackConflictError(
                f"feedback id {item.feedback_id!r} was already stored with another query, model or outcome",
                field="feedback_id",
            )
        return FeedbackResult("duplicate", item.feedback_id, model, query)
    learned: list[WeightedOutcome] = []
    if item.request_id is not None:
        verdict = db.execute(sql.find_verdict, (item.request_id,)).fetchone()
        if verdict is not None:
            if not item.correction:
                return FeedbackConflictError(
                    f"request {item.request_id!r} already has a verdict (feedback id {verdict[0]!r}); "
                    'send "correction": true to replace it',
                    field="request_id",
                )
            old_id, old_query, old_model, old_outcome, old_weight = verdict
            retraction = -(1.0 if old_weight is None else float(old_weight))
            db.execute(sql.supersede, (old_id,))
            db.execute(
                sql.insert,
                (f"{old_id}~retracted", old_query, old_model, old_outcome, item.request_id, now, origin)
                + (item.source, propensity, retraction),
            )
            learned.append((Judged(old_query, old_model, old_outcome), retraction))
    judged = Judged(query, model, item.outcome, propensity, source=item.source)
    weight = 1.0 if weigh is None else weigh(judged)
    if weight == 0:
        return FeedbackLimitError(
            "this client key has reached its bound on learned feedback for now; try again later",
            field="feedback",
        )
    db.execute(
        sql.insert,
        (item.feedback_id, query, model, item.outcome, item.request_id, now, origin, item.source)
        + (propensity, weight),
    )
    learned.append((judged, weight))
    return FeedbackResult("recorded", item.feedback_id, model, query, tuple(learned))


def weighted_rows(
    rows: Sequence[tuple[str, str, str, float | None, float | None]],
) -> list[WeightedOutcome]:
    """Outcomes and weights of feedback rows (query, model, outcome, propensity, weight); rows written
    before weights were stored count once."""
    return [
        (Judged(q, m, o, 1.0 if p is None else float(p)), 1.0 if w is None else float(w))
        for q, m, o, p, w in rows
    ]


class FeedbackStore:
    """SQLite store of feedback and recent requests; use it from one thread at a time (:meth:`changes`
    reads on a connection of its own, so a replica follower may call it from another thread).

    Every feedback row records the ``origin`` (a random id per store object) that wrote it, so that
    gateway processes sharing the file apply each other's feedback, not their own twice
    (:mod:`tagrouter.server.follow`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["normal", "full"] = "normal",
        keep_requests: int = 100_000,
        keep_request_bytes: int = 64_000_000,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.keep_requests = keep_requests
        self.keep_request_bytes = keep_request_bytes
        self.origin = uuid.uuid4().hex
        self._reader: sqlite3.Connection | None = None
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
            for table, column, kind in ADDED_COLUMNS:  # a store written by an earlier version
                if column not in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.DatabaseError as exc:
            raise DataError(f"cannot open the feedback store as SQLite ({exc})", path=self.path) from None
        rows, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(query AS BLOB))), 0) FROM requests"
        ).fetchone()
        #: requests kept and the bytes of their text (counted here, so that pruning needs no scan)
        self.request_rows, self.request_bytes = int(rows), int(size)

    def apply(
        self,
        requests: Sequence[Remembered | tuple[str, str, str]],
        feedback: Sequence[Feedback],
        weigh: Weigh | None = None,
    ) -> list[FeedbackResult | DataError]:
        """In one transaction: remember ``requests`` (request id, query, model, and optionally the owner
        key's hash and the propensity), then store each feedback (``weigh``: see :func:`store_one`).

        Returns, per feedback, its result or the error that rejects it (nothing is stored for those).
        """
        now = time.time()
        results: list[FeedbackResult | DataError] = []
        db = self._db
        rows = [remembered_row(r, now) for r in requests]
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR IGNORE INTO requests (request_id, query, model, owner, propensity, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self.request_rows += len(rows)
            self.request_bytes += sum(len(r[1].encode("utf-8")) for r in rows)
            for item in feedback:
                results.append(self._store_one(item, now, weigh))
            if self.request_rows > self.keep_requests or self.request_bytes > self.keep_request_bytes:
                self._prune()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return results

    def _prune(self) -> None:
        """Drop the oldest requests until at most 90% of both limits is used (so not at every batch)."""
        rows_over = self.request_rows - int(self.keep_requests * 0.9)
        bytes_over = self.request_bytes - int(self.keep_request_bytes * 0.9)
        last, dropped_rows, dropped_bytes = None, 0, 0
        cursor = self._db.execute("SELECT seq, LENGTH(CAST(query AS BLOB)) FROM requests ORDER BY seq")
        for seq, size in cursor:
            if dropped_rows >= rows_over and dropped_bytes >= bytes_over:
                break
            last, dropped_rows, dropped_bytes = seq, dropped_rows + 1, dropped_bytes + size
        cursor.close()
        if last is not None:
            self._db.execute("DELETE FROM requests WHERE seq <= ?", (last,))
        self.request_rows -= dropped_rows
        self.request_bytes -= dropped_bytes

    def _store_one(self, item: Feedback, now: float, weigh: Weigh | None) -> FeedbackResult | DataError:
        remembered = f"the most recent {self.keep_requests} requests (and {self.keep_request_bytes} bytes of their text)"
        return store_one(self._db, SQLITE_SQL, item, now, self.origin, remembered, weigh)

    def records(self) -> list[HistoryRecord]:
        """Every standing verdict (not retracted) as a history record, oldest first."""
        rows = self._db.execute(
            "SELECT query, model, outcome FROM feedback WHERE superseded = 0 AND COALESCE(weight, 1) >= 0 ORDER BY seq"
        ).fetchall()
        return [HistoryRecord(query_id=query_id(q), query=q, model=m, outcome=o) for q, m, o in rows]

    def changes(self, after: int = 0) -> tuple[list[WeightedOutcome], int]:
        """The feedback stored after sequence number ``after`` by other store objects (other replicas),
        oldest first, and the last sequence number read (``changes(0)`` at start: every record)."""
        if self._reader is None:
            self._reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._reader.execute("PRAGMA busy_timeout=5000")
        rows = self._reader.execute(
            "SELECT seq, query, model, outcome, origin, propensity, weight FROM feedback WHERE seq > ? ORDER BY seq",
            (after,),
        ).fetchall()
        return changed_records(rows, self.origin, after)

    def count(self) -> int:
        """Number of stored feedback records."""
        return int(self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def close(self) -> None:
        """Checkpoint the WAL into the database file and close."""
        if self._reader is not None:
            self._reader.close()
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()


def changed_records(
    rows: Sequence[tuple[int, str, str, str, str | None, float | None, float | None]], origin: str, after: int
) -> tuple[list[WeightedOutcome], int]:
    """Weighted outcomes of feedback rows (seq, query, model, outcome, origin, propensity, weight) not
    written by ``origin``, and the last sequence number among ``rows`` (``after`` when there are none)."""
    outcomes = weighted_rows([(q, m, o, p, w) for _, q, m, o, by, p, w in rows if by != origin])
    return outcomes, (rows[-1][0] if rows else after)


def remembered_row(
    request: Remembered | tuple[str, str, str], now: float
) -> tuple[str, str, str, str | None, float, float]:
    """The requests row of a request to remember: (request id, query, model, owner, propensity, time)."""
    rid, query, model, *rest = request
    owner, propensity = (rest[0], rest[1]) if rest else (None, 1.0)
    return rid, query, model, owner, propensity, now


@dataclass
class _Pending:
    requests: list[Remembered]
    feedback: list[tuple[Feedback, asyncio.Future[FeedbackResult]]]


class FeedbackWriter:
    """Applies remembered requests and feedback to the store in batches, and teaches the router the newly
    stored records at most once per ``learn_interval_s``.

    ``learn`` is called (in a worker thread) with the outcomes stored since its last call and their
    weights, and the generation they were committed under; ``weigh`` gives each feedback its weight as it
    is stored (see :func:`store_one`). Each batch is committed within ``section()``, which yields that
    generation (:meth:`tagrouter.server.reload.ServedRouter.storing`; default: always 0): records of an
    older generation than the latest batch's are not learned here (a reload learned them from the store).
    """

    def __init__(
        self,
        store: FeedbackStore,
        learn: Callable[[list[WeightedOutcome], int], object],
        *,
        learn_interval_s: float = 0.5,
        weigh: Weigh | None = None,
        section: Callable[[], AbstractContextManager[int]] = lambda: contextlib.nullcontext(0),
    ) -> None:
        self.store = store
        self._learn = learn
        self._weigh = weigh
        self._section = section
        self.learn_interval_s = learn_interval_s
        self._pending = _Pending([], [])
        self._wakeup = asyncio.Event()  # something is queued
        self._urgent = asyncio.Event()  # feedback (or closing) is queued: apply now
        self._unlearned: list[WeightedOutcome] = []
        self._generation = 0  # of the records in _unlearned
        self._learn_due = asyncio.Event()  # records wait to be learned
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._learner: asyncio.Task[None] | None = None
        #: feedback records in the store (kept here so that health checks never touch the database)
        self.stored = store.count()

    def start(self) -> None:
        """Start the background loops (call from the running event loop)."""
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="tagrouter-feedback-writer")
        self._learner = loop.create_task(self._learn_loop(), name="tagrouter-feedback-learner")

    def remember(
        self, request_id: str, query: str, model: str, owner: str | None = None, propensity: float = 1.0
    ) -> None:
        """Queue a served request so that feedback can cite its id (fire and forget): ``owner`` is the hash
        of the client key that made it, ``propensity`` the probability of its choice."""
        self._pending.requests.append((request_id, query, model, owner, propensity))
        self._wakeup.set()

    async def submit(self, item: Feedback) -> FeedbackResult:
        """Store ``item``; returns once it is committed (the router learns it within ``learn_interval_s``).
        Raises the store's :class:`DataError` when the feedback is rejected."""
        if self._closing:
            raise RuntimeError("the gateway is shutting down")
        future: asyncio.Future[FeedbackResult] = asyncio.get_running_loop().create_future()
        self._pending.feedback.append((item, future))
        self._wakeup.set()
        self._urgent.set()
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Apply everything queued and learn it, then stop and close the store."""
        self._closing = True
        self._wakeup.set()
        self._urgent.set()
        if self._task is not None:
            await self._task
        if self._learner is not None:
            self._learner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._learner
        if self._unlearned:
            await asyncio.to_thread(self._learn_now, self._unlearned, self._generation)
        await asyncio.to_thread(self.store.close)

    def _apply(
        self, requests: list[Remembered], feedback: list[Feedback]
    ) -> tuple[list[FeedbackResult | DataError], int]:
        with self._section() as generation:
            return self.store.apply(requests, feedback, self._weigh), generation

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
                    results, generation = await asyncio.to_thread(
                        self._apply, batch.requests, [item for item, _ in batch.feedback]
                    )
                except Exception as exc:  # the store failed: every feedback of the batch fails with it
                    log.exception("feedback batch failed")
                    results, generation = [exc] * len(batch.feedback), self._generation
                if generation != self._generation:  # a reload read the store: it learned those already
                    self._unlearned, self._generation = [], generation
                for (_, future), result in zip(batch.feedback, results, strict=True):
                    if isinstance(result, FeedbackResult) and result.status == "recorded":
                        self._unlearned.extend(result.learned)
                        self.stored += len(result.learned)
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                if self._unlearned:
                    self._learn_due.set()
            if self._closing and not (self._pending.requests or self._pending.feedback):
                return

    async def _learn_loop(self) -> None:
        while True:
            await self._learn_due.wait()
            await asyncio.sleep(self.learn_interval_s)  # what arrives meanwhile is learned in the same update
            self._learn_due.clear()
            records, self._unlearned = self._unlearned, []
            await asyncio.to_thread(self._learn_now, records, self._generation)

    def _learn_now(self, records: list[WeightedOutcome], generation: int) -> None:
        try:
            self._learn(records, generation)
        except Exception:  # stored durably: the router learns them at the next start
            log.exception("the router could not learn %d stored feedback records", len(records))
