"""Load benchmark of the routing gateway on loopback (not a test).

It starts a replaying OpenAI-compatible upstream and ``tagrouter serve`` (each in its own process, as in a
deployment), then, for each client count C, runs C concurrent clients through the gateway and, at the same
time, C clients calling the upstream directly, for ``--duration`` seconds. Gateway clients send feedback
for a share of their answers. It reports requests/s, errors, latency percentiles of both paths, the
gateway's added latency (gateway minus direct, per percentile), and, after a graceful shutdown, how many
accepted feedback records are missing from the database.

    python scripts/bench_gateway.py --clients 1,10,100 --duration 20 --out bench-gateway.json

Without ``--router`` it fits a router with the default (embedded) tagger on ``--history`` (default: the
shipped example history).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import yaml

from tagrouter import TagRouter, read_history
from tagrouter.fileio import atomic_write_json
from tagrouter.testing.loopback import cpu_seconds, free_port, wait_until_up

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "tagrouter" / "examples"
KEY = "sk-bench"
TAGROUTER = [sys.executable, "-c", "from tagrouter.cli import main; main()"]


@dataclass
class PathStats:
    """Latencies (seconds) of plain and streaming calls, and errors, of one path (gateway or direct)."""

    latencies: list[float] = field(default_factory=list)
    stream_latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self, seconds: float) -> dict[str, Any]:
        """Request rate over both kinds; percentiles of plain calls, and of whole streams (``stream_*``)."""
        out: dict[str, Any] = {
            "requests": len(self.latencies) + len(self.stream_latencies),
            "requests_per_s": round((len(self.latencies) + len(self.stream_latencies)) / seconds, 1),
            "errors": sum(self.errors.values()),
            "error_kinds": self.errors,
        }
        for prefix, values in (("", self.latencies), ("stream_", self.stream_latencies)):
            ms = np.percentile(np.array(values) * 1000, [50, 90, 99]) if values else [float("nan")] * 3
            out |= {f"{prefix}p{p}_ms": round(float(v), 2) for p, v in zip((50, 90, 99), ms, strict=True)}
        return out


@dataclass
class Feedbacks:
    accepted: set[str] = field(default_factory=set)
    failed: int = 0


def _body(query: str, model: str, stream: bool) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": query}], "stream": stream}


async def _call(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> str | None:
    """One chat completion; returns the answer's id (None for a stream), raises on any failure."""
    async with http.post(url, json=body) as response:
        response.raise_for_status()
        if not body["stream"]:
            return (await response.json())["id"]
        text = (await response.read()).decode()
    if '"error"' in text:
        raise RuntimeError("error event in the stream")
    if not text.rstrip().endswith("data: [DONE]"):
        raise RuntimeError("stream ended without [DONE]")
    return None


async def _worker(
    http: aiohttp.ClientSession,
    url: str,
    model: str,
    queries: list[str],
    deadline: float,
    stats: PathStats,
    rng: random.Random,
    args: argparse.Namespace,
    feedback: Feedbacks | None,
    name: str,
) -> None:
    number = 0
    while time.perf_counter() < deadline:
        body = _body(rng.choice(queries), model, rng.random() < args.stream_share)
        start = time.perf_counter()
        try:
            answer_id = await _call(http, url + "/v1/chat/completions", body)
        except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError, KeyError) as exc:
            stats.error(type(exc).__name__)
            continue
        (stats.stream_latencies if body["stream"] else stats.latencies).append(time.perf_counter() - start)
        if feedback is not None and answer_id and rng.random() < args.feedback_share:
            number += 1
            feedback_id = f"{name}-{number}"
            outcome = rng.choice(["win", "tie", "loss"])
            try:
                async with http.post(
                    url + "/v1/feedback",
                    json={"request_id": answer_id, "outcome": outcome, "feedback_id": feedback_id},
                ) as response:
                    response.raise_for_status()
                    if (await response.json())["status"] in ("recorded", "duplicate"):
                        feedback.accepted.add(feedback_id)
            except (aiohttp.ClientError, TimeoutError):
                feedback.failed += 1


async def _phase(
    clients: int,
    gateway: str,
    upstream: str,
    upstream_model: str,
    queries: list[str],
    args: argparse.Namespace,
) -> tuple[dict[str, Any], Feedbacks]:
    timeout = aiohttp.ClientTimeout(total=60)
    gateway_stats, direct_stats, feedback = PathStats(), PathStats(), Feedbacks()
    headers = {"authorization": f"Bearer {KEY}"}
    # No pool limit: each client holds at most one connection at a time, while a capped pool (aiohttp gives a
    # freed slot to whoever asks first) left some clients waiting for a whole phase.
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=timeout, headers=headers
        ) as via_gateway,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as direct,
    ):
        start = time.perf_counter()
        deadline = start + args.duration
        tasks = []
        for i in range(clients):
            tasks.append(
                _worker(
                    via_gateway, gateway, args.model, queries, deadline, gateway_stats,
                    random.Random(f"g{clients}-{i}"), args, feedback, f"c{clients}-w{i}",
                )
            )  # fmt: skip
            tasks.append(
                _worker(
                    direct, upstream, upstream_model, queries, deadline, direct_stats,
                    random.Random(f"d{clients}-{i}"), args, None, "",
                )
            )  # fmt: skip
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - start
    via, plain = gateway_stats.summary(seconds), direct_stats.summary(seconds)
    added = {
        f"added_{kind}{p}_ms": round(via[f"{kind}{p}_ms"] - plain[f"{kind}{p}_ms"], 2)
        for kind in ("", "stream_")
        for p in ("p50", "p90", "p99")
    }
    return {
        "clients": clients,
        "seconds": round(seconds, 1),
        "gateway": via,
        "direct": plain,
        **added,
        "feedback_accepted": len(feedback.accepted),
        "feedback_failed": feedback.failed,
    }, feedback


def _decision_seconds(gateway_url: str) -> tuple[float, float]:
    """Sum and count of the gateway's own decision-time histogram (chat requests), from /metrics."""
    with urllib.request.urlopen(gateway_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        for name in ("sum", "count"):
            if line.startswith(f'tagrouter_decision_seconds_{name}{{endpoint="chat"}}'):
                values[name] = float(line.split()[-1])
    return values.get("sum", 0.0), values.get("count", 0.0)


def serve_upstream(port: int, delay_ms: float) -> None:
    """Run the replaying upstream in this process (the benchmark starts itself with --serve-upstream)."""
    import uvicorn

    from tagrouter.cli.serve import UVICORN_LOOP
    from tagrouter.testing.replay import ReplayBehaviour, create_replay_app

    app = create_replay_app("upstream", behaviour=ReplayBehaviour(delay_s=delay_ms / 1000))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop=UVICORN_LOOP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", type=Path, help="a saved router (default: fit one on --history)")
    parser.add_argument(
        "--history", type=Path, default=EXAMPLES / "history.jsonl", help="queries (and fit data)"
    )
    parser.add_argument(
        "--catalog", type=Path, default=EXAMPLES / "catalog.yaml", help="catalogue for fitting"
    )
    parser.add_argument("--clients", default="1,10,100", help="comma-separated client counts, one phase each")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--upstream-delay-ms", type=float, default=0.0, help="the upstream's answer time")
    parser.add_argument("--feedback-share", type=float, default=0.2, help="share of answers given feedback")
    parser.add_argument("--stream-share", type=float, default=0.2, help="share of streaming requests")
    parser.add_argument(
        "--model",
        default="tagrouter",
        help="'model' of gateway requests: a profile, or a catalogue model (no routing)",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream, args.upstream_delay_ms)
        return

    records = read_history(args.history)
    queries = list({r.query_id: r.query for r in records}.values())
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        work = Path(tmp)
        if args.router is None:
            from tagrouter import load_catalog

            print(f"fitting a router with the default tagger on {args.history} ...", flush=True)
            TagRouter.fit(records, load_catalog(args.catalog)).save(work / "router")
            args.router = work / "router"
        router = TagRouter.load(args.router)
        upstream_port, gateway_port = free_port(), free_port()
        upstream_url, gateway_url = f"http://127.0.0.1:{upstream_port}", f"http://127.0.0.1:{gateway_port}"
        config = {
            "api_keys": [KEY],
            "feedback_db": str(work / "feedback.sqlite3"),
            "endpoints": {m: {"base_url": upstream_url + "/v1", "timeout_s": 60} for m in router.models},
        }
        (work / "gateway.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        upstream = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve-upstream",
                str(upstream_port),
                "--upstream-delay-ms",
                str(args.upstream_delay_ms),
            ]
        )
        gateway = subprocess.Popen(
            [*TAGROUTER, "serve", str(args.router), "--config", str(work / "gateway.yaml"), "--port", str(gateway_port),
             "--log-level", "warning"]
        )  # fmt: skip
        phases, accepted = [], set()
        try:
            wait_until_up(upstream_url + "/docs", upstream)
            wait_until_up(gateway_url + "/healthz", gateway)
            for clients in (int(c) for c in args.clients.split(",")):
                print(
                    f"phase: {clients} clients via the gateway + {clients} direct, {args.duration:g} s",
                    flush=True,
                )
                decisions_before = _decision_seconds(gateway_url)
                cpu_before = cpu_seconds(gateway.pid), cpu_seconds(upstream.pid)
                result, feedback = asyncio.run(
                    _phase(clients, gateway_url, upstream_url, router.models[0], queries, args)
                )
                cpu_after = cpu_seconds(gateway.pid), cpu_seconds(upstream.pid)
                decided = [
                    a - b for a, b in zip(_decision_seconds(gateway_url), decisions_before, strict=True)
                ]
                result["decision_ms_mean"] = round(decided[0] * 1000 / decided[1], 3) if decided[1] else None
                if (
                    None not in cpu_before + cpu_after
                ):  # CPU per call: independent of what else the machine runs
                    gateway_calls = result["gateway"]["requests"] + result["feedback_accepted"]
                    upstream_calls = result["gateway"]["requests"] + result["direct"]["requests"]
                    result["gateway_cpu_ms_per_call"] = round(
                        (cpu_after[0] - cpu_before[0]) * 1000 / gateway_calls, 2
                    )
                    result["upstream_cpu_ms_per_call"] = round(
                        (cpu_after[1] - cpu_before[1]) * 1000 / upstream_calls, 2
                    )
                accepted |= feedback.accepted
                phases.append(result)
                print(json.dumps(result), flush=True)
        finally:
            gateway.send_signal(
                signal.SIGTERM
            )  # graceful: finish requests in flight, drain the feedback writer
            gateway.wait(timeout=120)
            upstream.send_signal(signal.SIGTERM)
            upstream.wait(timeout=60)
        with sqlite3.connect(work / "feedback.sqlite3") as db:
            stored = {row[0] for row in db.execute("SELECT feedback_id FROM feedback")}
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "router_models": router.models,
        "queries": len(queries),
        "settings": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "serve_upstream"
        },
        "phases": phases,
        "feedback_accepted": len(accepted),
        "feedback_stored": len(stored & accepted),
        "feedback_lost": len(accepted - stored),
    }
    print(
        f"feedback: {summary['feedback_accepted']} accepted, {summary['feedback_lost']} lost after graceful shutdown"
    )
    for phase in phases:
        print(
            f"{phase['clients']:>4} clients: gateway {phase['gateway']['requests_per_s']:>7.1f} req/s, "
            f"{phase['gateway']['errors']} errors, p50 {phase['gateway']['p50_ms']} ms, p99 {phase['gateway']['p99_ms']} ms"
            f" | direct p50 {phase['direct']['p50_ms']} ms, p99 {phase['direct']['p99_ms']} ms"
            f" | added p50 {phase['added_p50_ms']} ms, p99 {phase['added_p99_ms']} ms"
            f" (whole streams: p50 {phase['added_stream_p50_ms']} ms, p99 {phase['added_stream_p99_ms']} ms)"
            f" | decision {phase['decision_ms_mean']} ms | CPU per call: gateway {phase.get('gateway_cpu_ms_per_call')} ms,"
            f" upstream {phase.get('upstream_cpu_ms_per_call')} ms"
        )
    if args.out:
        atomic_write_json(args.out, summary)


if __name__ == "__main__":
    main()
