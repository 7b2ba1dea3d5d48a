"""Admission control: bounded chat and feedback concurrency, a feedback rate, optional per-key rates.

A request over a limit is answered at once with a 429 ``rate_limited`` and a ``Retry-After`` header
(whole seconds), before its body is read, so that a flood costs the gateway as little as possible. The
feedback rate bounds what a feedback flood can take from chat: each accepted feedback costs a parse, a
commit and a router update, and those share the CPU with routing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
    ``rejected`` counts the 429s by kind (chat, feedback, key)."""

    def __init__(self, limits: Admission, rejected: Counter) -> None:
        self.limits = limits
        self.chat_in_flight = 0
        self.feedback_in_flight = 0
        self._rejected = rejected
        self._feedback_rate = TokenBucket(limits.feedback_per_s)
        self._key_rates: dict[int, TokenBucket] = {}

    def _reject(self, kind: str, what: str, retry_after_s: float = 1.0) -> ApiError:
        self._rejected.labels(kind).inc()
        return _busy(what, retry_after_s)

    def check_key(self, key: int) -> None:
        """Count one request of client key number ``key`` against its rate (if one is configured)."""
        rate = self.limits.requests_per_key_per_s
        if rate is None:
            return
        bucket = self._key_rates.get(key)
        if bucket is None:
            bucket = self._key_rates[key] = TokenBucket(rate)
        if wait := bucket.take():
            raise self._reject("key", f"this key's rate limit of {rate:g} requests/s is reached", wait)

    @contextmanager
    def chat(self) -> Iterator[None]:
        """Hold a chat slot while the request is routed and its upstream answers (or sends its first event)."""
        if self.chat_in_flight >= self.limits.max_chat_in_flight:
            raise self._reject("chat", "the gateway is serving as many chat requests as it takes")
        self.chat_in_flight += 1
        try:
            yield
        finally:
            self.chat_in_flight -= 1

    @contextmanager
    def feedback(self) -> Iterator[None]:
        """Hold a feedback slot until the feedback is committed; also counts it against the feedback rate."""
        if self.feedback_in_flight >= self.limits.max_feedback_in_flight:
            raise self._reject("feedback", "the feedback queue is full")
        if wait := self._feedback_rate.take():
            raise self._reject(
                "feedback", f"the feedback rate limit of {self.limits.feedback_per_s:g}/s is reached", wait
            )
        self.feedback_in_flight += 1
        try:
            yield
        finally:
            self.feedback_in_flight -= 1
