"""The collection budget under concurrent calls: what the upstreams billed never passes ``--budget-usd``
(README and docs/collect.md: "the budget is never exceeded", "calls in flight together can never
overspend it").

Stand-in upstreams (answerers and a judge) on loopback bill every call they answer (its prompt tokens at
bytes / 4 and ``max_tokens`` of output, the dearest answer a real upstream may give) and hold each call
until four are in flight, so that reservations overlap. The spend is summed from their bills, not from
the tool's cache or report. Bug caught (checked by hand): ``Budget.reserve`` checking only what is spent,
not what calls in flight hold (then the calls reserved together pass the limit).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi", reason="the stand-in upstreams need the server extra (fastapi)")
pytest.importorskip("httpx", reason="tagrouter collect needs the openai extra (httpx)")

from threaded import ThreadedServer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tagrouter.catalog import Catalog, Endpoint, ModelCard  # noqa: E402
from tagrouter.cli import app  # noqa: E402

PRICES = {"cheap": (0.1, 0.2), "dear": (10.0, 30.0), "ref": (5.0, 15.0), "judge": (1.0, 2.0)}
MAX_TOKENS = 256
CONCURRENCY = 8
HOLD_UNTIL = 4  # calls in flight before any is answered (or 2 s)


class Ledger:
    """Every call the stand-ins answered, with what it billed; calls in flight now and at most."""

    def __init__(self) -> None:
        self.bills: list[tuple[str, int, int]] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()

    def dollars(self) -> float:
        return sum((p * PRICES[name][0] + c * PRICES[name][1]) / 1e6 for name, p, c in self.bills)


def stand_in(name: str, ledger: Ledger) -> fastapi.FastAPI:
    api = fastapi.FastAPI()

    @api.post("/v1/chat/completions")
    async def chat(request: fastapi.Request) -> dict:
        body = await request.json()
        prompt = sum(len(m["content"].encode("utf-8")) for m in body["messages"]) // 4
        with ledger.lock:
            ledger.in_flight += 1
            ledger.max_in_flight = max(ledger.max_in_flight, ledger.in_flight)
        deadline = time.monotonic() + 2.0
        while ledger.max_in_flight < HOLD_UNTIL and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)
        with ledger.lock:
            ledger.in_flight -= 1
            ledger.bills.append((name, prompt, body["max_tokens"]))
        text = "[[A]]" if name == "judge" else f"{name} says: " + "word " * 20
        usage = {"prompt_tokens": prompt, "completion_tokens": body["max_tokens"]}
        return {
            "id": "x",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {**usage, "total_tokens": prompt + body["max_tokens"]},
        }

    return api


def test_concurrent_reservations_never_overspend_the_budget(tmp_path: Path) -> None:
    ledger = Ledger()
    queries = [f"Question number {i}: explain topic {i} in a few words." for i in range(30)]
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps({"query": q}) + "\n" for q in queries))
    budget = 0.25
    with ExitStack() as stack:
        urls = {n: stack.enter_context(ThreadedServer(stand_in(n, ledger))).url + "/v1" for n in PRICES}
        Catalog(
            models=[
                ModelCard(
                    name=n,
                    input_usd_per_1m=PRICES[n][0],
                    output_usd_per_1m=PRICES[n][1],
                    endpoint=Endpoint(base_url=urls[n], model=n),
                )
                for n in ("cheap", "dear", "ref")
            ]
        ).save(tmp_path / "catalog.yaml")
        judge = f"judge@{urls['judge']}?input_usd_per_1m=1&output_usd_per_1m=2&concurrency={CONCURRENCY}"
        result = CliRunner().invoke(
            app,
            [
                "collect", str(tmp_path / "queries.jsonl"), "--catalog", str(tmp_path / "catalog.yaml"),
                "--judge", judge, "--reference", "ref", "--out", str(tmp_path / "history.jsonl"),
                "--max-tokens", str(MAX_TOKENS), "--concurrency", str(CONCURRENCY), "--budget-usd", str(budget),
            ],
        )  # fmt: skip
    # the servers have stopped: every call they answered, also one the tool gave up on, is billed
    assert result.exit_code == 3, result.output  # stopped by the budget
    assert "stopped by the budget" in result.output
    billed = ledger.dollars()
    assert billed <= budget, f"the upstreams billed ${billed:.6f} on a budget of ${budget}"
    # not vacuous: calls ran concurrently, and the run spent most of the budget before stopping
    assert ledger.max_in_flight >= HOLD_UNTIL
    assert billed > 0.5 * budget and len(ledger.bills) >= 30
