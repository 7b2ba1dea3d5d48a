"""One chat request is read once (one validation, one Needs, one constraints check) and bad input raised
anywhere on its way is one 400 with the OpenAI error body."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from conftest import capable_router  # noqa: E402
from gateway_fixtures import post, start_gateway  # noqa: E402
from server_support import CODE_QUERY, MODELS  # noqa: E402

import tagrouter.chat  # noqa: E402
import tagrouter.router  # noqa: E402
import tagrouter.server.app  # noqa: E402
from tagrouter import TagRouter  # noqa: E402
from tagrouter.errors import DataError  # noqa: E402


@pytest.fixture
def limited_gateway(router_dir: Path, upstreams, tmp_path: Path):
    """A gateway whose models all have rate limits (so each answer is counted against its model)."""
    limits = {"rate_limits": {"requests_per_minute": 1000}}
    router = capable_router(TagRouter.load(router_dir), **dict.fromkeys(MODELS, limits))
    router.save(tmp_path / "router")
    server = start_gateway(tmp_path / "router", upstreams[0], tmp_path / "feedback.sqlite3")
    yield server
    server.stop()


def spy(monkeypatch: pytest.MonkeyPatch, calls: list[str], module: object, name: str) -> None:
    """Record in ``calls`` each call of ``module.name``, which still does its work."""
    original = getattr(module, name)

    def recorded(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, recorded)


def test_a_chat_request_is_read_and_checked_once(limited_gateway, monkeypatch):
    calls: list[str] = []
    # inside tagrouter.chat, whoever calls its readers: each message is token-counted once (its Needs),
    # and its text is read by needs_of, plus the last user turn by routing_text, the earlier by earlier_text
    spy(monkeypatch, calls, tagrouter.chat, "count_tokens")
    spy(monkeypatch, calls, tagrouter.chat, "message_text")
    spy(monkeypatch, calls, tagrouter.server.app, "allowed")  # the gateway's check before batching
    spy(monkeypatch, calls, tagrouter.router, "allowed")  # route_batch's own, when given needs
    messages = [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": CODE_QUERY},
    ]
    response = post(limited_gateway, "/v1/chat/completions", {"model": "tagrouter", "messages": messages})
    assert response.status_code == 200, response.text
    assert response.headers["x-tagrouter-model"] == "mid"  # code goes to mid (server_support)
    assert calls.count("count_tokens") == 3 and calls.count("message_text") == 3 + 1 + 1
    assert calls.count("allowed") == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {"model": "tagrouter", "messages": [{"role": "user", "content": CODE_QUERY}]},
        ),
        ("/v1/route", {"query": CODE_QUERY}),
    ],
)
def test_bad_input_found_while_routing_is_a_400_with_its_message(gateway, upstreams, monkeypatch, path, body):
    server = gateway()

    def refuse(self, queries, *args, **kwargs):
        raise DataError("this query cannot be routed", field="query")

    monkeypatch.setattr(TagRouter, "route_batch", refuse)
    response = post(server, path, body)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": {
            "message": "field 'query': this query cannot be routed",
            "type": "invalid_request_error",
            "param": "query",
            "code": None,
        }
    }
    assert all(b.calls == 0 for b in upstreams[1].values())  # nothing was sent upstream
