"""Feedback with an owner (SQLite and PostgreSQL stores): only the key that made a request (or an admin key)
judges it, once unless a correction replaces the verdict; stored weights are what every replica learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from server_support import GREETING_QUERY, fit_router
from test_server_replicas import postgres_url  # noqa: F401  (the throwaway PostgreSQL server fixture)

from tagrouter.live import LiveLearner, LivePolicy
from tagrouter.server.feedback import (
    Feedback,
    FeedbackConflictError,
    FeedbackForbiddenError,
    FeedbackLimitError,
    FeedbackResult,
    FeedbackStore,
)
from tagrouter.server.stores import PostgresFeedbackStore


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request, tmp_path: Path):
    """Two store objects on one store (two replicas), as (writer, follower)."""
    if request.param == "sqlite":
        pair = FeedbackStore(tmp_path / "fb.sqlite3"), FeedbackStore(tmp_path / "fb.sqlite3")
    else:
        url = request.getfixturevalue("postgres_url")
        first = PostgresFeedbackStore(url)
        first._db.execute("TRUNCATE tagrouter_feedback, tagrouter_requests")
        pair = first, PostgresFeedbackStore(url)
    yield pair
    for store in pair:
        store.close()


def test_feedback_on_a_request_is_accepted_only_from_its_owner_or_an_admin(stores) -> None:
    store, _ = stores
    store.apply([("r1", "hello there", "cheap", "alice", 0.5)], [])
    bob, mallory_admin, alice = store.apply(
        [],
        [
            Feedback("f-bob", "loss", request_id="r1", source="bob"),
            Feedback("f-anon", "loss", request_id="r1"),
            Feedback("f-alice", "win", request_id="r1", source="alice"),
        ],
    )
    assert isinstance(bob, FeedbackForbiddenError) and bob.field == "request_id"
    assert isinstance(mallory_admin, FeedbackForbiddenError)
    assert isinstance(alice, FeedbackResult) and alice.status == "recorded"
    assert alice.learned[0][0].propensity == 0.5  # the request's propensity travels with its feedback
    store.apply([("r2", "good morning", "mid", "alice", 1.0)], [])
    admin = store.apply([], [Feedback("f-admin", "loss", request_id="r2", source="ops", admin=True)])[0]
    assert isinstance(admin, FeedbackResult) and admin.status == "recorded"
    assert store.count() == 2


def test_a_request_takes_one_verdict_unless_a_correction_replaces_it(stores) -> None:
    store, follower = stores
    store.apply([("r1", "hello there", "cheap", "alice", 0.25)], [])
    first = store.apply([], [Feedback("f1", "loss", request_id="r1", source="alice")], weigh=lambda j: 2.0)[0]
    assert isinstance(first, FeedbackResult)
    again = store.apply([], [Feedback("f1", "loss", request_id="r1", source="alice")])[0]
    assert isinstance(again, FeedbackResult) and again.status == "duplicate"  # a retry
    second = store.apply([], [Feedback("f2", "win", request_id="r1", source="alice")])[0]
    assert isinstance(second, FeedbackConflictError) and "correction" in second.reason
    fixed = store.apply(
        [], [Feedback("f3", "win", request_id="r1", source="alice", correction=True)], weigh=lambda j: 2.0
    )[0]
    assert isinstance(fixed, FeedbackResult)
    assert [(j.outcome, w) for j, w in fixed.learned] == [("loss", -2.0), ("win", 2.0)]
    if isinstance(store, FeedbackStore):
        assert [r.outcome for r in store.records()] == ["win"]  # the standing verdict
    outcomes, _ = follower.changes()
    assert [(j.model, j.outcome, w) for j, w in outcomes] == [
        ("cheap", "loss", 2.0),
        ("cheap", "loss", -2.0),
        ("cheap", "win", 2.0),
    ]


def test_replicas_learn_the_weights_the_receiving_replica_stored(stores) -> None:
    store, follower = stores
    router = fit_router()
    policy = LivePolicy(max_weight=10.0, reselect_growth=None)  # weighted: the stored weights differ
    receiving, following = LiveLearner(router, policy), LiveLearner(router, policy)
    store.apply(
        [(f"r{i}", f"{GREETING_QUERY} {i}", "cheap", "alice", 0.1 + 0.1 * (i % 5)) for i in range(20)], []
    )
    results = store.apply(
        [],
        [
            Feedback(f"f{i}", "win" if i % 3 else "loss", request_id=f"r{i}", source="alice")
            for i in range(20)
        ],
        weigh=receiving.weigh,
    )
    learned = [pair for result in results for pair in result.learned]
    receiving.learn_weighted([j for j, _ in learned], [w for _, w in learned])
    outcomes, _ = follower.changes()
    assert len({w for _, w in outcomes}) > 1  # inverse-propensity weights, not all 1
    following.learn_weighted([j for j, _ in outcomes], [w for _, w in outcomes])
    np.testing.assert_allclose(receiving.model.table.counts, following.model.table.counts, rtol=1e-12)


def test_a_key_over_its_bound_is_refused_and_nothing_is_stored(stores) -> None:
    store, _ = stores
    learner = LiveLearner(fit_router(), LivePolicy(per_source_weight=3.0, reselect_growth=None))
    store.apply([(f"r{i}", f"q{i}", "cheap", "mallory", 1.0) for i in range(10)], [])
    results = store.apply(
        [],
        [Feedback(f"f{i}", "loss", request_id=f"r{i}", source="mallory") for i in range(10)],
        weigh=learner.weigh,
    )
    assert sum(isinstance(r, FeedbackResult) for r in results) == 3
    assert all(isinstance(r, FeedbackLimitError) for r in results[3:])
    assert store.count() == 3 and learner.stats.refused == 7


def _chat(server, key: str, query: str, **headers: str):
    import httpx

    return httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "tagrouter", "messages": [{"role": "user", "content": query}]},
        headers={"authorization": f"Bearer {key}", **headers},
        timeout=30,
    )


def _feedback(server, key: str, body: dict):
    import httpx

    return httpx.post(
        server.url + "/v1/feedback", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def test_the_gateway_explores_says_so_and_takes_feedback_only_from_the_owner(gateway) -> None:
    pytest.importorskip("fastapi")
    server = gateway(
        api_keys=["sk-alice", "sk-bob"],
        admin_keys=["sk-ops"],
        learning={"exploration_budget": 0.5},
        profiles={"tagrouter": {"rule": "within", "knob": 0.0}},  # mid and dear tie on unknown words
    )
    answers = [_chat(server, "sk-alice", f"zebra quantum lemon {i}") for i in range(150)]
    assert all(a.status_code == 200 for a in answers)
    explored = [a for a in answers if a.headers["x-tagrouter-explored"] == "true"]
    propensities = [float(a.headers["x-tagrouter-propensity"]) for a in answers]
    assert explored and all(0 < p <= 1 for p in propensities)
    metrics = __import__("httpx").get(server.url + "/metrics").text
    assert f'tagrouter_explored_total{{profile="tagrouter"}} {float(len(explored))}' in metrics
    off = [
        _chat(server, "sk-alice", f"{GREETING_QUERY} again {i}", **{"x-tagrouter-explore": "off"})
        for i in range(10)
    ]
    assert all(a.headers["x-tagrouter-explored"] == "false" for a in off)

    request_id = answers[0].json()["id"]
    refused = _feedback(server, "sk-bob", {"request_id": request_id, "outcome": "loss"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "feedback_forbidden"
    first = _feedback(server, "sk-alice", {"request_id": request_id, "outcome": "win"})
    assert first.status_code == 200 and first.json()["status"] == "recorded"
    second = _feedback(server, "sk-alice", {"request_id": request_id, "outcome": "loss"})
    assert second.status_code == 409 and "correction" in second.json()["error"]["message"]
    fixed = _feedback(server, "sk-alice", {"request_id": request_id, "outcome": "loss", "correction": True})
    assert fixed.status_code == 200
    by_admin = _feedback(server, "sk-ops", {"request_id": answers[1].json()["id"], "outcome": "tie"})
    assert by_admin.status_code == 200
    metrics = __import__("httpx").get(server.url + "/metrics").text
    assert 'tagrouter_feedback_total{status="forbidden"} 1.0' in metrics
    assert 'tagrouter_feedback_total{status="conflict"} 1.0' in metrics
