"""Calls to OpenAI-compatible chat endpoints: bounded concurrency per endpoint, retries with backoff, the
cost of each call from its token usage, and a budget checked before every call.

The client is httpx's async client (the ``openai`` extra, already used by the OpenAI tagger backend)
rather than the official ``openai`` package: the official client retries on its own, out of sight of the
budget, and the collector needs each attempt's status, ``Retry-After`` and ``usage`` to pay for exactly
what it spends. One asyncio loop drives every call, so the budget and the caches need no locks.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from tagrouter.catalog import Endpoint, ModelCard
from tagrouter.collect.budget import Budget
from tagrouter.errors import TagRouterError
from tagrouter.retrying import RETRY_STATUSES, backoff_delay, retry_after

#: Tokens a chat request may add to its messages' text (roles, separators): part of the worst case.
CHAT_OVERHEAD_TOKENS = 16


class ChatError(TagRouterError):
    """A chat call failed: a status that retrying cannot fix, or every attempt failed."""


@dataclass(frozen=True)
class ChatTarget:
    """A model to call: its endpoint, the upstream model id, its prices and its concurrency limit."""

    name: str
    base_url: str
    model: str
    input_usd_per_1m: float = 0.0
    output_usd_per_1m: float = 0.0
    api_key_env: str | None = None
    timeout_s: float = 60.0
    concurrency: int | None = None  # default: the client's

    @classmethod
    def from_card(cls, card: ModelCard, endpoint: Endpoint | None = None) -> ChatTarget:
        """The target of a catalogue model (``endpoint`` overrides the card's own); a card without an
        endpoint gives a target with prices but no base URL, which estimates can use but calls cannot."""
        endpoint = endpoint or card.endpoint
        if endpoint is None:
            return cls(card.name, "", card.name, card.input_usd_per_1m, card.output_usd_per_1m)
        return cls(
            name=card.name,
            base_url=endpoint.base_url,
            model=endpoint.model or card.name,
            input_usd_per_1m=card.input_usd_per_1m,
            output_usd_per_1m=card.output_usd_per_1m,
            api_key_env=endpoint.api_key_env,
            timeout_s=endpoint.timeout_s,
        )

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        """Dollars of one call with these token counts."""
        return (input_tokens * self.input_usd_per_1m + output_tokens * self.output_usd_per_1m) / 1e6

    def worst_case_cost(self, messages: list[dict[str, str]], max_tokens: int) -> float:
        """An upper bound of one call's cost: every UTF-8 byte of the messages one prompt token (byte-level
        BPE tokenizers never need more) plus the chat overhead, and all ``max_tokens`` written."""
        prompt = sum(len(m["content"].encode("utf-8")) + 4 for m in messages) + CHAT_OVERHEAD_TOKENS
        return self.cost(prompt, max_tokens)


@dataclass(frozen=True)
class Completion:
    """One answer: its text, the token counts the upstream reported and their cost."""

    text: str
    input_tokens: int
    output_tokens: int
    cost: float


class ChatClient:
    """Sends chat completions, at most ``concurrency`` at a time per endpoint (``ChatTarget.concurrency``
    overrides it), retrying timeouts, connection failures, 429 and 5xx up to ``retries`` times with
    exponential backoff (``backoff_s``, doubling, at most 30 s, or the server's ``Retry-After``)."""

    def __init__(self, *, concurrency: int = 4, retries: int = 4, backoff_s: float = 1.0) -> None:
        try:
            import httpx
        except ImportError:
            raise ChatError("calling models needs httpx: pip install 'tagrouter[openai]'") from None
        self.concurrency, self.retries, self.backoff_s = concurrency, retries, backoff_s
        self._http = httpx.AsyncClient(limits=httpx.Limits(max_connections=None))
        self._gates: dict[tuple[str, str], asyncio.Semaphore] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def complete(
        self,
        target: ChatTarget,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        budget: Budget | None = None,
        temperature: float = 0.0,
    ) -> Completion:
        """One completion. Once a slot of the endpoint is free, its worst-case cost is reserved in
        ``budget`` (raising :class:`~tagrouter.collect.budget.BudgetExhausted` when it does not fit); the
        real cost replaces the reservation when the answer arrives."""
        if not target.base_url:
            raise ChatError(f"{target.name}: no endpoint to call (give it one in the catalogue)")
        budget = budget or Budget()
        gate = self._gates.setdefault(
            (target.base_url, target.model), asyncio.Semaphore(target.concurrency or self.concurrency)
        )
        async with gate:  # calls waiting for a slot hold no reservation
            reserved = target.worst_case_cost(messages, max_tokens)
            budget.reserve(reserved)
            try:
                completion = await self._send(target, messages, max_tokens, temperature)
            except BaseException:
                budget.settle(reserved, 0.0)
                raise
        budget.settle(reserved, completion.cost)
        return completion

    async def _send(
        self, target: ChatTarget, messages: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> Completion:
        import httpx

        body = {
            "model": target.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        headers = {}
        if target.api_key_env:
            key = os.environ.get(target.api_key_env)
            if not key:
                raise ChatError(f"{target.name}: environment variable {target.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        problem = ""
        for attempt in range(self.retries + 1):
            wait = backoff_delay(self.backoff_s, attempt)
            try:
                response = await self._http.post(
                    target.url, json=body, headers=headers, timeout=target.timeout_s
                )
            except httpx.TimeoutException:
                problem = f"no answer within {target.timeout_s:g} s"
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__}: {exc})"
            else:
                if response.status_code == 200:
                    return _completion(target, response)
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRY_STATUSES:
                    raise ChatError(f"{target.name}: POST {target.url} failed: {problem}")
                wait = retry_after(response, wait)
            if attempt < self.retries:
                await asyncio.sleep(wait)
        raise ChatError(
            f"{target.name}: POST {target.url} failed after {self.retries + 1} attempts: {problem}"
        )


async def settle_all(*calls: Awaitable[Any]) -> list[Any]:
    """The results of ``calls``, run together; each runs to its end even when another fails (so that
    every paid answer reaches its cache), then the first failure is raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _completion(target: ChatTarget, response: Any) -> Completion:
    try:
        data = response.json()
        text = data["choices"][0]["message"]["content"] or ""
        usage = data.get("usage") or {}
        input_tokens = int(usage["prompt_tokens"])
        output_tokens = int(usage["completion_tokens"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise ChatError(
            f"{target.name}: the answer of {target.url} is not a chat completion with usage: {response.text[:200]}"
        ) from None
    return Completion(text, input_tokens, output_tokens, target.cost(input_tokens, output_tokens))
