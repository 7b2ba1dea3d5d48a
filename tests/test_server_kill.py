"""``kill -9`` of a serving gateway under a feedback flood: every acknowledged feedback is in the store after
the crash, and the restarted gateway learns it (README, *Hardening*: "0 acknowledged feedback lost across
kill -9"; scripts/reliability_gateway.py measures the same at a larger size).

The gateway runs as ``tagrouter serve`` in its own process; eight client threads post feedback as fast as
it answers; once hundreds are acknowledged the process gets SIGKILL (no shutdown, no checkpoint) while
the clients are still posting. Bug caught (checked by hand): acknowledging feedback whose transaction is
not committed yet (a store that commits every 50th batch lost 24 acknowledged records here).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the gateway tests need the server extra (httpx)")
pytest.importorskip("fastapi", reason="the gateway tests need the server extra (fastapi)")
pytest.importorskip("uvicorn", reason="the gateway tests need the server extra (uvicorn)")

from server_support import GREETINGS, save_router  # noqa: E402

from tagrouter.testing.loopback import start_serve, wait_until_up  # noqa: E402

KEY = "sk-kill"
CLIENTS = 8
ACKNOWLEDGED_BEFORE_KILL = 300


def _flood(url: str, worker: int, acked: set[str], lock: threading.Lock, stop: threading.Event) -> None:
    """Post feedback until ``stop`` or until the gateway is gone; note each acknowledged feedback id."""
    with httpx.Client(headers={"authorization": f"Bearer {KEY}"}, timeout=30) as http:
        number = 0
        while not stop.is_set():
            number += 1
            feedback_id = f"w{worker}-{number}"
            body = {"query": GREETINGS[number % len(GREETINGS)], "model": "mid", "outcome": "win"}
            try:
                response = http.post(url + "/v1/feedback", json={**body, "feedback_id": feedback_id})
            except httpx.HTTPError:
                return  # killed
            if response.status_code == 200 and response.json()["status"] in ("recorded", "duplicate"):
                with lock:
                    acked.add(feedback_id)


def test_kill_9_under_a_feedback_flood_loses_no_acknowledged_feedback(tmp_path: Path) -> None:
    router = save_router(tmp_path / "router")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"api_keys: [{KEY}]\nfeedback_db: feedback.sqlite3\n"
        "admission: {feedback_per_s: 100000, max_feedback_in_flight: 256}\n"
        "learning: {per_key_weight: null}\n",  # one key floods: no bound on its learned weight
        encoding="utf-8",
    )
    env = dict(os.environ)
    process, url = start_serve(router, config, env=env)
    acked: set[str] = set()
    lock, stop = threading.Lock(), threading.Event()
    workers = [threading.Thread(target=_flood, args=(url, w, acked, lock, stop)) for w in range(CLIENTS)]
    try:
        wait_until_up(url + "/healthz", process, timeout_s=90)
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 120
        while len(acked) < ACKNOWLEDGED_BEFORE_KILL:
            assert time.monotonic() < deadline and process.poll() is None, f"only {len(acked)} acknowledged"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)  # mid-flood: requests are in flight
        process.wait(timeout=30)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    acknowledged = set(acked)
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL

    with sqlite3.connect(tmp_path / "feedback.sqlite3") as db:  # what a restart reads
        stored = {row[0] for row in db.execute("SELECT feedback_id FROM feedback")}
    assert acknowledged - stored == set(), f"{len(acknowledged - stored)} acknowledged feedback lost"

    restarted, url = start_serve(router, config, env=env)
    try:
        wait_until_up(url + "/healthz", restarted, timeout_s=90)
        health = httpx.get(url + "/healthz").json()
        assert health["feedback_records"] == len(stored)  # the restarted gateway learned every stored one
        again = httpx.post(
            url + "/v1/feedback",
            json={
                "query": GREETINGS[1],
                "model": "mid",
                "outcome": "win",
                "feedback_id": sorted(acknowledged)[0],
            },
            headers={"authorization": f"Bearer {KEY}"},
        )
        assert again.json()["status"] == "duplicate"
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.communicate(timeout=60)
