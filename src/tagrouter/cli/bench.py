"""``tagrouter bench alpacaeval`` and ``tagrouter bench suite``: the project's benchmark data sets through
``tagrouter eval``'s code."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from tagrouter.cli.common import progress_bar
from tagrouter.cli.evaluate import parse_seeds, split_list, this_command
from tagrouter.evaluation.datasets.common import data_folder


def bench_alpacaeval(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(help="the alpaca_eval data folder (required)")] = None,
    out: Annotated[Path, typer.Option(help="folder for results.json, results.md and the plots")] = Path(
        "results/alpacaeval1"
    ),
    setups: Annotated[
        list[str] | None, typer.Option("--setups", help="setups to run, e.g. pool:8 (default: all seven)")
    ] = None,
    routers: Annotated[
        list[str] | None,
        typer.Option("--routers", help="routers to run, e.g. tagrouter,knn (default: all, variants too)"),
    ] = None,
    seeds: Annotated[str, typer.Option(help="comma-separated cross-validation seeds")] = "0,1,2,3,4",
    tagger: Annotated[
        str,
        typer.Option(
            help="tagger spec of TagRouter and the +tags baselines, fitted on each training set "
            "(see docs/taggers.md), e.g. embedded:DIR or 'transformers:PATH?device=cuda'",
        ),
    ] = "embedded",
    workers: Annotated[
        int | None,
        typer.Option(help="processes that run setups and seeds side by side (default: one per CPU core)"),
    ] = None,
) -> None:
    """AlpacaEval 1.0: six pairs and the 8-model pool (other judged models as context), every router."""
    from tagrouter.evaluation.suite import by_name, run_dataset

    with progress_bar() as progress:
        results = run_dataset(
            by_name("alpacaeval"),
            data_folder(data, "alpaca_eval"),
            out,
            command=this_command(ctx),
            seeds=parse_seeds(seeds),
            routers=split_list(routers) or ["all"],
            setups=split_list(setups),
            tagger=tagger,
            workers=workers,
            progress=progress,
        )
    typer.echo(f"wrote {out / 'results.json'}, {out / 'results.md'} and {len(results['setups'])} plot(s)")


def bench_suite(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(help="the folder holding the data sets (required)")] = None,
    out: Annotated[Path, typer.Option(help="folder for one sub-folder of results per data set")] = Path(
        "results/suite"
    ),
    seeds: Annotated[str, typer.Option(help="comma-separated cross-validation seeds")] = "0,1,2,3,4",
    routers: Annotated[
        list[str] | None,
        typer.Option("--routers", help="routers to run (default: tagrouter and every baseline)"),
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="data sets to run (default: every one present)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="processes that run setups and seeds side by side (default: one per CPU core)"),
    ] = None,
    readme: Annotated[
        Path | None,
        typer.Option(help="README whose results block to rewrite; docs/results.md beside it is written too"),
    ] = None,
) -> None:
    """Every data set of the suite present in --data through the same evaluation; one summary table."""
    from tagrouter.errors import DataError
    from tagrouter.evaluation.report import suite_block, suite_markdown, update_readme
    from tagrouter.evaluation.suite import DATASETS, run_dataset
    from tagrouter.fileio import atomic_write_text

    started = time.perf_counter()
    data = data_folder(data)
    names = split_list(only)
    unknown = [n for n in names or [] if n not in {d.name for d in DATASETS}]
    if unknown:
        raise DataError(
            f"--only: unknown data set(s) {', '.join(unknown)}; choose from: "
            + ", ".join(d.name for d in DATASETS)
        )
    runs, skipped = {}, []
    for entry in DATASETS:
        if names and entry.name not in names:
            continue
        if not entry.present(data):
            skipped.append(f"{entry.name} (no {data / entry.folder / entry.marker})")
            typer.echo(f"skipped {entry.name}: {data / entry.folder / entry.marker} not found", err=True)
            continue
        typer.echo(f"{entry.name} ...", err=True)
        with progress_bar() as progress:
            runs[entry.name] = run_dataset(
                entry,
                data / entry.folder,
                out / entry.name,
                command=this_command(ctx),
                seeds=parse_seeds(seeds),
                routers=split_list(routers),
                workers=workers,
                progress=progress,
            )
    runtime = time.perf_counter() - started
    command = this_command(ctx)
    block = suite_block(runs, command=command, runtime_s=runtime, skipped=skipped)
    atomic_write_text(out / "summary.md", block + "\n")
    written = [out / "summary.md"]
    if readme is not None:
        docs = readme.parent / "docs" / "results.md"
        plot_dirs = {name: os.path.relpath(out / name, docs.parent) for name in runs}
        atomic_write_text(
            docs,
            suite_markdown(runs, command=command, runtime_s=runtime, skipped=skipped, plot_dirs=plot_dirs),
        )
        update_readme(readme, block)
        written += [docs, readme]
    typer.echo(f"{len(runs)} data set(s) in {runtime:.0f} s; wrote {', '.join(map(str, written))}")
