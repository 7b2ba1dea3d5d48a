"""The collection commands: ``collect`` (judged history from logged queries), ``judge-check`` (a judge's
agreement with labels) and ``data judge-labels``; a saved router learns the collected records with
``update`` (:mod:`tagrouter.cli.routing`)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tagrouter.cli.common import err, read_queries
from tagrouter.errors import DataError
from tagrouter.evaluation.datasets.common import data_folder

if TYPE_CHECKING:
    from tagrouter.collect.run import CollectPlan

#: exit status of a run that the budget stopped before it was complete (rerun with more budget to resume)
EXIT_INCOMPLETE = 3


@contextmanager
def spend_bar(what: str, limit: float | None) -> Iterator[Callable[[int, int, float], None]]:
    """A progress bar on stderr with the dollars spent so far; yields ``update(done, total, spent)``."""
    cap = f" of ${limit:.4f}" if limit is not None else ""
    with Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[spent]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=None, spent="")

        def show(done: int, total: int, spent: float) -> None:
            bar.update(task, completed=done, total=total, spent=f"${spent:.4f}{cap}")

        yield show


def _run(make: Callable[[Any], Coroutine[Any, Any, Any]], concurrency: int) -> Any:
    """Run ``make(client)`` on a fresh event loop with one chat client, closed afterwards."""
    from tagrouter.collect.client import ChatClient

    async def main() -> Any:
        client = ChatClient(concurrency=concurrency)
        try:
            return await make(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def collect(
    queries: Annotated[Path, typer.Argument(help="Logged queries: text (one per line) or JSONL ('query').")],
    catalog: Annotated[Path, typer.Option(help="Model catalogue (YAML) with each model's endpoint.")],
    judge: Annotated[
        str, typer.Option(help="Judge: a catalogue model, or MODEL@URL[?api_key_env=…&input_usd_per_1m=…].")
    ],
    reference: Annotated[
        str, typer.Option(help="Catalogue model whose answers every answer is judged against.")
    ],
    out: Annotated[
        Path, typer.Option(help="History file to write (JSONL); records of other models are kept.")
    ],
    sample: Annotated[
        int | None, typer.Option(help="Queries to sample, stratified by task type (default: all).")
    ] = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated models to collect (default: the catalogue).")
    ] = "",
    budget_usd: Annotated[float | None, typer.Option(help="Dollars this run may spend at most.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Cache folder (default: OUT + '.cache').")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    max_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 1024,
    concurrency: Annotated[int, typer.Option(help="Calls in flight per endpoint.")] = 4,
    dry_run: Annotated[bool, typer.Option(help="Print what the collection costs, call nothing.")] = False,
    answer_tokens: Annotated[int, typer.Option(help="Answer length the estimate assumes, in tokens.")] = 300,
) -> None:
    """Answer logged queries with each pool model and the reference, judge each answer against the
    reference's (both orders), and write judged history. Resumable: rerun to finish an interrupted run."""
    from tagrouter.catalog import load_catalog
    from tagrouter.collect.budget import Budget
    from tagrouter.collect.cache import CollectCache
    from tagrouter.collect.judging import parse_judge
    from tagrouter.collect.run import build_plan, run_collection
    from tagrouter.collect.sampling import SampledQuery, sample_queries
    from tagrouter.records import read_history, write_history

    cards = load_catalog(catalog)
    chosen_judge = parse_judge(judge, cards)
    store = CollectCache(cache or out.with_name(out.name + ".cache"))
    saved = store.load_sample()
    if saved is not None:
        sampled = [SampledQuery(**q) for q in saved]
        err.print(
            f"using the sample saved in {store.folder} ({len(sampled)} queries); {queries} is not re-read"
        )
    else:
        sampled = sample_queries(read_queries(queries), sample, seed)
    strata = Counter(q.stratum for q in sampled if q.stratum)
    if strata:
        err.print(
            f"the sample: {len(sampled)} queries of {len(strata)} task types: "
            + ", ".join(f"{k} {v}" for k, v in strata.most_common(8))
        )
    plan = build_plan(
        cards, sampled, reference=reference, judge=chosen_judge, models=_names(models), max_tokens=max_tokens
    )
    if dry_run:
        _print_estimate(plan, answer_tokens)
        return
    plan.check_endpoints()
    if saved is None:  # a valid plan: from now on this is the collection's sample
        store.save_sample([asdict(q) for q in sampled], str(queries), seed)
    if chosen_judge.target.input_usd_per_1m == chosen_judge.target.output_usd_per_1m == 0:
        err.print(
            "note: the judge has no prices (input_usd_per_1m=…&output_usd_per_1m=…): its calls count as $0"
        )
    budget = Budget(budget_usd)
    try:
        with spend_bar("collecting", budget_usd) as progress:
            result = _run(lambda client: run_collection(plan, client, store, budget, progress), concurrency)
    except KeyboardInterrupt:
        err.print(
            f"interrupted: rerun the same command to resume (what is in {store.folder} is not paid again)"
        )
        raise typer.Exit(130) from None
    collected = {t.name for t in plan.pool}
    kept = [r for r in read_history(out) if r.model not in collected] if out.is_file() else []
    write_history(out, kept + result.records)
    typer.echo(
        f"wrote {len(kept) + len(result.records)} records to {out} ({len(result.records)} collected now, "
        f"{len(kept)} of other models kept); spent ${result.spent:.4f} in this run; cache {store.folder}"
    )
    if result.no_verdicts:
        typer.echo(
            f"note: {result.no_verdicts} judge replies had no readable verdict after retries (counted as ties)"
        )
    for failure in result.failures[:5]:
        err.print(f"failed: {failure}")
    if result.budget_stop:
        err.print(
            f"stopped by the budget: {result.budget_stop}; rerun to continue (cached calls are not paid again)"
        )
    if not result.complete:
        err.print(
            f"{result.unfinished} of {len(plan.queries) * len(plan.pool)} (query, model) pairs are unfinished"
        )
        raise typer.Exit(EXIT_INCOMPLETE if result.budget_stop else 1)


def _print_estimate(plan: CollectPlan, answer_tokens: int) -> None:
    from tagrouter.collect.run import VERDICT_TOKENS, estimate, total_row

    rows = estimate(plan, answer_tokens=answer_tokens)
    title = f"{len(plan.queries)} queries × {len(plan.pool)} models, judged against {plan.reference.name}"
    table = Table(title=title)
    for name in ("calls", "expected $", "at most $"):
        table.add_column(name, justify="right")
    table.add_column("what", justify="left")
    for row in [*rows, total_row(rows)]:
        table.add_row(str(row.calls), f"{row.expected_usd:.4f}", f"{row.at_most_usd:.4f}", row.what)
    Console(width=140).print(table)
    typer.echo(
        f"expected: queries of characters/4 tokens, answers of {answer_tokens} tokens, verdicts of "
        f"{VERDICT_TOKENS} tokens; at most: every answer and verdict at max_tokens, every judge retry, "
        "prompts of one token per byte"
    )


def judge_check(
    judge: Annotated[str, typer.Option(help="Judge: MODEL@URL[?options], or a model of --catalog.")],
    labels: Annotated[Path, typer.Option(help="Label file (JSONL: id, query, answer_a, answer_b, label).")],
    catalog: Annotated[
        Path | None, typer.Option(help="Catalogue, to name the judge by its model name.")
    ] = None,
    sample: Annotated[
        int | None, typer.Option(help="Pairs to check, drawn at random (default: all).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    budget_usd: Annotated[float | None, typer.Option(help="Dollars the check may spend at most.")] = None,
    concurrency: Annotated[int, typer.Option(help="Judge calls in flight.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print what the check costs, call nothing.")] = False,
) -> None:
    """Measure a judge's agreement with labelled pairs (both orders): agreement, Cohen's kappa, position
    bias and what the check cost."""
    from tagrouter.catalog import load_catalog
    from tagrouter.collect.budget import Budget
    from tagrouter.collect.checking import check_judge, estimate_check
    from tagrouter.collect.judging import parse_judge
    from tagrouter.collect.labels import read_labels, sample_pairs
    from tagrouter.collect.run import VERDICT_TOKENS

    chosen = parse_judge(judge, load_catalog(catalog) if catalog else None)
    pairs = sample_pairs(read_labels(labels), sample, seed)
    if dry_run:
        row = estimate_check(chosen, pairs)
        typer.echo(
            f"{row.calls} judge calls for {len(pairs)} pairs: expected ${row.expected_usd:.4f} (verdicts of "
            f"{VERDICT_TOKENS} tokens), at most ${row.at_most_usd:.4f}"
        )
        return
    budget = Budget(budget_usd)
    with spend_bar("judging", budget_usd) as progress:
        result = _run(lambda client: check_judge(chosen, pairs, client, budget, progress), concurrency)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(
            f"judge {result.judge}: {result.judged} of {result.pairs} pairs judged\n"
            f"agreement {result.agreement:.3f}, Cohen's kappa {result.kappa:.3f}, "
            f"position bias rate {result.position_bias_rate:.3f}, inconsistency rate {result.inconsistency_rate:.3f}, "
            f"no verdict {result.no_verdicts} orders\n"
            f"tokens {result.input_tokens} in / {result.output_tokens} out, cost ${result.cost_usd:.4f}\n"
            "confusion (label → verdict A / B / tie): "
            + "; ".join(f"{k}: {v['A']} / {v['B']} / {v['tie']}" for k, v in result.confusion.items())
        )
    for failure in result.failures[:5]:
        err.print(f"failed: {failure}")
    if result.budget_stop:
        err.print(f"stopped by the budget: {result.budget_stop}")
    if result.judged < result.pairs:
        raise typer.Exit(EXIT_INCOMPLETE if result.budget_stop else 1)


def data_judge_labels(
    source: Annotated[
        str, typer.Argument(help="'alpacaeval' (AlpacaEval 1.0, GPT-4 judge) or 'mtbench' (RouteLLM).")
    ],
    out: Annotated[Path, typer.Option(help="Label file to write (JSONL).")],
    data: Annotated[
        Path | None,
        typer.Option(help="The alpaca_eval folder, or the routellm folder for mtbench (required)."),
    ] = None,
    models: Annotated[
        str, typer.Option(help="alpacaeval: comma-separated models judged against the reference.")
    ] = "gpt4,llama-2-7b-chat-hf",
) -> None:
    """Write a label file for 'judge-check' from public judgements."""
    from tagrouter.collect.labels import alpacaeval_pairs, mtbench_pairs, write_labels

    if source == "alpacaeval":
        pairs = alpacaeval_pairs(data_folder(data, "alpaca_eval"), _names(models))
    elif source == "mtbench":
        pairs = mtbench_pairs(data_folder(data, "routellm"))
    else:
        raise DataError(
            f"unknown label source {source!r}; expected 'alpacaeval' or 'mtbench'", field="source"
        )
    write_labels(out, pairs)
    counts = Counter(p.label for p in pairs)
    typer.echo(
        f"wrote {len(pairs)} labelled pairs to {out} (A {counts['A']}, B {counts['B']}, tie {counts['tie']})"
    )
