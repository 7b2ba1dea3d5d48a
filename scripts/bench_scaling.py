"""Scaling of a fit: synthetic histories of 10k, 100k and 1M judged records (or any ``--sizes``, 10M
included) fitted with the local engine and with ``--engine ray``, each run in a fresh process.

Each history has 8 models per query; its queries are the 805 AlpacaEval instructions and, past those,
pairs of them ("instruction a" + " " + "instruction b"), then triples (past 805² queries, that is 5.2M
records), so that every query text is distinct and the tag vocabulary grows with the history as it does on
real traffic. Outcomes follow each model's accept rate shifted by a per-instruction
difficulty. The records are Parquet files of 125k records each, read by the streaming reader as a user's
``tagrouter fit 'hist/*.parquet' --catalog C --out R [--engine ray]`` would.

Per run it prints the time of each stage (reading the distinct queries, building the student: teacher,
vocabulary and prototypes, tagging the distinct queries, counting the table, scoring it, saving), the driver's
peak RSS (overall and as it stood after each stage: which stage raised it), the saved router's size, and, across sizes, the fitted growth exponents (slope of log time and log RSS on log
records); it checks that the local and the Ray router have the same table, vocabulary, prototypes, scores
(bit for bit) and decisions.

    python scripts/bench_scaling.py [--sizes 10000 100000 1000000] [--engines local ray] [--out runs/scaling]
        [--data ../shared/data/alpaca_eval]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagrouter.artifact import live_version
from tagrouter.catalog import Catalog, ModelCard
from tagrouter.deciding import default_decider
from tagrouter.engines import HistorySource, engine_named, fit_model
from tagrouter.records import ReadReport
from tagrouter.router import TagRouter

#: the AlpacaEval folder (its ``instructions.jsonl``) next to the repository, unless ``--data`` says otherwise
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "alpaca_eval"
#: model, accept rate, input and output price per 1M tokens, mean output tokens
MODELS = [
    ("llama-2-7b-chat-hf", 0.71, 0.1, 0.2, 300),
    ("zephyr-7b-beta", 0.90, 0.1, 0.2, 350),
    ("tulu-2-dpo-70b", 0.95, 0.7, 0.9, 320),
    ("llama-2-70b-chat-hf", 0.93, 0.7, 0.9, 330),
    ("gpt-3.5-turbo-1106", 0.87, 1.0, 2.0, 250),
    ("claude-2", 0.91, 8.0, 24.0, 280),
    ("gpt4_1106_preview", 0.98, 10.0, 30.0, 420),
    ("gpt4", 0.96, 30.0, 60.0, 300),
]
RECORDS_PER_FILE = 125_000


def catalog() -> Catalog:
    return Catalog(
        models=[ModelCard(name=n, input_usd_per_1m=i, output_usd_per_1m=o) for n, _, i, o, _ in MODELS]
    )


def instructions(data: Path) -> list[str]:
    """The AlpacaEval instructions of ``data/instructions.jsonl``."""
    path = data / "instructions.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass --data, the AlpacaEval folder of the shared data")
    return [json.loads(line)["instruction"] for line in path.read_text(encoding="utf-8").splitlines()]


def query_text(j: int, base: Sequence[str]) -> str:
    """Query ``j``: an instruction (j < n, the number of instructions), then pairs (j < n²), then triples
    of instructions; the digits of j in base n pick them, so the texts are distinct for j < n³."""
    n = len(base)
    a, b, c = j % n, (j // n + j) % n, (j // (n * n) + j) % n
    if j < n:
        return base[a]
    return f"{base[a]} {base[b]}" if j < n * n else f"{base[a]} {base[b]} {base[c]}"


def write_history(folder: Path, records: int, base: Sequence[str]) -> None:
    """``records`` synthetic records (8 models per query) on the instructions ``base``, as Parquet files of
    125k records."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0, 1, len(base))
    rates = np.array([m[1] for m in MODELS])
    per_file = RECORDS_PER_FILE // len(MODELS)
    queries = records // len(MODELS)
    for number, first in enumerate(range(0, queries, per_file)):
        ids = np.arange(first, min(first + per_file, queries))
        texts = [query_text(int(j), base) for j in ids]
        logit = np.log(rates / (1 - rates))[None, :] - difficulty[ids % len(base)][:, None]
        accept = 1 / (1 + np.exp(-logit))
        draw = rng.random(accept.shape)
        outcome = np.where(draw < 0.7 * accept, "win", np.where(draw < accept, "tie", "loss"))
        tokens = rng.lognormal(0, 0.3, accept.shape) * np.array([m[4] for m in MODELS])[None, :]
        each = pa.array(np.repeat(np.arange(len(ids)), len(MODELS)))  # not a fixed-width array of texts
        table = pa.table(
            {
                "query_id": pa.array([f"q{j}" for j in ids]).take(each),
                "query": pa.array(texts).take(each),
                "model": np.tile([m[0] for m in MODELS], len(ids)),
                "outcome": outcome.ravel(),
                "output_tokens": tokens.ravel().astype(np.int64),
            }
        )
        pq.write_table(table, folder / f"part-{number:04d}.parquet")


class Timed:
    """An engine whose stages are timed, with this process's peak RSS after each."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.name, self.seconds, self.peak_mb = engine, engine.name, {}, {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.engine, name)
        if name not in ("survey", "student", "tag", "count"):
            return method

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
                self.peak_mb[name] = peak_rss_mb()

        return timed


#: the engine's stages and their names in the figures
STAGES = {"survey": "read queries", "student": "student", "tag": "tag queries", "count": "count table"}


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which, unlike ``getrusage``'s ru_maxrss, does not inherit the peak
    of the parent that started it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_run(data: Path, engine_name: str, router_dir: Path) -> dict[str, Any]:
    """Fit and save one router in this process; its figures."""
    engine = engine_named(engine_name)
    seconds: dict[str, float] = {}
    if engine_name == "ray":
        start = time.perf_counter()
        engine._start()  # Ray's own start-up, apart from the stages
        seconds["ray start"] = time.perf_counter() - start
    timed, report = Timed(engine), ReadReport()
    start = time.perf_counter()
    model = fit_model(HistorySource.of(str(data / "*.parquet")), catalog(), engine=timed, report=report).model
    total = time.perf_counter() - start
    seconds |= {STAGES[k]: timed.seconds[k] for k in STAGES}
    seconds["score"] = total - sum(timed.seconds.values())
    start = time.perf_counter()
    TagRouter(model, default_decider(len(MODELS))).save(router_dir)
    seconds["save"] = time.perf_counter() - start
    return {
        "records": report.rows_read,
        "seconds": seconds,
        "total_s": sum(seconds.values()),
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_after_mb": {STAGES[k]: v for k, v in timed.peak_mb.items()},
        "artifact_mb": sum(f.stat().st_size for f in live_version(router_dir).rglob("*") if f.is_file())
        / 1e6,
        "tags": len(model.table.tags),
    }


def same_router(a: Path, b: Path, queries: list[str]) -> bool:
    """Same table, vocabulary, prototypes, scores (bit for bit) and decisions on ``queries``."""
    left, right = TagRouter.load(a), TagRouter.load(b)
    return (
        left.table.equals(right.table)
        and left.tagger.vocabulary.tags == right.tagger.vocabulary.tags
        and np.array_equal(left.tagger.prototypes, right.tagger.prototypes)
        and np.array_equal(left.score_batch(queries)[1], right.score_batch(queries)[1])
        and [d.model for d in left.route_batch(queries)] == [d.model for d in right.route_batch(queries)]
    )


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0]) if len(xs) > 1 else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--out", type=Path, default=Path("runs/scaling"))
    parser.add_argument("--data", type=Path, default=DATA, help="the AlpacaEval folder (instructions.jsonl)")
    parser.add_argument("--one", nargs=2, metavar=("RECORDS", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child run: one size, one engine, figures as JSON on the last line
        size, engine = int(args.one[0]), args.one[1]
        result = one_run(args.out / f"data-{size}", engine, args.out / f"router-{size}-{engine}")
        print(json.dumps(result))
        return
    results: dict[tuple[int, str], dict[str, Any]] = {}
    base = instructions(args.data)
    for size in args.sizes:
        data = args.out / f"data-{size}"
        if not data.is_dir():
            write_history(data, size, base)
        for engine in args.engines:
            child = subprocess.run(
                [sys.executable, __file__, "--one", str(size), engine, "--out", str(args.out)],
                capture_output=True,
                text=True,
            )
            if child.returncode:
                raise SystemExit(f"the {engine} fit of {size:,} records failed:\n{child.stderr[-4000:]}")
            results[size, engine] = json.loads(child.stdout.strip().splitlines()[-1])
            row = results[size, engine]
            stages = ", ".join(f"{k} {v:.1f}" for k, v in row["seconds"].items())
            peaks = ", ".join(f"{k} {v:.0f}" for k, v in row["peak_rss_after_mb"].items())
            print(
                f"{size:>9,} {engine:5} total {row['total_s']:7.1f} s  peak RSS {row['peak_rss_mb']:7.0f} MB  "
                f"artifact {row['artifact_mb']:6.1f} MB  tags {row['tags']:>6,}  ({stages}; "
                f"peak MB after {peaks})",
                flush=True,
            )
        if len(args.engines) == 2:
            equal = same_router(args.out / f"router-{size}-local", args.out / f"router-{size}-ray", base)
            print(
                f"{size:>9,} local and ray routers equal (table, vocabulary, prototypes, scores, decisions): "
                f"{equal}",
                flush=True,
            )
    for engine in args.engines:
        sizes = [s for s in args.sizes if (s, engine) in results]
        stage_seconds = [
            results[s, engine]["total_s"] - results[s, engine]["seconds"].get("ray start", 0) for s in sizes
        ]
        print(
            f"{engine}: time slope {slope(sizes, stage_seconds):.2f}, "
            f"peak RSS slope {slope(sizes, [results[s, engine]['peak_rss_mb'] for s in sizes]):.2f}"
        )
    if len(args.engines) == 2:
        smallest = min(args.sizes)
        overhead = results[smallest, "ray"]["total_s"] - results[smallest, "local"]["total_s"]
        print(f"ray overhead at {smallest:,} records (start-up included): {overhead:.1f} s")
    written = args.out / "results.json.tmp"
    written.write_text(
        json.dumps([{"records": s, "engine": e, **r} for (s, e), r in results.items()], indent=1)
    )
    written.replace(args.out / "results.json")


if __name__ == "__main__":
    main()
