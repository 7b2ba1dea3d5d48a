"""Calls to OpenAI-compatible chat completion endpoints, sync (the OpenAI tagger backend) and async
(``tagrouter collect``'s reference, models and judge): one request body, one retry policy, one error mapping.

The retry policy (:class:`RetryPolicy`, run by tenacity): a request that times out, cannot connect or gets
a status of :data:`RETRY_STATUSES` is tried again up to ``retries`` times, waiting ``backoff_s`` doubled per
attempt (at most 30 s) or the server's ``Retry-After`` (at most 30 s). Any other status fails at once. Every
failure is a :class:`CompletionError` naming the URL, the status or the network problem, and what to check.

httpx is the HTTP client (the ``openai`` and ``server`` extras bring it and tenacity) rather than the
official ``openai`` package: the official client retries on its own, out of sight of a caller that pays
for each attempt (collect's budget) or counts them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from tagrouter.errors import TagRouterError

if TYPE_CHECKING:
    from tenacity import RetryCallState

#: Statuses worth another attempt: rate limits, timeouts, conflicts and server errors.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0


class CompletionError(TagRouterError):
    """A chat completion call failed: a status that retrying cannot fix, an answer that is not a chat
    completion, or every attempt failed. ``status``: the last HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _Retryable(Exception):
    """One attempt that failed in a way another attempt may not."""

    def __init__(self, problem: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem, self.status, self.retry_after = problem, status, retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``retries`` more attempts after the first, ``backoff_s`` doubling (see the module docstring)."""

    retries: int = 4
    backoff_s: float = 1.0

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the server's ``Retry-After``, else exponential backoff."""
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _Retryable) and failure.retry_after is not None:
            return failure.retry_after
        return min(self.backoff_s * 2 ** (state.attempt_number - 1), MAX_BACKOFF_S)

    def settings(self) -> dict[str, Any]:
        """The arguments of tenacity's ``Retrying`` / ``AsyncRetrying`` for this policy."""
        from tenacity import retry_if_exception_type, stop_after_attempt

        return {
            "stop": stop_after_attempt(self.retries + 1),
            "wait": self.wait,
            "retry": retry_if_exception_type(_Retryable),
            "reraise": True,
        }


@dataclass(frozen=True)
class Reply:
    """A chat completion's text and the token counts its ``usage`` reported (None when it has none)."""

    text: str
    input_tokens: int | None
    output_tokens: int | None


def require_http(what: str) -> Any:
    """The ``httpx`` module, or a :class:`CompletionError` saying which extra ``what`` needs."""
    try:
        import httpx
        import tenacity  # noqa: F401 (the retry policy's)
    except ImportError as exc:
        raise CompletionError(f"{what} needs {exc.name}: pip install 'tagrouter[openai]'") from None
    return httpx


def request_body(
    model: str, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0
) -> dict[str, Any]:
    """The JSON body of one chat completion request."""
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}


def auth_headers(api_key_env: str | None, *, required: bool) -> dict[str, str]:
    """``Authorization: Bearer`` with the key in ``$api_key_env``; none when that is unset, or a
    :class:`CompletionError` naming the variable when the key is ``required``."""
    key = os.environ.get(api_key_env) if api_key_env else None
    if key:
        return {"Authorization": f"Bearer {key}"}
    if required and api_key_env:
        raise CompletionError(f"environment variable {api_key_env} is not set")
    return {}


@dataclass(frozen=True)
class ChatCall:
    """One chat completion request: ``body`` POSTed to ``url`` under ``policy``, each attempt within
    ``timeout_s``, with the key in ``$api_key_env`` read at each call (see :func:`auth_headers`)."""

    url: str
    body: dict[str, Any]
    api_key_env: str | None
    timeout_s: float
    policy: RetryPolicy
    key_required: bool = False

    def send(self, client: Any) -> Reply:
        """The reply, through the ``httpx.Client`` ``client``."""
        from tenacity import Retrying

        post = self._post(client)

        def attempt() -> Reply:
            try:
                response = post()
            except Exception as exc:
                raise self._retryable(exc) from None
            return self._reply(response)

        try:
            return Retrying(**self.policy.settings())(attempt)
        except _Retryable as exc:
            raise self._exhausted(exc) from None

    async def asend(self, client: Any) -> Reply:
        """The reply, through the ``httpx.AsyncClient`` ``client``."""
        from tenacity import AsyncRetrying

        post = self._post(client)

        async def attempt() -> Reply:
            try:
                response = await post()
            except Exception as exc:
                raise self._retryable(exc) from None
            return self._reply(response)

        try:
            return await AsyncRetrying(**self.policy.settings())(attempt)
        except _Retryable as exc:
            raise self._exhausted(exc) from None

    def _post(self, client: Any) -> Callable[[], Any]:
        headers = auth_headers(self.api_key_env, required=self.key_required)
        return partial(client.post, self.url, json=self.body, headers=headers, timeout=self.timeout_s)

    def _retryable(self, exc: Exception) -> _Retryable:
        """A network failure of httpx as a retryable attempt; any other exception goes on as it is."""
        import httpx

        if isinstance(exc, httpx.TimeoutException):
            return _Retryable(f"no answer within {self.timeout_s:g} s")
        if isinstance(exc, httpx.TransportError):
            return _Retryable(f"connection failed ({type(exc).__name__}: {exc})")
        raise exc

    def _exhausted(self, last: _Retryable) -> CompletionError:
        return CompletionError(
            f"POST {self.url} failed after {self.policy.retries + 1} attempts: {last.problem}", last.status
        )

    def _reply(self, response: Any) -> Reply:
        """The reply of a 200 answer; a :class:`_Retryable` or a :class:`CompletionError` otherwise."""
        status = response.status_code
        if status != 200:
            problem = f"HTTP {status}: {response.text[:200]}"
            if status in RETRY_STATUSES:
                raise _Retryable(problem, status, _retry_after(response))
            raise CompletionError(f"POST {self.url} failed: {problem}{self._hint(status)}", status)
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
            tokens = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
            input_tokens, output_tokens = (None if t is None else int(t) for t in tokens)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise CompletionError(
                f"POST {self.url}: the answer is not an OpenAI chat completion: {response.text[:200]}", status
            ) from None
        return Reply(str(text), input_tokens, output_tokens)

    def _hint(self, status: int) -> str:
        if status in (401, 403):
            return (
                f" (check the API key in ${self.api_key_env})"
                if self.api_key_env
                else " (no API key was sent)"
            )
        if status == 404:
            model = self.body.get("model")
            return f" (check the base URL, usually ending in /v1, and that the server serves {model!r})"
        return ""


def _retry_after(response: Any) -> float | None:
    """The server's ``Retry-After`` in seconds (capped at 30 s), or None."""
    try:
        value = response.headers.get("retry-after")
        return None if value is None else min(max(float(value), 0.0), MAX_BACKOFF_S)
    except ValueError:
        return None


__all__ = [
    "MAX_BACKOFF_S",
    "RETRY_STATUSES",
    "ChatCall",
    "CompletionError",
    "Reply",
    "RetryPolicy",
    "auth_headers",
    "request_body",
    "require_http",
]
