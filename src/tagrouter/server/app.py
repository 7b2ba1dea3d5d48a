"""The OpenAI-compatible routing gateway: a FastAPI app built around a saved :class:`TagRouter`.

Endpoints: ``POST /v1/chat/completions`` (routed and forwarded, streaming or not), ``POST /v1/route``
(decisions only), ``POST /v1/feedback`` (judged outcomes, stored durably and learned online),
``GET /v1/models``, ``GET /healthz`` and ``GET /metrics``. Errors have the OpenAI error shape
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagrouter import __version__
from tagrouter.chat import capped, earlier_text, needs_of, routing_text, visible
from tagrouter.constraints import Needs, UnroutableError, allowed
from tagrouter.errors import DataError
from tagrouter.router import Decision, TagRouter
from tagrouter.server.admission import AdmissionControl
from tagrouter.server.affinity import Pin, SessionPins, session_key
from tagrouter.server.batching import RouteBatcher
from tagrouter.server.config import GatewayConfig
from tagrouter.server.errors import ApiError
from tagrouter.server.feedback import (
    Feedback,
    FeedbackConflictError,
    FeedbackWriter,
    UnknownRequestError,
)
from tagrouter.server.follow import FeedbackFollower
from tagrouter.server.limits import ModelLimits
from tagrouter.server.metrics import GatewayMetrics
from tagrouter.server.overrides import Overrides, read_overrides
from tagrouter.server.profiles import ProfileSet
from tagrouter.server.shadow import shadow_judging
from tagrouter.server.stores import open_feedback_store, store_name
from tagrouter.server.upstream import (
    AllUpstreamsFailed,
    Answer,
    Failure,
    Upstreams,
    relay_stream,
    token_counts,
)
from tagrouter.server.validation import (
    ChatRequest,
    FeedbackRequest,
    RouteRequest,
    openapi_body,
    parse,
    read_json,
)

log = logging.getLogger("tagrouter.server")

#: Metric label of requests that name a catalogue model directly (no routing).
PASSTHROUGH = "passthrough"


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


def _decision_headers(decision: Decision | None, model: str, request_id: str, profile: str) -> dict[str, str]:
    headers = {
        "x-tagrouter-model": model,
        "x-tagrouter-request-id": request_id,
        "x-tagrouter-profile": profile,
    }
    if decision is not None:
        headers["x-tagrouter-tags"] = ",".join([_quoted_tag(t) for t in decision.tags])
        headers["x-tagrouter-scores"] = ",".join(
            [f"{_quoted_model(m)}={s:.4f}" for m, s in decision.scores.items()]
        )
    return headers


class Gateway:
    """Everything one app serves from: profiles, upstreams, the feedback writer, metrics, client keys and
    admission control."""

    def __init__(self, router: TagRouter, config: GatewayConfig) -> None:
        self.config = config
        self.catalog = router.catalog
        self.upstreams = Upstreams(self.catalog, config)  # checks the endpoints before anything is opened
        self.profiles = ProfileSet(router, config)
        self.batcher = RouteBatcher(
            self.profiles.route,
            in_threadpool=config.route_in_threadpool,
            thread_chars=config.thread_routing_chars,
        )
        self.metrics = GatewayMetrics()
        self.admission = AdmissionControl(config.admission, self.metrics.rejected)
        #: the decision-time histogram of each endpoint, looked up once (``labels`` takes a lock per call)
        self._decision_seconds: dict[str, Any] = {}
        self.keys = [k.encode() for k in config.client_keys()]
        store = open_feedback_store(config)
        replayed, seen = store.changes()
        self.profiles.update(replayed)
        if replayed:
            log.info(
                "learned %d stored feedback records from %s", len(replayed), store_name(config.feedback_db)
            )
        self.writer = FeedbackWriter(store, self.profiles.update, learn_interval_s=config.learn_interval_s)
        self.follower = FeedbackFollower(
            store, self.profiles.update, after=seen, interval_s=config.follow_interval_s
        )
        self.shadow = shadow_judging(
            config.shadow, self.catalog, self.upstreams.endpoints, self.writer, self.metrics
        )
        self.limits = ModelLimits(self.catalog)
        affinity = config.affinity
        self.pins = (
            SessionPins(
                self.catalog,
                ttl_s=affinity.ttl_s,
                max_turns=affinity.max_turns,
                max_sessions=affinity.max_sessions,
            )
            if affinity.enabled
            else None
        )
        if self.pins is not None:
            self.metrics.sessions.set_function(self.pins.__len__)

    async def authorize(self, request: Request) -> None:
        """Reject the request unless it carries one of the client keys (when any are configured), and
        count it against that key's rate limit.

        A coroutine, so that FastAPI runs it on the event loop instead of in a worker thread."""
        if not self.keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token_bytes = token.strip().encode("utf-8", "replace")
        matched = [hmac.compare_digest(token_bytes, k) for k in self.keys]
        if scheme.lower() != "bearer" or not any(matched):
            raise ApiError(
                401, "missing or invalid API key (send 'Authorization: Bearer KEY')", code="invalid_api_key"
            )
        self.admission.check_key(matched.index(True))

    def overrides(self, body: dict[str, Any], request: Request) -> Overrides:
        """The request's overrides (taken out of ``body``); a bad one is a 400 naming the field."""
        try:
            return read_overrides(body, request.headers, self.catalog, self.profiles.names)
        except DataError as exc:
            raise ApiError(400, str(exc), param=exc.field, code="invalid_override") from None

    def needs(self, queries: list[str], needs: list[Needs]) -> list[Needs]:
        """``needs`` with the models at their rate limit, checked: a request that no model can take is a
        400 here rather than an error of the batch it would join."""
        saturated = self.limits.saturated()
        needs = [replace(n, saturated=saturated) for n in needs] if saturated else needs
        try:
            ceiling = any(n.max_cost_usd is not None for n in needs)
            allowed(self.catalog, needs, self.profiles.model.expected_costs(queries) if ceiling else None)
        except UnroutableError as exc:
            raise ApiError(400, str(exc), param="messages", code="no_model_fits") from None
        return needs

    async def decide(
        self,
        profile: str,
        queries: list[str],
        endpoint: str,
        needs: list[Needs] | None = None,
        earlier: list[str | None] | None = None,
    ) -> list[Decision]:
        start = time.perf_counter()
        decisions = await self.batcher.decide(profile, queries, needs, earlier)
        histogram = self._decision_seconds.get(endpoint)
        if histogram is None:
            histogram = self._decision_seconds[endpoint] = self.metrics.decision_seconds.labels(endpoint)
        histogram.observe(time.perf_counter() - start)
        return decisions

    def _failed(self, failure: Failure, falls_back: bool) -> None:
        self.metrics.upstream_errors.labels(failure.model, failure.kind).inc()
        if falls_back:
            self.metrics.fallbacks.labels(failure.model).inc()

    def account(self, profile: str, decision: Decision | None, model: str, usage: Any) -> None:
        """Count tokens and the estimated cost of one answer (and what the reference model would cost).

        Usage that is not valid token counts is counted in ``tagrouter_bad_usage_total`` and logged; the
        answer is then accounted at the decision's expected cost, as a stream without usage is."""
        reference = self.profiles[profile].reference_model if profile in self.profiles else None
        reference = reference or self.profiles[self.profiles.default].reference_model
        counts = token_counts(usage) if isinstance(usage, dict) else None
        if usage is not None and counts is None:
            self.metrics.bad_usage.labels(model).inc()
            log.warning("upstream %s sent token usage that is not valid counts: not accounted", model)
        if counts is not None:
            prompt, completion = counts
            self.metrics.tokens.labels(model, "prompt").inc(prompt)
            self.metrics.tokens.labels(model, "completion").inc(completion)
            cost = self.catalog[model].cost(prompt, completion)
            reference_cost = self.catalog[reference].cost(prompt, completion)
        elif decision is not None:
            cost, reference_cost = decision.expected_costs[model], decision.expected_costs[reference]
        else:
            return
        self.metrics.spent(profile, reference, cost, reference_cost)

    # ---- endpoints ----------------------------------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        with self.admission.chat():
            return await self._chat(request)

    async def _chat(self, request: Request) -> Response:
        body = await read_json(request, self.config.max_request_bytes)
        overrides = self.overrides(body, request)
        chat = parse(ChatRequest, body)
        requested = overrides.profile or chat.model or self.profiles.default
        query = routing_text(body["messages"], self.config.max_routing_chars)
        decision: Decision | None = None
        session, affinity = None, None
        if requested in self.profiles:
            if query is None:
                raise ApiError(
                    400,
                    "messages: the last user message must carry visible text to route on",
                    param="messages",
                )
            profile = requested
            session = self.session(request, body)
            pin = self.pins.lookup(session) if self.pins is not None and session is not None else None
            needs = self.needs([query], [self.request_needs(body, overrides, pin)])
            earlier = [earlier_text(body["messages"])]
            decision = (await self.decide(profile, [query], "chat", needs, earlier))[0]
            models, affinity = self.fallbacks(decision, pin)
            self.metrics.affinity.labels(profile, affinity).inc()
        elif requested in self.catalog:
            profile, models = PASSTHROUGH, [requested]
        else:
            raise ApiError(
                404,
                f"model {requested!r} is neither a routing profile ({', '.join(self.profiles.names)}) "
                f"nor a catalogue model ({', '.join(self.catalog.names)})",
                param="model",
                code="model_not_found",
            )
        try:
            answer = await self.upstreams.send(models, body, stream=chat.stream, on_failure=self._failed)
        except AllUpstreamsFailed as exc:
            self.metrics.requests.labels(profile, "none", "failed").inc()
            if session is not None:
                self.pins.escalate(session, models[0])
            raise ApiError(502, str(exc), type_="upstream_error", code="upstream_unavailable") from None
        if self.limits.tracks(answer.model):
            self.limits.record(answer.model, needs_of(body).input_tokens)
        request_id = "chatcmpl-tr-" + uuid.uuid4().hex
        headers = _decision_headers(decision, answer.model, request_id, profile)
        headers.update(overrides.echo())
        if affinity is not None:
            headers["x-tagrouter-affinity"] = affinity
        if answer.status >= 400:  # the request's own fault: the upstream's error message, redacted
            self.metrics.requests.labels(profile, answer.model, "client_error").inc()
            return _json(answer.data, answer.status, headers)
        if session is not None:  # keep the model, or re-route upward after the first model failed
            if answer.model == models[0]:
                self.pins.pin(session, answer.model, request_id)
            else:
                self.pins.escalate(session, models[0])
        if query is not None:  # so that feedback can cite the request id
            self.writer.remember(request_id, query, answer.model)
        self.metrics.requests.labels(profile, answer.model, "ok").inc()
        if chat.stream:
            return self._stream(answer, request_id, headers, profile, decision)
        data = answer.data or {}
        data["model"] = answer.model
        data["id"] = request_id
        self.account(profile, decision, answer.model, data.get("usage"))
        shadow = self.shadow and self.shadow.after_response(request_id, query, answer.model, data)
        return _json(data, headers=headers, background=shadow)

    # ---- session affinity and constraints ---------------------------------------------------------------
    def session(self, request: Request, body: dict[str, Any]) -> str | None:
        """The request's session key, when affinity is on (see :mod:`tagrouter.server.affinity`)."""
        if self.pins is None:
            return None
        key = session_key(request.headers, body)
        return key if key is None or key.startswith("id:") or self.config.affinity.by_opening else None

    def request_needs(self, body: dict[str, Any], overrides: Overrides, pin: Pin | None) -> Needs:
        """What the request needs (its messages and tools), what its overrides allow, and the floor of
        an escalated session (the dearer of it and ``min_model``)."""
        floors = [m for m in (overrides.min_model, pin.floor if pin is not None else None) if m is not None]
        return replace(
            needs_of(body),
            exclude=overrides.exclude,
            min_model=max(floors, key=lambda m: self.catalog[m].price_key) if floors else None,
            max_cost_usd=overrides.max_cost_usd,
        )

    def fallbacks(self, decision: Decision, pin: Pin | None) -> tuple[list[str], str]:
        """The models to try in order, and the request's affinity: ``pinned`` (the session's model
        first, when it can still take the request), ``escalated`` or ``routed``."""
        depth = 1 + self.config.fallback_depth
        if pin is not None and pin.model in decision.ranking:
            return [pin.model, *[m for m in decision.ranking if m != pin.model]][:depth], "pinned"
        return decision.ranking[:depth], "escalated" if pin is not None and pin.model is None else "routed"

    def _stream(
        self,
        answer: Answer,
        request_id: str,
        headers: dict[str, str],
        profile: str,
        decision: Decision | None,
    ) -> StreamingResponse:
        usages: list[dict[str, Any]] = []
        stream_errors = self.metrics.upstream_errors.labels(answer.model, "stream")

        async def body() -> AsyncIterator[bytes]:
            async for piece in relay_stream(answer, request_id, usages.append, lambda _: stream_errors.inc()):
                yield piece
            self.account(profile, decision, answer.model, usages[-1] if usages else None)

        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    async def route(self, request: Request) -> dict[str, Any]:
        body = await read_json(request, self.config.max_request_bytes)
        overrides = self.overrides(body, request)
        route = parse(RouteRequest, body)
        if (route.query is None) == (route.queries is None):
            raise ApiError(400, "give exactly one of 'query' (a string) or 'queries' (a list)", param="query")
        queries = [route.query] if route.query is not None else route.queries or []
        if len(queries) > self.config.max_route_queries:
            raise ApiError(
                400,
                f"queries: at most {self.config.max_route_queries} per call, got {len(queries)}",
                param="queries",
            )
        if not all(visible(q) for q in queries):
            raise ApiError(400, "queries: every query must hold visible text", param="queries")
        profile = overrides.profile or route.model or self.profiles.default
        if profile not in self.profiles:
            raise ApiError(
                404,
                f"unknown routing profile {profile!r} (profiles: {', '.join(self.profiles.names)})",
                param="model",
                code="model_not_found",
            )
        queries = [capped(q, self.config.max_routing_chars) for q in queries]
        limits = Needs(
            exclude=overrides.exclude, min_model=overrides.min_model, max_cost_usd=overrides.max_cost_usd
        )
        decisions = await self.decide(profile, queries, "route", self.needs(queries, [limits] * len(queries)))
        return {
            "object": "tagrouter.route",
            "profile": profile,
            "decisions": [{"query": d.query, **d.to_dict()} for d in decisions],
        }

    async def feedback(self, request: Request) -> dict[str, Any]:
        with self.admission.feedback():
            return await self._feedback(request)

    async def _feedback(self, request: Request) -> dict[str, Any]:
        sent = parse(FeedbackRequest, await read_json(request, self.config.max_request_bytes))
        if sent.request_id is None and (sent.query is None or sent.model is None):
            raise ApiError(
                400, "feedback needs a request_id, or both a query and a model", param="request_id"
            )
        if sent.query is not None and not visible(sent.query):
            raise ApiError(400, "query: the query must hold visible text", param="query")
        if sent.model is not None and sent.model not in self.catalog:
            raise ApiError(
                400,
                f"model {sent.model!r} is not in the router's catalogue ({', '.join(self.catalog.names)})",
                param="model",
            )
        item = Feedback(
            feedback_id=sent.feedback_id or "fb-" + uuid.uuid4().hex,
            outcome=sent.outcome,
            model=sent.model,
            query=capped(sent.query, self.config.max_routing_chars) if sent.query is not None else None,
            request_id=sent.request_id,
        )
        try:
            result = await self.writer.submit(item)
        except (UnknownRequestError, FeedbackConflictError, DataError) as exc:
            self.metrics.feedback.labels("rejected").inc()
            status, code = (
                (404, "unknown_request_id") if isinstance(exc, UnknownRequestError) else (400, None)
            )
            if isinstance(exc, FeedbackConflictError):
                status, code = 409, "feedback_conflict"
            raise ApiError(status, str(exc), param=exc.field, code=code) from None
        except RuntimeError as exc:
            raise ApiError(503, str(exc), type_="server_error", code="shutting_down") from None
        self.metrics.feedback.labels(result.status).inc()
        if self.shadow and sent.request_id:
            self.shadow.explicit(sent.request_id, item.outcome)
        if self.pins is not None and item.outcome == "loss" and sent.request_id is not None:
            self.pins.lost(sent.request_id, result.model)
        return {
            "object": "tagrouter.feedback",
            "status": result.status,
            "feedback_id": result.feedback_id,
            "model": result.model,
            "outcome": item.outcome,
        }

    async def models(self) -> dict[str, Any]:
        data = [
            {"id": p, "object": "model", "created": 0, "owned_by": "tagrouter"} for p in self.profiles.names
        ]
        data += [
            {"id": m, "object": "model", "created": 0, "owned_by": "upstream"} for m in self.catalog.names
        ]
        return {"object": "list", "data": data}

    async def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "profiles": self.profiles.names,
            "models": self.catalog.names,
            "feedback_records": self.writer.stored,
        }


def create_app(router: TagRouter, config: GatewayConfig | None = None) -> FastAPI:
    """The gateway app for ``router``: opens the feedback store and learns its records before returning.

    Raises :class:`~tagrouter.errors.DataError` on a config that does not fit the router.
    """
    config = config or GatewayConfig()
    gateway = Gateway(router, config)
    if not gateway.keys:
        log.warning("no client API keys configured: the gateway accepts every request")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway.writer.start()
        gateway.follower.start()
        await gateway.upstreams.start()
        try:
            yield
        finally:  # uvicorn has finished every accepted request by now: drain and close the store
            await gateway.follower.close()
            if gateway.shadow:
                await gateway.shadow.aclose()
            await gateway.writer.close()
            await gateway.upstreams.aclose()

    app = FastAPI(title="TagRouter gateway", version=__version__, lifespan=lifespan)
    app.state.gateway = gateway

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return exc.response()

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
        return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)

    app.add_api_route("/metrics", metrics, methods=["GET"])
    return app
