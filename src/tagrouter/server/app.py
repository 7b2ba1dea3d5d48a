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
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagrouter import __version__
from tagrouter.errors import DataError
from tagrouter.router import Decision, TagRouter
from tagrouter.server.admission import AdmissionControl
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
from tagrouter.server.metrics import GatewayMetrics
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
    capped,
    openapi_body,
    parse,
    read_json,
    routing_text,
    visible,
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
        self.upstreams = Upstreams(self.catalog, config)
        self.shadow = shadow_judging(
            config.shadow, self.catalog, self.upstreams.endpoints, self.writer, self.metrics
        )

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

    async def decide(self, profile: str, queries: list[str], endpoint: str) -> list[Decision]:
        start = time.perf_counter()
        decisions = await self.batcher.decide(profile, queries)
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
        chat = parse(ChatRequest, body)
        requested = chat.model or self.profiles.default
        query = routing_text(chat.messages, self.config.max_routing_chars)
        decision: Decision | None = None
        if requested in self.profiles:
            if query is None:
                raise ApiError(
                    400,
                    "messages: the last user message must carry visible text to route on",
                    param="messages",
                )
            profile = requested
            decision = (await self.decide(profile, [query], "chat"))[0]
            models = decision.ranking[: 1 + self.config.fallback_depth]
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
            raise ApiError(502, str(exc), type_="upstream_error", code="upstream_unavailable") from None
        request_id = "chatcmpl-tr-" + uuid.uuid4().hex
        headers = _decision_headers(decision, answer.model, request_id, profile)
        if answer.status >= 400:  # the request's own fault: the upstream's error message, redacted
            self.metrics.requests.labels(profile, answer.model, "client_error").inc()
            return _json(answer.data, answer.status, headers)
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
        route = parse(RouteRequest, await read_json(request, self.config.max_request_bytes))
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
        profile = route.model or self.profiles.default
        if profile not in self.profiles:
            raise ApiError(
                404,
                f"unknown routing profile {profile!r} (profiles: {', '.join(self.profiles.names)})",
                param="model",
                code="model_not_found",
            )
        limit = self.config.max_routing_chars
        decisions = await self.decide(profile, [capped(q, limit) for q in queries], "route")
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
