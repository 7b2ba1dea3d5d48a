"""The ``tagrouter data`` commands: convert benchmark data to history records and catalogues."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tagrouter.errors import DataError
from tagrouter.evaluation.datasets.common import Converted, data_folder


def data_alpacaeval(
    out: Annotated[Path, typer.Option(help="Folder to write history.jsonl and catalog.yaml into.")],
    data: Annotated[Path | None, typer.Option(help="The alpaca_eval data folder (required).")] = None,
    pool: Annotated[
        str, typer.Option(help="Comma-separated routable models (default: the 8-model pool).")
    ] = "",
    context: Annotated[
        str,
        typer.Option(
            help="Other models whose outcomes go into the history as a difficulty signal, never routed to: "
            "'none', 'all' or a comma-separated list."
        ),
    ] = "none",
) -> None:
    """Write AlpacaEval 1.0 outcomes, tokens and prices of the chosen models as history + catalogue."""
    from tagrouter.evaluation.datasets.alpacaeval import POOL_8, load_alpacaeval
    from tagrouter.records import write_history

    dataset = load_alpacaeval(data_folder(data, "alpaca_eval"))
    models = [m.strip() for m in pool.split(",") if m.strip()] or list(POOL_8)
    extra = context_models(context, dataset.models, models)
    records = dataset.records(models + extra)
    out.mkdir(parents=True, exist_ok=True)
    write_history(out / "history.jsonl", records)
    dataset.catalog(models).save(out / "catalog.yaml")
    imputed = dataset.imputed(models + extra)
    typer.echo(
        f"wrote {len(records)} records ({len(models)} routable + {len(extra)} context models) to "
        f"{out / 'history.jsonl'} and the catalogue to {out / 'catalog.yaml'}"
    )
    if imputed:
        typer.echo(
            f"note: {len(imputed)} answers lack an output token count; each got its model's mean "
            f"({', '.join(f'{m}#{i}' for m, i in imputed[:5])}{'…' if len(imputed) > 5 else ''})"
        )


def context_models(spec: str, available: list[str], pool: list[str]) -> list[str]:
    if spec == "none":
        return []
    if spec == "all":
        return [m for m in available if m not in pool]
    chosen = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise DataError(f"unknown context model(s) {', '.join(unknown)}", field="context")
    return [m for m in chosen if m not in pool]


def _write(converted: Converted, out: Path) -> None:
    history, catalog = converted.write(out)
    queries = len({r.query_id for r in converted.records})
    typer.echo(
        f"wrote {len(converted.records)} records ({queries} queries, {len(converted.catalog.names)} models) "
        f"to {history} and the catalogue to {catalog}"
    )
    for note in converted.notes:
        typer.echo(f"note: {note}")


def data_dcrouter(
    out: Annotated[Path, typer.Option(help="Folder to write history.jsonl and catalog.yaml into.")],
    data: Annotated[Path | None, typer.Option(help="The llmrouter_dcrouter data folder (required).")] = None,
) -> None:
    """LLMRouter's DCRouter data: 9 models on ~6,000 distinct prompts of 14 task types (correctness)."""
    from tagrouter.evaluation.datasets.dcrouter import convert_dcrouter

    _write(convert_dcrouter(data_folder(data, "llmrouter_dcrouter")), out)


def data_mmlu(
    out: Annotated[Path, typer.Option(help="Folder to write history.jsonl and catalog.yaml into.")],
    data: Annotated[Path | None, typer.Option(help="The routellm data folder (required).")] = None,
    sample: Annotated[
        int | None, typer.Option(help="Keep a seeded random sample of this many questions.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
) -> None:
    """RouteLLM's MMLU: Mixtral-8x7B vs gpt-4-1106-preview, correctness."""
    from tagrouter.evaluation.datasets.routellm import convert_mmlu

    _write(convert_mmlu(data_folder(data, "routellm"), sample=sample, seed=seed), out)


def data_gsm8k(
    out: Annotated[Path, typer.Option(help="Folder to write history.jsonl and catalog.yaml into.")],
    data: Annotated[Path | None, typer.Option(help="The routellm data folder (required).")] = None,
) -> None:
    """RouteLLM's GSM8K: Mixtral-8x7B vs gpt-4-1106-preview, correctness."""
    from tagrouter.evaluation.datasets.routellm import convert_gsm8k

    _write(convert_gsm8k(data_folder(data, "routellm")), out)


def data_mt_bench(
    out: Annotated[Path, typer.Option(help="Folder to write history.jsonl and catalog.yaml into.")],
    data: Annotated[Path | None, typer.Option(help="The routellm data folder (required).")] = None,
) -> None:
    """RouteLLM's MT-bench: both turns as queries, accept = GPT-4 score >= 8."""
    from tagrouter.evaluation.datasets.routellm import convert_mt_bench

    _write(convert_mt_bench(data_folder(data, "routellm")), out)
