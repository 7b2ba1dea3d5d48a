"""Shadow judging in the gateway: the client never waits for it, it keeps to its daily budget, its
verdicts become feedback that changes routing, and it is compared with explicit feedback.

The router of ``server_support`` sends greetings to ``cheap``; the reference is ``dear``; the test judge
says any answer of ``cheap`` (its replay answers start with ``[cheap]``) is worse, other pairs tie."""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from server_support import GREETING_QUERY, MODELS, UPSTREAM_IDS  # noqa: E402

from tagrouter import TagRouter  # noqa: E402
from tagrouter.errors import DataError  # noqa: E402
from tagrouter.server.app import create_app  # noqa: E402
from tagrouter.server.config import GatewayConfig  # noqa: E402
from tagrouter.testing.judge import JudgeBehaviour, create_judge_app  # noqa: E402
from tagrouter.testing.replay import ReplayBehaviour, create_replay_app  # noqa: E402
from tagrouter.testing.threaded import ThreadedServer  # noqa: E402


def cheap_loses(query: str, answer_a: str, answer_b: str) -> str:
    if answer_a.startswith("[cheap]"):
        return "B"
    return "A" if answer_b.startswith("[cheap]") else "C"


@pytest.fixture(scope="module")
def upstreams():
    behaviours = {m: ReplayBehaviour() for m in MODELS}
    servers = {m: ThreadedServer(create_replay_app(m, {}, behaviours[m])).start() for m in MODELS}
    yield servers, behaviours
    for server in servers.values():
        server.stop()


@pytest.fixture
def shadow_gateway(router_dir, upstreams, tmp_path):
    """``shadow_gateway(judge_behaviour, **shadow_settings)`` -> (gateway server, judge behaviour)."""
    servers, _ = upstreams
    started: list[ThreadedServer] = []

    def start(behaviour: JudgeBehaviour | None = None, **shadow):
        behaviour = behaviour or JudgeBehaviour()
        judge = ThreadedServer(create_judge_app(cheap_loses, behaviour)).start()
        started.append(judge)
        endpoints = {m: {"base_url": servers[m].url + "/v1", "model": UPSTREAM_IDS[m]} for m in MODELS}
        settings = {
            "share": 1.0,
            "reference": "dear",
            "judge": f"judge@{judge.url}/v1?input_usd_per_1m=1&output_usd_per_1m=2",
            "max_tokens": 64,
            **shadow,
        }
        config = GatewayConfig.model_validate(
            {"endpoints": endpoints, "feedback_db": tmp_path / "feedback.sqlite3", "shadow": settings}
        )
        gateway = ThreadedServer(create_app(TagRouter.load(router_dir), config)).start()
        started.insert(0, gateway)
        return gateway, behaviour

    yield start
    for server in started:
        server.stop()


def chat(server: ThreadedServer, query: str) -> dict:
    body = {"model": "tagrouter", "messages": [{"role": "user", "content": query}]}
    response = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def metric(server: ThreadedServer, name: str, **labels: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}(?:\{{{wanted}\}})? (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def stored(server: ThreadedServer) -> int:
    return httpx.get(server.url + "/healthz").json()["feedback_records"]


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_shadow_is_off_by_default_and_checks_its_judge(router_dir, tmp_path):
    assert GatewayConfig().shadow is None
    config = GatewayConfig.model_validate(
        {"feedback_db": tmp_path / "f.sqlite3", "shadow": {"reference": "dear", "judge": "no-such-judge"}}
    )
    with pytest.raises(DataError, match="shadow.judge"):
        create_app(TagRouter.load(router_dir), config)


def test_the_client_never_waits_for_the_shadow_judge(shadow_gateway, upstreams):
    server, judge = shadow_gateway(JudgeBehaviour(delay_s=1.5))
    start = time.perf_counter()
    answer = chat(server, "Hello Mallory, how are you today?")
    elapsed = time.perf_counter() - start
    assert answer["model"] == "cheap"
    assert elapsed < 1.0  # the judge takes 1.5 s per order
    assert stored(server) == 0  # not judged yet
    wait_for(lambda: stored(server) == 1)
    assert judge.calls == 2  # both orders
    assert upstreams[1]["dear"].calls >= 1  # the reference was asked
    assert metric(server, "tagrouter_shadow_judged_total", outcome="loss") == 1
    assert metric(server, "tagrouter_shadow_spend_usd_total") > 0


def test_shadow_verdicts_change_routing(shadow_gateway):
    server, _ = shadow_gateway()

    def routed() -> str:
        response = httpx.post(server.url + "/v1/route", json={"query": GREETING_QUERY})
        return response.json()["decisions"][0]["model"]

    assert routed() == "cheap"
    names = [f"Person{i}" for i in range(40)]
    judged = 0
    for name in names:
        answer = chat(server, f"Hello {name}, how are you today?")
        if answer["model"] != "cheap":
            break
        judged += 1
        wait_for(lambda n=judged: stored(server) == n)
    assert routed() == "mid"  # cheap's losses on greetings moved them to the next cheapest model
    assert 0 < judged < len(names)
    assert metric(server, "tagrouter_shadow_judged_total", outcome="loss") == judged


def test_shadow_keeps_to_its_daily_budget(shadow_gateway):
    probe, _ = shadow_gateway()
    shadow = probe.server.config.app.state.gateway.parts.shadow
    query = "Hello Trent, how are you today?"
    worst = shadow.worst_case_cost(query, f"[cheap] answer to: {query[:60]}")
    probe.stop()
    server, judge = shadow_gateway(JudgeBehaviour(delay_s=0.5), daily_budget_usd=1.5 * worst)
    for _ in range(5):  # the first job holds its worst case: no second one fits
        chat(server, query)
    wait_for(lambda: stored(server) == 1)
    assert judge.calls == 2
    assert metric(server, "tagrouter_shadow_skipped_total", reason="budget") == 4
    assert 0 < metric(server, "tagrouter_shadow_spend_usd_total") <= 1.5 * worst


def test_shadow_verdicts_are_compared_with_explicit_feedback(shadow_gateway):
    server, _ = shadow_gateway()
    first = chat(server, "Hello Peggy, how are you today?")
    second = chat(server, "Hello Victor, how are you today?")
    wait_for(lambda: stored(server) == 2)
    for answer, outcome in ((first, "loss"), (second, "win")):
        sent = httpx.post(server.url + "/v1/feedback", json={"request_id": answer["id"], "outcome": outcome})
        assert sent.status_code == 200, sent.text
    assert metric(server, "tagrouter_shadow_agreement_total", result="agree") == 1
    assert metric(server, "tagrouter_shadow_agreement_total", result="disagree") == 1
