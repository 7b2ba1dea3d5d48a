"""Tagging speed: the embedded default (CPU) next to the TagGenerator's architecture through transformers.

The TagGenerator is Qwen2.5-0.5B fine-tuned; its weights cannot be downloaded here, so this measures a
model of the same configuration with random weights (``QWEN25_05B`` of ``tests/stand_in.py``) that always writes exactly
32 new tokens, so the weights do not matter. Its tokenizer is a stand-in byte-level BPE trained on the
queries; the chat template and the DESIGN prompt are the real ones. Timed: the whole ``generate`` call
(prompt building, tokenising, generation, decoding) on the AlpacaEval instructions.

On a CUDA GPU (bfloat16) it runs batch sizes 1 to 1024; on the CPU (float32) batch sizes 1, 2, 4, ...
while the next one is expected to fit in ``--cpu-budget`` seconds. The embedded tagger runs at batch sizes
1 to 1024 on the CPU either way.

    python scripts/bench_taggers.py --out bench-taggers.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tagrouter.fileio import atomic_write_json

NEW_TOKENS = 32
BATCHES = [2**i for i in range(11)]  # 1 .. 1024
EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "tagrouter" / "examples"


def load_queries(data: Path) -> tuple[list[str], str]:
    """The AlpacaEval instructions, or the shipped example history's queries when the data is absent."""
    path = data / "instructions.jsonl"
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [r["instruction"] for r in rows], f"{len(rows)} AlpacaEval instructions"
    from tagrouter.records import read_history

    queries = list(dict.fromkeys(r.query for r in read_history(EXAMPLES / "history.jsonl")))
    return queries, f"{len(queries)} example-history queries (AlpacaEval data not found at {data})"


def cycle(queries: Sequence[str], n: int) -> list[str]:
    return [queries[i % len(queries)] for i in range(n)]


def measure(
    tag: Callable[[list[str]], Any], queries: Sequence[str], batch: int, total: int
) -> dict[str, float]:
    """Tag ``total`` queries (cycled) ``batch`` at a time; latency = seconds per batch call."""
    texts = cycle(queries, max(total, batch))
    latencies = []
    for start in range(0, len(texts), batch):
        began = time.perf_counter()
        tag(texts[start : start + batch])
        latencies.append(time.perf_counter() - began)
    seconds = sum(latencies)
    return {
        "batch": batch,
        "queries": len(texts),
        "latency_s": statistics.median(latencies),
        "s_per_query": seconds / len(texts),
        "queries_per_s": len(texts) / seconds,
    }


def bench_embedded(queries: Sequence[str]) -> list[dict[str, float]]:
    from tagrouter.tagging.embedded import EmbeddedTagger

    tagger = EmbeddedTagger.fit(queries)
    tagger.tag(list(queries[:64]))  # warm-up
    return [measure(tagger.tag, queries, b, total=2048) for b in BATCHES]


def bench_generator(
    queries: Sequence[str], cpu_budget: float
) -> tuple[list[dict[str, float]], dict[str, Any]]:
    import torch

    from tagrouter.tagging.backends.transformers_lm import TransformersGenerator

    sys.path.insert(
        0, str(Path(__file__).resolve().parents[1] / "tests")
    )  # the stand-in lives with the tests
    from stand_in import QWEN25_05B, random_qwen2, stand_in_tokenizer

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    tokenizer = stand_in_tokenizer(queries, vocab_size=8000)
    model = random_qwen2(tokenizer, QWEN25_05B).to(device=device, dtype=dtype)
    generator = TransformersGenerator.from_loaded(
        tokenizer, model, batch_size=1024, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS
    )
    prompt_tokens = [len(tokenizer(generator.prompt_text(q))["input_ids"]) for q in queries]
    setup = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
        "mean_prompt_tokens": statistics.mean(prompt_tokens),
        "new_tokens": NEW_TOKENS,
        "torch": torch.__version__,
    }
    TransformersGenerator.from_loaded(tokenizer, model, max_new_tokens=2).generate(
        list(queries[:2])
    )  # warm-up
    rows: list[dict[str, float]] = []
    spent = 0.0
    for batch in BATCHES:
        if not cuda and rows and spent + rows[-1]["latency_s"] * 2 > cpu_budget:
            break  # the next CPU batch would overrun the budget
        if cuda:
            generator.generate(cycle(queries, batch))  # warm-up at this shape (kernel choice, allocations)
        row = measure(generator.generate, queries, batch, total=batch * (3 if cuda and batch < 64 else 1))
        rows.append(row)
        spent += row["latency_s"] * row["queries"] / batch
        print(f"  transformers batch {batch}: {row['s_per_query']:.4f} s/query", flush=True)
    return rows, setup


def markdown(result: dict[str, Any]) -> str:
    generator = {r["batch"]: r for r in result["transformers"]}
    lines = [
        f"| batch | embedded: s/query | embedded: queries/s | TagGenerator arch. ({result['transformers_setup']['device']}): "
        "s/query | latency per batch (s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in result["embedded"]:
        g = generator.get(row["batch"])
        tail = f"{g['s_per_query']:.4g} | {g['latency_s']:.3g}" if g else "not run | not run"
        lines.append(f"| {row['batch']} | {row['s_per_query']:.2e} | {row['queries_per_s']:,.0f} | {tail} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/alpaca_eval"))
    parser.add_argument("--cpu-budget", type=float, default=180.0, help="seconds for the CPU generation runs")
    parser.add_argument("--skip-transformers", action="store_true", help="measure the embedded tagger only")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    args = parser.parse_args()
    queries, source = load_queries(args.data)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    result: dict[str, Any] = {
        "queries": source,
        "machine": f"{platform.machine()} CPU, {cores} cores, Python {platform.python_version()}",
        "load_average_at_start": os.getloadavg()[0],
        "embedded": bench_embedded(queries),
        "transformers": [],
        "transformers_setup": {"device": "not run"},
    }
    if not args.skip_transformers:
        result["transformers"], result["transformers_setup"] = bench_generator(queries, args.cpu_budget)
    result["load_average_at_end"] = os.getloadavg()[0]  # other work on the machine slows every figure
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("embedded", "transformers")}, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
