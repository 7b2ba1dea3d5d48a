"""Pairwise judging: a judge model compares two answers to one query, in both orders.

The prompt (version :data:`PROMPT_VERSION`) is MT-bench's pairwise judge prompt (Zheng et al., 2023,
FastChat, Apache-2.0) with a short explanation asked for, so that ``max_tokens`` stays small. The judge
sees the two answers as "Assistant A" and "Assistant B" and ends with ``[[A]]``, ``[[B]]`` or ``[[C]]``
(a tie). Each comparison is asked twice, the answers swapped, to cancel the judge's position bias: a
model's answer wins (or loses) only when both orders say so, and any disagreement is a tie.

A reply without a readable verdict is asked again (``malformed_retries`` times, each paid for); after
that the order counts as *no verdict*, which combines like a tie (AlpacaEval's convention for a missing
preference). Judge specs, in the tagger spec grammar: ``NAME`` (a catalogue model with an endpoint, at its
prices) or ``[openai:]MODEL@URL[?OPTIONS]`` with options ``api_key_env``, ``input_usd_per_1m``, ``output_usd_per_1m``,
``max_tokens``, ``concurrency``, ``timeout_s``, ``malformed_retries`` (a catalogue name takes them too).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from tagrouter.catalog import Catalog
from tagrouter.collect.budget import Budget
from tagrouter.collect.cache import cache_key
from tagrouter.collect.client import ChatClient, ChatTarget, settle_all
from tagrouter.records import Outcome
from tagrouter.tagging.spec import SpecError, parse_spec

PROMPT_VERSION = "pairwise-v1"
SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
    "assistants to the user question displayed below. You should choose the assistant that follows the "
    "user's instructions and answers the user's question better. Your evaluation should consider factors "
    "such as the helpfulness, relevance, accuracy, depth, creativity, and level of detail of their "
    "responses. Begin your evaluation by comparing the two responses and provide a short explanation (at "
    "most three sentences). Avoid any position biases and ensure that the order in which the responses "
    "were presented does not influence your decision. Do not allow the length of the responses to "
    "influence your evaluation. Do not favor certain names of the assistants. Be as objective as "
    "possible. After providing your explanation, output your final verdict by strictly following this "
    'format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)
USER_TEMPLATE = (
    "[User Question]\n{query}\n\n"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)

Choice = Literal["A", "B", "tie"]
_WORDS: dict[str, Choice] = {"a": "A", "b": "B", "c": "tie", "tie": "tie", "draw": "tie", "equal": "tie"}
_BRACKETED = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_OUTPUT = re.compile(r"\boutput\s*\(\s*(a|b)\s*\)", re.IGNORECASE)
_LABELLED = re.compile(  # the letter must be a capital: "Verdict: a tie" is not a vote for A
    r"\b(?:final\s+verdict|verdict|winner)\s*(?:is)?\s*[:=-]?\s*\**\s*(?:assistant\s+|an?\s+)?\(?\s*((?-i:[ABC])|tie|draw)\b",
    re.IGNORECASE,
)
_ALONE = re.compile(r"^\W*(?:assistant\s+|output\s+)?\(?\s*(A|B|C|tie|draw|equal)\s*\)?\W*$", re.IGNORECASE)


def judge_messages(query: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    """The judge's chat messages for one order of one comparison."""
    user = USER_TEMPLATE.format(query=query, answer_a=answer_a, answer_b=answer_b)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_verdict(reply: str) -> Choice | None:
    """The verdict of a judge's reply, or None when it has none.

    Read in this order: a JSON object with ``verdict``, ``winner`` or ``better``; the last ``[[A]]`` /
    ``[[B]]`` / ``[[C]]`` / ``[[tie]]``; AlpacaEval's ``Output (a)`` / ``Output (b)``; a labelled verdict
    (``Final verdict: B``, ``Winner: Assistant A``); a reply that is only the verdict (``A``, ``tie``).
    """
    for candidate in re.findall(r"\{[^{}]*\}", reply):
        try:
            obj = json.loads(candidate)
        except ValueError:
            continue
        for name in ("verdict", "winner", "better"):
            value = obj.get(name) if isinstance(obj, dict) else None
            if isinstance(value, str) and _choice(value) is not None:
                return _choice(value)
    for pattern in (_BRACKETED, _OUTPUT, _LABELLED, _ALONE):
        found = pattern.findall(reply.strip())
        if found:
            return _choice(found[-1])
    return None


def _choice(word: str) -> Choice | None:
    return _WORDS.get(word.strip().lower().removeprefix("assistant").strip(" ()"))


def combine(first: Choice | None, second: Choice | None) -> Outcome:
    """The outcome of answer X against answer Y: ``first`` is the verdict with X as A, ``second`` with X
    as B. X wins or loses only when both orders agree; otherwise (no verdict included) it is a tie."""
    as_a = {"A": "win", "B": "loss"}.get(first or "tie", "tie")
    as_b = {"B": "win", "A": "loss"}.get(second or "tie", "tie")
    return as_a if as_a == as_b else "tie"


@dataclass(frozen=True)
class Verdict:
    """One order's judgement: the choice (None: no verdict), the last reply, attempts and what they cost."""

    choice: Choice | None
    reply: str
    attempts: int
    input_tokens: int
    output_tokens: int
    cost: float

    def to_json(self) -> dict[str, Any]:
        return {
            "choice": self.choice,
            "reply": self.reply,
            "attempts": self.attempts,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
        }


@dataclass(frozen=True)
class Comparison:
    """Answer X against answer Y: the combined outcome for X and the verdict of each order."""

    outcome: Outcome
    first: Verdict  # X shown as A
    second: Verdict  # X shown as B

    @property
    def cost(self) -> float:
        return self.first.cost + self.second.cost


class VerdictCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...
    def put(self, key: str, entry: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Judge:
    """A judge model (``target``) with the prompt of :data:`PROMPT_VERSION`."""

    target: ChatTarget
    max_tokens: int = 512
    malformed_retries: int = 2

    @property
    def identity(self) -> str:
        """What history records name as their ``judge``: the upstream model id at its base URL."""
        return f"{self.target.model}@{self.target.base_url}" if self.target.base_url else self.target.model

    async def judge_order(
        self,
        client: ChatClient,
        query: str,
        answer_a: str,
        answer_b: str,
        *,
        budget: Budget | None = None,
        cache: VerdictCache | None = None,
    ) -> Verdict:
        """The judge's verdict with ``answer_a`` shown first (from ``cache`` when it holds it)."""
        key = cache_key(self.target.model, PROMPT_VERSION, query, answer_a, answer_b)
        if cache is not None and (entry := cache.get(key)) is not None:
            return Verdict(**{name: entry[name] for name in Verdict.__dataclass_fields__})
        messages = judge_messages(query, answer_a, answer_b)
        attempts = input_tokens = output_tokens = 0
        cost, choice, reply = 0.0, None, ""
        while choice is None and attempts <= self.malformed_retries:
            completion = await client.complete(
                self.target, messages, max_tokens=self.max_tokens, budget=budget
            )
            attempts += 1
            input_tokens += completion.input_tokens
            output_tokens += completion.output_tokens
            cost += completion.cost
            reply, choice = completion.text, parse_verdict(completion.text)
        verdict = Verdict(choice, reply, attempts, input_tokens, output_tokens, cost)
        if cache is not None:
            cache.put(key, verdict.to_json())
        return verdict

    async def compare(
        self,
        client: ChatClient,
        query: str,
        answer: str,
        other: str,
        *,
        budget: Budget | None = None,
        cache: VerdictCache | None = None,
    ) -> Comparison:
        """``answer`` against ``other``, both orders asked at once."""
        first, second = await settle_all(
            self.judge_order(client, query, answer, other, budget=budget, cache=cache),
            self.judge_order(client, query, other, answer, budget=budget, cache=cache),
        )
        return Comparison(combine(first.choice, second.choice), first, second)


_TARGET_OPTIONS = {
    "api_key_env": str,
    "input_usd_per_1m": float,
    "output_usd_per_1m": float,
    "timeout_s": float,
    "concurrency": int,
}
_JUDGE_OPTIONS = {"max_tokens": int, "malformed_retries": int}
_OPTIONS = {**_TARGET_OPTIONS, **_JUDGE_OPTIONS}
_POSITIVE = frozenset({"timeout_s", "concurrency", "max_tokens"})


def parse_judge(spec: str, catalog: Catalog | None = None) -> Judge:
    """The judge of a spec, in the tagger spec grammar (:mod:`tagrouter.tagging.spec`): ``NAME`` (a model
    of ``catalog``) or ``[openai:]MODEL@URL`` (an OpenAI-compatible endpoint), with ``?OPTIONS``."""
    known = f" or a catalogue model ({', '.join(catalog.names)})" if catalog is not None else ""
    forms = f"expected MODEL@URL[?options]{known} (openai:MODEL@URL, as for taggers, names an endpoint too)"
    parsed = parse_spec(spec, ("openai",), what="judge", forms=forms, default="openai")
    if "@" in parsed.target:
        model, url = parsed.endpoint()
        target = ChatTarget(name=f"judge {model}", base_url=url, model=model)
    elif catalog is not None and parsed.target in catalog:
        target = replace(ChatTarget.from_card(catalog[parsed.target]), name=f"judge {parsed.target}")
    else:
        raise SpecError(f"judge spec {spec!r}: {forms}")
    settings = parsed.typed_options(_OPTIONS)
    for name, value in settings.items():
        if _OPTIONS[name] is not str and (value < 0 or (name in _POSITIVE and value == 0)):
            raise SpecError(f"judge spec {spec!r}: {name}={parsed.options[name]!r} is out of range")
    target = replace(target, **{k: v for k, v in settings.items() if k in _TARGET_OPTIONS})
    return Judge(target, **{k: v for k, v in settings.items() if k in _JUDGE_OPTIONS})
