"""Issue 10, upstream faults: odd replies never break a good answer (defect 4), streams fail over until
their first event (defect 5), error bodies name the model and the kind of failure only (defect 6)."""

from __future__ import annotations

import json

import pytest

httpx = pytest.importorskip("httpx", reason="the gateway tests need the server extra (httpx)")
openai = pytest.importorskip(
    "openai", reason="the gateway tests need the official openai client (the dev extra)"
)
pytest.importorskip("fastapi", reason="the gateway tests need the server extra (fastapi)")

from gateway_fixtures import ask, client, closed_port_url, post  # noqa: E402
from server_support import GREETING_QUERY  # noqa: E402

from tagrouter.server.upstream import redact, relayed_error, token_counts  # noqa: E402

JUNK_USAGE = [
    {"prompt_tokens": "abc", "completion_tokens": 3},
    {"prompt_tokens": 5, "completion_tokens": -5},
    {"prompt_tokens": True, "completion_tokens": 1},
    {"prompt_tokens": 1.5, "completion_tokens": [1]},
]


def _metric(server, prefix: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def _stream(server, **kwargs):
    return client(server).chat.completions.create(
        model="tagrouter", messages=[{"role": "user", "content": GREETING_QUERY}], stream=True, **kwargs
    )


def test_token_counts_accept_only_finite_non_negative_numbers() -> None:
    assert token_counts({"prompt_tokens": 3, "completion_tokens": 4.0}) == (3.0, 4.0)
    assert token_counts({}) == (0.0, 0.0) and token_counts({"prompt_tokens": None}) == (0.0, 0.0)
    assert [token_counts(u) for u in JUNK_USAGE] == [None] * len(JUNK_USAGE)


@pytest.mark.parametrize("usage", JUNK_USAGE[:2])
def test_junk_usage_never_breaks_an_answer_or_a_stream(gateway, upstreams, usage) -> None:
    server = gateway()
    upstreams[1]["cheap"].usage = usage
    _, completion = ask(server, GREETING_QUERY)
    assert completion.model == "cheap" and completion.choices[0].message.content == "Hi Zoe, I am fine!"
    chunks = list(_stream(server, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi Zoe, I am fine!"
    assert _metric(server, 'tagrouter_bad_usage_total{model="cheap"}') == 2.0
    assert _metric(server, "tagrouter_tokens_total") == 0.0  # nothing accounted from junk
    assert _metric(server, "tagrouter_estimated_cost_usd_total") > 0  # the expected cost instead


def test_a_non_json_200_falls_back_and_counts_as_an_upstream_error(gateway, upstreams) -> None:
    server = gateway()
    upstreams[1]["cheap"].raw_body = b"<html>502 Bad Gateway</html>"
    _, completion = ask(server, GREETING_QUERY)
    assert completion.model == "mid"
    assert _metric(server, 'tagrouter_upstream_errors_total{kind="invalid_body",model="cheap"}') == 1.0
    assert _metric(server, 'tagrouter_requests_total{model="cheap"') == 0.0
    assert _metric(server, 'tagrouter_requests_total{model="mid",profile="tagrouter",status="ok"}') == 1.0


def test_a_stream_that_breaks_before_its_first_event_falls_back(gateway, upstreams) -> None:
    server = gateway()
    upstreams[1]["cheap"].break_stream_after = 0
    chunks = list(_stream(server))
    assert {c.model for c in chunks} == {"mid"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi Zoe, I am fine!"
    assert upstreams[1]["cheap"].calls == 1
    assert _metric(server, 'tagrouter_upstream_errors_total{kind="stream",model="cheap"}') == 1.0
    assert _metric(server, 'tagrouter_fallbacks_total{model="cheap"}') == 1.0


def test_a_stream_that_breaks_after_its_first_event_ends_with_an_error_event(gateway, upstreams) -> None:
    server = gateway()
    upstreams[1]["cheap"].break_stream_after = 1
    received = []
    with pytest.raises(openai.APIError, match="the upstream cheap failed mid-stream$"):
        for chunk in _stream(server):
            received.append(chunk.model)
    assert received == ["cheap"] and upstreams[1]["mid"].calls == 0


def test_all_failing_names_models_and_kinds_only(gateway, upstreams, monkeypatch) -> None:
    monkeypatch.setenv("TAGROUTER_TEST_DEAR_KEY", "sk-dear-secret")
    dead = closed_port_url()
    server = gateway(
        upstream_timeout_s=0.3,
        endpoints={
            "mid": {"base_url": dead},
            "dear": {"base_url": dead, "api_key_env": "TAGROUTER_TEST_DEAR_KEY"},
        },
    )
    upstreams[1]["cheap"].delay_s = 2.0
    response = post(
        server, "/v1/chat/completions", {"messages": [{"role": "user", "content": GREETING_QUERY}]}
    )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["message"] == (
        "all upstream models failed (cheap: timed out; mid: could not be reached; dear: could not be reached)"
    )
    assert "127.0.0.1" not in response.text and "TAGROUTER_TEST" not in response.text


def test_an_upstream_4xx_is_relayed_with_its_keys_redacted(gateway, upstreams, monkeypatch) -> None:
    monkeypatch.setenv("TAGROUTER_TEST_CHEAP_KEY", "sk-cheap-secret-123")
    servers = upstreams[0]
    server = gateway(
        endpoints={
            "cheap": {"base_url": servers["cheap"].url + "/v1", "api_key_env": "TAGROUTER_TEST_CHEAP_KEY"}
        }
    )
    upstreams[1]["cheap"].fail_status, upstreams[1]["cheap"].echo_auth = 400, True
    response = post(
        server, "/v1/chat/completions", {"messages": [{"role": "user", "content": GREETING_QUERY}]}
    )
    assert response.status_code == 400 and upstreams[1]["cheap"].seen_auth == ["Bearer sk-cheap-secret-123"]
    assert response.json()["error"] == {
        "message": "the upstream cheap rejected the request (HTTP 400): cheap failed on purpose "
        "(you sent Bearer [redacted])",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert "sk-cheap-secret" not in response.text


def test_relayed_errors_take_only_strings_and_redact_every_key() -> None:
    body = json.dumps({"error": {"message": "key sk-a1 and sk-b2 " + "x" * 900, "code": 7, "param": ["p"]}})
    error = relayed_error("mid", 422, body.encode(), ["sk-a1", "sk-b2"])["error"]
    assert error["message"].startswith(
        "the upstream mid rejected the request (HTTP 422): key [redacted] and [redacted]"
    )
    assert len(error["message"]) < 600 and error["code"] is None and error["param"] is None
    assert relayed_error("mid", 400, b"<html>", [])["error"]["message"] == (
        "the upstream mid rejected the request (HTTP 400)"
    )
    assert redact("Authorization: bearer abc.def", []) == "Authorization: Bearer [redacted]"
