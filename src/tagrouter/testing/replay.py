"""A small OpenAI-compatible upstream that replays recorded answers, for tests, benchmarks and offline demos.

It answers ``POST /v1/chat/completions`` with the recorded answer to the last user message (or a stock
answer), as one JSON body or as an SSE stream of word chunks, and can be told to misbehave: answer after a
delay, answer an error status (quoting the caller's Authorization header in it, if told to), send junk
token usage, answer 200 with a body that is not JSON, or break a stream before or after its first event.
``POST /control/behaviour`` with a JSON object of :class:`ReplayBehaviour` fields (``raw_body`` as text;
``"reset": true`` first) changes how an upstream that runs in another process behaves.

A stand-in given a ``skill`` answers only the queries it can: a query's :func:`difficulty` is 2 (code,
maths), 1 (writing) or 0 (the rest), and above its skill the stand-in answers :data:`UNSURE`, which the
judge of :mod:`tagrouter.testing.judge` (``sure_beats_unsure``) rules a loss. So a collection over
stand-ins of skills 0, 1 and 2 gives a history on which routing pays off, as it does on real pools.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass
class ReplayBehaviour:
    """How the replay upstream behaves now (change it while it runs); ``calls`` counts requests."""

    delay_s: float = 0.0
    fail_status: int | None = None
    echo_auth: bool = False  # the error body of ``fail_status`` quotes the Authorization header
    usage: dict[str, Any] | None = None  # sent instead of the true token usage (e.g. junk counts)
    raw_body: bytes | None = None  # a 200 with this body instead of the answer (e.g. not JSON)
    break_stream_after: int | None = None  # drop the connection after this many stream events
    release: threading.Event | None = None  # if set, each request waits for this event before answering
    calls: int = 0
    seen_models: list[str] = field(default_factory=list)
    seen_auth: list[str | None] = field(default_factory=list)
    seen_queries: list[str] = field(default_factory=list)  # the last user message of each request

    def reset(self) -> None:
        """Back to answering at once and correctly (the counters start again)."""
        fresh = ReplayBehaviour()
        for name in vars(fresh):
            setattr(self, name, getattr(fresh, name))


#: The answer of a stand-in to a query above its skill.
UNSURE = "I am not sure how to answer that."

#: What makes a query hard, hardest first: code and maths (2), writing (1); anything else is 0.
_DIFFICULTY = (
    (
        2,
        re.compile(
            r"\b(code|python|java|javascript|typescript|sql|bash|go|function|class|bug|regular expression|linked list"
            r"|algorithm|prove|proof|solve|equation|integral|derivative|compute|probability|prime|roots?|angles?)\b"
            r"|c\+\+|\d",
            re.IGNORECASE,
        ),
    ),
    (
        1,
        re.compile(
            r"\b(write|rewrite|poem|story|email|letter|essay|summari[sz]e|limerick|haiku|toast|description)\b",
            re.IGNORECASE,
        ),
    ),
)


def difficulty(query: str) -> int:
    """How hard ``query`` is for a stand-in: 2 (code, maths), 1 (writing) or 0."""
    for level, pattern in _DIFFICULTY:
        if pattern.search(query):
            return level
    return 0


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if (
            isinstance(message, dict)
            and message.get("role") == "user"
            and isinstance(message.get("content"), str)
        ):
            return message["content"]
    return ""


def create_replay_app(
    name: str,
    answers: Mapping[str, str] | None = None,
    behaviour: ReplayBehaviour | None = None,
    skill: int | None = None,
) -> FastAPI:
    """An upstream called ``name`` answering each query with ``answers[query]`` or ``"[name] …"``; with a
    ``skill``, it answers :data:`UNSURE` to the queries whose :func:`difficulty` is above it."""
    answers = answers or {}
    behaviour = behaviour or ReplayBehaviour()
    app = FastAPI(title=f"replay upstream {name}")
    app.state.behaviour = behaviour

    @app.post("/v1/chat/completions")
    async def chat(request: Request):  # noqa: ANN202 - JSON or SSE
        body = await request.json()
        behaviour.calls += 1
        behaviour.seen_models.append(body.get("model"))
        behaviour.seen_auth.append(request.headers.get("authorization"))
        while behaviour.release is not None and not behaviour.release.is_set():
            await asyncio.sleep(0.005)
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.fail_status:
            echoed = f" (you sent {request.headers.get('authorization')})" if behaviour.echo_auth else ""
            error = {
                "message": f"{name} failed on purpose{echoed}",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            return JSONResponse({"error": error}, status_code=behaviour.fail_status)
        if behaviour.raw_body is not None:
            return Response(behaviour.raw_body, media_type="application/json")
        query = _last_user_text(body.get("messages", []))
        behaviour.seen_queries.append(query)
        text = answers.get(query, f"[{name}] answer to: {query[:60]}")
        if skill is not None and difficulty(query) > skill:
            text = UNSURE
        usage = behaviour.usage or {
            "prompt_tokens": max(1, len(query) // 4),
            "completion_tokens": len(text.split()),
            "total_tokens": max(1, len(query) // 4) + len(text.split()),
        }
        base = {
            "id": "chatcmpl-" + uuid.uuid4().hex[:12],
            "created": int(time.time()),
            "model": body.get("model"),
        }
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):  # as OpenAI does: a bad parameter is the request's fault
            error = {"message": "stream_options must be an object", "type": "invalid_request_error"}
            return JSONResponse({"error": {**error, "param": "stream_options", "code": None}}, 400)
        include_usage = bool(options.get("include_usage"))
        events = _chunks(base, text, usage if include_usage else None, behaviour.break_stream_after)
        return StreamingResponse(events, media_type="text/event-stream")

    @app.post("/control/behaviour")
    async def control(request: Request) -> dict[str, Any]:
        changes = await request.json()
        if changes.pop("reset", False):
            behaviour.reset()
        for name, value in changes.items():
            if name not in CONTROLLABLE:
                return JSONResponse({"error": f"cannot set {name!r}"}, status_code=400)
            setattr(behaviour, name, value.encode() if name == "raw_body" and value is not None else value)
        return {name: getattr(behaviour, name) for name in CONTROLLABLE if name != "raw_body"}

    return app


#: The behaviour fields that ``POST /control/behaviour`` may set.
CONTROLLABLE = ("delay_s", "fail_status", "echo_auth", "usage", "raw_body", "break_stream_after")


async def _chunks(
    base: dict[str, Any], text: str, usage: dict[str, Any] | None, break_after: int | None
) -> AsyncIterator[str]:
    for number, event in enumerate(_events(base, text, usage)):
        if break_after is not None and number == break_after:
            raise ConnectionAbortedError("the replay upstream breaks the stream on purpose")
        yield event


def _events(base: dict[str, Any], text: str, usage: dict[str, Any] | None) -> list[str]:
    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta or finish else []
        chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
        return f"data: {json.dumps(chunk)}\n\n"

    words = text.split(" ")
    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": word if i == 0 else " " + word}) for i, word in enumerate(words)]
    events.append(event({}, "stop"))
    if usage is not None:
        events.append(event({}, usage=usage))
    return [*events, "data: [DONE]\n\n"]
