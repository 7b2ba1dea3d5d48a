"""Issue 10, client input: every bad request fails alone with a 4xx naming what is wrong (defects 1-3, 11),
and routing work for long inputs is bounded (defect 2)."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the gateway tests need the server extra (httpx)")
pytest.importorskip("fastapi", reason="the gateway tests need the server extra (fastapi)")
pytest.importorskip("openai", reason="the gateway tests need the official openai client (the dev extra)")

from gateway_fixtures import ask, post  # noqa: E402
from server_support import CODE_QUERY, GREETING_QUERY  # noqa: E402

from tagrouter.chat import capped, visible  # noqa: E402
from tagrouter.server.validation import MAX_JSON_DEPTH  # noqa: E402

POSTS = ["/v1/chat/completions", "/v1/route", "/v1/feedback"]


def _chat(content: str, **fields) -> dict:
    return {"model": "tagrouter", "messages": [{"role": "user", "content": content}], **fields}


def test_a_lone_surrogate_fails_its_request_alone_with_a_400(gateway, upstreams) -> None:
    server = gateway()
    bad = json.dumps(_chat("hello \ud800 there")).encode()  # json.dumps writes the escape "\ud800"
    assert b"\\ud800" in bad

    def one(number: int) -> httpx.Response:
        if number % 10 == 0:
            return post(server, "/v1/chat/completions", bad)
        return post(server, "/v1/chat/completions", _chat(GREETING_QUERY if number % 2 else CODE_QUERY))

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(one, range(44)))
    statuses = [r.status_code for r in responses]
    assert statuses == [400 if n % 10 == 0 else 200 for n in range(44)]
    error = responses[0].json()["error"]
    assert error["param"] == "messages.0.content" and "lone surrogate (U+D800)" in error["message"]
    assert sum(b.calls for b in upstreams[1].values()) == 39  # the 5 bad ones never went upstream
    for path, body in (
        ("/v1/route", {"query": "a \udfff"}),
        ("/v1/feedback", {"query": "\ud800", "model": "mid", "outcome": "win"}),
    ):
        response = post(server, path, json.dumps(body).encode())
        assert response.status_code == 400 and "lone surrogate" in response.json()["error"]["message"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_are_a_400_and_never_go_upstream(gateway, upstreams, literal: bytes) -> None:
    server = gateway()
    body = json.dumps(_chat(CODE_QUERY, temperature=0.5)).encode().replace(b"0.5", literal)
    response = post(server, "/v1/chat/completions", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and "must be finite" in error["message"]
    assert sum(b.calls for b in upstreams[1].values()) == 0


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"stream": "yes"}, "stream"), ({"stream": 1}, "stream"), ({"model": 7}, "model")],
)
def test_fields_are_strictly_typed(gateway, fields: dict, param: str) -> None:
    response = post(gateway(), "/v1/chat/completions", _chat(CODE_QUERY, **fields))
    assert response.status_code == 400 and response.json()["error"]["param"] == param


@pytest.mark.parametrize("path", POSTS)
def test_deep_nesting_is_a_400_on_every_post_endpoint(gateway, path: str) -> None:
    server = gateway()
    for body in (b"[" * 50_000, b'{"a": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}"):
        response = post(server, path, body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "too_deep"
    just_deep_enough = _chat(
        CODE_QUERY, extra=json.loads("[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1))
    )
    assert post(server, "/v1/chat/completions", just_deep_enough).status_code == 200


@pytest.mark.parametrize("path", POSTS)
def test_bodies_over_the_limit_are_a_413_on_every_post_endpoint(gateway, path: str) -> None:
    server = gateway(max_request_bytes=2048)
    response = post(server, path, {"query": "x" * 3000})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("text", ["\u200b\u200b\u200b", "\x00\x00", " \ufeff\u2060\t\n", "\u200d\ufe0f"])
def test_text_of_only_invisible_characters_is_a_400(gateway, text: str) -> None:
    server = gateway()
    chat = post(server, "/v1/chat/completions", _chat(text))
    assert chat.status_code == 400 and "visible text" in chat.json()["error"]["message"]
    assert post(server, "/v1/route", {"query": text}).status_code == 400
    feedback = post(server, "/v1/feedback", {"query": text, "model": "mid", "outcome": "win"})
    assert feedback.status_code == 400 and feedback.json()["error"]["param"] == "query"


def test_visible_and_capped() -> None:
    assert visible("a\u200b") and visible("\u200bé") and not visible("\u200b \x00\u00ad")
    assert capped("abc", 10) == "abc"
    assert capped("a" * 50 + "b" * 50, 11) == "aaaaa\nbbbbb"
    assert len(capped("x" * 10_000, 4000)) == 4000


def test_a_huge_query_is_routed_on_its_head_and_tail_but_sent_whole(
    gateway, upstreams, router_dir: Path, tmp_path: Path
) -> None:
    """A 1 MB query: the decision's tags are those of its capped text (first and last 500 characters),
    the whole text goes upstream. Bugs caught (checked by hand): the cap skipped on the chat path (the
    decision is then made on the whole text: other tags, and seconds of tagging), or only the head kept."""
    from urllib.parse import unquote

    from tagrouter.router import TagRouter

    server = gateway(max_request_bytes=2_000_000, max_routing_chars=1000)
    query = CODE_QUERY + " " + "lorem ipsum dolor sit amet " * 37_000 + GREETING_QUERY  # ~1 MB
    raw, completion = ask(server, query)
    assert raw.headers["x-tagrouter-model"] in ("cheap", "mid", "dear")
    assert upstreams[1][completion.model].seen_queries == [query]  # the whole text went upstream
    tags = [unquote(t) for t in raw.headers["x-tagrouter-tags"].split(",")]
    tagger = TagRouter.load(router_dir).tagger
    assert tags == tagger.tag([capped(query, 1000)])[0]
    assert tags != tagger.tag([query[:500] + query[200_000:200_500]])[0]  # the head and tail decide
    route = post(server, "/v1/route", {"query": query}).json()["decisions"][0]
    assert route["query"] == capped(query, 1000)
    feedback = post(server, "/v1/feedback", {"request_id": completion.id, "outcome": "win"})
    assert feedback.json()["status"] == "recorded"
    server.stop()
    with sqlite3.connect(tmp_path / "feedback.sqlite3") as db:
        (stored,) = db.execute("SELECT query FROM requests").fetchone()
    assert stored == capped(query, 1000)  # the store keeps what routing used, not the whole text


@pytest.mark.parametrize(
    ("content", "param", "message"),
    [
        ([{"type": "text", "text": "hi \ud800"}], "messages.0.content.0.text", "lone surrogate"),
        ([{"type": 3}], "messages.0.content.0.type", "valid string"),
        (7, "messages.0.content", "a string, a list of content parts, or null"),
    ],
)
def test_errors_in_message_content_name_the_part_at_fault(gateway, content, param: str, message: str) -> None:
    response = post(gateway(), "/v1/chat/completions", json.dumps(_chat(content)).encode())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and message in error["message"]
