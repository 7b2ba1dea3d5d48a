"""Feedback stores: the interface the gateway writes and follows through, SQLite (one host, the default)
or PostgreSQL (replicas on many hosts; extra ``postgres``), and the choice between them.

``feedback_db: state/feedback.sqlite3`` opens the SQLite store (:class:`~tagrouter.server.feedback.FeedbackStore`);
``feedback_db: postgresql://user:password@host:5432/db`` opens :class:`PostgresFeedbackStore`. Every
gateway process pointed at one store applies the feedback the others stored (see
:mod:`tagrouter.server.follow`).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tagrouter.errors import DataError
from tagrouter.live import WeightedOutcome
from tagrouter.server.config import GatewayConfig
from tagrouter.server.feedback import (
    Feedback,
    FeedbackResult,
    FeedbackSql,
    FeedbackStore,
    Remembered,
    Weigh,
    changed_records,
    remembered_row,
    store_one,
)

#: Key of the PostgreSQL advisory lock that orders writers (so that sequence numbers commit in order).
_WRITE_LOCK = 0x7461_6772  # 'tagr'
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tagrouter_feedback (
    seq BIGSERIAL PRIMARY KEY,
    feedback_id TEXT NOT NULL UNIQUE,
    query TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    request_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    origin TEXT
);
CREATE TABLE IF NOT EXISTS tagrouter_requests (
    seq BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    query TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
ALTER TABLE tagrouter_feedback ADD COLUMN IF NOT EXISTS source TEXT;
ALTER TABLE tagrouter_feedback ADD COLUMN IF NOT EXISTS propensity DOUBLE PRECISION;
ALTER TABLE tagrouter_feedback ADD COLUMN IF NOT EXISTS weight DOUBLE PRECISION;
ALTER TABLE tagrouter_feedback ADD COLUMN IF NOT EXISTS superseded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tagrouter_requests ADD COLUMN IF NOT EXISTS owner TEXT;
ALTER TABLE tagrouter_requests ADD COLUMN IF NOT EXISTS propensity DOUBLE PRECISION;
"""


class FeedbackBackend(Protocol):
    """What the gateway needs of a feedback store (the writer thread calls :meth:`apply`; a follower
    may call :meth:`changes` from another thread)."""

    origin: str

    def apply(
        self, requests: Sequence[Remembered], feedback: Sequence[Feedback], weigh: Weigh | None = None
    ) -> list[FeedbackResult | DataError]: ...

    def changes(self, after: int = 0) -> tuple[list[WeightedOutcome], int]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def is_database_url(value: str) -> bool:
    """Whether a ``feedback_db`` setting names a PostgreSQL server rather than a SQLite file."""
    return value.startswith(("postgresql://", "postgres://"))


def store_name(feedback_db: Path | str) -> str:
    """A feedback store's name for logs: a database URL without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", str(feedback_db))


def open_feedback_store(config: GatewayConfig) -> FeedbackBackend:
    """The store ``config.feedback_db`` names."""
    if isinstance(config.feedback_db, str) and is_database_url(config.feedback_db):
        return PostgresFeedbackStore(config.feedback_db, keep_requests=config.remember_requests)
    return FeedbackStore(
        config.feedback_db,
        synchronous=config.feedback_synchronous,
        keep_requests=config.remember_requests,
        keep_request_bytes=config.remember_requests_bytes,
    )


POSTGRES_SQL = FeedbackSql(
    find_request="SELECT query, model, owner, propensity FROM tagrouter_requests WHERE request_id = %s",
    insert="INSERT INTO tagrouter_feedback (feedback_id, query, model, outcome, request_id, created_at, origin, "
    "source, propensity, weight) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
    find_stored="SELECT query, model, outcome FROM tagrouter_feedback WHERE feedback_id = %s",
    find_verdict="SELECT feedback_id, query, model, outcome, weight FROM tagrouter_feedback "
    "WHERE request_id = %s AND superseded = 0 AND COALESCE(weight, 1) >= 0 ORDER BY seq DESC LIMIT 1",
    supersede="UPDATE tagrouter_feedback SET superseded = 1 WHERE feedback_id = %s",
)


class PostgresFeedbackStore:
    """The feedback store in PostgreSQL (psycopg 3), shared by gateway replicas on many hosts.

    Same contract as the SQLite store: feedback is idempotent by feedback id, requests are remembered
    (the newest ``keep_requests``) so that feedback can cite their id. Writers take one advisory lock
    per transaction, so sequence numbers become visible in order and a follower reading ``seq > last``
    never skips a row committed late.
    """

    def __init__(self, url: str, *, keep_requests: int = 100_000) -> None:
        try:
            import psycopg
        except ImportError:
            raise DataError(
                "a PostgreSQL feedback store needs psycopg: pip install 'tagrouter[postgres]'",
                field="feedback_db",
            ) from None
        self.keep_requests = keep_requests
        self.origin = uuid.uuid4().hex
        self._since_prune = 0
        try:
            self._db = psycopg.connect(url, autocommit=True)
            self._reader = psycopg.connect(url, autocommit=True)
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                self._db.execute(_SCHEMA)
        except psycopg.Error as exc:
            raise DataError(
                f"cannot open the PostgreSQL feedback store ({exc})", field="feedback_db"
            ) from None

    def apply(
        self, requests: Sequence[Remembered], feedback: Sequence[Feedback], weigh: Weigh | None = None
    ) -> list[FeedbackResult | DataError]:
        """In one transaction: remember ``requests`` (see :meth:`FeedbackStore.apply`), then store each
        feedback."""
        now = time.time()
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            with self._db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO tagrouter_requests (request_id, query, model, owner, propensity, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [remembered_row(r, now) for r in requests],
                )
            results = [self._store_one(item, now, weigh) for item in feedback]
            self._since_prune += len(requests)
            if self._since_prune >= 1000:
                self._db.execute(
                    "DELETE FROM tagrouter_requests WHERE seq <= (SELECT MAX(seq) FROM tagrouter_requests) - %s",
                    (self.keep_requests,),
                )
                self._since_prune = 0
        return results

    def _store_one(self, item: Feedback, now: float, weigh: Weigh | None) -> FeedbackResult | DataError:
        return store_one(
            self._db, POSTGRES_SQL, item, now, self.origin, f"the last {self.keep_requests} requests", weigh
        )

    def changes(self, after: int = 0) -> tuple[list[WeightedOutcome], int]:
        """Feedback stored after ``after`` by other replicas (with its weights), and the last sequence
        number read."""
        rows = self._reader.execute(
            "SELECT seq, query, model, outcome, origin, propensity, weight FROM tagrouter_feedback "
            "WHERE seq > %s ORDER BY seq",
            (after,),
        ).fetchall()
        return changed_records(rows, self.origin, after)

    def count(self) -> int:
        return int(self._reader.execute("SELECT COUNT(*) FROM tagrouter_feedback").fetchone()[0])

    def close(self) -> None:
        self._reader.close()
        self._db.close()
