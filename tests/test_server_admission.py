"""Issue 10, defect 8: admission control. Bounded chat and feedback concurrency, a feedback rate and
per-key rates; a request over a limit gets a 429 with Retry-After at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

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


def test_token_bucket_saves_up_one_second_and_says_how_long_to_wait() -> None:
    bucket = TokenBucket(4.0)
    assert [bucket.take() for _ in range(4)] == [0.0] * 4
    wait = bucket.take()
    assert 0.2 < wait <= 0.25
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
    server = gateway(admission={"max_chat_in_flight": 2})
    upstreams[1]["cheap"].delay_s = 1.0
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: post(server, "/v1/chat/completions", CHAT), range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429, 429, 429]
    busy = next(r for r in responses if r.status_code == 429)
    assert busy.headers["retry-after"] == "1" and busy.json()["error"]["code"] == "rate_limited"
    assert _rejected(server, "chat") == 3.0
    assert post(server, "/v1/chat/completions", CHAT).status_code == 200  # the slots were given back


def test_feedback_beyond_its_rate_gets_429_and_nothing_is_stored_for_it(gateway) -> None:
    server = gateway(admission={"feedback_per_s": 5})
    with ThreadPoolExecutor(15) as pool:
        responses = list(
            pool.map(
                lambda q: post(server, "/v1/feedback", {"query": q, "model": "mid", "outcome": "win"}),
                GREETINGS[:15],
            )
        )
    accepted = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert 5 <= len(accepted) <= 7 and len(accepted) + len(limited) == 15
    assert int(limited[0].headers["retry-after"]) >= 1
    assert httpx.get(server.url + "/healthz").json()["feedback_records"] == len(accepted)


def test_per_key_rate_limits_apply_to_each_key_alone(gateway) -> None:
    server = gateway(api_keys=[KEY, "sk-other"], admission={"requests_per_key_per_s": 3})
    first = [post(server, "/v1/route", {"query": GREETING_QUERY}).status_code for _ in range(6)]
    other = post(server, "/v1/route", {"query": GREETING_QUERY}, authorization="Bearer sk-other")
    assert first[:3] == [200, 200, 200] and 429 in first[3:] and other.status_code == 200
    assert _rejected(server, "key") >= 1.0
