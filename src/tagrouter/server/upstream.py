"""Calls to the models' OpenAI-compatible upstreams, with fallback down the router's ranking.

A model's call fails over to the next model when the upstream times out, cannot be reached, or answers
with a status that says the upstream (not the request) is at fault: 5xx, 429, 408, 401, 403, 404. Other
4xx answers are the request's fault and go back to the client as they are. A stream can fail over only
until its first byte has been passed on. Upstream keys are read from the environment at call time and
never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tagrouter.catalog import Catalog, Endpoint
from tagrouter.server.config import GatewayConfig

log = logging.getLogger("tagrouter.server")

#: Upstream statuses that make the gateway try the next model.
FALLBACK_STATUSES = frozenset({401, 403, 404, 408, 429})


@dataclass(frozen=True)
class Failure:
    """One failed upstream attempt (never holds a key)."""

    model: str
    kind: str  # timeout | connect | status | config
    detail: str


@dataclass
class Answer:
    """The upstream response that was accepted (success, or a 4xx that is the request's own fault)."""

    model: str
    response: httpx.Response
    failures: list[Failure] = field(default_factory=list)


class AllUpstreamsFailed(Exception):
    """Every model tried failed; ``failures`` says how, in order."""

    def __init__(self, failures: list[Failure]) -> None:
        self.failures = failures
        tried = "; ".join(f"{f.model}: {f.detail}" for f in failures) or "no model has an endpoint"
        super().__init__(f"all upstream models failed ({tried})")


OnFailure = Callable[[Failure], None]


class Upstreams:
    """One pooled HTTP client for every model's endpoint (the catalogue's, or the config's override)."""

    def __init__(self, catalog: Catalog, config: GatewayConfig) -> None:
        self.config = config
        self.endpoints: dict[str, Endpoint] = {
            card.name: endpoint
            for card in catalog.models
            if (endpoint := config.endpoints.get(card.name) or card.endpoint) is not None
        }
        limits = httpx.Limits(
            max_connections=config.max_upstream_connections,
            max_keepalive_connections=config.max_upstream_connections,
        )
        self.client = httpx.AsyncClient(limits=limits, timeout=None)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _timeout_s(self, endpoint: Endpoint) -> float:
        return self.config.upstream_timeout_s or endpoint.timeout_s

    def _request(self, model: str, body: dict[str, Any]) -> httpx.Request:
        endpoint = self.endpoints[model]
        headers = {}
        if endpoint.api_key_env:
            key = os.environ.get(endpoint.api_key_env)
            if not key:
                raise KeyError(f"environment variable {endpoint.api_key_env} (the upstream key) is not set")
            headers["Authorization"] = f"Bearer {key}"
        read = self._timeout_s(endpoint)
        timeout = httpx.Timeout(read, connect=min(self.config.connect_timeout_s, read))
        return self.client.build_request(
            "POST",
            endpoint.base_url.rstrip("/") + "/chat/completions",
            json={**body, "model": endpoint.model or model},
            headers=headers,
            timeout=timeout,
        )

    async def send(
        self, models: list[str], body: dict[str, Any], *, stream: bool, on_failure: OnFailure
    ) -> Answer:
        """Send ``body`` to the first model of ``models`` that answers, trying them in order.

        With ``stream=False`` the whole body is read (within the endpoint's timeout); with ``stream=True``
        the response is returned once its headers are in, for the caller to iterate and close.
        """
        failures: list[Failure] = []
        for model in models:
            if model not in self.endpoints:
                failure = Failure(model, "config", "no endpoint configured")
            else:
                failure = await self._attempt(model, body, stream)
                if isinstance(failure, httpx.Response):
                    return Answer(model, failure, failures)
            log.warning("upstream %s failed (%s): %s", failure.model, failure.kind, failure.detail)
            failures.append(failure)
            on_failure(failure)
        raise AllUpstreamsFailed(failures)

    async def _attempt(self, model: str, body: dict[str, Any], stream: bool) -> httpx.Response | Failure:
        try:
            request = self._request(model, body)
        except KeyError as exc:
            return Failure(model, "config", str(exc.args[0]))
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout(self._timeout_s(self.endpoints[model])):
                response = await self.client.send(request, stream=True)
                if response.status_code >= 500 or response.status_code in FALLBACK_STATUSES:
                    await response.aclose()
                    return Failure(model, "status", f"HTTP {response.status_code}")
                if not stream:
                    await response.aread()
            return response
        except (TimeoutError, httpx.TimeoutException):
            failure = Failure(
                model, "timeout", f"no answer within {self._timeout_s(self.endpoints[model])} s"
            )
        except httpx.TransportError as exc:
            failure = Failure(model, "connect", f"{type(exc).__name__}: {exc}")
        if response is not None:
            await response.aclose()
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
    return "data: " + json.dumps(chunk, ensure_ascii=False), chunk.get("usage")


async def relay_stream(
    answer: Answer,
    request_id: str,
    on_usage: Callable[[dict[str, Any]], None],
    on_error: Callable[[str], None],
) -> AsyncIterator[bytes]:
    """Pass an upstream SSE stream on, line by line, with the chosen model's name in every chunk.

    A failure mid-stream (after the client has bytes) ends the stream with an OpenAI-style error event.
    """
    try:
        async for line in answer.response.aiter_lines():
            text, usage = rewrite_chunk(line, answer.model, request_id)
            if usage:
                on_usage(usage)
            yield (text + "\n").encode("utf-8")
    except httpx.HTTPError as exc:
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
        await answer.response.aclose()
