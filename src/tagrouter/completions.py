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
from dataclasses import dataclass
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


def complete(
    client: Any,
    url: str,
    body: dict[str, Any],
    *,
    api_key_env: str | None,
    key_required: bool = False,
    timeout_s: float,
    policy: RetryPolicy,
) -> Reply:
    """POST ``body`` to ``url`` with the ``httpx.Client`` ``client`` under ``policy``, the key read from
    ``$api_key_env`` now (see :func:`auth_headers`)."""
    headers = auth_headers(api_key_env, required=key_required)

    def attempt() -> Reply:
        try:
            response = client.post(url, json=body, headers=headers, timeout=timeout_s)
        except Exception as exc:
            raise _retryable(exc, timeout_s) from None
        return _reply(response, url, body, api_key_env)

    from tenacity import Retrying

    try:
        return Retrying(**policy.settings())(attempt)
    except _Retryable as exc:
        raise _exhausted(url, policy, exc) from None


async def acomplete(
    client: Any,
    url: str,
    body: dict[str, Any],
    *,
    api_key_env: str | None,
    key_required: bool = False,
    timeout_s: float,
    policy: RetryPolicy,
) -> Reply:
    """:func:`complete` with the ``httpx.AsyncClient`` ``client``."""
    headers = auth_headers(api_key_env, required=key_required)

    async def attempt() -> Reply:
        try:
            response = await client.post(url, json=body, headers=headers, timeout=timeout_s)
        except Exception as exc:
            raise _retryable(exc, timeout_s) from None
        return _reply(response, url, body, api_key_env)

    from tenacity import AsyncRetrying

    try:
        return await AsyncRetrying(**policy.settings())(attempt)
    except _Retryable as exc:
        raise _exhausted(url, policy, exc) from None


def _exhausted(url: str, policy: RetryPolicy, last: _Retryable) -> CompletionError:
    return CompletionError(
        f"POST {url} failed after {policy.retries + 1} attempts: {last.problem}", last.status
    )


def _retryable(exc: Exception, timeout_s: float) -> _Retryable:
    """A network failure of httpx as a retryable attempt; any other exception goes on as it is."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return _Retryable(f"no answer within {timeout_s:g} s")
    if isinstance(exc, httpx.TransportError):
        return _Retryable(f"connection failed ({type(exc).__name__}: {exc})")
    raise exc


def _reply(response: Any, url: str, body: dict[str, Any], api_key_env: str | None) -> Reply:
    """The reply of a 200 answer; a :class:`_Retryable` or a :class:`CompletionError` otherwise."""
    status = response.status_code
    if status != 200:
        problem = f"HTTP {status}: {response.text[:200]}"
        if status in RETRY_STATUSES:
            raise _Retryable(problem, status, _retry_after(response))
        raise CompletionError(f"POST {url} failed: {problem}{_hint(status, body, api_key_env)}", status)
    try:
        data = response.json()
        text = data["choices"][0]["message"]["content"] or ""
        usage = data.get("usage") or {}
        tokens = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
        input_tokens, output_tokens = (None if t is None else int(t) for t in tokens)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise CompletionError(
            f"POST {url}: the answer is not an OpenAI chat completion: {response.text[:200]}", status
        ) from None
    return Reply(str(text), input_tokens, output_tokens)


def _retry_after(response: Any) -> float | None:
    """The server's ``Retry-After`` in seconds (capped at 30 s), or None."""
    try:
        value = response.headers.get("retry-after")
        return None if value is None else min(max(float(value), 0.0), MAX_BACKOFF_S)
    except ValueError:
        return None


def _hint(status: int, body: dict[str, Any], api_key_env: str | None) -> str:
    if status in (401, 403):
        return f" (check the API key in ${api_key_env})" if api_key_env else " (no API key was sent)"
    if status == 404:
        return (
            f" (check the base URL, usually ending in /v1, and that the server serves {body.get('model')!r})"
        )
    return ""


__all__ = [
    "MAX_BACKOFF_S",
    "RETRY_STATUSES",
    "CompletionError",
    "Reply",
    "RetryPolicy",
    "acomplete",
    "auth_headers",
    "complete",
    "request_body",
    "require_http",
]
