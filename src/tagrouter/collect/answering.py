"""Answers of the pool models (and the reference) to sampled queries, cached by model and query."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tagrouter.collect.budget import Budget
from tagrouter.collect.cache import JsonlStore, cache_key
from tagrouter.collect.client import ChatClient, ChatTarget


@dataclass(frozen=True)
class AnswerEntry:
    """One model's answer to one query, with the tokens the upstream reported and their cost."""

    model: str
    query_id: str
    text: str
    input_tokens: int
    output_tokens: int
    cost: float

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> AnswerEntry:
        return cls(**{name: entry[name] for name in cls.__dataclass_fields__})


async def answer(
    client: ChatClient,
    target: ChatTarget,
    query_id: str,
    query: str,
    *,
    max_tokens: int,
    budget: Budget | None = None,
    cache: JsonlStore | None = None,
) -> AnswerEntry:
    """``target``'s answer to ``query`` (one user message, temperature 0), from ``cache`` when it is there."""
    key = cache_key(target.name, target.model, query, max_tokens)
    if cache is not None and (entry := cache.get(key)) is not None:
        return AnswerEntry.from_json(entry)
    messages = [{"role": "user", "content": query}]
    completion = await client.complete(target, messages, max_tokens=max_tokens, budget=budget)
    result = AnswerEntry(
        target.name,
        query_id,
        completion.text,
        completion.input_tokens,
        completion.output_tokens,
        completion.cost,
    )
    if cache is not None:
        cache.put(key, asdict(result))
    return result
