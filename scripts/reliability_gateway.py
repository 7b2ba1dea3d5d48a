"""Reliability check of the routing gateway on loopback (not a test); prints one table.

It fits a router on the example history, starts three replaying upstreams and ``tagrouter serve``, each in
its own process as in a deployment (the upstreams are told to misbehave through their control endpoint;
the gateway can be killed), then:

1. sends bad inputs of every kind to every POST endpoint and counts the answers (target: no 5xx);
2. injects faults into the chosen model's upstream (down, slow, HTTP 500, HTTP 429, a stream broken
   before / after its first event, junk token usage, a non-JSON 200), plain and streaming, and records
   what the client saw (target: every fault answered by fallback where another model exists);
3. floods feedback, kills the gateway with SIGKILL, restarts it, and compares the acknowledged feedback
   ids with the stored ones (target: none lost);
4. trust between clients: another key's requests under a client's session id, ``user`` or opening
   messages (target: none of the client's turns moved), and huge numbers in an upstream's token usage
   (target: answered, streams complete, cost metrics finite);
5. measures chat latency alone, under a feedback flood, next to 1 MB queries, next to 990 KB prompts
   without white space (as the user message, and as the system message) and under a slow-body attack of
   another key (256 connections that send their headers and 10 body bytes, then wait) (target: p99 within
   2x of chat alone; under the attack also at least 99% of chat answered).

    python scripts/reliability_gateway.py --seconds 10 --out reliability.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import yaml

from tagrouter import TagRouter, load_catalog, read_history
from tagrouter.fileio import atomic_write_json
from tagrouter.testing.loopback import cpu_seconds, free_port, wait_until_up

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "tagrouter" / "examples"
KEY = "sk-reliability"
AUTH = {"authorization": f"Bearer {KEY}"}
ATTACKER = "sk-reliability-other"  # a second valid client key: the one that misbehaves
ATTACKER_AUTH = {"authorization": f"Bearer {ATTACKER}"}
FLOODER = "sk-reliability-flood-{}"  # the keys of the latency phase's feedback clients, one each
SLOW_CONNECTIONS = 256
IGNORE_RETRY_AFTER = "--attack-ignores-retry-after" in sys.argv  # the slow-body attacker's manners
THRIFTY = "thrifty"  # a profile that sends the example queries below the dearest model
TAGROUTER = [sys.executable, "-c", "from tagrouter.cli import main; main()"]
POSTS = ("/v1/chat/completions", "/v1/route", "/v1/feedback")
TIMEOUT_S = 1.0  # the gateway's upstream timeout; the 'slow' fault answers after 3 s


@dataclass
class Row:
    """One line of the table: what was tried, how often, what the client saw, and whether it met its target."""

    section: str
    what: str
    tried: int
    saw: str
    met: bool | None = None
    figures: dict[str, Any] = field(default_factory=dict)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.node()}: {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {load:.1f}"


# ---- the gateway process ------------------------------------------------------------------------------------
class Gateway:
    """``tagrouter serve`` in its own process, on a fixed port and config (restartable)."""

    def __init__(self, router: Path, config: Path, port: int) -> None:
        self.router, self.config, self.port = router, config, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            *TAGROUTER,
            "serve",
            str(self.router),
            "--config",
            str(self.config),
            "--port",
            str(self.port),
        ]
        self.process = subprocess.Popen([*command, "--log-level", "error"], stderr=subprocess.DEVNULL)
        wait_until_up(self.url + "/healthz", self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(120)


class Upstream:
    """A replaying upstream for one model in its own process (this script with ``--serve-upstream``)."""

    def __init__(self, model: str) -> None:
        self.model, self.port = model, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Upstream:
        command = [sys.executable, __file__, "--serve-upstream", self.model, "--port", str(self.port)]
        self.process = subprocess.Popen(command)
        wait_until_up(self.url + "/docs", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)

    def control(self, **changes: Any) -> None:
        """Change how the upstream behaves (``reset=True`` first: back to healthy)."""
        request = urllib.request.Request(
            self.url + "/control/behaviour",
            json.dumps(changes).encode(),
            {"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5):
            pass


def serve_upstream(model: str, port: int) -> None:
    """Run one replaying upstream in this process (for ``--serve-upstream``)."""
    import uvicorn

    from tagrouter.server import UVICORN_LOOP
    from tagrouter.testing.replay import create_replay_app

    uvicorn.run(
        create_replay_app(model), port=port, log_level="critical", access_log=False, loop=UVICORN_LOOP
    )


# ---- 1. bad inputs --------------------------------------------------------------------------------------------
def bad_inputs(query: str, rng: random.Random) -> dict[str, list[tuple[str, bytes, dict[str, str]]]]:
    """Bad requests by kind: (path, body, extra headers)."""

    def chat(content: Any, **fields: Any) -> dict[str, Any]:
        return {"model": "tagrouter", "messages": [{"role": "user", "content": content}], **fields}

    def each(*bodies: Any) -> list[tuple[str, bytes, dict[str, str]]]:
        encoded = [b if isinstance(b, bytes) else json.dumps(b).encode() for b in bodies]
        return [(path, body, {}) for path in POSTS for body in encoded]

    def per_endpoint(content: Any) -> list[tuple[str, bytes, dict[str, str]]]:
        bodies = [chat(content), {"query": content}, {"query": content, "model": "mid-70b", "outcome": "win"}]
        return [(path, json.dumps(body).encode(), {}) for path, body in zip(POSTS, bodies, strict=True)]

    nan_chat = json.dumps(chat(query, temperature=0.5)).encode()
    return {
        "malformed JSON": each(b"{not json", b'{"a":', b"\xff\xfe\x00"),
        "not a JSON object": each(b"[1, 2]", b'"text"', b"null"),
        "nesting 50,000 deep": each(b"[" * 50_000, b'{"a":' * 10_000),
        "NaN / Infinity / 1e999": each(*(nan_chat.replace(b"0.5", v) for v in (b"NaN", b"Infinity", b"-Infinity", b"1e999"))),
        "body over the limit (2.1 MB)": each({"query": "x" * 2_100_000}),
        "wrong types": each(chat(query, stream="yes"), chat(query, stream=1), {"query": 7}, {"queries": "a"}, {"outcome": True}),
        "lone surrogate": per_endpoint("hello \ud800 world") + per_endpoint("\udfff"),
        "only zero-width / NUL text": per_endpoint("\u200b\u200b") + per_endpoint("\x00\x00") + per_endpoint("\ufeff\u2060"),
        "unknown model or profile": each(chat(query) | {"model": "gpt-17"}, {"query": query, "model": "gpt-17"}),
        "missing fields": each({}, {"messages": []}, {"outcome": "win"}),
        "no or wrong client key": [(p, json.dumps(chat(query)).encode(), {"authorization": h}) for p in POSTS for h in ("", "Bearer sk-wrong", "Basic abc")],
        "random bytes": [(rng.choice(POSTS), rng.randbytes(rng.randint(1, 300)), {}) for _ in range(60)],
    }  # fmt: skip


async def run_bad_inputs(http: aiohttp.ClientSession, url: str, query: str, rng: random.Random) -> list[Row]:
    rows = []
    for kind, requests in bad_inputs(query, rng).items():
        statuses: Counter[int] = Counter()
        tracebacks = 0
        for path, body, headers in requests:
            send = {"content-type": "application/json", **AUTH, **headers}
            async with http.post(url + path, data=body, headers=send) as response:
                text = await response.text(errors="replace")
                statuses[response.status] += 1
                tracebacks += "Traceback" in text
        server_errors = sum(n for s, n in statuses.items() if s >= 500)
        saw = ", ".join(f"{n}× {s}" for s, n in sorted(statuses.items()))
        rows.append(
            Row("bad input", kind, len(requests), saw + (f"; {tracebacks} tracebacks" if tracebacks else ""),
                server_errors == 0 and tracebacks == 0, {"statuses": dict(statuses), "5xx": server_errors})
        )  # fmt: skip
    return rows


# ---- 2. faults ------------------------------------------------------------------------------------------------
@dataclass
class Seen:
    status: int
    model: str | None
    complete: bool  # a whole answer (a stream: [DONE] and no error event)
    error_event: bool = False


async def _ask(http: aiohttp.ClientSession, url: str, query: str, stream: bool) -> Seen:
    body = {"model": "tagrouter", "messages": [{"role": "user", "content": query}], "stream": stream}
    async with http.post(url + "/v1/chat/completions", json=body, headers=AUTH) as response:
        text = await response.text()
        if response.status != 200:
            return Seen(response.status, None, False)
        if not stream:
            data = json.loads(text)
            return Seen(200, data.get("model"), bool(data.get("choices")))
    events = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    chunks = [json.loads(e) for e in events if e.startswith("{")]
    errored = any("error" in c for c in chunks)
    models = {c.get("model") for c in chunks if "model" in c}
    return Seen(
        200, models.pop() if len(models) == 1 else None, events[-1:] == ["[DONE]"] and not errored, errored
    )


FAULTS = {  # name: (applies to plain, applies to streams, expected outcome)
    "upstream down": (True, True, "fallback"),
    f"slow (3 s, timeout {TIMEOUT_S:g} s)": (True, True, "fallback"),
    "HTTP 500": (True, True, "fallback"),
    "HTTP 429": (True, True, "fallback"),
    "stream broken before its first event": (False, True, "fallback"),
    "stream broken after its first event": (False, True, "error event"),
    'junk usage ("abc", -5)': (True, True, "answered"),
    "usage 10**400": (True, True, "answered"),
    "usage 1.7e308": (True, True, "answered"),
    "non-JSON 200": (True, True, "fallback"),
}


def inject(fault: str, upstream: Upstream) -> None:
    """Make ``upstream`` misbehave as ``fault`` says (all but 'upstream down', which stops it)."""
    changes: dict[str, Any] = {}
    if fault.startswith("slow"):
        changes["delay_s"] = 3.0
    elif fault.startswith("HTTP"):
        changes["fail_status"] = int(fault.split()[1])
    elif fault.startswith("stream broken before"):
        changes["break_stream_after"] = 0
    elif fault.startswith("stream broken after"):
        changes["break_stream_after"] = 2
    elif fault.startswith("junk usage"):
        changes["usage"] = {"prompt_tokens": "abc", "completion_tokens": -5}
    elif fault.startswith("usage"):
        huge = 10**400 if "400" in fault else 1.7e308
        changes["usage"] = {"prompt_tokens": huge, "completion_tokens": huge}
    elif fault.startswith("non-JSON"):
        changes["raw_body"] = "<html>upstream hiccup</html>"
    upstream.control(reset=True, **changes)


async def run_faults(
    http: aiohttp.ClientSession,
    url: str,
    query: str,
    first: str,
    upstreams: dict[str, Upstream],
    per_fault: int,
) -> list[Row]:
    rows = []
    upstream = upstreams[first]
    for fault, (plain, streams, expected) in FAULTS.items():
        for stream in (False, True):
            if not (streams if stream else plain):
                continue
            if fault == "upstream down":
                upstream.stop()
            else:
                inject(fault, upstream)
            seen = await asyncio.gather(*(_ask(http, url, query, stream) for _ in range(per_fault)))
            if fault == "upstream down":
                upstream.start()  # back up, on the same port
            upstream.control(reset=True)
            fell_back = sum(s.complete and s.model not in (None, first) for s in seen)
            answered = sum(s.complete and s.model == first for s in seen)
            errors = sum(s.error_event for s in seen)
            statuses = Counter(s.status for s in seen)
            saw = ", ".join(f"{n}× {s}" for s, n in sorted(statuses.items()))
            saw += f"; {fell_back} by fallback, {answered} by {first}" + (
                f", {errors} error events" if errors else ""
            )
            met = {"fallback": fell_back, "answered": answered, "error event": errors}[expected] == per_fault
            rows.append(
                Row("fault", f"{fault} ({'stream' if stream else 'plain'}; expected: {expected})", per_fault, saw, met,
                    {"fell_back": fell_back, "answered_by_first": answered, "error_events": errors, "statuses": dict(statuses)})
            )  # fmt: skip
    return rows


# ---- 3. feedback across kill -9 ----------------------------------------------------------------------------------
async def _feedback_client(
    http: aiohttp.ClientSession,
    url: str,
    queries: list[str],
    model: str,
    name: str,
    stop: asyncio.Event,
    acked: set[str],
    auth: dict[str, str] = AUTH,
) -> tuple[int, int]:
    """Send feedback until ``stop`` (or the gateway dies), honouring Retry-After; returns (accepted, rejected)."""
    accepted = rejected = number = 0
    while not stop.is_set():
        number += 1
        feedback_id = f"{name}-{number}"
        body = {
            "query": queries[number % len(queries)],
            "model": model,
            "outcome": "win",
            "feedback_id": feedback_id,
        }
        try:
            async with http.post(url + "/v1/feedback", json=body, headers=auth) as response:
                data = await response.json(content_type=None)
                if response.status == 200 and data.get("status") in ("recorded", "duplicate"):
                    acked.add(feedback_id)
                    accepted += 1
                elif response.status == 429:
                    rejected += 1
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return accepted, rejected  # the gateway is gone
    return accepted, rejected


async def run_kill(gateway: Gateway, queries: list[str], model: str, clients: int, seconds: float) -> Row:
    acked: set[str] = set()
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        tasks = [
            asyncio.create_task(_feedback_client(http, gateway.url, queries, model, f"k{i}", stop, acked))
            for i in range(clients)
        ]
        await asyncio.sleep(seconds)
        gateway.kill()  # SIGKILL: no graceful shutdown, no checkpoint
        stop.set()
        await asyncio.gather(*tasks)
    acknowledged = set(acked)
    gateway.start()
    with urllib.request.urlopen(gateway.url + "/healthz", timeout=10) as response:
        health = json.loads(response.read())
    with sqlite3.connect(Path(yaml.safe_load(gateway.config.read_text())["feedback_db"])) as db:
        stored = {row[0] for row in db.execute("SELECT feedback_id FROM feedback")}
    lost = len(acknowledged - stored)
    saw = (f"{len(acknowledged)} acknowledged until the kill, {len(acknowledged & stored)} of them stored after the "
           f"restart, {lost} lost; the restarted gateway learned {health['feedback_records']} stored records")  # fmt: skip
    return Row("feedback", f"kill -9 during a flood of {clients} clients, restart", len(acknowledged), saw, lost == 0,
               {"acknowledged": len(acknowledged), "stored": len(acknowledged & stored), "lost": lost})  # fmt: skip


# ---- 4. trust between clients ------------------------------------------------------------------------------------
async def _chat_model(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> str | None:
    async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as response:
        await response.read()
        return response.headers.get("x-tagrouter-model") if response.status == 200 else None


async def run_trust(
    http: aiohttp.ClientSession, url: str, queries: list[str], router: TagRouter
) -> list[Row]:
    """Another key steers a client's session (by its id, its ``user`` or its opening messages) with
    ``min_model`` (the dearest model) or ``exclude`` (the client's own model); then the client's next three
    turns are counted by model, in profile ``thrifty`` (a cost knob that sends these queries below the
    dearest model)."""
    dearest = max(router.models, key=lambda m: router.catalog[m].price_key)
    routed: dict[str, str] = {}
    for query in queries[:60]:
        async with http.post(
            url + "/v1/route", json={"query": query, "model": THRIFTY}, headers=AUTH
        ) as response:
            routed[query] = (await response.json())["decisions"][0]["model"]
    below = [q for q, m in routed.items() if m != dearest] or list(routed)
    rows = []
    for how in ("min_model", "exclude"):
        moved = turns = 0
        for number, name in enumerate(("x-session-id", "user", "opening messages")):
            query = below[(number + 3 * (how == "exclude")) % len(below)]
            body = {"model": THRIFTY, "messages": [{"role": "user", "content": query}]}
            override = {"min_model": dearest} if how == "min_model" else {"exclude": [routed[query]]}
            fields = {"user": f"alice-{how}"} if name == "user" else {}
            headers = {"x-session-id": f"alice-{how}"} if name == "x-session-id" else {}
            await _chat_model(
                http, url, {**body, **fields, "tagrouter": override}, {**ATTACKER_AUTH, **headers}
            )
            for _ in range(3):
                turns += 1
                moved += (
                    await _chat_model(http, url, {**body, **fields}, {**AUTH, **headers}) != routed[query]
                )
        saw = f"{moved} of {turns} of the client's turns moved off its own model"
        rows.append(Row("trust", f"another key's {how} under the client's session id / user / opening", turns,
                        saw, moved == 0, {"moved": moved, "turns": turns}))  # fmt: skip
    async with http.get(url + "/metrics") as response:
        text = await response.text()
    costs = [
        ln
        for ln in text.splitlines()
        if ln.startswith(("tagrouter_estimated_cost", "tagrouter_reference_cost"))
    ]
    bad = [ln for ln in costs if not np.isfinite(float(ln.split()[-1]))]
    rows.append(Row("trust", "cost metrics after usage of 10**400 and 1.7e308", len(costs),
                    f"{len(bad)} of {len(costs)} cost series not finite", not bad, {"not_finite": len(bad)}))  # fmt: skip
    return rows


# ---- 5. latency ------------------------------------------------------------------------------------------------
async def _chat_client(
    http: aiohttp.ClientSession,
    url: str,
    queries: list[str],
    rate: float,
    deadline: float,
    rng: random.Random,
    latencies: list[float],
    errors: Counter,
) -> None:
    next_at = time.perf_counter() + rng.random() / rate
    while next_at < deadline:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        next_at += 1.0 / rate
        body = {"model": "tagrouter", "messages": [{"role": "user", "content": rng.choice(queries)}]}
        start = time.perf_counter()
        try:
            async with http.post(url + "/v1/chat/completions", json=body, headers=AUTH) as response:
                await response.read()
                if response.status != 200:
                    errors[response.status] += 1
                    continue
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors[type(exc).__name__] += 1
            continue
        latencies.append(time.perf_counter() - start)


async def _huge_client(
    http: aiohttp.ClientSession,
    url: str,
    text: str,
    rate: float,
    deadline: float,
    done: list[float],
    system: bool = False,
) -> None:
    """Send a chat request with ``text`` (1 MB) ``rate`` times a second (0: back to back), as the user
    message or (``system``) as the system message before a short question."""
    messages = [{"role": "user", "content": text}]
    if system:
        messages = [{"role": "system", "content": text}, {"role": "user", "content": "Summarise the above."}]
    body = json.dumps({"model": "tagrouter", "messages": messages}).encode()
    headers = {"content-type": "application/json", **AUTH}
    next_at = time.perf_counter()
    while next_at < deadline:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        start = time.perf_counter()
        next_at = start + (1.0 / rate if rate else 0.0)
        async with http.post(url + "/v1/chat/completions", data=body, headers=headers) as response:
            await response.read()
            if response.status == 200:
                done.append(time.perf_counter() - start)


async def _slow_body(url: str, deadline: float, statuses: Counter) -> None:
    """One connection of the attacker's key that sends its headers and 10 body bytes, then waits; when
    the gateway answers or closes it, another one takes its place (after ``Retry-After`` seconds for a
    429, as a client that is told to wait does; ``--attack-ignores-retry-after`` reconnects at once)."""
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {ATTACKER}\r\n"
            "content-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"messages\"")  # fmt: skip
    while time.perf_counter() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            statuses["connect_error"] += 1
            await asyncio.sleep(0.1)
            continue
        writer.write(head.encode())
        wait = 0.0
        try:
            left = max(0.01, deadline - time.perf_counter())
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), left)
            lines = answer.decode("latin-1").lower().split("\r\n")
            statuses[lines[0].split(" ")[1]] += 1
            retry = [ln.split(":", 1)[1] for ln in lines if ln.startswith("retry-after:")]
            wait = float(retry[0]) if retry and not IGNORE_RETRY_AFTER else 0.0
        except (TimeoutError, OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
        await asyncio.sleep(min(wait, max(0.0, deadline - time.perf_counter())))


async def background_load(
    kind: str, url: str, seconds: float, clients: int, huge_rate: float
) -> dict[str, Any]:
    """The competing load of a latency phase, run in its own process (``--load``), so that its CPU is not
    taken from the chat clients and the upstreams in the main process."""
    queries = list({r.query_id: r.query for r in read_history(EXAMPLES / "history.jsonl")}.values())
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
    ) as http:
        print("ready", flush=True)
        deadline = time.perf_counter() + seconds
        if kind == "feedback":
            stop, acked = asyncio.Event(), set()
            keys = [{"authorization": f"Bearer {FLOODER.format(i)}"} for i in range(clients)]
            tasks = [
                asyncio.create_task(
                    _feedback_client(http, url, queries, "mid-70b", f"f{i}", stop, acked, auth)
                )
                for i, auth in enumerate(keys)
            ]
            await asyncio.sleep(seconds)
            stop.set()
            counts = await asyncio.gather(*tasks)
            return {"feedback_accepted": sum(a for a, _ in counts), "feedback_429": sum(r for _, r in counts)}
        if kind == "slowbody":
            statuses: Counter = Counter()
            await asyncio.gather(*(_slow_body(url, deadline, statuses) for _ in range(SLOW_CONNECTIONS)))
            return {"slow_answers": dict(statuses)}
        if kind == "huge":
            text = (" ".join(queries) * (1_000_000 // len(" ".join(queries)) + 1))[:1_000_000]
        else:  # 990 KB without white space, the shape that BPE token counting is slowest on
            text = "".join(random.Random(0).choices("abcdefghijklmnopqrstuvwxyz0123456789", k=990_000))
        done: list[float] = []
        await _huge_client(http, url, text, huge_rate, deadline, done, system=kind == "nows-system")
        return {"huge_seconds": done}


PHASES = {
    "chat alone": None,
    "chat + feedback flood": "feedback",
    "chat + 1 MB queries": "huge",
    "chat + 990 KB prompts without white space (user)": "nows-user",
    "chat + 990 KB prompts without white space (system)": "nows-system",
    f"chat + slow-body attack ({SLOW_CONNECTIONS} connections, another key)": "slowbody",
}


async def run_latency(gateway: Gateway, queries: list[str], args: argparse.Namespace) -> list[Row]:
    """The three phases, interleaved over ``args.rounds`` rounds (so that a change in the machine's load
    falls on all three alike), each ``args.seconds / args.rounds`` per round."""
    url, seconds = gateway.url, args.seconds / args.rounds
    latencies: dict[str, list[float]] = {phase: [] for phase in PHASES}
    errors: dict[str, Counter] = {phase: Counter() for phase in PHASES}
    extras: dict[str, list[dict[str, Any]]] = {phase: [] for phase in PHASES}
    cpu: dict[str, float] = dict.fromkeys(PHASES, 0.0)
    phases = {phase: load for phase, load in PHASES.items() if load is None or load in args.loads}
    for number in range(args.rounds):
        for phase, load in phases.items():
            loader = None
            if load is not None:
                command = [sys.executable, __file__, "--load", load, "--url", url, "--seconds", str(seconds),
                           "--flood-clients", str(args.flood_clients), "--huge-rate", str(args.huge_rate)]  # fmt: skip
                command += ["--attack-ignores-retry-after"] if args.attack_ignores_retry_after else []
                loader = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                assert loader.stdout is not None and loader.stdout.readline().strip() == "ready"
            cpu_before = cpu_seconds(gateway.process.pid) or 0.0
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=60)
            ) as http:
                deadline = time.perf_counter() + seconds
                await asyncio.gather(*(_chat_client(http, url, queries, args.chat_rate, deadline, random.Random(f"{phase}{number}{i}"),
                                                    latencies[phase], errors[phase]) for i in range(args.chat_clients)))  # fmt: skip
            cpu[phase] += (cpu_seconds(gateway.process.pid) or 0.0) - cpu_before
            if loader is not None:
                extras[phase].append(json.loads(loader.communicate(timeout=120)[0]))
    results: dict[str, dict[str, Any]] = {}
    for phase in phases:
        ms = (
            np.percentile(np.array(latencies[phase]) * 1000, [50, 99])
            if latencies[phase]
            else [float("nan")] * 2
        )
        figures: dict[str, Any] = {"requests": len(latencies[phase]), "errors": dict(errors[phase]),
                                   "p50_ms": round(float(ms[0]), 2), "p99_ms": round(float(ms[1]), 2),
                                   "gateway_cpu_share": round(cpu[phase] / args.seconds, 2)}  # fmt: skip
        if phase == "chat + feedback flood":
            figures |= {"feedback_accepted_per_s": round(sum(e["feedback_accepted"] for e in extras[phase]) / args.seconds, 1),
                        "feedback_429": sum(e["feedback_429"] for e in extras[phase]), "flood_clients": args.flood_clients}  # fmt: skip
        elif PHASES[phase] == "slowbody":
            answers: Counter = Counter()
            for e in extras[phase]:
                answers.update(e["slow_answers"])
            figures |= {"slow_body_answers": dict(answers)}
        elif PHASES[phase] is not None:
            done = [d for e in extras[phase] for d in e["huge_seconds"]]
            figures |= {
                "huge_answered": len(done),
                "huge_p50_ms": round(float(np.median(done)) * 1000, 1) if done else None,
            }
        results[phase] = figures
    alone = results["chat alone"]
    rows = []
    for phase, figures in results.items():
        ratio_50, ratio_99 = figures["p50_ms"] / alone["p50_ms"], figures["p99_ms"] / alone["p99_ms"]
        figures |= {"p50_ratio": round(ratio_50, 2), "p99_ratio": round(ratio_99, 2)}
        saw = (f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms (×{ratio_50:.2f} / ×{ratio_99:.2f} of alone); "
               f"gateway CPU {figures['gateway_cpu_share']:.0%} of a core")  # fmt: skip
        if "feedback_accepted_per_s" in figures:
            saw += f"; {figures['flood_clients']} feedback clients: {figures['feedback_accepted_per_s']}/s accepted, {figures['feedback_429']} got 429"
        if "huge_answered" in figures:
            pace = f"{args.huge_rate:g}/s" if args.huge_rate else "back to back"
            saw += (
                f"; {figures['huge_answered']} big prompts ({pace}) answered, p50 {figures['huge_p50_ms']} ms"
            )
        answered = figures["requests"] / max(1, figures["requests"] + sum(figures["errors"].values()))
        figures["answered_share"] = round(answered, 4)
        if "slow_body_answers" in figures:
            saw += f"; chat answered {answered:.1%}; the attack's connections were answered {figures['slow_body_answers']}"
        if figures["errors"]:
            saw += f"; errors {figures['errors']}"
        if phase == "chat alone":
            met = None
        elif "slow_body_answers" in figures:
            met = ratio_99 <= 2.0 and answered >= 0.99
        else:
            met = ratio_99 <= 2.0 and not figures["errors"]
        what = (
            f"{phase} ({args.chat_clients} clients × {args.chat_rate:g} req/s, {args.rounds} × {seconds:g} s)"
        )
        rows.append(Row("latency", what, figures["requests"], saw, met, figures))
    return rows


# ---- main ------------------------------------------------------------------------------------------------------
def print_table(rows: list[Row], header: str) -> None:
    print(header)
    print("| section | what | tried | what the client saw | target met |")
    print("|---|---|---:|---|---|")
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        print(f"| {row.section} | {row.what} | {row.tried} | {row.saw} | {met} |")


async def run_all(
    args: argparse.Namespace,
    gateway: Gateway,
    upstreams: dict[str, Any],
    queries: list[str],
    router: TagRouter,
) -> list[Row]:
    rng = random.Random(0)
    query = queries[0]
    rows: list[Row] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        if "bad" in args.sections:
            rows += await run_bad_inputs(http, gateway.url, query, rng)
        if "faults" in args.sections:
            async with http.post(gateway.url + "/v1/route", json={"query": query}, headers=AUTH) as response:
                first = (await response.json())["decisions"][0]["ranking"][0]
            rows += await run_faults(http, gateway.url, query, first, upstreams, args.per_fault)
        if "trust" in args.sections:
            rows += await run_trust(http, gateway.url, queries, router)
    if "kill" in args.sections:
        rows.append(await run_kill(gateway, queries, router.models[0], args.flood_clients, args.kill_after))
    if "latency" in args.sections:
        rows += await run_latency(gateway, queries, args)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=12.0, help="length of each latency phase, all rounds"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the interleaved latency phases")
    parser.add_argument("--chat-clients", type=int, default=4, help="chat clients in the latency phases")
    parser.add_argument(
        "--chat-rate", type=float, default=20.0, help="requests per second of each chat client"
    )
    parser.add_argument("--flood-clients", type=int, default=32, help="feedback clients of a flood")
    parser.add_argument(
        "--huge-rate", type=float, default=2.0, help="1 MB queries per second (0: back to back)"
    )
    parser.add_argument("--per-fault", type=int, default=10, help="requests per fault and mode")
    parser.add_argument(
        "--kill-after", type=float, default=3.0, help="seconds of feedback flood before kill -9"
    )
    parser.add_argument(
        "--feedback-per-s", type=float, default=100.0, help="the gateway's feedback rate limit"
    )
    parser.add_argument(
        "--max-in-flight-per-key", type=int, help="the gateway's per-key limit (default: its default, 128)"
    )
    parser.add_argument(
        "--attack-ignores-retry-after",
        action="store_true",
        help="the slow-body attacker reconnects at once after a 429 (a connection flood)",
    )
    parser.add_argument("--sections", default="bad,faults,trust,kill,latency", help="which checks to run")
    loads = sorted(set(PHASES.values()) - {None})
    parser.add_argument(
        "--loads",
        type=lambda text: text.split(","),
        default=loads,
        help=f"the latency phases' loads to run besides chat alone (comma-separated, of {','.join(loads)})",
    )
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--load", choices=sorted(set(PHASES.values()) - {None}), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--serve-upstream", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if unknown := set(args.loads) - set(loads):
        parser.error(f"--loads: unknown {', '.join(sorted(unknown))} (expected some of {', '.join(loads)})")
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.port)
        return
    if args.load:
        load = background_load(args.load, args.url, args.seconds, args.flood_clients, args.huge_rate)
        print(json.dumps(asyncio.run(load)))
        return

    records = read_history(EXAMPLES / "history.jsonl")
    queries = list({r.query_id: r.query for r in records}.values())
    with tempfile.TemporaryDirectory(prefix="reliability-gateway-") as tmp:
        work = Path(tmp)
        router = TagRouter.fit(records, load_catalog(EXAMPLES / "catalog.yaml"))
        router.save(work / "router")
        upstreams = {model: Upstream(model).start() for model in router.models}
        config = {
            "api_keys": [KEY, ATTACKER, *(FLOODER.format(i) for i in range(args.flood_clients))],
            "affinity": {"enabled": True},
            "profiles": {"tagrouter": {}, THRIFTY: {"rule": "utility", "knob": 100}},
            "feedback_db": str(work / "feedback.sqlite3"),
            "max_request_bytes": 2_000_000,
            "upstream_timeout_s": TIMEOUT_S,
            "admission": {"feedback_per_s": args.feedback_per_s}
            | ({"max_in_flight_per_key": args.max_in_flight_per_key} if args.max_in_flight_per_key else {}),
            "endpoints": {m: {"base_url": upstream.url + "/v1"} for m, upstream in upstreams.items()},
        }
        (work / "gateway.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        gateway = Gateway(work / "router", work / "gateway.yaml", free_port())
        gateway.start()
        started = time.perf_counter()
        try:
            rows = asyncio.run(run_all(args, gateway, upstreams, queries, router))
        finally:
            gateway.stop()
            for upstream in upstreams.values():
                upstream.stop()
    header = f"Machine: {machine()}; {time.perf_counter() - started:.0f} s on loopback.\n"
    print_table(rows, header)
    if args.out:
        atomic_write_json(args.out, {"machine": machine(), "rows": [vars(r) for r in rows]})


if __name__ == "__main__":
    main()
