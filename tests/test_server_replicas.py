"""Gateway replicas that learn together: two ``tagrouter serve`` processes on one feedback store (a SQLite
file; a real PostgreSQL server started here) each route on feedback posted to the other within the lag
that ``follow_interval_s`` states."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the gateway tests need the server extra (httpx)")
pytest.importorskip("fastapi", reason="the gateway tests need the server extra (fastapi)")
pytest.importorskip("uvicorn", reason="the gateway tests need the server extra (uvicorn)")

from server_support import CODE_QUERY, save_router  # noqa: E402

from tagrouter.testing.loopback import free_port, start_serve  # noqa: E402

FOLLOW_INTERVAL_S = 0.25
#: the stated lag (one interval, one read, one update) plus generous slack for HTTP polling of two server
#: processes on a loaded 2-core machine: this test shows replicas learn from each other through a real
#: store; the lag itself is checked exactly, on a stepped clock, in tests/test_server_follow.py
LAG_BOUND_S = FOLLOW_INTERVAL_S + 3.0


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    return Path(found[-1]).parent if found[-1] else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free port (initdb + pg_ctl on a temp folder)."""
    pytest.importorskip(
        "psycopg", reason="the PostgreSQL store needs psycopg: pip install 'tagrouter[postgres]'"
    )
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb) found: apt-get install postgresql")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="tagrouter-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    try:
        subprocess.run(
            [
                *as_user,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "tagrouter",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *as_user,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(folder / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://tagrouter@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.1)


def _scores(url: str) -> dict[str, float]:
    answer = httpx.post(url + "/v1/route", json={"query": CODE_QUERY})
    assert answer.status_code == 200, answer.text
    return answer.json()["decisions"][0]["scores"]


def _teach(url: str, tag: str) -> None:
    """Three judged wins of 'cheap' on the code query, posted to one replica."""
    for i in range(3):
        answer = httpx.post(
            url + "/v1/feedback",
            json={"query": CODE_QUERY, "model": "cheap", "outcome": "win", "feedback_id": f"{tag}-{i}"},
        )
        assert answer.status_code == 200 and answer.json()["status"] == "recorded", answer.text


def _settled(url: str, base: float) -> dict[str, float]:
    """The scores of ``url`` once its score of 'cheap' has moved off ``base`` (after its own feedback)."""
    start = time.monotonic()
    while (scores := _scores(url))["cheap"] == base:
        assert time.monotonic() - start < LAG_BOUND_S, f"{url} did not learn its own feedback"
        time.sleep(0.05)
    return scores


def _seconds_until_learned(follower: str, base: float, target: float) -> float:
    """Seconds until ``follower``'s score of 'cheap' has moved from ``base`` to ``target`` (to within a
    tenth of the move: a replica that learns a batch at once may refresh its scorer's table statistics at
    another record than one that learned the records one by one)."""
    start = time.monotonic()
    while abs(_scores(follower)["cheap"] - target) > 0.1 * abs(target - base):
        assert time.monotonic() - start < LAG_BOUND_S, f"{follower} did not learn within {LAG_BOUND_S} s"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_two_replicas_route_on_each_others_feedback(tmp_path: Path, store: str, request) -> None:
    feedback_db = (
        tmp_path / "feedback.sqlite3" if store == "sqlite" else request.getfixturevalue("postgres_url")
    )
    router = save_router(tmp_path / "router")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"feedback_db: '{feedback_db}'\nfollow_interval_s: {FOLLOW_INTERVAL_S}\n"
        "profiles:\n  tagrouter: {rule: within, knob: 0.3}\n",
        encoding="utf-8",
    )
    replicas = [start_serve(router, config) for _ in range(2)]
    try:
        for process, url in replicas:
            _wait_ready(process, url)
        (_, a), (_, b) = replicas
        before = _scores(a)
        assert _scores(b) == before
        _teach(a, "to-a")
        learned = _settled(a, before["cheap"])  # a learns its own feedback within learn_interval_s
        assert learned["cheap"] - before["cheap"] > 0.02  # learned (weighted by its propensity)
        _seconds_until_learned(b, before["cheap"], learned["cheap"])
        settled_a, settled_b = _scores(a)["cheap"], _scores(b)["cheap"]
        _teach(b, "to-b")
        learned_twice = _settled(b, settled_b)
        assert learned_twice["cheap"] - settled_b > 0.02
        _seconds_until_learned(a, settled_a, learned_twice["cheap"])
        assert httpx.get(a + "/healthz").status_code == 200
    finally:
        for process, _ in replicas:
            process.terminate()
        for process, _ in replicas:
            process.wait(timeout=30)
