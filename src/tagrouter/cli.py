"""The ``tagrouter`` command line: data conversion, fitting, routing, calibration, inspection, benchmarks."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tagrouter.datasets.alpacaeval import DEFAULT_DATA
from tagrouter.errors import TagRouterError
from tagrouter.evaluation.cli import bench_alpacaeval
from tagrouter.server.cli import serve
from tagrouter.tagging.cli import vocab_app

app = typer.Typer(
    help="TagRouter: route LLM queries to the cheapest model that answers them well, via tags.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Convert benchmark data to history records and catalogues.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (speed, quality).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(vocab_app, name="vocab")
app.command("serve")(serve)
bench_app.command("alpacaeval")(bench_alpacaeval)

err = Console(stderr=True)


def main() -> None:
    """Entry point: turn TagRouter errors into one clear line and exit code 2."""
    try:
        app()
    except TagRouterError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


@contextmanager
def progress_bar() -> Iterator:
    """A rich progress bar on stderr; yields a ``progress(stage, done, total)`` callback."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _read_queries(file: Path) -> list[str]:
    """Queries from a text file (one per line) or JSONL (a 'query' or 'text' field per line)."""
    from tagrouter.errors import DataError

    if not file.is_file():
        raise DataError("query file not found", path=file)
    queries = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if file.suffix in (".jsonl", ".ndjson"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg})", path=file, row=number) from None
            text = obj.get("query", obj.get("text")) if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    "expected a non-empty 'query' (or 'text') string", path=file, row=number, field="query"
                )
            queries.append(text)
        else:
            queries.append(line)
    return queries


# ---- data ----------------------------------------------------------------------------------------------
@data_app.command("alpacaeval")
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
    from tagrouter.datasets.alpacaeval import POOL_8, load_alpacaeval
    from tagrouter.records import write_history

    dataset = load_alpacaeval(data)
    models = [m.strip() for m in pool.split(",") if m.strip()] or list(POOL_8)
    extra = _context_models(context, dataset.models, models)
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


def _context_models(spec: str, available: list[str], pool: list[str]) -> list[str]:
    from tagrouter.errors import DataError

    if spec == "none":
        return []
    if spec == "all":
        return [m for m in available if m not in pool]
    chosen = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise DataError(f"unknown context model(s) {', '.join(unknown)}", field="context")
    return [m for m in chosen if m not in pool]


# ---- fit / route / tag ------------------------------------------------------------------------------------
@app.command()
def fit(
    history: Annotated[list[Path], typer.Argument(help="History files (.jsonl, .csv, .parquet).")],
    catalog: Annotated[Path, typer.Option(help="Model catalogue (YAML).")],
    out: Annotated[Path, typer.Option(help="Folder to save the router into.")],
    scorer: Annotated[str, typer.Option(help="'smoothed' (default) or 'paper'.")] = "smoothed",
    rule: Annotated[
        str, typer.Option(help="'gap', 'within' or 'utility' (default: gap for 2 models, utility for more).")
    ] = "",
    knob: Annotated[float, typer.Option(help="Threshold θ (gap, within) or λ per dollar (utility).")] = 0.0,
    skip_bad_rows: Annotated[
        bool, typer.Option(help="Skip invalid rows (and report them) instead of stopping at the first.")
    ] = False,
    tagger: Annotated[
        str,
        typer.Option(
            help="Tagger spec: 'embedded' (default), 'embedded:DIR', 'transformers:PATH_OR_ID[?...]' or "
            "'openai:MODEL@URL[?...]' (see docs/taggers.md)."
        ),
    ] = "embedded",
) -> None:
    """Fit a router on judged history and save it."""
    from tagrouter.catalog import load_catalog
    from tagrouter.deciding import Decider
    from tagrouter.records import ReadReport, read_history
    from tagrouter.router import TagRouter
    from tagrouter.scoring import scorer_from_config

    report = ReadReport()
    records = read_history(history, on_error="skip" if skip_bad_rows else "raise", report=report)
    err.print(report.summary())
    cards = load_catalog(catalog)
    decider = Decider(rule=rule, knob=knob) if rule else None
    with progress_bar() as progress:
        chosen = None
        if tagger != "embedded":
            from tagrouter.tagging.spec import tagger_from_spec

            queries = list({r.query_id: r.query for r in records}.values())
            chosen = tagger_from_spec(tagger, queries=queries, progress=progress)
        router = TagRouter.fit(
            records,
            cards,
            tagger=chosen,
            scorer=scorer_from_config({"kind": scorer}),
            decider=decider,
            progress=progress,
        )
    router.save(out)
    typer.echo(
        f"saved router to {out}: {len(router.table.tags)} tags, models {', '.join(router.models)}, "
        f"rule {router.decider.rule} (knob {router.decider.knob:g})"
    )


@app.command()
def route(
    router_dir: Annotated[Path, typer.Argument(help="A saved router.")],
    query: Annotated[str | None, typer.Argument(help="One query to route.")] = None,
    file: Annotated[Path | None, typer.Option(help="Queries: text (one per line) or JSONL.")] = None,
) -> None:
    """Route queries; prints one JSON object per query (model, tags, scores, costs, reason)."""
    from tagrouter.router import TagRouter

    queries = _queries_from(query, file)
    router = TagRouter.load(router_dir)
    for start in range(0, len(queries), 1024):
        for decision in router.route_batch(queries[start : start + 1024]):
            typer.echo(json.dumps({"query": decision.query, **decision.to_dict()}, ensure_ascii=False))


@app.command()
def tag(
    router_dir: Annotated[Path, typer.Argument(help="A saved router (its tagger is used).")],
    query: Annotated[str | None, typer.Argument(help="One query to tag.")] = None,
    file: Annotated[Path | None, typer.Option(help="Queries: text (one per line) or JSONL.")] = None,
) -> None:
    """Print the tags of queries, one JSON object per query."""
    from tagrouter.router import TagRouter

    queries = _queries_from(query, file)
    tagger = TagRouter.load(router_dir).tagger
    for text, tags in zip(queries, tagger.tag(queries), strict=True):
        typer.echo(json.dumps({"query": text, "tags": tags}, ensure_ascii=False))


def _queries_from(query: str | None, file: Path | None) -> list[str]:
    if (query is None) == (file is None):
        raise typer.BadParameter("give one query as an argument, or --file")
    return [query] if query is not None else _read_queries(file)


@app.command()
def calibrate(
    router_dir: Annotated[Path, typer.Argument(help="A saved router; its knob is updated in place.")],
    queries: Annotated[Path, typer.Option(help="Calibration queries: text (one per line) or JSONL.")],
    strong_share: Annotated[
        float | None, typer.Option(help="Target share of traffic to the strong model.")
    ] = None,
    mean_cost: Annotated[float | None, typer.Option(help="Target mean cost per query in dollars.")] = None,
    strong_model: Annotated[
        str | None, typer.Option(help="The model strong_share counts (default: the dearest).")
    ] = None,
) -> None:
    """Set the router's threshold so that a traffic share or a mean cost per query is met."""
    from tagrouter.router import TagRouter

    if (strong_share is None) == (mean_cost is None):
        raise typer.BadParameter("give exactly one of --strong-share and --mean-cost")
    router = TagRouter.load(router_dir)
    result = router.calibrate(
        _read_queries(queries), strong_share=strong_share, mean_cost=mean_cost, strong_model=strong_model
    )
    router.save(router_dir)
    typer.echo(
        json.dumps(
            {
                "rule": router.decider.rule,
                "knob": result.knob,
                "target": result.target,
                "achieved": result.achieved,
                "strong_share": result.strong_share,
                "mean_cost_usd": result.mean_cost,
            }
        )
    )


@app.command()
def inspect(
    router_dir: Annotated[Path, typer.Argument(help="A saved router.")],
    top: Annotated[int, typer.Option(help="Tags to list per model and side.")] = 5,
    min_support: Annotated[int, typer.Option(help="Only tags with at least this many judged answers.")] = 10,
) -> None:
    """Show each model's strongest and weakest tags (accept rate on the tag minus the model's overall rate)."""
    from rich.table import Table

    from tagrouter.inspection import tag_strengths
    from tagrouter.router import TagRouter

    router = TagRouter.load(router_dir)
    table = Table(title=f"{router_dir}: strongest / weakest tags per model")
    for column in ("model", "overall accept", "strongest tags", "weakest tags"):
        table.add_column(column)
    for row in tag_strengths(router.table, router.models, top=top, min_support=min_support):
        table.add_row(
            row.model,
            f"{row.overall:.3f}",
            "\n".join(f"{t} ({d:+.3f}, n={n})" for t, d, n in row.strongest),
            "\n".join(f"{t} ({d:+.3f}, n={n})" for t, d, n in row.weakest),
        )
    Console().print(table)


# ---- demo and speed -----------------------------------------------------------------------------------------
@app.command()
def demo(
    data: Annotated[
        Path,
        typer.Option(help="The alpaca_eval data folder; without it, the shipped example history is used."),
    ] = DEFAULT_DATA,
    out: Annotated[Path, typer.Option(help="Where to save the fitted router.")] = Path("runs/demo-router"),
) -> None:
    """The main job: fit a router on judged history, route held-out and example queries, show the saving."""
    from tagrouter.demo import run_demo

    with progress_bar() as progress:
        run_demo(data, out, console=Console(), progress=progress)


@bench_app.command("speed")
def bench_speed(
    router_dir: Annotated[
        Path | None, typer.Argument(help="A saved router (default: fit one on the AlpacaEval 8-model pool).")
    ] = None,
    data: Annotated[
        Path, typer.Option(help="The alpaca_eval data folder (queries to route).")
    ] = DEFAULT_DATA,
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
    from tagrouter.speed import measure_speed

    with progress_bar() as progress:
        models = [m.strip() for m in pool.split(",") if m.strip()]
        result = measure_speed(router_dir, data, pool=models, progress=progress)
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


if __name__ == "__main__":
    main()
