"""Issue 10, defect 8: admission control. Bounded chat and feedback concurrency, a feedback rate and
per-key rates; a request over a limit gets a 429 with Retry-After at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx", reason="the gateway tests need the server extra (httpx)")
pytest.importorskip("fastapi", reason="the gateway tests need the server extra (fastapi)")

from gateway_fixtures import KEY, post  # noqa: E402
from prometheus_client import CollectorRegistry, Counter  # noqa: E402
from server_support import GREETING_QUERY, GREETINGS  # noqa: E402

from tagrouter.server.admission import AdmissionControl, TokenBucket  # noqa: E402
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
    admission = AdmissionControl(Admission(max_chat_in_flight=1, max_feedback_in_flight=1), rejected)
    with admission.chat():
        with pytest.raises(ApiError) as caught, admission.chat():
            pass
        assert caught.value.status == 429 and caught.value.headers == {"Retry-After": "1"}
    with pytest.raises(ValueError), admission.chat():
        raise ValueError("the request failed")
    assert admission.chat_in_flight == 0
    with admission.chat():  # free again
        pass
    with admission.feedback(), pytest.raises(ApiError, match="feedback queue is full"), admission.feedback():
        pass
    assert rejected.labels("chat")._value.get() == 1 and rejected.labels("feedback")._value.get() == 1


def test_chat_beyond_the_in_flight_limit_gets_429_with_retry_after(gateway, upstreams) -> None:
    """Two chats held upstream (until released, not for a fixed time) fill ``max_chat_in_flight``; the
    next three get a 429 at once; after the release the slots are free again. Bug caught (checked by
    hand): an off-by-one (``>`` for ``>=``) that lets a third chat in."""
    server = gateway(admission={"max_chat_in_flight": 2})
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
