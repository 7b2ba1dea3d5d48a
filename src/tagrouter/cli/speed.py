"""Routing speed: per-query latency of single calls and throughput of batch calls, on real queries."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from tagrouter.cli.common import progress_bar
from tagrouter.evaluation.datasets.common import data_folder
from tagrouter.router import TagRouter


def measure_speed(
    router_dir: Path | None,
    data: Path,
    *,
    pool: Sequence[str] = (),
    batch_size: int = 805,
    repeats: int = 3,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Route every AlpacaEval instruction one at a time (latency percentiles), then in batches (throughput).

    Without ``router_dir`` a router is fitted on ``pool`` (default: the 8-model pool) first, not timed.
    A warm-up batch runs untimed; then every query is routed alone, timed.
    """
    from tagrouter.evaluation.datasets.alpacaeval import POOL_8, load_alpacaeval

    dataset = load_alpacaeval(data)
    queries = [dataset.instructions[i] for i in sorted(dataset.instructions)]
    if router_dir is None:
        models = list(pool) or list(POOL_8)
        router = TagRouter.fit(dataset.records(models), dataset.catalog(models), progress=progress)
    else:
        router = TagRouter.load(router_dir)
    router.route_batch(queries[:64])  # warm-up
    latencies = np.empty(len(queries))
    for i, query in enumerate(queries):
        start = time.perf_counter()
        router.route(query)
        latencies[i] = time.perf_counter() - start
        if progress and (i + 1) % 50 == 0:
            progress("single queries", i + 1, len(queries))
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for begin in range(0, len(queries), batch_size):
            router.route_batch(queries[begin : begin + batch_size])
        best = min(best, time.perf_counter() - start)
    return {
        "queries": len(queries),
        "models": len(router.models),
        "tagger": type(router.tagger).__name__,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "mean_ms": float(latencies.mean() * 1e3),
        "batch_size": batch_size,
        "batch_qps": len(queries) / best,
        "machine": f"{platform.machine()} CPU, {_cores()} cores, Python {platform.python_version()}",
    }


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def bench_speed(
    router_dir: Annotated[
        Path | None, typer.Argument(help="A saved router (default: fit one on the AlpacaEval 8-model pool).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="The alpaca_eval data folder (queries to route; required).")
    ] = None,
    pool: Annotated[
        str,
        typer.Option(
            help="Comma-separated models to fit on when no router is given (default: the 8-model pool)."
        ),
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also save the JSON result here.")] = None,
) -> None:
    """Routing latency (single queries: p50, p99) and batch throughput on the 805 AlpacaEval instructions."""
    with progress_bar() as progress:
        models = [m.strip() for m in pool.split(",") if m.strip()]
        result = measure_speed(router_dir, data_folder(data, "alpaca_eval"), pool=models, progress=progress)
    if out is not None:
        from tagrouter.fileio import atomic_write_json

        atomic_write_json(out, result)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(
            f"{result['queries']} queries on {result['machine']}: single-query latency "
            f"p50 {result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms; "
            f"batch throughput {result['batch_qps']:,.0f} queries/s"
        )
