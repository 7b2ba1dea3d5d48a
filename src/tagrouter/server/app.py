"""The OpenAI-compatible routing gateway: a FastAPI app built around a saved :class:`TagRouter`.

Endpoints: ``POST /v1/chat/completions`` (routed and forwarded, streaming or not), ``POST /v1/route``
(decisions only), ``POST /v1/feedback`` (judged outcomes, stored durably and learned online),
``GET /v1/models``, ``GET /healthz`` and ``GET /metrics``; with admin keys, ``GET /dashboard`` and
``POST /admin/reload``. Errors have the OpenAI error shape ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagrouter import __version__
from tagrouter.chat import ChatRequest, capped, visible
from tagrouter.constraints import Allowed, Needs, allowed
from tagrouter.errors import ArtifactError, DataError, validated
from tagrouter.live import LiveDecision
from tagrouter.router import Decision, TagRouter
from tagrouter.server.admission import KeyGate
from tagrouter.server.affinity import Pin
from tagrouter.server.config import GatewayConfig
from tagrouter.server.dashboard import Recent, stylesheet
from tagrouter.server.errors import ApiError, data_error
from tagrouter.server.feedback import (
    Feedback,
    FeedbackConflictError,
    FeedbackForbiddenError,
    FeedbackLimitError,
)
from tagrouter.server.overrides import HEADERS, OverrideError, read_overrides
from tagrouter.server.parts import GatewayParts, build_parts
from tagrouter.server.reload import Live
from tagrouter.server.requests import RoutingInput, read_chat_request
from tagrouter.server.upstream import AllUpstreamsFailed, Answer, Failure, relay_stream, token_counts
from tagrouter.server.validation import FeedbackRequest, RouteRequest, openapi_body, parse_json, read_body
from tagrouter.tokens import count_tokens

log = logging.getLogger("tagrouter.server")

#: Metric label of requests that name a catalogue model directly (no routing).
PASSTHROUGH = "passthrough"
#: A chat body larger than this is parsed and its tokens counted in a worker thread, off the event loop.
OFF_LOOP_BODY_BYTES = 65_536


def _json(
    data: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    background: BackgroundTask | None = None,
) -> Response:
    """An upstream's JSON as the client gets it: ASCII-escaped, so that anything the upstream sent (a lone
    surrogate, a NaN) can be written; compact, as the upstream's own answers are."""
    content = json.dumps(data, separators=(",", ":")).encode()
    return Response(content, status, headers, media_type="application/json", background=background)


@lru_cache(maxsize=8192)
def _quoted_tag(tag: str) -> str:
    """A tag as it appears in ``x-tagrouter-tags`` (cached: the tag vocabulary is small and fixed, and
    ``urllib.parse.quote`` was a tenth of the gateway's own cost of a routed call)."""
    return quote(tag, safe=" -_.'/")


@lru_cache(maxsize=1024)
def _quoted_model(model: str) -> str:
    """A model name as it appears in ``x-tagrouter-scores`` (cached, as :func:`_quoted_tag`)."""
    return quote(model, safe="-_.")


#: Values of the ``x-tagrouter-explore`` header that turn exploration off for one request.
OFF = frozenset({"off", "false", "0", "no"})
#: The label of ``tagrouter_feedback_total`` for each kind of refused feedback.
REJECTED: dict[type, str] = {
    FeedbackForbiddenError: "forbidden",
    FeedbackConflictError: "conflict",
    FeedbackLimitError: "limited",
}


@dataclass(frozen=True)
class Client:
    """Who sent a request: the number of its key (its per-key limits), the hash of its key (the owner of
    the requests it makes) and whether the key is an admin key."""

    index: int
    source: str
    admin: bool


def _scope(client: Client | None) -> str:
    """The session scope of a request's client: sessions of different keys never meet."""
    return "" if client is None else str(client.index)


def _decision_headers(
    live: LiveDecision | None, model: str, request_id: str, profile: str, version: str = ""
) -> dict[str, str]:
    """The headers that explain an answer: who answered, the router version, and for a routed request
    the decision itself (tags, scores, rule, knob, reason, the models constraints removed and why, whether
    it explored and its propensity); see docs/gateway.md."""
    headers = {
        "x-tagrouter-model": model,
        "x-tagrouter-request-id": request_id,
        "x-tagrouter-profile": profile,
    }
    if version:
        headers["x-tagrouter-router-version"] = version
    if live is not None:
        decision = live.decision
        headers["x-tagrouter-explored"] = "true" if live.explored else "false"
        headers["x-tagrouter-propensity"] = f"{live.propensity:.4f}"
        headers["x-tagrouter-tags"] = ",".join([_quoted_tag(t) for t in decision.tags])
        headers["x-tagrouter-scores"] = ",".join(
            [f"{_quoted_model(m)}={s:.4f}" for m, s in decision.scores.items()]
        )
        headers["x-tagrouter-rule"] = decision.rule
        headers["x-tagrouter-knob"] = f"{decision.knob:.6g}"
        headers["x-tagrouter-reason"] = quote(decision.reason, safe=" -_.,;:()=<>+*/'$")
        if decision.removed:
            headers["x-tagrouter-removed"] = ",".join(
                [f"{_quoted_model(m)}={_quoted_tag(why)}" for m, why in decision.removed.items()]
            )
    return headers


class Gateway:
    """The gateway's endpoints, served from its :class:`~tagrouter.server.parts.GatewayParts`."""

    def __init__(self, parts: GatewayParts) -> None:
        self.parts = parts
        #: the decision-time histogram of each endpoint, looked up once (``labels`` takes a lock per call)
        self._decision_seconds: dict[str, Any] = {}

    def key_index(self, authorization: str) -> int | None:
        """The number of the client key that an ``Authorization`` header carries (``Bearer KEY``), or
        None when it carries none of them (each key is compared in constant time)."""
        scheme, _, token = authorization.partition(" ")
        token_bytes = token.strip().encode("utf-8", "replace")
        matched = [hmac.compare_digest(token_bytes, k) for k in self.parts.keys]
        return matched.index(True) if scheme.lower() == "bearer" and any(matched) else None

    async def authorize(self, request: Request) -> None:
        """Reject the request unless it carries one of the client keys (when any are configured). Sets
        ``request.state.client``: its :class:`Client` (None without client keys), which scopes the
        request's session and owns its feedback; its per-key limits were checked on its headers already
        (:class:`~tagrouter.server.admission.KeyGate`).

        A coroutine, so that FastAPI runs it on the event loop instead of in a worker thread."""
        request.state.client = None
        if not self.parts.keys:
            return
        index = self.key_index(request.headers.get("authorization", ""))
        if index is None:
            raise ApiError(
                401, "missing or invalid API key (send 'Authorization: Bearer KEY')", code="invalid_api_key"
            )
        key = self.parts.keys[index]
        request.state.client = Client(
            index=index,
            source=hashlib.sha256(key).hexdigest()[:32],
            admin=key.decode() in self.parts.config.admin_keys,
        )

    async def body(self, request: Request) -> bytes:
        """The request's body, within ``max_request_bytes`` and ``admission.body_timeout_s``; a 408 is
        spread as a 429 is (the slow bodies of a crowd that came together would time out together, and
        their clients would come back together)."""
        config, admission = self.parts.config, self.parts.admission
        try:
            return await read_body(request, config.max_request_bytes, config.admission.body_timeout_s)
        except ApiError as exc:
            if exc.status == 408:
                client = request.state.client
                kind = ("body", None if client is None else client.index)
                await admission.spread(kind, config.admission.max_in_flight_per_key)
            raise

    async def authorize_admin(self, request: Request) -> None:
        """Reject the request unless it carries one of the admin keys (see :mod:`tagrouter.server.admin`)."""
        self.parts.admin.check(request.headers)

    async def reload(self) -> dict[str, Any]:
        """``POST /admin/reload``: serve the router folder's live version (a 409 when it cannot be loaded)."""
        try:
            return await self.parts.reload()
        except (ArtifactError, DataError) as exc:
            version = self.parts.served.version
            raise ApiError(
                409, f"not reloaded, still serving {version}: {exc}", code="reload_failed"
            ) from None

    def fits(self, serving: Live, needs: list[Needs]) -> Allowed:
        """The models of ``serving`` each query may go to under ``needs``, leaving out the models at their
        rate limit; computed once per request and passed to the decision. A request that no model can
        take raises :class:`~tagrouter.constraints.UnroutableError` here (a 400 ``no_model_fits``) rather
        than an error of the batch it would join."""
        saturated = serving.limits.saturated()
        needs = [replace(n, saturated=saturated) for n in needs] if saturated else needs
        ceiling = any(n.max_cost_usd is not None for n in needs)
        return allowed(serving.catalog, needs, self.prompt_costs(serving, needs) if ceiling else None)

    @staticmethod
    def prompt_costs(serving: Live, needs: list[Needs]) -> np.ndarray:
        """Expected dollars per (request, catalogue model) of the whole prompt: its ``input_tokens`` at
        the input price plus the model's mean output tokens in the history at the output price (never
        the capped routing text, which a long prompt would pass a ``max_cost_usd`` with)."""
        model = serving.profiles.model
        cards = serving.catalog.models
        return np.array(
            [
                [card.cost(n.input_tokens, model.mean_output_tokens(card.name)) for card in cards]
                for n in needs
            ]
        )

    async def decide(
        self,
        serving: Live,
        profile: str,
        queries: list[str],
        endpoint: str,
        fits: Allowed,
        earlier: list[str | None] | None = None,
        explore: bool = True,
    ) -> list[LiveDecision]:
        """The decisions of ``serving`` (the router the request read on arrival) for ``queries``."""
        start = time.perf_counter()
        decisions = await self.parts.batcher.decide(profile, queries, fits, earlier, explore, serving.decide)
        explored = sum(d.explored for d in decisions)
        if explored:
            self.parts.metrics.explored.labels(profile).inc(explored)
        histogram = self._decision_seconds.get(endpoint)
        if histogram is None:
            histogram = self._decision_seconds[endpoint] = self.parts.metrics.decision_seconds.labels(
                endpoint
            )
        histogram.observe(time.perf_counter() - start)
        return decisions

    def _failed(self, failure: Failure, falls_back: bool) -> None:
        self.parts.metrics.upstream_errors.labels(failure.model, failure.kind).inc()
        if falls_back:
            self.parts.metrics.fallbacks.labels(failure.model).inc()

    def account(self, serving: Live, profile: str, decision: Decision | None, model: str, usage: Any) -> None:
        """Count tokens and the estimated cost of one answer of ``serving`` (and what the reference model
        would cost).

        Usage that is not valid token counts is counted in ``tagrouter_bad_usage_total`` and logged; the
        answer is then accounted at the decision's expected cost, as a stream without usage is."""
        profiles = serving.profiles
        reference = profiles[profile].reference_model if profile in profiles else None
        reference = reference or profiles[profiles.default].reference_model
        counts = token_counts(usage) if isinstance(usage, dict) else None
        if usage is not None and counts is None:
            self.parts.metrics.bad_usage.labels(model).inc()
            log.warning("upstream %s sent token usage that is not valid counts: not accounted", model)
        if counts is not None:
            prompt, completion = counts
            self.parts.metrics.tokens.labels(model, "prompt").inc(prompt)
            self.parts.metrics.tokens.labels(model, "completion").inc(completion)
            cost = serving.catalog[model].cost(prompt, completion)
            reference_cost = serving.catalog[reference].cost(prompt, completion)
        elif decision is not None:
            cost, reference_cost = decision.expected_costs[model], decision.expected_costs[reference]
        else:
            return
        self.parts.metrics.spent(profile, reference, cost, reference_cost)

    # ---- endpoints ----------------------------------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        content = await self.body(request)
        async with self.parts.admission.chat():  # once the body is in: shared
            return await self._chat(request, content)

    def read_chat(self, content: bytes, request: Request, serving: Live) -> RoutingInput:
        """The routing input of a chat body for ``serving`` (its session scoped by the request's client
        key)."""
        scope = _scope(request.state.client)
        return read_chat_request(
            parse_json(content), request.headers, self.parts.config, serving.catalog, serving.profiles, scope
        )

    async def _chat(self, request: Request, content: bytes) -> Response:
        parts = self.parts
        serving = parts.served.current  # the whole request is served by this version (and its catalogue)
        started, version = time.perf_counter(), serving.version
        if len(content) > OFF_LOOP_BODY_BYTES:  # parsing and counting its tokens take milliseconds
            routing = await asyncio.to_thread(self.read_chat, content, request, serving)
        else:
            routing = self.read_chat(content, request, serving)
        query, session = routing.query, routing.session
        scope = _scope(request.state.client)
        decision: Decision | None = None
        live: LiveDecision | None = None
        affinity = None
        if routing.profile is not None:  # routed: query holds the text to route on
            profile = routing.profile
            pin = parts.pins.lookup(session) if parts.pins is not None and session is not None else None
            fits = self.fits(serving, [self.floored(serving, routing.needs, pin)])
            explore = pin is None and request.headers.get("x-tagrouter-explore", "").lower() not in OFF
            decisions = await self.decide(serving, profile, [query], "chat", fits, [routing.earlier], explore)
            live = decisions[0]
            decision = live.decision
            models, affinity = self.fallbacks(decision, pin)
            parts.metrics.affinity.labels(profile, affinity).inc()
        else:
            profile, models = PASSTHROUGH, [self.passthrough(serving, routing, request)]
        sent = time.perf_counter()
        try:
            answer = await serving.upstreams.send(
                models, routing.body, stream=routing.stream, on_failure=self._failed
            )
        except AllUpstreamsFailed as exc:
            parts.metrics.requests.labels(profile, "none", "failed").inc()
            if parts.pins is not None and session is not None:
                parts.pins.escalate(session, models[0], lost=False)
            raise ApiError(502, str(exc), type_="upstream_error", code="upstream_unavailable") from None
        if serving.limits.tracks(answer.model):
            serving.limits.record(answer.model, routing.needs.input_tokens)
        upstream_s = time.perf_counter() - sent
        parts.metrics.upstream_seconds.labels(answer.model).observe(upstream_s)
        request_id = "chatcmpl-tr-" + uuid.uuid4().hex
        headers = _decision_headers(live, answer.model, request_id, profile, version)
        headers.update(routing.overrides.echo())
        if affinity is not None:
            headers["x-tagrouter-affinity"] = affinity
        if answer.status >= 400:  # the request's own fault: the upstream's error message, redacted
            parts.metrics.requests.labels(profile, answer.model, "client_error").inc()
            return _json(answer.data, answer.status, headers)
        if parts.pins is not None and session is not None:
            # keep the model, or re-route upward after the first model failed
            if answer.model == models[0]:
                parts.pins.pin(session, answer.model, request_id, scope)
            else:
                parts.pins.escalate(session, models[0], lost=False)
        if query is not None:  # so that feedback can cite the request id
            # the propensity of the policy's choice; an answer from a fallback or a pin was not its choice
            chosen = live is not None and affinity == "routed" and answer.model == live.model
            client = getattr(request.state, "client", None)
            owner = client.source if client is not None else None
            parts.writer.remember(request_id, query, answer.model, owner, live.propensity if chosen else 1.0)
        parts.metrics.requests.labels(profile, answer.model, "ok").inc()
        if decision is not None:
            cost = decision.expected_costs[answer.model]
            parts.dashboard.remember(
                Recent(time.time(), profile, answer.model, tuple(decision.tags), decision.reason, cost)
            )
        parts.metrics.overhead_seconds.observe(max(0.0, time.perf_counter() - started - upstream_s))
        if routing.stream:
            return self._stream(serving, answer, request_id, headers, profile, decision)
        data = answer.data or {}
        data["model"] = answer.model
        data["id"] = request_id
        self.account(serving, profile, decision, answer.model, data.get("usage"))
        shadow = parts.shadow and parts.shadow.after_response(request_id, query, answer.model, data)
        return _json(data, headers=headers, background=shadow)

    def passthrough(self, serving: Live, routing: RoutingInput, request: Request) -> str:
        """The catalogue model a request names directly, once it is checked against its rate limit
        (a 429) and the request's overrides (a 400 naming the override it cannot honour)."""
        model, needs, catalog = routing.passthrough, routing.needs, serving.catalog
        assert model is not None
        if model in serving.limits.saturated():
            raise ApiError(
                429,
                f"model {model!r} is at its rate limit (rate_limits in the catalogue); retry later, or route",
                type_="rate_limit_error",
                code="model_rate_limited",
            )

        def refuse(name: str, why: str) -> OverrideError:
            header = next(h for h, f in HEADERS.items() if f == name)
            field = header if header in request.headers else f"tagrouter.{name}"
            return OverrideError(f"the request names {model!r}, but {why}", field=field)

        if model in needs.exclude:
            raise refuse("exclude", "it excludes that model")
        if needs.min_model is not None and catalog[model].price_key < catalog[needs.min_model].price_key:
            raise refuse("min_model", f"it is below min_model {needs.min_model}")
        if needs.max_cost_usd is not None:
            cost = self.prompt_costs(serving, [needs])[0][catalog.names.index(model)]
            if cost > needs.max_cost_usd:
                raise refuse("max_cost_usd", f"its expected cost ${cost:.6f} is over {needs.max_cost_usd:g}")
        return model

    # ---- session affinity ----------------------------------------------------------------------------
    @staticmethod
    def floored(serving: Live, needs: Needs, pin: Pin | None) -> Needs:
        """``needs`` with the floor of an escalated session: ``min_model`` becomes the dearer of it and
        the pin's floor (unless a reload has just dropped that model)."""
        catalog = serving.catalog
        if pin is None or pin.floor not in catalog:
            return needs
        floors = [m for m in (needs.min_model, pin.floor) if m is not None]
        return replace(needs, min_model=max(floors, key=lambda m: catalog[m].price_key))

    def fallbacks(self, decision: Decision, pin: Pin | None) -> tuple[list[str], str]:
        """The models to try in order, and the request's affinity: ``pinned`` (the session's model
        first, when it can still take the request), ``escalated`` or ``routed``."""
        depth = 1 + self.parts.config.fallback_depth
        if pin is not None and pin.model in decision.ranking:
            return [pin.model, *[m for m in decision.ranking if m != pin.model]][:depth], "pinned"
        return decision.ranking[:depth], "escalated" if pin is not None and pin.model is None else "routed"

    def _stream(
        self,
        serving: Live,
        answer: Answer,
        request_id: str,
        headers: dict[str, str],
        profile: str,
        decision: Decision | None,
    ) -> StreamingResponse:
        usages: list[dict[str, Any]] = []
        stream_errors = self.parts.metrics.upstream_errors.labels(answer.model, "stream")

        config = self.parts.config
        caps = {
            "max_line_bytes": config.max_upstream_line_bytes,
            "max_body_bytes": config.max_upstream_body_bytes,
        }

        async def body() -> AsyncIterator[bytes]:
            async for piece in relay_stream(
                answer, request_id, usages.append, lambda _: stream_errors.inc(), **caps
            ):
                yield piece
            self.account(serving, profile, decision, answer.model, usages[-1] if usages else None)

        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    async def route(self, request: Request) -> dict[str, Any]:
        return await self._route(request, parse_json(await self.body(request)))

    async def _route(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        serving = self.parts.served.current
        overrides = read_overrides(body, request.headers, serving.catalog, serving.profiles.names)
        route = validated(RouteRequest, body)
        if (route.query is None) == (route.queries is None):
            raise ApiError(400, "give exactly one of 'query' (a string) or 'queries' (a list)", param="query")
        queries = [route.query] if route.query is not None else route.queries or []
        if len(queries) > self.parts.config.max_route_queries:
            raise ApiError(
                400,
                f"queries: at most {self.parts.config.max_route_queries} per call, got {len(queries)}",
                param="queries",
            )
        if not all(visible(q) for q in queries):
            raise ApiError(400, "queries: every query must hold visible text", param="queries")
        profile = overrides.profile or route.model or serving.profiles.default
        if profile not in serving.profiles:
            raise ApiError(
                404,
                f"unknown routing profile {profile!r} (profiles: {', '.join(serving.profiles.names)})",
                param="model",
                code="model_not_found",
            )
        limits = Needs(
            exclude=overrides.exclude, min_model=overrides.min_model, max_cost_usd=overrides.max_cost_usd
        )
        # a cost ceiling is judged on each whole query, as a chat's on its whole prompt
        needs = (
            [replace(limits, input_tokens=count_tokens(q)) for q in queries]
            if limits.max_cost_usd
            else [limits] * len(queries)
        )
        queries = [capped(q, self.parts.config.max_routing_chars) for q in queries]
        fits = self.fits(serving, needs)
        decisions = await self.decide(serving, profile, queries, "route", fits, explore=False)
        return {
            "object": "tagrouter.route",
            "profile": profile,
            "router_version": serving.version,
            "decisions": [{"query": d.decision.query, **d.decision.to_dict()} for d in decisions],
        }

    async def feedback(self, request: Request) -> dict[str, Any]:
        content = await self.body(request)
        async with self.parts.admission.feedback():  # once the body is in: shared
            return await self._feedback(request, content)

    async def _feedback(self, request: Request, content: bytes) -> dict[str, Any]:
        parts = self.parts
        sent = validated(FeedbackRequest, parse_json(content))
        if sent.request_id is None and (sent.query is None or sent.model is None):
            raise ApiError(
                400, "feedback needs a request_id, or both a query and a model", param="request_id"
            )
        if sent.query is not None and not visible(sent.query):
            raise ApiError(400, "query: the query must hold visible text", param="query")
        if sent.model is not None and sent.model not in parts.catalog:
            raise ApiError(
                400,
                f"model {sent.model!r} is not in the router's catalogue ({', '.join(parts.catalog.names)})",
                param="model",
            )
        client = getattr(request.state, "client", None)
        item = Feedback(
            feedback_id=sent.feedback_id or "fb-" + uuid.uuid4().hex,
            outcome=sent.outcome,
            model=sent.model,
            query=capped(sent.query, parts.config.max_routing_chars) if sent.query is not None else None,
            request_id=sent.request_id,
            source=client.source if client is not None else None,
            admin=client is not None and client.admin,
            correction=sent.correction,
        )
        try:
            result = await parts.writer.submit(item)
        except DataError as exc:  # answered by the app's DataError handler
            parts.metrics.feedback.labels(REJECTED.get(type(exc), "rejected")).inc()
            raise
        except RuntimeError as exc:
            raise ApiError(503, str(exc), type_="server_error", code="shutting_down") from None
        parts.metrics.feedback.labels(result.status).inc()
        if result.status == "recorded":
            parts.metrics.feedback_outcomes.labels(item.outcome).inc()
        if parts.shadow and sent.request_id:
            parts.shadow.explicit(sent.request_id, item.outcome)
        if parts.pins is not None and item.outcome == "loss" and sent.request_id is not None:
            parts.pins.lost(sent.request_id, result.model, _scope(client))
        return {
            "object": "tagrouter.feedback",
            "status": result.status,
            "feedback_id": result.feedback_id,
            "model": result.model,
            "outcome": item.outcome,
        }

    async def models(self) -> dict[str, Any]:
        data = [
            {"id": p, "object": "model", "created": 0, "owned_by": "tagrouter"}
            for p in self.parts.profiles.names
        ]
        data += [
            {"id": m, "object": "model", "created": 0, "owned_by": "upstream"}
            for m in self.parts.catalog.names
        ]
        return {"object": "list", "data": data}

    async def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "router_version": self.parts.served.version,
            "profiles": self.parts.profiles.names,
            "models": self.parts.catalog.names,
            "feedback_records": self.parts.writer.stored,
        }


def create_app(
    router: TagRouter, config: GatewayConfig | None = None, router_dir: Path | None = None
) -> FastAPI:
    """The gateway app for ``router``: opens the feedback store and learns its records before returning.
    Given ``router_dir`` (the folder ``router`` was loaded from), it serves the folder's new versions as
    they are saved (see :mod:`tagrouter.server.reload`).

    Raises :class:`~tagrouter.errors.DataError` on a config that does not fit the router.
    """
    gateway = Gateway(build_parts(router, config or GatewayConfig(), router_dir))
    if not gateway.parts.keys:
        log.warning("no client API keys configured: the gateway accepts every request")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.parts.start()
        try:
            yield
        finally:  # uvicorn has finished every accepted request by now: drain and close the store
            await gateway.parts.aclose()

    app = FastAPI(title="TagRouter gateway", version=__version__, lifespan=lifespan)
    app.state.gateway = gateway
    if gateway.parts.keys:  # per-key limits, on the headers before the app reads anything
        app.add_middleware(KeyGate, admission=gateway.parts.admission, identify=gateway.key_index)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(DataError)
    async def _data_error(request: Request, exc: DataError) -> Response:
        return data_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return ApiError(400, str(exc.errors()[0].get("msg", "invalid request"))).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else None
        return ApiError(exc.status_code, str(exc.detail), code=code).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return ApiError(500, "internal error in the gateway (see its log)", type_="server_error").response()

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(gateway.authorize)])
    for path, endpoint, body in (
        ("/chat/completions", gateway.chat_completions, ChatRequest),
        ("/route", gateway.route, RouteRequest),
        ("/feedback", gateway.feedback, FeedbackRequest),
    ):
        v1.add_api_route(path, endpoint, methods=["POST"], openapi_extra=openapi_body(body))
    v1.add_api_route("/models", gateway.models, methods=["GET"])
    app.include_router(v1)
    app.add_api_route("/healthz", gateway.health, methods=["GET"])

    async def metrics() -> Response:
        return Response(gateway.parts.metrics.render(), media_type=gateway.parts.metrics.content_type)

    app.add_api_route("/metrics", metrics, methods=["GET"])

    admin = [Depends(gateway.authorize_admin)]

    async def dashboard() -> HTMLResponse:
        return HTMLResponse(gateway.parts.dashboard.page(), headers={"cache-control": "no-store"})

    async def dashboard_css() -> Response:  # public: a style sheet holds no figures
        return Response(stylesheet(), media_type="text/css")

    app.add_api_route("/dashboard", dashboard, methods=["GET"], dependencies=admin)
    app.add_api_route("/dashboard/dashboard.css", dashboard_css, methods=["GET"])
    app.add_api_route("/admin/reload", gateway.reload, methods=["POST"], dependencies=admin)
    return app
