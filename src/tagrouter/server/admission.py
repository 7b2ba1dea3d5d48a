"""Admission control: bounded chat and feedback concurrency, a feedback rate, per-key limits.

A request over a limit is answered with a 429 ``rate_limited`` and a ``Retry-After`` header (whole
seconds). The limits are checked in two stages, so that no client can hold a place that others need by
sending its body slowly, and a client over its limits costs the gateway close to nothing:

1. on the request's headers, before anything else reads it (:class:`KeyGate`, an ASGI middleware in front
   of the app: no routing, no JSON, no body read), per client key: its rate (``requests_per_key_per_s``)
   and its requests in the gateway at once (``max_in_flight_per_key``, from their headers to the end of
   their answer, bodies being read and streams included); the body must then arrive within
   ``body_timeout_s`` (else a 408);
2. once the body is in: the shared chat slots (``max_chat_in_flight``) and feedback slots and rate.

A slow-body attack with one key thus holds at most that key's own places, for at most the body timeout.
A refusal is answered after a random share of ``refusal_spread_s``: the clients refused together (a crowd
of connections, or a flood) then come back after ``Retry-After`` spread over that time instead of all at
once, since ``Retry-After`` itself cannot say less than a second. At most as many refusals of a kind wait
for their answer as that kind has places (a key's, chat, feedback); beyond that they are answered at once.
The feedback rate bounds what a feedback flood can take from chat: each accepted feedback costs a parse,
a commit and a router update, and those share the CPU with routing.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import Counter

from tagrouter.server.config import Admission
from tagrouter.server.errors import ApiError


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up (``burst`` = one second's worth, at least 1);
    ``clock`` gives the time in seconds (monotonic; tests pass their own)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def take(self) -> float:
        """Take a token: 0.0 if one was there, else the seconds until the next one (nothing is taken)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


def _busy(what: str, retry_after_s: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after_s))
    return ApiError(
        429,
        f"{what}; retry after {seconds} s",
        type_="rate_limit_error",
        code="rate_limited",
        headers={"Retry-After": str(seconds)},
    )


class AdmissionControl:
    """The gateway's limits, checked on the event loop (not thread-safe, and needs no lock there);
    ``rejected`` counts the 429s by kind (chat, feedback, key); ``draw`` gives the share of
    ``refusal_spread_s`` that a refusal waits (uniform in [0, 1); tests pass their own)."""

    def __init__(
        self, limits: Admission, rejected: Counter, draw: Callable[[], float] = random.random
    ) -> None:
        self.limits = limits
        self.chat_in_flight = 0
        self.feedback_in_flight = 0
        self._rejected = rejected
        self._draw = draw
        self._feedback_rate = TokenBucket(limits.feedback_per_s)
        self._key_rates: dict[int, TokenBucket] = {}
        self._key_in_flight: dict[int, int] = {}
        #: refusals waiting for their answer, by kind ("chat", "feedback" or a key's number)
        self.refusals_waiting: dict[Hashable, int] = {}

    def _reject(self, kind: str, what: str, retry_after_s: float = 1.0) -> ApiError:
        self._rejected.labels(kind).inc()
        return _busy(what, retry_after_s)

    async def spread(self, kind: Hashable, places: int) -> None:
        """Wait a random share of ``refusal_spread_s`` before a refusal of ``kind`` is answered, unless
        ``places`` refusals of that kind wait already."""
        waiting = self.refusals_waiting.get(kind, 0)
        if waiting >= places or self.limits.refusal_spread_s == 0:
            return
        self.refusals_waiting[kind] = waiting + 1
        try:
            await asyncio.sleep(self._draw() * self.limits.refusal_spread_s)
        finally:
            if (left := self.refusals_waiting[kind] - 1) > 0:
                self.refusals_waiting[kind] = left
            else:
                del self.refusals_waiting[kind]

    def admit_key(self, key: int) -> ApiError | None:
        """Take one of client key number ``key``'s places (give it back with :meth:`release_key`), or the
        429 that refuses the request when the key is over its rate or has all its places taken (nothing
        is taken then)."""
        rate = self.limits.requests_per_key_per_s
        if rate is not None:
            bucket = self._key_rates.get(key)
            if bucket is None:
                bucket = self._key_rates[key] = TokenBucket(rate)
            if wait := bucket.take():
                return self._reject("key", f"this key's rate limit of {rate:g} requests/s is reached", wait)
        held = self._key_in_flight.get(key, 0)
        if held >= self.limits.max_in_flight_per_key:
            return self._reject(
                "key", f"this key has {held} requests in the gateway, its limit (max_in_flight_per_key)"
            )
        self._key_in_flight[key] = held + 1
        return None

    def release_key(self, key: int) -> None:
        """Give back a place that :meth:`admit_key` took."""
        if (left := self._key_in_flight[key] - 1) > 0:
            self._key_in_flight[key] = left
        else:
            del self._key_in_flight[key]

    @asynccontextmanager
    async def chat(self) -> AsyncIterator[None]:
        """Hold a chat slot while the request is routed and its upstream answers (or sends its first event);
        taken once the body has been read."""
        if self.chat_in_flight >= self.limits.max_chat_in_flight:
            refusal = self._reject("chat", "the gateway is serving as many chat requests as it takes")
            await self.spread("chat", self.limits.max_chat_in_flight)
            raise refusal
        self.chat_in_flight += 1
        try:
            yield
        finally:
            self.chat_in_flight -= 1

    @asynccontextmanager
    async def feedback(self) -> AsyncIterator[None]:
        """Hold a feedback slot until the feedback is committed; also counts it against the feedback rate
        (taken once the body has been read)."""
        refusal = None
        if self.feedback_in_flight >= self.limits.max_feedback_in_flight:
            refusal = self._reject("feedback", "the feedback queue is full")
        elif wait := self._feedback_rate.take():
            refusal = self._reject(
                "feedback", f"the feedback rate limit of {self.limits.feedback_per_s:g}/s is reached", wait
            )
        if refusal is not None:
            await self.spread("feedback", self.limits.max_feedback_in_flight)
            raise refusal
        self.feedback_in_flight += 1
        try:
            yield
        finally:
            self.feedback_in_flight -= 1


Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class KeyGate:
    """ASGI middleware: the per-key limits of ``admission``, checked on a request's headers before the app
    sees it (paths under ``prefix``). ``identify`` gives the number of the client key that an
    ``Authorization`` header carries (None: no client keys, or not one of them; the app answers those).
    A refused request is answered here, after its share of the refusal spread, with its body unread and
    ``Connection: close``; an admitted one holds its key's place until its answer is sent."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Any],
        admission: AdmissionControl,
        identify: Callable[[str], int | None],
        prefix: str = "/v1/",
    ) -> None:
        self.app, self.admission, self.identify, self.prefix = app, admission, identify, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        key = self.identify(authorization.decode("latin-1"))
        if key is None:
            await self.app(scope, receive, send)
            return
        refusal = self.admission.admit_key(key)
        if refusal is None:
            try:
                await self.app(scope, receive, send)
            finally:
                self.admission.release_key(key)
            return
        await self.admission.spread(key, self.admission.limits.max_in_flight_per_key)
        content = refusal.content()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (b"connection", b"close"),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in (refusal.headers or {}).items()]
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
