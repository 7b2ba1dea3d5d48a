"""Calls to the models' OpenAI-compatible upstreams, with fallback down the router's ranking.

A model's call fails over to the next model when the upstream times out, cannot be reached, or answers
with a status that says the upstream (not the request) is at fault: 5xx, 429, 408, 401, 403, 404. Other
4xx answers are the request's fault and go back to the client as they are. A stream can fail over only
until its first byte has been passed on. Upstream keys are read from the environment at call time and
never logged.

The client is aiohttp: under a hundred concurrent requests it keeps about ten times the throughput of
httpx's async client on a 2-core machine (``scripts/bench_gateway.py`` measures the gateway end to end).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tagrouter.catalog import Catalog, Endpoint
from tagrouter.server.config import GatewayConfig

log = logging.getLogger("tagrouter.server")

#: Upstream statuses that make the gateway try the next model (besides every 5xx).
FALLBACK_STATUSES = frozenset({401, 403, 404, 408, 429})


@dataclass(frozen=True)
class Failure:
    """One failed upstream attempt (never holds a key)."""

    model: str
    kind: str  # timeout | connect | status | config
    detail: str


@dataclass
class Answer:
    """The upstream response that was accepted (success, or a 4xx that is the request's own fault).

    ``body`` holds the whole body of a non-streaming answer; a streaming answer is read from ``response``.
    """

    model: str
    response: aiohttp.ClientResponse
    body: bytes | None = None
    failures: list[Failure] = field(default_factory=list)

    @property
    def status(self) -> int:
        return self.response.status


class AllUpstreamsFailed(Exception):
    """Every model tried failed; ``failures`` says how, in order."""

    def __init__(self, failures: list[Failure]) -> None:
        self.failures = failures
        tried = "; ".join(f"{f.model}: {f.detail}" for f in failures) or "no model has an endpoint"
        super().__init__(f"all upstream models failed ({tried})")


#: Called for each failed attempt with the failure and whether another model will be tried.
OnFailure = Callable[[Failure, bool], None]


class Upstreams:
    """One pooled HTTP client for every model's endpoint (the catalogue's, or the config's override).

    Call :meth:`start` and :meth:`aclose` on the event loop that serves the requests.
    """

    def __init__(self, catalog: Catalog, config: GatewayConfig) -> None:
        self.config = config
        self.endpoints: dict[str, Endpoint] = {
            card.name: endpoint
            for card in catalog.models
            if (endpoint := config.endpoints.get(card.name) or card.endpoint) is not None
        }
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.config.max_upstream_connections)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _timeout_s(self, model: str) -> float:
        return self.config.upstream_timeout_s or self.endpoints[model].timeout_s

    async def send(
        self, models: list[str], body: dict[str, Any], *, stream: bool, on_failure: OnFailure
    ) -> Answer:
        """Send ``body`` to the first model of ``models`` that answers, trying them in order.

        With ``stream=False`` the whole body is read (within the endpoint's timeout); with ``stream=True``
        the answer is returned once its headers are in, for the caller to relay and release.
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
                if response.status >= 500 or response.status in FALLBACK_STATUSES:
                    response.release()
                    return Failure(model, "status", f"HTTP {response.status}")
                content = None if stream else await response.read()
            return Answer(model, response, content)
        except TimeoutError:
            failure = Failure(model, "timeout", f"no answer within {limit:g} s")
        except aiohttp.ClientError as exc:
            failure = Failure(model, "connect", f"{type(exc).__name__}: {exc}")
        if response is not None:
            response.release()
        return failure


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


async def relay_stream(
    answer: Answer,
    request_id: str,
    on_usage: Callable[[dict[str, Any]], None],
    on_error: Callable[[str], None],
) -> AsyncIterator[bytes]:
    """Pass an upstream SSE stream on, line by line, with the chosen model's name in every chunk.

    A failure mid-stream (after the client has bytes) ends the stream with an OpenAI-style error event.
    """

    def out(raw: bytes) -> bytes:
        text, usage = rewrite_chunk(
            raw.decode("utf-8", errors="replace").rstrip("\r"), answer.model, request_id
        )
        if usage:
            on_usage(usage)
        return (text + "\n").encode("utf-8")

    pending = b""
    try:
        async for piece in answer.response.content.iter_any():  # whatever has arrived: one write per read
            *lines, pending = (pending + piece).split(b"\n")
            if lines:
                yield b"".join(out(line) for line in lines)
        if pending:
            yield out(pending)
    except (aiohttp.ClientError, TimeoutError) as exc:
        on_error(type(exc).__name__)
        error = {
            "error": {
                "message": f"the upstream {answer.model} failed mid-stream ({type(exc).__name__})",
                "type": "upstream_error",
                "param": None,
                "code": "upstream_stream_failed",
            }
        }
        yield f"\ndata: {json.dumps(error)}\n\n".encode()
    finally:
        answer.response.release()
