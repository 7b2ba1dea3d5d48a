"""``tagrouter serve``: starts from a saved router and a YAML config, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the gateway tests need the server extra (httpx)")
pytest.importorskip("fastapi", reason="the gateway tests need the server extra (fastapi)")
pytest.importorskip("uvicorn", reason="the gateway tests need the server extra (uvicorn)")
pytest.importorskip("aiohttp", reason="the gateway tests need the server extra (aiohttp)")

from server_support import CODE_QUERY, save_router  # noqa: E402
from threaded import ThreadedServer  # noqa: E402

from tagrouter.testing.loopback import TAGROUTER, start_serve  # noqa: E402
from tagrouter.testing.replay import create_replay_app  # noqa: E402


def test_serve_answers_and_stops_on_sigterm_keeping_feedback(tmp_path: Path) -> None:
    router = save_router(tmp_path / "router")
    with ThreadedServer(create_replay_app("replay")) as upstream:
        config = tmp_path / "gateway.yaml"
        config.write_text(
            "api_keys_env: TEST_GATEWAY_KEYS\n"
            "feedback_db: state/feedback.sqlite3\n"
            "learning: {exploration_budget: 0}\n"  # deterministic choices
            "endpoints:\n"
            + "".join(f"  {m}: {{base_url: '{upstream.url}/v1'}}\n" for m in ("cheap", "mid", "dear"))
            + "profiles:\n  tagrouter: {rule: within, knob: 0.3}\n",
            encoding="utf-8",
        )
        process, url = start_serve(router, config, env={**os.environ, "TEST_GATEWAY_KEYS": "sk-1"})
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
                time.sleep(0.1)
            headers = {"authorization": "Bearer sk-1"}
            answer = httpx.post(
                url + "/v1/chat/completions",
                json={"model": "tagrouter", "messages": [{"role": "user", "content": CODE_QUERY}]},
                headers=headers,
            )
            assert answer.status_code == 200 and answer.json()["model"] == "mid"
            feedback = httpx.post(
                url + "/v1/feedback",
                json={"request_id": answer.json()["id"], "outcome": "win"},
                headers=headers,
            )
            assert feedback.json()["status"] == "recorded"
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
    # uvicorn finishes its graceful shutdown, then re-raises the signal: the exit status is SIGTERM's
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output
    db = tmp_path / "state" / "feedback.sqlite3"  # relative to the config file's folder
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # the store was checkpointed and closed on shutdown
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT outcome, model FROM feedback").fetchall() == [("win", "mid")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fallback_depth: many\n", ["gateway.yaml", "fallback_depth"]),
        (  # a typo in an endpoint name: that model would never be reachable
            "endpoints: {chep: {base_url: 'http://127.0.0.1:9/v1'}}\n",
            ["field 'endpoints'", "chep not in the router's catalogue (cheap, mid, dear)"],
        ),
        (
            "endpoints: {mid: {base_url: 'http://127.0.0.1:9/v1', api_key_env: TAGROUTER_TEST_NEVER_SET}}\n",
            ["field 'endpoints.mid.api_key_env'", "TAGROUTER_TEST_NEVER_SET is not set"],
        ),
    ],
)
def test_serve_reports_a_bad_config_in_one_line(tmp_path: Path, text: str, expected: list[str]) -> None:
    router = save_router(tmp_path / "router")
    config = tmp_path / "gateway.yaml"
    config.write_text(text + f"feedback_db: {tmp_path / 'fb.sqlite3'}\n", encoding="utf-8")
    result = subprocess.run(
        [*TAGROUTER, "serve", str(router), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "TAGROUTER_TEST_NEVER_SET"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert all(part in lines[0] for part in expected), lines[0]
    assert not (tmp_path / "fb.sqlite3").exists()  # nothing was opened before the check


def test_serve_gives_the_event_loop_the_gil_back_within_a_millisecond(tmp_path: Path, monkeypatch) -> None:
    """Issue 16: the gateway's worker threads (commits, learning, big bodies parsed off the loop) held the
    GIL for Python's default 5 ms switch interval each time the event loop wanted it back. ``tagrouter
    serve`` runs uvicorn under :data:`~tagrouter.server.SWITCH_INTERVAL_S` (uvicorn is stubbed here)."""
    import sys

    import uvicorn

    from tagrouter.cli.serve import serve
    from tagrouter.server import SWITCH_INTERVAL_S

    seen: list[float] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.append(sys.getswitchinterval()))
    before = sys.getswitchinterval()
    try:
        config = tmp_path / "gateway.yaml"
        config.write_text(f"feedback_db: {tmp_path / 'feedback.sqlite3'}\n", encoding="utf-8")
        serve(save_router(tmp_path / "router"), config=config, port=0)
    finally:
        sys.setswitchinterval(before)
    assert seen == [SWITCH_INTERVAL_S] and SWITCH_INTERVAL_S < 0.005  # below Python's default
