"""The ``tagrouter data`` commands: convert benchmark data to history records and catalogues."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tagrouter.errors import DataError
from tagrouter.evaluation.datasets.alpacaeval import DEFAULT_DATA


def data_alpacaeval(
    out: Annotated[Path, typer.Option(help="Folder to write history.jsonl and catalog.yaml into.")],
    data: Annotated[Path, typer.Option(help="The alpaca_eval data folder.")] = DEFAULT_DATA,
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

    dataset = load_alpacaeval(data)
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
