"""Live router reloads: a new saved version (CURRENT changes, or POST /admin/reload) replaces the served
router atomically, under steady load, with zero failed requests; requests in flight finish on the old one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from gateway_fixtures import ANSWERS, KEY  # noqa: E402
from server_support import CODE_QUERY, GREETING_QUERY, MODELS, fit_router  # noqa: E402
from threaded import ThreadedServer  # noqa: E402

from tagrouter import Decider, TagRouter  # noqa: E402
from tagrouter.server.app import create_app  # noqa: E402
from tagrouter.server.config import GatewayConfig  # noqa: E402
from tagrouter.server.reload import current_version  # noqa: E402
from tagrouter.testing.replay import ReplayBehaviour, create_replay_app  # noqa: E402

ADMIN = "sk-test-admin"


def serve(tmp_path: Path, upstream: ThreadedServer, **settings) -> ThreadedServer:
    """A gateway over the router saved in ``tmp_path/router``, every model on ``upstream``."""
    router_dir = tmp_path / "router"
    config = GatewayConfig.model_validate(
        {
            "api_keys": [KEY],
            "admin_keys": [ADMIN],
            "feedback_db": tmp_path / "feedback.sqlite3",
            "endpoints": {m: {"base_url": upstream.url + "/v1"} for m in MODELS},
            **settings,
        }
    )
    return ThreadedServer(create_app(TagRouter.load(router_dir), config, router_dir=router_dir)).start()


def chat(client: httpx.Client, query: str) -> httpx.Response:
    body = {"model": "tagrouter", "messages": [{"role": "user", "content": query}]}
    return client.post("/v1/chat/completions", json=body)


def test_a_new_version_is_served_under_steady_load_with_no_failed_request(tmp_path: Path) -> None:
    fit_router().save(tmp_path / "router")  # code -> mid
    first = current_version(tmp_path / "router")
    with ThreadedServer(create_replay_app("replay", ANSWERS)) as upstream:
        gateway = serve(tmp_path, upstream, reload_interval_s=0.05)
        try:
            seen: list[list[tuple[int, str, str]]] = [[] for _ in range(4)]
            stop = threading.Event()

            def load(out: list[tuple[int, str, str]]) -> None:
                headers = {"authorization": f"Bearer {KEY}"}
                with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
                    for _ in range(2000):  # bounded; stops once the test has seen enough
                        if stop.is_set():
                            return
                        answer = chat(client, CODE_QUERY)
                        version = answer.headers.get("x-tagrouter-router-version", "")
                        out.append((answer.status_code, version, answer.headers.get("x-tagrouter-model", "")))

            threads = [threading.Thread(target=load, args=(out,)) for out in seen]
            for thread in threads:
                thread.start()
            wait_for(lambda: all(len(out) >= 10 for out in seen))
            fit_router().with_decider(Decider("within", 10.0)).save(
                tmp_path / "router"
            )  # everything -> cheap
            second = current_version(tmp_path / "router")
            wait_for(lambda: all(sum(v == second for _, v, _ in out) >= 10 for out in seen))
            stop.set()
            for thread in threads:
                thread.join(60)
        finally:
            gateway.stop()
    answers = [a for out in seen for a in out]
    assert [a for a in answers if a[0] != 200] == []  # zero failed requests across the reload
    assert {(v, m) for _, v, m in answers} == {(first, "mid"), (second, "cheap")}
    for out in seen:  # each client sees the old version, then the new one, never back
        versions = [v for _, v, _ in out]
        switch = versions.index(second)
        assert set(versions[:switch]) == {first} and set(versions[switch:]) == {second}


def test_admin_reload_swaps_at_once_and_a_request_in_flight_finishes_on_the_old_router(
    tmp_path: Path,
) -> None:
    fit_router().save(tmp_path / "router")
    first = current_version(tmp_path / "router")
    behaviour = ReplayBehaviour()
    with ThreadedServer(create_replay_app("replay", ANSWERS, behaviour)) as upstream:
        gateway = serve(tmp_path, upstream, reload_interval_s=0)  # no polling: only POST /admin/reload
        try:
            admin = httpx.Client(
                base_url=gateway.url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30
            )
            client = httpx.Client(
                base_url=gateway.url, headers={"authorization": f"Bearer {KEY}"}, timeout=30
            )
            assert admin.post("/admin/reload").json() == {
                "object": "tagrouter.reload",
                "status": "unchanged",
                "version": first,
            }
            behaviour.delay_s = 1.0  # the next answer is slow: it is still in flight during the reload
            in_flight: list[httpx.Response] = []
            slow = threading.Thread(target=lambda: in_flight.append(chat(client, GREETING_QUERY)))
            slow.start()
            wait_for(lambda: behaviour.calls >= 1)
            fit_router().with_decider(Decider("utility", -1e9)).save(tmp_path / "router")  # all -> dear
            second = current_version(tmp_path / "router")
            assert admin.post("/admin/reload").json()["version"] == second
            behaviour.delay_s = 0.0
            slow.join(30)
            assert in_flight[0].status_code == 200
            assert in_flight[0].headers["x-tagrouter-router-version"] == first
            assert in_flight[0].headers["x-tagrouter-model"] == "cheap"
            after = chat(client, GREETING_QUERY)
            assert after.headers["x-tagrouter-router-version"] == second
            assert after.headers["x-tagrouter-model"] == "dear"
            assert client.post("/admin/reload").status_code == 403  # a client key is not an admin key
            page = admin.get("/dashboard").text
            assert f'data-figure="version" data-value="">{second}<' in page
        finally:
            gateway.stop()


def test_a_damaged_version_is_refused_and_the_old_router_keeps_serving(tmp_path: Path) -> None:
    fit_router().save(tmp_path / "router")
    first = current_version(tmp_path / "router")
    with ThreadedServer(create_replay_app("replay", ANSWERS)) as upstream:
        gateway = serve(tmp_path, upstream, reload_interval_s=0)
        try:
            fit_router().save(tmp_path / "router")
            second = current_version(tmp_path / "router")
            (tmp_path / "router" / second / "table.npz").write_bytes(b"damaged")
            admin = httpx.Client(
                base_url=gateway.url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30
            )
            refused = admin.post("/admin/reload")
            assert refused.status_code == 409 and "table.npz is damaged" in refused.json()["error"]["message"]
            client = httpx.Client(
                base_url=gateway.url, headers={"authorization": f"Bearer {KEY}"}, timeout=30
            )
            answer = chat(client, CODE_QUERY)
            assert answer.status_code == 200 and answer.headers["x-tagrouter-router-version"] == first
            metrics = admin.get("/metrics").text
            assert 'tagrouter_reloads_total{result="failed"} 1.0' in metrics
        finally:
            gateway.stop()


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
