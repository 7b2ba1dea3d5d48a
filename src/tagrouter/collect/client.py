"""Calls to OpenAI-compatible chat endpoints: bounded concurrency per endpoint, retries with backoff, the
cost of each call from its token usage, and a budget checked before every call.

The calls, their retry policy and their errors are :mod:`tagrouter.completions`'s, which the OpenAI tagger
backend uses too (httpx, not the official ``openai`` package, which retries out of sight of the budget).
One asyncio loop drives every call, so the budget and the caches need no locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from tagrouter.catalog import Endpoint, ModelCard
from tagrouter.collect.budget import Budget
from tagrouter.completions import ChatCall, CompletionError, Reply, RetryPolicy, request_body, require_http

#: Tokens a chat request may add to its messages' text (roles, separators): part of the worst case.
CHAT_OVERHEAD_TOKENS = 16


class ChatError(CompletionError):
    """A chat call failed: a status that retrying cannot fix, or every attempt failed (the message starts
    with the target's name)."""


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
            httpx = require_http("calling models")
        except CompletionError as exc:
            raise ChatError(str(exc)) from None
        self.concurrency, self.policy = concurrency, RetryPolicy(retries, backoff_s)
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
        body = request_body(target.model, messages, max_tokens=max_tokens, temperature=temperature)
        call = ChatCall(
            target.url, body, target.api_key_env, target.timeout_s, self.policy, key_required=True
        )
        try:
            reply = await call.asend(self._http)
        except CompletionError as exc:
            raise ChatError(f"{target.name}: {exc}", exc.status) from None
        return _completion(target, reply)


async def settle_all(*calls: Awaitable[Any]) -> list[Any]:
    """The results of ``calls``, run together; each runs to its end even when another fails (so that
    every paid answer reaches its cache), then the first failure is raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _completion(target: ChatTarget, reply: Reply) -> Completion:
    if reply.input_tokens is None or reply.output_tokens is None:
        raise ChatError(f"{target.name}: the answer of {target.url} has no token usage, which its cost needs")
    cost = target.cost(reply.input_tokens, reply.output_tokens)
    return Completion(reply.text, reply.input_tokens, reply.output_tokens, cost)
