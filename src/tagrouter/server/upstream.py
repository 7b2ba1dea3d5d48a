"""Calls to the models' OpenAI-compatible upstreams, with fallback down the router's ranking.

A model's call fails over to the next model when the upstream times out, cannot be reached, or answers
with a status that says the upstream (not the request) is at fault: 5xx, 429, 408, 401, 403, 404. Other
4xx answers are the request's fault: the client gets the upstream's error message, with upstream keys,
bearer tokens, URLs, host names and addresses and file paths scrubbed, in the gateway's own error body. A
200 whose body is not a JSON object is a failure (and falls back), as is a stream that ends or breaks
before its first event; a stream fails over until that first event has been passed on. Upstream keys are
read from the environment at call time and never logged.

Reading is linear in what the upstream sends and capped: a body over ``max_upstream_body_bytes`` is a
failure (``too_large``, so the next model is tried, and a 502 names the limit when none is left); a stream
line over ``max_upstream_line_bytes`` or a stream over ``max_upstream_body_bytes`` in all ends with an
error event. Token counts are accepted only as finite numbers from 0 to :data:`MAX_USAGE_TOKENS`.

The client is aiohttp: under a hundred concurrent requests it keeps about ten times the throughput of
httpx's async client on a 2-core machine (``scripts/bench_gateway.py`` measures the gateway end to end).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tagrouter.catalog import Catalog, Endpoint
from tagrouter.errors import DataError
from tagrouter.server.config import MAX_UPSTREAM_BODY_BYTES, MAX_UPSTREAM_LINE_BYTES, GatewayConfig

log = logging.getLogger("tagrouter.server")

#: Upstream statuses that make the gateway try the next model (besides every 5xx).
FALLBACK_STATUSES = frozenset({401, 403, 404, 408, 429})


@dataclass(frozen=True)
class Failure:
    """One failed upstream attempt: ``kind`` and ``public`` go to clients, ``detail`` only to the log."""

    model: str
    kind: str  # timeout | connect | status | config | invalid_body | stream | too_large
    detail: str

    @property
    def public(self) -> str:
        """What a client may read: the model and the kind of failure (an HTTP status at most)."""
        return f"{self.model}: {self.detail if self.kind == 'status' else _PUBLIC[self.kind]}"


_PUBLIC = {
    "timeout": "timed out",
    "connect": "could not be reached",
    "config": "is not configured",
    "invalid_body": "answered with a body that is not a JSON object or an event stream",
    "stream": "ended its stream before the first event",
    "too_large": "answered with more bytes than the gateway accepts (max_upstream_body_bytes)",
}


@dataclass
class Answer:
    """The upstream answer that was accepted: a success, or a 4xx that is the request's own fault.

    ``data`` is the parsed body of a non-streaming answer (for a 4xx: the error body the client gets); a
    streaming answer is relayed from ``head`` (its first event, already read) and then ``response``.
    """

    model: str
    status: int
    data: dict[str, Any] | None = None
    response: aiohttp.ClientResponse | None = None
    head: bytes = b""
    failures: list[Failure] = field(default_factory=list)


class AllUpstreamsFailed(Exception):
    """Every model tried failed; ``failures`` says how, in order (the message names kinds only)."""

    def __init__(self, failures: list[Failure]) -> None:
        self.failures = failures
        tried = "; ".join(f.public for f in failures) or "no model has an endpoint"
        super().__init__(f"all upstream models failed ({tried})")


#: Called for each failed attempt with the failure and whether another model will be tried.
OnFailure = Callable[[Failure, bool], None]

_BEARER = re.compile(r"(?i)bearer\s+[\w.~+/=-]+")
#: How a server-sent event (or a comment) starts.
SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")
#: Longest upstream error message relayed to a client.
MAX_RELAYED_MESSAGE = 500
#: Most bytes of an upstream 4xx body read for its message.
MAX_ERROR_BODY = 65_536
#: Largest token count accepted in an upstream's ``usage`` (more is junk, not a count).
MAX_USAGE_TOKENS = 1_000_000_000

#: What a relayed error message must not show a client, each with what replaces it (applied in order):
#: URLs, file paths, host:port, IP addresses, and host names under private suffixes.
_INTERNALS = [
    (re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+"), "[url]"),
    (re.compile(r"(?<![\w.:/])(?:~|\.{1,2})?(?:/[\w.@+-]+){2,}/?"), "[path]"),
    (re.compile(r"(?i)\b[a-z]:\\[^\s'\"<>]*"), "[path]"),
    (
        re.compile(r"(?i)(?:\[[0-9a-f:.]+\]|\b(?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)*)):\d{1,5}\b"),
        "[host]",
    ),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"), "[host]"),
    (
        re.compile(
            r"(?i)\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:internal|local|localdomain|lan|corp|svc|home|intranet)\b"
        ),
        "[host]",
    ),
]


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret and every bearer token replaced by ``[redacted]``."""
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return _BEARER.sub("Bearer [redacted]", text)


def scrub(text: str) -> str:
    """``text`` without the upstream's internals: URLs, file paths, host:port, IP addresses and private
    host names are replaced by ``[url]``, ``[path]`` and ``[host]``; the rest of the message is kept."""
    for pattern, replacement in _INTERNALS:
        text = pattern.sub(replacement, text)
    return text


def relayed_error(model: str, status: int, content: bytes, secrets: list[str]) -> dict[str, Any]:
    """The error body a client gets for an upstream 4xx: the upstream's error message (redacted,
    scrubbed of internals, capped) and its string ``type``/``param``/``code``; never the upstream's body
    as it is."""
    try:
        error = json.loads(content).get("error")
    except (ValueError, AttributeError, RecursionError):
        error = None
    error = error if isinstance(error, dict) else {}

    def text(name: str, limit: int = 100) -> str | None:
        value = error.get(name)
        return scrub(redact(value[:limit], secrets)) if isinstance(value, str) else None

    message = f"the upstream {model} rejected the request (HTTP {status})"
    if upstream_message := text("message", MAX_RELAYED_MESSAGE):
        message += ": " + upstream_message
    return {
        "error": {
            "message": message,
            "type": text("type") or "invalid_request_error",
            "param": text("param"),
            "code": text("code"),
        }
    }


def token_counts(usage: dict[str, Any]) -> tuple[float, float] | None:
    """``(prompt_tokens, completion_tokens)`` of an upstream's ``usage`` (absent counts as 0); None when a
    count is not a number from 0 to :data:`MAX_USAGE_TOKENS` (such as ``"abc"``, -5, NaN or 10**400)."""
    counts = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name) or 0
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= MAX_USAGE_TOKENS
        ):
            return None
        counts.append(float(value))
    return counts[0], counts[1]


class Upstreams:
    """One pooled HTTP client for every model's endpoint (the catalogue's, or the config's override).

    Raises :class:`DataError` for an endpoint override of a model that is not in the catalogue, and for
    an endpoint whose ``api_key_env`` variable is not set. Call :meth:`start` and :meth:`aclose` on the
    event loop that serves the requests.
    """

    def __init__(self, catalog: Catalog, config: GatewayConfig) -> None:
        self.config = config
        unknown = sorted(set(config.endpoints) - set(catalog.names))
        if unknown:
            raise DataError(
                f"{', '.join(unknown)} not in the router's catalogue ({', '.join(catalog.names)})",
                field="endpoints",
            )
        self.endpoints: dict[str, Endpoint] = {
            card.name: endpoint
            for card in catalog.models
            if (endpoint := config.endpoints.get(card.name) or card.endpoint) is not None
        }
        for model, endpoint in self.endpoints.items():
            if endpoint.api_key_env and not os.environ.get(endpoint.api_key_env):
                raise DataError(
                    f"the upstream key variable {endpoint.api_key_env} is not set",
                    field=f"endpoints.{model}.api_key_env",
                )
        self._session: aiohttp.ClientSession | None = None

    def for_catalog(self, catalog: Catalog) -> Upstreams:
        """The endpoints of another catalogue (a reload's) over this one's pooled client, so that the
        requests still in flight on these endpoints finish and one :meth:`aclose` closes both.

        Raises :class:`DataError` as the constructor does."""
        upstreams = Upstreams(catalog, self.config)
        upstreams._session = self._session
        return upstreams

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.config.max_upstream_connections)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _timeout_s(self, model: str) -> float:
        return self.config.upstream_timeout_s or self.endpoints[model].timeout_s

    def secrets(self) -> list[str]:
        """The upstream keys now set (to redact from anything relayed)."""
        names = {e.api_key_env for e in self.endpoints.values() if e.api_key_env}
        return [key for name in names if (key := os.environ.get(name))]

    async def send(
        self, models: list[str], body: dict[str, Any], *, stream: bool, on_failure: OnFailure
    ) -> Answer:
        """Send ``body`` to the first model of ``models`` that answers, trying them in order.

        With ``stream=False`` the whole body is read and parsed (within the endpoint's timeout); with
        ``stream=True`` the answer is returned once its first event is in, for the caller to relay.
        """
        failures: list[Failure] = []
        for number, model in enumerate(models, start=1):
            if model not in self.endpoints:
                outcome: Answer | Failure = Failure(model, "config", "no endpoint configured")
            else:
                outcome = await self._attempt(model, body, stream)
            if isinstance(outcome, Answer):
                outcome.failures = failures
                return outcome
            log.warning("upstream %s failed (%s): %s", outcome.model, outcome.kind, outcome.detail)
            failures.append(outcome)
            on_failure(outcome, number < len(models))
        raise AllUpstreamsFailed(failures)

    async def _attempt(self, model: str, body: dict[str, Any], stream: bool) -> Answer | Failure:
        assert self._session is not None, "Upstreams.start() was not called"
        endpoint = self.endpoints[model]
        headers = {}
        if endpoint.api_key_env:
            key = os.environ.get(endpoint.api_key_env)
            if not key:
                return Failure(model, "config", f"environment variable {endpoint.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        limit = self._timeout_s(model)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=min(self.config.connect_timeout_s, limit), sock_read=limit
        )
        response: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(limit):
                response = await self._session.post(
                    endpoint.base_url.rstrip("/") + "/chat/completions",
                    json={**body, "model": endpoint.model or model},
                    headers=headers,
                    timeout=timeout,
                )
                status = response.status
                if status >= 500 or status in FALLBACK_STATUSES:
                    return Failure(model, "status", f"HTTP {status}")
                if status >= 400:
                    content = await _read_capped(response, MAX_ERROR_BODY) or b""
                    return Answer(model, status, relayed_error(model, status, content, self.secrets()))
                if stream:
                    head = await _first_event(response, self.config.max_upstream_line_bytes)
                    if not head:
                        return Failure(model, "stream", "the stream ended before its first event")
                    if not head.lstrip().startswith(SSE_FIELDS):
                        return Failure(
                            model, "invalid_body", f"HTTP {status} stream that is not server-sent events"
                        )
                    answer, response = Answer(model, status, response=response, head=head), None
                    return answer
                body_limit = self.config.max_upstream_body_bytes
                content = await _read_capped(response, body_limit)
                if content is None:
                    return Failure(model, "too_large", f"HTTP {status} with a body over {body_limit} bytes")
            data = _json_object(content)
            if data is None:
                return Failure(model, "invalid_body", f"HTTP {status} with a body that is not a JSON object")
            return Answer(model, status, data)
        except TimeoutError:
            return Failure(model, "timeout", f"no answer within {limit:g} s")
        except aiohttp.ClientError as exc:
            kind = "stream" if stream and response is not None and response.status < 400 else "connect"
            return Failure(model, kind, f"{type(exc).__name__}: {exc}")
        finally:
            if response is not None:
                response.release()


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes (read in pieces, joined once)."""
    if response.content_length is not None and response.content_length > limit:
        return None
    pieces, size = [], 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > limit:
            return None
        pieces.append(piece)
    return b"".join(pieces)


async def _first_event(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The stream's bytes up to the end of its first event (or its end, or ``limit`` bytes); b"" if it
    has none. Each piece is searched once (with 3 bytes of overlap), so reading is linear."""
    head = bytearray()
    while len(head) < limit:
        piece = await response.content.readany()
        if not piece:
            break
        start = max(0, len(head) - 3)
        head += piece
        if head.find(b"\n\n", start) >= 0 or head.find(b"\r\n\r\n", start) >= 0:
            break
    return bytes(head) if head.strip() else b""


def rewrite_chunk(line: str, model: str, request_id: str) -> tuple[str, dict[str, Any] | None]:
    """An SSE line with ``model`` and ``id`` set to the gateway's, and the usage it carries (if any)."""
    if not line.startswith("data:"):
        return line, None
    payload = line[5:].strip()
    if not payload.startswith("{"):
        return line, None
    try:
        chunk = json.loads(payload)
    except json.JSONDecodeError:
        return line, None
    if not isinstance(chunk, dict):
        return line, None
    if "model" in chunk:
        chunk["model"] = model
    if "id" in chunk:
        chunk["id"] = request_id
    usage = chunk.get("usage")
    return "data: " + json.dumps(chunk, ensure_ascii=False), usage if isinstance(usage, dict) else None


class StreamTooLarge(Exception):
    """An upstream stream sent a line or a total over the gateway's limits."""


class _Lines:
    """Splits a byte stream into lines in time linear in its length: each piece is searched once, and a
    line longer than ``max_line`` or a stream longer than ``max_total`` raises :class:`StreamTooLarge`."""

    def __init__(self, max_line: int, max_total: int) -> None:
        self.max_line, self.max_total = max_line, max_total
        self.pending = bytearray()
        self.total = 0

    def feed(self, piece: bytes) -> list[bytes]:
        self.total += len(piece)
        if self.total > self.max_total:
            raise StreamTooLarge(f"more than {self.max_total} bytes in all")
        start = len(self.pending)
        self.pending += piece
        lines, begin = [], 0
        end = self.pending.find(b"\n", start)
        while end >= 0:
            lines.append(bytes(self.pending[begin:end]))
            begin = end + 1
            end = self.pending.find(b"\n", begin)
        del self.pending[:begin]
        if len(self.pending) > self.max_line:
            raise StreamTooLarge(f"a line of more than {self.max_line} bytes")
        return lines


async def relay_stream(
    answer: Answer,
    request_id: str,
    on_usage: Callable[[dict[str, Any]], None],
    on_error: Callable[[str], None],
    *,
    max_line_bytes: int = MAX_UPSTREAM_LINE_BYTES,
    max_body_bytes: int = MAX_UPSTREAM_BODY_BYTES,
) -> AsyncIterator[bytes]:
    """Pass an upstream SSE stream on (its first event, then the rest), line by line, with the chosen
    model's name in every chunk.

    A failure after the first event (the client has bytes) ends the stream with an OpenAI-style error
    event, as does a line over ``max_line_bytes`` or a stream over ``max_body_bytes`` (code
    ``upstream_too_large``; the rest of the upstream's stream is not read).
    """
    assert answer.response is not None, "relay_stream needs a streaming answer"

    def out(raw: bytes) -> bytes:
        text, usage = rewrite_chunk(
            raw.decode("utf-8", errors="replace").rstrip("\r"), answer.model, request_id
        )
        if usage:
            on_usage(usage)
        return (text + "\n").encode("utf-8")

    splitter = _Lines(max_line_bytes, max_body_bytes)

    def lines(piece: bytes) -> bytes:
        return b"".join([out(line) for line in splitter.feed(piece)])

    try:
        yield lines(answer.head)
        async for piece in answer.response.content.iter_any():  # whatever has arrived: one write per read
            if relayed := lines(piece):
                yield relayed
        if splitter.pending:
            yield out(bytes(splitter.pending))
    except (aiohttp.ClientError, TimeoutError, StreamTooLarge) as exc:
        too_large = isinstance(exc, StreamTooLarge)
        on_error("too_large" if too_large else type(exc).__name__)
        log.warning("upstream %s failed mid-stream: %s: %s", answer.model, type(exc).__name__, exc)
        message = f"the upstream {answer.model} " + (
            f"sent {exc}, over the gateway's limit" if too_large else "failed mid-stream"
        )
        code = "upstream_too_large" if too_large else "upstream_stream_failed"
        error = {"error": {"message": message, "type": "upstream_error", "param": None, "code": code}}
        yield f"\ndata: {json.dumps(error)}\n\n".encode()
    finally:
        answer.response.release()
