"""Issue 10, defect 8: admission control. Bounded chat and feedback concurrency, a feedback rate and
per-key rates; a request over a limit gets a 429 with Retry-After (after a random share of
``refusal_spread_s``)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the gateway tests need the server extra (httpx)")
pytest.importorskip("fastapi", reason="the gateway tests need the server extra (fastapi)")

from gateway_fixtures import KEY, post  # noqa: E402
from prometheus_client import CollectorRegistry, Counter  # noqa: E402
from server_support import GREETING_QUERY, GREETINGS  # noqa: E402

from tagrouter.server.admission import AdmissionControl, KeyGate, TokenBucket  # noqa: E402
from tagrouter.server.config import Admission  # noqa: E402
from tagrouter.server.errors import ApiError  # noqa: E402

CHAT = {"messages": [{"role": "user", "content": GREETING_QUERY}]}


def _rejected(server, kind: str) -> float:
    prefix = f'tagrouter_rejected_total{{kind="{kind}"}}'
    lines = [line for line in httpx.get(server.url + "/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_saves_up_one_second_and_says_how_long_to_wait() -> None:
    """On a clock the test moves. Bug caught (checked by hand): no cap on what a quiet spell saves up."""
    clock = FakeClock()
    bucket = TokenBucket(4.0, clock=clock)
    assert [bucket.take() for _ in range(4)] == [0.0] * 4
    assert bucket.take() == pytest.approx(0.25)  # empty: the next token comes in a quarter of a second
    clock.now += 0.1
    assert bucket.take() == pytest.approx(0.15)  # 0.4 of a token saved up; nothing was taken
    clock.now += 0.15
    assert bucket.take() == 0.0 and bucket.take() == pytest.approx(0.25)
    clock.now += 60.0  # a long quiet spell saves up one second's worth, no more
    assert [bucket.take() for _ in range(5)] == [0.0] * 4 + [pytest.approx(0.25)]
    assert TokenBucket(0.5).burst == 1.0


def test_admission_slots_are_given_back_also_on_errors() -> None:
    rejected = Counter("r", "r", ["kind"], registry=CollectorRegistry())
    limits = Admission(max_chat_in_flight=1, max_feedback_in_flight=1, refusal_spread_s=0)
    admission = AdmissionControl(limits, rejected)

    async def run() -> None:
        async with admission.chat():
            with pytest.raises(ApiError) as caught:
                async with admission.chat():
                    pass
            assert caught.value.status == 429 and caught.value.headers == {"Retry-After": "1"}
        with pytest.raises(ValueError):
            async with admission.chat():
                raise ValueError("the request failed")
        assert admission.chat_in_flight == 0
        async with admission.chat():  # free again
            pass
        async with admission.feedback():
            with pytest.raises(ApiError, match="feedback queue is full"):
                async with admission.feedback():
                    pass

    asyncio.run(run())
    assert rejected.labels("chat")._value.get() == 1 and rejected.labels("feedback")._value.get() == 1


def _admission(**limits: Any) -> AdmissionControl:
    """Admission control whose refusals wait their whole spread (the draw is always 1)."""
    rejected = Counter("r", "r", ["kind"], registry=CollectorRegistry())
    return AdmissionControl(Admission(**limits), rejected, draw=lambda: 1.0)


def test_refusals_wait_their_spread_but_no_more_of_them_than_the_kind_has_places() -> None:
    """A refusal waits its share of ``refusal_spread_s``; with ``places`` of a kind waiting, the next one
    is answered at once (without a draw), and a kind's count is dropped once none wait. Bug caught
    (checked by hand): the bound compared with ``>`` let one refusal more than ``places`` wait."""
    admission, draws = _admission(refusal_spread_s=0.3), []
    admission._draw = lambda: draws.append(1) or 1.0

    async def run() -> tuple[float, float]:
        waiting = [asyncio.create_task(admission.spread("chat", 2)) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert admission.refusals_waiting == {"chat": 2} and len(draws) == 2
        start = time.perf_counter()
        await admission.spread("chat", 2)  # two wait already: at once
        at_once = time.perf_counter() - start
        await asyncio.gather(*waiting)
        start = time.perf_counter()
        await admission.spread(7, 2)  # another kind (a key's number) has its own count
        return at_once, time.perf_counter() - start

    at_once, waited = asyncio.run(run())
    assert len(draws) == 3 and at_once < 0.05 and waited >= 0.29
    assert admission.refusals_waiting == {}


class _Asgi:
    """A request as an ASGI server hands it over (headers only; reading the body fails the test), and
    an app that answers 200 after ``release`` is set."""

    def __init__(self, key: str = KEY) -> None:
        self.scope = {
            "type": "http",
            "path": "/v1/chat/completions",
            "headers": [(b"content-length", b"100000"), (b"authorization", f"Bearer {key}".encode())],
        }
        self.sent: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.called = 0

    async def receive(self) -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        self.called += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await self.release.wait()  # a stream that has not ended yet
        await send({"type": "http.response.body", "body": b"done"})


def test_the_key_gate_refuses_over_the_limit_on_the_headers_and_holds_a_place_to_the_answer_end() -> None:
    """Issue 16: a key over its limit was refused only once FastAPI had routed the request and run its
    dependencies, and each refusal said ``Retry-After: 1`` at once, so a crowd of refused connections came
    back together, every second. Now the gate answers on the headers (the app is not called, the body not
    read), after the refusal's spread, with ``Connection: close``; an admitted request holds its key's
    place until its answer (here a stream) has ended."""
    admission = _admission(max_in_flight_per_key=1, refusal_spread_s=0.2)
    first, second = _Asgi(), _Asgi()
    gate = KeyGate(first.app, admission, identify=lambda header: 0 if header == f"Bearer {KEY}" else None)

    async def run() -> float:
        streaming = asyncio.create_task(gate(first.scope, first.receive, first.send))
        await asyncio.sleep(0.02)
        assert admission._key_in_flight == {0: 1} and first.called == 1  # streaming: the place is held
        start = time.perf_counter()
        await gate(second.scope, second.receive, second.send)
        refused_after = time.perf_counter() - start
        first.release.set()
        await streaming
        return refused_after

    refused_after = asyncio.run(run())
    assert first.called == 1 and admission._key_in_flight == {}  # given back once the stream ended
    start, body = second.sent
    headers = dict(start["headers"])
    assert start["status"] == 429 and headers[b"retry-after"] == b"1" and headers[b"connection"] == b"close"
    assert json.loads(body["body"])["error"]["code"] == "rate_limited"
    assert headers[b"content-length"] == str(len(body["body"])).encode()
    assert refused_after >= 0.19  # the whole spread (draw 1.0)
    assert admission._rejected.labels("key")._value.get() == 1


def test_the_key_gate_leaves_other_paths_and_unknown_keys_to_the_app() -> None:
    """Requests outside /v1 and requests without a known key (the app answers those with a 401) pass
    through the gate untouched and hold no place."""
    admission = _admission(max_in_flight_per_key=1)
    outside, unknown = _Asgi(), _Asgi(key="sk-unknown")
    outside.scope["path"] = "/healthz"
    for request in (outside, unknown):
        request.release.set()
        gate = KeyGate(
            request.app, admission, identify=lambda header: 0 if header == f"Bearer {KEY}" else None
        )
        asyncio.run(gate(request.scope, request.receive, request.send))
        assert request.called == 1 and request.sent[0]["status"] == 200
    assert admission._key_in_flight == {} and admission._rejected.labels("key")._value.get() == 0


def test_chat_beyond_the_in_flight_limit_gets_429_with_retry_after(gateway, upstreams) -> None:
    """Two chats held upstream (until released, not for a fixed time) fill ``max_chat_in_flight``; the
    next three get a 429 at once; after the release the slots are free again. Bug caught (checked by
    hand): an off-by-one (``>`` for ``>=``) that lets a third chat in."""
    server = gateway(admission={"max_chat_in_flight": 2, "refusal_spread_s": 0})
    cheap = upstreams[1]["cheap"]
    cheap.release = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(post, server, "/v1/chat/completions", CHAT) for _ in range(2)]
        deadline = time.monotonic() + 30
        while cheap.calls < 2:
            assert time.monotonic() < deadline, "the two chats never reached the upstream"
            time.sleep(0.01)
        busy = [post(server, "/v1/chat/completions", CHAT) for _ in range(3)]
        cheap.release.set()
        answered = [f.result() for f in held]
    assert [r.status_code for r in answered + busy] == [200, 200, 429, 429, 429]
    assert busy[0].headers["retry-after"] == "1" and busy[0].json()["error"]["code"] == "rate_limited"
    assert _rejected(server, "chat") == 3.0
    assert post(server, "/v1/chat/completions", CHAT).status_code == 200  # the slots were given back


def test_feedback_beyond_its_rate_gets_429_and_nothing_is_stored_for_it(gateway) -> None:
    """15 feedback posts at a rate of 5 a second: the saved-up burst of 5 passes, and at most what the
    rate adds over the measured time of the flood (not a fixed bound on a clock the machine may stretch)."""
    server = gateway(admission={"feedback_per_s": 5})
    started = time.monotonic()
    with ThreadPoolExecutor(15) as pool:
        responses = list(
            pool.map(
                lambda q: post(server, "/v1/feedback", {"query": q, "model": "mid", "outcome": "win"}),
                GREETINGS[:15],
            )
        )
    elapsed = time.monotonic() - started
    accepted = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert 5 <= len(accepted) <= 5 + 5 * elapsed and len(accepted) + len(limited) == 15
    assert limited or elapsed >= 2.0, "the flood never hit the rate"
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    assert httpx.get(server.url + "/healthz").json()["feedback_records"] == len(accepted)


def test_per_key_rate_limits_apply_to_each_key_alone(gateway) -> None:
    server = gateway(api_keys=[KEY, "sk-other"], admission={"requests_per_key_per_s": 3})
    started = time.monotonic()
    first = [post(server, "/v1/route", {"query": GREETING_QUERY}).status_code for _ in range(6)]
    elapsed = time.monotonic() - started
    other = post(server, "/v1/route", {"query": GREETING_QUERY}, authorization="Bearer sk-other")
    assert first[:3] == [200, 200, 200] and first.count(200) <= 3 + 3 * elapsed and other.status_code == 200
    assert _rejected(server, "key") == first.count(429) and (429 in first or elapsed >= 1.0)
