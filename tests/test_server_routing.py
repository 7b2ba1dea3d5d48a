"""The gateway's capability constraints, per-request overrides and session affinity, end to end on loopback.

The router (``server_support``) sends code to ``mid`` and greetings to ``cheap``; ``dear`` is the dearest.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the gateway tests need the server extra (fastapi)")
httpx = pytest.importorskip("httpx", reason="the gateway tests need the server extra (httpx)")

from conftest import capable_router  # noqa: E402
from server_support import CODE_QUERY, GREETING_QUERY, MODELS, UPSTREAM_IDS  # noqa: E402
from threaded import ThreadedServer  # noqa: E402

from tagrouter import TagRouter  # noqa: E402
from tagrouter.server.app import create_app  # noqa: E402
from tagrouter.server.config import GatewayConfig  # noqa: E402
from tagrouter.testing.replay import ReplayBehaviour, create_replay_app  # noqa: E402

#: capabilities: only ``dear`` takes images, only ``mid`` and ``dear`` take tools, ``mid`` has a small window
CARDS = {
    "cheap": {"tools": False, "context_window": 100_000},
    "mid": {"tools": True, "context_window": 2_000},
    "dear": {"tools": True, "modalities": ["text", "image"]},
}


@pytest.fixture(scope="module")
def upstreams():
    behaviours = {m: ReplayBehaviour() for m in MODELS}
    servers = {m: ThreadedServer(create_replay_app(m, behaviour=behaviours[m])).start() for m in MODELS}
    yield servers, behaviours
    for server in servers.values():
        server.stop()


@pytest.fixture
def gateway(router_dir: Path, upstreams, tmp_path: Path):
    """``gateway(**settings)``: a gateway on loopback over the capable router; returns an httpx client."""
    servers, behaviours = upstreams
    for behaviour in behaviours.values():
        behaviour.fail_status = None
    started: list[ThreadedServer] = []

    def start(cards: dict = CARDS, **settings) -> httpx.Client:
        endpoints = {m: {"base_url": servers[m].url + "/v1", "model": UPSTREAM_IDS[m]} for m in MODELS}
        config = GatewayConfig.model_validate(
            {"endpoints": endpoints, "feedback_db": tmp_path / f"fb{len(started)}.sqlite3", **settings}
        )
        router = capable_router(TagRouter.load(router_dir), **cards)
        started.append(server := ThreadedServer(create_app(router, config)).start())
        return httpx.Client(base_url=server.url + "/v1", timeout=30)

    yield start
    for server in started:
        server.stop()


def chat(
    client: httpx.Client, *contents, headers: dict | None = None, system: str | None = None, **body
) -> httpx.Response:
    """A chat request whose user turns are ``contents`` (with an assistant answer between turns)."""
    messages = [{"role": "system", "content": system}] if system else []
    for number, content in enumerate(contents):
        if number:
            messages.append({"role": "assistant", "content": "An answer."})
        messages.append({"role": "user", "content": content})
    return client.post(
        "/chat/completions", json={"model": "tagrouter", "messages": messages, **body}, headers=headers
    )


def served(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["x-tagrouter-model"]


# ---- capabilities -----------------------------------------------------------------------------------------
def test_an_image_request_never_reaches_a_text_only_model(gateway, upstreams) -> None:
    client = gateway()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    for text in (GREETING_QUERY, CODE_QUERY):
        assert served(chat(client, [{"type": "text", "text": text}, image])) == "dear"
    assert served(chat(client, GREETING_QUERY)) == "cheap"
    assert upstreams[1]["dear"].seen_models[-2:] == [UPSTREAM_IDS["dear"]] * 2


def test_tool_calls_only_reach_tool_capable_models_and_long_prompts_fit_the_window(gateway) -> None:
    client = gateway()
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert served(chat(client, GREETING_QUERY, tools=tools)) == "mid"  # cheap takes no tools
    assert served(chat(client, CODE_QUERY)) == "mid"
    long_system = "Answer with many details. " * 500  # about 2,500 tokens > mid's 2,000
    assert served(chat(client, CODE_QUERY, system=long_system)) == "dear"
    assert served(chat(client, CODE_QUERY, max_tokens=1_990)) == "dear"  # prompt + output > 2,000


def test_a_request_no_model_can_take_is_a_400(gateway) -> None:
    client = gateway()
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    response = chat(client, [{"type": "text", "text": GREETING_QUERY}, audio])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "no_model_fits" and "dear: no audio input" in error["message"]


def test_a_model_at_its_rate_limit_is_skipped(gateway) -> None:
    client = gateway(cards={**CARDS, "mid": {**CARDS["mid"], "rate_limits": {"requests_per_minute": 2}}})
    assert [served(chat(client, CODE_QUERY)) for _ in range(3)] == ["mid", "mid", "dear"]
    routed = client.post("/route", json={"query": CODE_QUERY}).json()["decisions"][0]
    assert routed["model"] == "dear" and routed["removed"] == {"mid": "at its rate limit"}


# ---- overrides --------------------------------------------------------------------------------------------
def test_overrides_take_effect_and_are_echoed(gateway) -> None:
    client = gateway(profiles={"tagrouter": {}, "cheapest": {"rule": "utility", "knob": 1e9}})
    response = chat(client, CODE_QUERY, tagrouter={"exclude": ["mid"]})
    assert served(response) == "dear" and response.headers["x-tagrouter-exclude"] == "mid"
    response = chat(client, GREETING_QUERY, headers={"x-tagrouter-min-model": "mid"})
    assert served(response) == "mid" and response.headers["x-tagrouter-min-model"] == "mid"
    assert served(chat(client, CODE_QUERY, tagrouter={"profile": "cheapest"})) == "cheap"
    response = chat(client, CODE_QUERY, headers={"x-tagrouter-max-cost-usd": "0.0001"})
    assert served(response) == "cheap" and response.headers["x-tagrouter-max-cost-usd"] == "0.0001"
    routed = client.post("/route", json={"query": CODE_QUERY, "tagrouter": {"exclude": ["mid"]}}).json()
    assert routed["decisions"][0]["model"] == "dear" and routed["decisions"][0]["removed"] == {
        "mid": "excluded"
    }


@pytest.mark.parametrize(
    ("body", "headers", "param"),
    [
        ({"tagrouter": {"exclude": ["gpt-9"]}}, {}, "tagrouter.exclude"),
        ({"tagrouter": {"max_cost_usd": -1}}, {}, "tagrouter.max_cost_usd"),
        ({}, {"x-tagrouter-min-model": "gpt-9"}, "x-tagrouter-min-model"),
        ({}, {"x-tagrouter-profile": "nope"}, "x-tagrouter-profile"),
        ({"tagrouter": {"budget": 1}}, {}, "tagrouter.budget"),
    ],
)
def test_a_bad_override_is_a_400_naming_the_field(gateway, body, headers, param) -> None:
    response = chat(gateway(), GREETING_QUERY, headers=headers, **body)
    assert response.status_code == 400
    assert (
        response.json()["error"]["param"] == param and response.json()["error"]["code"] == "invalid_override"
    )


# ---- session affinity -------------------------------------------------------------------------------------
def affinity_of(response: httpx.Response) -> tuple[str, str]:
    return served(response), response.headers["x-tagrouter-affinity"]


def test_a_pinned_session_keeps_its_model_until_its_turns_or_time_run_out(gateway) -> None:
    client = gateway(affinity={"enabled": True, "max_turns": 2, "ttl_s": 1.5})
    session = {"x-session-id": "s1"}
    assert affinity_of(chat(client, GREETING_QUERY, headers=session)) == ("cheap", "routed")
    assert affinity_of(chat(client, GREETING_QUERY, CODE_QUERY, headers=session)) == ("cheap", "pinned")
    assert affinity_of(chat(client, GREETING_QUERY, CODE_QUERY, CODE_QUERY, headers=session)) == (
        "mid",
        "routed",
    )
    assert affinity_of(chat(client, CODE_QUERY, user="u2")) == ("mid", "routed")  # the user field names it
    assert affinity_of(chat(client, GREETING_QUERY, user="u2")) == ("mid", "pinned")
    time.sleep(1.6)  # past ttl_s
    assert affinity_of(chat(client, GREETING_QUERY, user="u2")) == ("cheap", "routed")
    # no session id: the conversation's opening names it
    assert affinity_of(chat(client, GREETING_QUERY)) == ("cheap", "routed")
    assert affinity_of(chat(client, GREETING_QUERY, CODE_QUERY)) == ("cheap", "pinned")
    metrics = httpx.get(str(client.base_url.copy_with(path="/metrics"))).text
    assert 'tagrouter_affinity_total{affinity="pinned",profile="tagrouter"} 3.0' in metrics


def test_a_loss_or_a_failure_escalates_the_session_above_its_model(gateway, upstreams) -> None:
    client = gateway(affinity={"enabled": True})
    assert served(chat(client, GREETING_QUERY, headers={"x-session-id": "s3"})) == "cheap"
    upstreams[1]["cheap"].fail_status = 500
    assert affinity_of(chat(client, GREETING_QUERY, headers={"x-session-id": "s3"})) == ("mid", "pinned")
    upstreams[1]["cheap"].fail_status = None  # cheap is back, but the session escalated above it
    assert affinity_of(chat(client, GREETING_QUERY, headers={"x-session-id": "s3"})) == ("mid", "escalated")

    first = chat(client, GREETING_QUERY, headers={"x-session-id": "s2"})
    assert served(first) == "cheap"
    feedback = {"request_id": first.headers["x-tagrouter-request-id"], "outcome": "loss"}
    assert client.post("/feedback", json=feedback).status_code == 200
    again = chat(client, GREETING_QUERY, GREETING_QUERY, headers={"x-session-id": "s2"})
    assert affinity_of(again) == ("mid", "escalated")  # the next dearer model than the one that lost
    assert affinity_of(chat(client, GREETING_QUERY, headers={"x-session-id": "s2"})) == ("mid", "pinned")
