"""An OpenAI-compatible judge server for tests: it reads the pairwise judge prompt and replies with the
verdict a rule gives, and can be told to misbehave (HTTP 429 or 500, a slow answer, a reply without a
verdict) on its next calls."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tagrouter.testing.replay import UNSURE

#: A rule: (query, answer A, answer B) -> "A", "B" or "C" (a tie).
Rule = Callable[[str, str, str], str]

_PROMPT = re.compile(
    r"\[User Question\]\n(?P<query>.*)\n\n\[The Start of Assistant A's Answer\]\n(?P<a>.*)\n"
    r"\[The End of Assistant A's Answer\]\n\n\[The Start of Assistant B's Answer\]\n(?P<b>.*)\n"
    r"\[The End of Assistant B's Answer\]",
    re.DOTALL,
)


def longer_wins(query: str, answer_a: str, answer_b: str) -> str:
    """The longer answer is better; equal lengths tie."""
    return "A" if len(answer_a) > len(answer_b) else "B" if len(answer_b) > len(answer_a) else "C"


def sure_beats_unsure(query: str, answer_a: str, answer_b: str) -> str:
    """A stand-in's :data:`~tagrouter.testing.replay.UNSURE` answer loses to any other; two real answers
    (or two unsure ones) tie."""
    unsure_a, unsure_b = answer_a.strip() == UNSURE, answer_b.strip() == UNSURE
    return "B" if unsure_a and not unsure_b else "A" if unsure_b and not unsure_a else "C"


def always_first(query: str, answer_a: str, answer_b: str) -> str:
    """A judge with total position bias: the first answer always wins."""
    return "A"


@dataclass
class JudgeBehaviour:
    """``faults`` are used up one per call, in order: ``"429"``, ``"500"``, ``"slow"`` (answer after
    ``slow_s``) or ``"malformed"`` (a reply without a verdict). ``calls`` counts every request, ``seen``
    holds the (query, answer A, answer B) of each one that was judged."""

    faults: list[str] = field(default_factory=list)
    slow_s: float = 2.0
    delay_s: float = 0.0
    calls: int = 0
    seen: list[tuple[str, str, str]] = field(default_factory=list)


def create_judge_app(rule: Rule = longer_wins, behaviour: JudgeBehaviour | None = None) -> FastAPI:
    """A judge answering ``POST /v1/chat/completions`` with ``"<explanation> [[X]]"`` by ``rule``."""
    behaviour = behaviour or JudgeBehaviour()
    app = FastAPI(title="test judge")
    app.state.behaviour = behaviour

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        behaviour.calls += 1
        fault = behaviour.faults.pop(0) if behaviour.faults else None
        if fault in ("429", "500"):
            error = {"message": f"judge fails with {fault} on purpose", "type": "server_error"}
            return JSONResponse({"error": error}, status_code=int(fault), headers={"retry-after": "0"})
        await asyncio.sleep(behaviour.slow_s if fault == "slow" else behaviour.delay_s)
        prompt = "\n".join(m.get("content") or "" for m in body.get("messages", []))
        found = _PROMPT.search(prompt)
        if fault == "malformed" or found is None:
            reply = "Both answers have merits; I cannot decide."
        else:
            query, answer_a, answer_b = found.group("query"), found.group("a"), found.group("b")
            behaviour.seen.append((query, answer_a, answer_b))
            reply = (
                f"Compared by {getattr(rule, '__name__', 'a rule')}. [[{rule(query, answer_a, answer_b)}]]"
            )
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(reply.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        choice = {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
        return JSONResponse(
            {
                "id": "judge-1",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [choice],
                "usage": usage,
            }
        )

    return app
