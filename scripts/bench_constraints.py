"""Added latency per request of capability constraints, session affinity and conversation-aware routing.

In one process and one run, each chat request of the example history is decided one at a time (a batch
of one, as a lone gateway request) in each of these ways in turn, and the median time per request is
compared with plain routing (``route_batch([query])``) of the same requests:

- ``constraints``: the request's needs read from its validated body (token count, modalities, tools) and
  the allowed-models mask, computed once before batching and passed to the decision (what the gateway
  does);
- ``+ affinity``: and the session key (a hash of the conversation's opening), a pin lookup and a pin;
- ``+ conversation``: and a second turn whose earlier user turn is scored too (``conversation_weight``).

Usage: ``python scripts/bench_constraints.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

from tagrouter.catalog import Catalog, load_catalog
from tagrouter.chat import ChatRequest, earlier_text, needs_of, routing_text
from tagrouter.cli.demo import EXAMPLES
from tagrouter.constraints import allowed
from tagrouter.conversation import Conversation
from tagrouter.records import read_history
from tagrouter.router import TagRouter
from tagrouter.server.affinity import SessionPins, session_key
from tagrouter.tokens import tokenizer_name

#: The earlier turns' weight in the conversation row (the gateway's default when this was measured).
WEIGHT = 0.3


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"


def per_request(
    rows: list[tuple[str, list[ChatRequest], Callable[[ChatRequest], object]]], rounds: int
) -> list[float]:
    """Median microseconds per request of each row, the rows interleaved request by request (so that a
    change in the machine's load touches every row alike), after a warm-up pass."""
    for _, bodies, decide in rows:
        for body in bodies:
            decide(body)
    times: list[list[float]] = [[] for _ in rows]
    for _ in range(rounds):
        for index in range(len(rows[0][1])):
            for (_, bodies, decide), spent in zip(rows, times, strict=True):
                start = time.perf_counter()
                decide(bodies[index])
                spent.append(time.perf_counter() - start)
    return [statistics.median(spent) * 1e6 for spent in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    records = read_history(EXAMPLES / "history.jsonl")
    cards = load_catalog(EXAMPLES / "catalog.yaml").model_dump()["models"]
    capabilities = {"context_window": 8192, "tools": True, "modalities": ["text", "image"]}
    catalog = Catalog.model_validate({"models": [{**card, **capabilities} for card in cards]})
    router = TagRouter.fit(records, catalog)
    queries = list(dict.fromkeys(r.query for r in records))
    first_turns = [
        ChatRequest.model_validate({"messages": [{"role": "user", "content": q}]}) for q in queries
    ]
    second_turns = [
        ChatRequest.model_validate(
            {
                "messages": [
                    {"role": "user", "content": first},
                    {"role": "assistant", "content": "An answer."},
                    {"role": "user", "content": second},
                ]
            }
        )
        for first, second in zip(queries, queries[1:] + queries[:1], strict=True)
    ]
    pins = SessionPins(catalog, ttl_s=1800, max_turns=50, max_sessions=100_000)

    def plain(chat: ChatRequest) -> object:
        return router.route_batch([routing_text(chat.messages)])

    def constrained(chat: ChatRequest, affinity: bool = False, weight: float = 0.0) -> object:
        query = routing_text(chat.messages)
        key = session_key({}, chat) if affinity else None
        if key is not None:
            pins.lookup(key)
        needs = [replace(needs_of(chat), saturated=frozenset())]
        fits = allowed(
            catalog, needs, None
        )  # the gateway's check before batching (costs: only for a ceiling)
        earlier = [earlier_text(chat.messages)] if weight else None
        decision = router.route_batch([query], None, earlier, Conversation.weighted(weight), fits=fits)[0]
        if key is not None:
            pins.pin(key, decision.model, "request-id")
        return decision

    rows = [
        ("plain routing", first_turns, plain),
        ("constraints", first_turns, constrained),
        ("constraints + affinity", first_turns, lambda b: constrained(b, affinity=True)),
        ("plain routing, second turns", second_turns, plain),
        (
            f"constraints + affinity + conversation (weight {WEIGHT})",
            second_turns,
            lambda b: constrained(b, affinity=True, weight=WEIGHT),
        ),
    ]
    print(
        f"{len(queries)} requests × {args.rounds} rounds, interleaved; {machine()}; tokens: {tokenizer_name()}"
    )
    print("| decided with | µs per request (median) | ratio to plain |\n|---|---:|---:|")
    base: dict[int, float] = {}
    for (name, bodies, _), micros in zip(rows, per_request(rows, args.rounds), strict=True):
        reference = base.setdefault(id(bodies), micros)
        print(f"| {name} | {micros:.0f} | {micros / reference:.2f} |")


if __name__ == "__main__":
    main()
