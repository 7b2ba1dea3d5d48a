"""The feedback store (SQLite, WAL), the batching writer, and copy-on-write profile updates."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from server_support import CODE, GREETING_QUERY, GREETINGS, fit_router

from tagrouter import HistoryRecord
from tagrouter.errors import DataError
from tagrouter.live import Judged
from tagrouter.server.config import GatewayConfig
from tagrouter.server.feedback import (
    Feedback,
    FeedbackConflictError,
    FeedbackStore,
    FeedbackWriter,
    UnknownRequestError,
    query_id,
)
from tagrouter.server.profiles import ProfileSet


@pytest.fixture(scope="module")
def router():
    return fit_router()


def test_store_is_idempotent_by_feedback_id_and_persists(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    first = store.apply(
        [("req-1", "hello there", "cheap")],
        [Feedback("f1", "win", request_id="req-1"), Feedback("f2", "loss", model="mid", query="write code")],
    )
    assert [r.status for r in first] == ["recorded", "recorded"]
    assert first[0].model == "cheap" and first[0].query == "hello there"
    again = store.apply(
        [], [Feedback("f1", "win", request_id="req-1"), Feedback("f1", "loss", request_id="req-1")]
    )
    assert again[0].status == "duplicate" and isinstance(again[1], FeedbackConflictError)
    unknown = store.apply([], [Feedback("f3", "win", request_id="req-404")])
    assert isinstance(unknown[0], UnknownRequestError) and unknown[0].field == "request_id"
    store.close()

    reopened = FeedbackStore(tmp_path / "fb.sqlite3")
    assert reopened.count() == 2
    assert reopened.records() == [
        HistoryRecord(query_id=query_id("hello there"), query="hello there", model="cheap", outcome="win"),
        HistoryRecord(query_id=query_id("write code"), query="write code", model="mid", outcome="loss"),
    ]
    with sqlite3.connect(tmp_path / "fb.sqlite3") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_store_remembers_a_bounded_number_of_requests(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite3", keep_requests=5)
    store.apply([(f"r{i}", f"q{i}", "mid") for i in range(1200)], [])
    old, recent = store.apply(
        [], [Feedback("a", "win", request_id="r0"), Feedback("b", "win", request_id="r1199")]
    )
    assert isinstance(old, UnknownRequestError) and recent.status == "recorded" and recent.query == "q1199"
    store.close()


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "fb.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DataError, match="SQLite") as caught:
        FeedbackStore(path)
    assert str(path) in str(caught.value)


def test_writer_batches_concurrent_feedback_and_drains_on_close(tmp_path: Path) -> None:
    learned: list[list[HistoryRecord]] = []

    async def scenario() -> list:
        writer = FeedbackWriter(
            FeedbackStore(tmp_path / "fb.sqlite3"), lambda records, _: learned.append(records)
        )
        writer.start()
        writer.remember("req-1", "hello", "cheap")
        results = await asyncio.gather(
            *(writer.submit(Feedback(f"f{i}", "win", model="mid", query=f"q{i % 7}")) for i in range(50)),
            writer.submit(Feedback("f0", "win", model="mid", query="q0")),
            writer.submit(Feedback("r", "loss", request_id="req-1")),
        )
        late = asyncio.ensure_future(writer.submit(Feedback("late", "tie", model="dear", query="q-late")))
        await asyncio.sleep(0)  # queued, not yet applied
        await writer.close()
        return [*results, await late]

    results = asyncio.run(scenario())
    assert [r.status for r in results].count("recorded") == 52 and results[50].status == "duplicate"
    assert (
        sum(len(batch) for batch in learned) == 52 and len(learned) <= 2
    )  # learned at once, every record once
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    assert store.count() == 52
    store.close()


def test_profile_updates_are_copy_on_write_and_change_routing(router) -> None:
    profiles = ProfileSet(router, GatewayConfig())
    before = profiles.router("tagrouter")
    counts = before.table.counts.copy()
    assert profiles.route("tagrouter", [GREETING_QUERY])[0].model == "cheap"
    profiles.update([(Judged(q, "cheap", "loss"), 1.0) for q in GREETINGS * 2])
    assert np.array_equal(before.table.counts, counts)  # requests in flight keep a consistent old table
    assert profiles.model is not before.model
    assert profiles.route("tagrouter", [GREETING_QUERY])[0].model == "mid"


def test_profiles_calibrate_budgets_and_reject_bad_settings(router, tmp_path: Path) -> None:
    from tagrouter import write_history

    history = tmp_path / "h.jsonl"
    write_history(
        history,
        [
            HistoryRecord(query_id=str(i), query=q, model="mid", outcome="win")
            for i, q in enumerate(CODE + GREETINGS)
        ],
    )
    config = GatewayConfig.model_validate(
        {
            "profiles": {
                "tagrouter": {},
                "thrifty": {"budget": {"history": [history], "mean_cost_usd": 2.5e-5}},
            }
        }
    )
    profiles = ProfileSet(router, config)
    cheap_cost = profiles.route("tagrouter", [CODE[0]])[0].expected_costs["cheap"]
    assert cheap_cost < 2.5e-5 < profiles.route("tagrouter", [CODE[0]])[0].expected_costs["mid"]
    # a budget just above the cheap model's cost sends even code to it (θ = 0.3 sends code to 'mid')
    assert {d.model for d in profiles.route("thrifty", CODE + GREETINGS)} == {"cheap"}
    assert profiles["thrifty"].decider.knob > 0.3 and profiles["thrifty"].reference_model == "dear"
    with pytest.raises(DataError, match="catalogue model names"):
        ProfileSet(router, GatewayConfig.model_validate({"profiles": {"tagrouter": {}, "mid": {}}}))
    with pytest.raises(DataError, match="two models") as caught:
        ProfileSet(router, GatewayConfig.model_validate({"profiles": {"tagrouter": {"rule": "gap"}}}))
    assert caught.value.field == "profiles.tagrouter.rule"
    with pytest.raises(DataError, match="reference model 'gpt'"):
        ProfileSet(
            router, GatewayConfig.model_validate({"profiles": {"tagrouter": {"reference_model": "gpt"}}})
        )


def test_two_profiles_share_one_model_and_learn_every_record_once(router) -> None:
    profiles = ProfileSet(router, GatewayConfig.model_validate({"profiles": {"a": {}, "b": {}}}))
    before = profiles.model.table.model_counts.sum()
    records = [(Judged(q, "cheap", "loss"), 1.0) for q in GREETINGS]
    profiles.update(records)
    assert profiles.router("a").model is profiles.router("b").model
    assert profiles.model.table.model_counts.sum() == before + len(records)
    assert [d.scores for d in profiles.route("a", GREETINGS)] == [
        d.scores for d in profiles.route("b", GREETINGS)
    ]


def test_the_request_store_is_bounded_in_bytes_and_in_rows(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite3", keep_requests=1000, keep_request_bytes=1_000_000)
    for batch in range(30):  # 30 × 10 requests of 10 kB: 3 MB offered
        store.apply([(f"r{batch}-{i}", f"{batch}-{i} " + "x" * 10_000, "mid") for i in range(10)], [])
    assert store.request_bytes <= 1_000_000 and store.request_rows < 100
    db = sqlite3.connect(tmp_path / "fb.sqlite3")
    rows, size = db.execute("SELECT COUNT(*), SUM(LENGTH(CAST(query AS BLOB))) FROM requests").fetchone()
    assert (rows, size) == (store.request_rows, store.request_bytes)  # the running count is exact
    newest = store.apply([], [Feedback("f1", "win", request_id="r29-9")])[0]
    oldest = store.apply([], [Feedback("f2", "win", request_id="r0-0")])[0]
    assert newest.status == "recorded" and isinstance(oldest, UnknownRequestError)
    for number in range(1100):  # small requests: the row limit applies
        store.apply([(f"s{number}", "hi", "cheap")], [])
    assert store.request_rows <= 1000
    store.close()
    assert FeedbackStore(tmp_path / "fb.sqlite3").request_rows == store.request_rows  # counted again on open


def test_the_router_learns_at_most_once_per_interval_and_after_the_commit(tmp_path: Path) -> None:
    """Twenty commits inside one (long) learning interval: each is acknowledged before anything is learned,
    and all twenty are learned in one update (here at close, which learns what waits). With a short
    interval, feedback is learned without anything else happening (polled with a generous deadline).
    No bound on the real clock: the interval is 30 s, far longer than twenty commits take."""
    learned: list[list[HistoryRecord]] = []

    async def scenario() -> tuple[int, int]:
        writer = FeedbackWriter(
            FeedbackStore(tmp_path / "fb.sqlite3"),
            lambda records, _: learned.append(records),
            learn_interval_s=30.0,
        )
        writer.start()
        for number in range(20):  # one at a time: twenty commits
            await writer.submit(Feedback(f"f{number}", "win", model="mid", query=f"q{number}"))
        acknowledged_before_learning = len(learned)
        await writer.close()
        return acknowledged_before_learning, len(learned)

    before, after = asyncio.run(scenario())
    assert before == 0 and after == 1 and len(learned[0]) == 20  # one update for the twenty

    async def quiet_gateway() -> list[list[HistoryRecord]]:
        soon: list[list[HistoryRecord]] = []
        writer = FeedbackWriter(
            FeedbackStore(tmp_path / "fb2.sqlite3"),
            lambda records, _: soon.append(records),
            learn_interval_s=0.05,
        )
        writer.start()
        await writer.submit(Feedback("g0", "loss", model="mid", query="q"))
        deadline = asyncio.get_running_loop().time() + 30
        while not soon and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        learned_while_open = list(soon)
        await writer.close()
        return learned_while_open

    assert [len(update) for update in asyncio.run(quiet_gateway())] == [1]
