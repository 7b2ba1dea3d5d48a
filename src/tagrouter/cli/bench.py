"""``tagrouter bench alpacaeval`` and ``tagrouter bench suite``: the project's benchmark data sets through
``tagrouter eval``'s code."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

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
    live: Annotated[
        bool,
        typer.Option(
            "--live", help="run 'tagrouter bench live' on each data set (its pool) instead of the evaluation"
        ),
    ] = False,
) -> None:
    """Every data set of the suite present in --data through the same evaluation; one summary table.
    With --live, the live-learning replay of each data set instead (OUT/NAME/live/)."""
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
        if live:
            runs[entry.name] = run_live_suite_entry(entry, data, out, parse_seeds(seeds), this_command(ctx))
            continue
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
    if live:
        typer.echo(f"{len(runs)} data set(s) in {runtime:.0f} s; wrote {out}/NAME/live/results.json and .md")
        return
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


def bench_live(
    ctx: typer.Context,
    history: Annotated[list[Path], typer.Argument(help="judged history files (every model's outcomes)")],
    catalog: Annotated[Path, typer.Option("--catalog", help="the catalogue of the routable models")],
    out: Annotated[Path, typer.Option(help="folder for results.json, results.md and live.png")],
    seed_share: Annotated[float, typer.Option(help="share of queries in the seed history")] = 0.1,
    test_share: Annotated[float, typer.Option(help="share of queries held out for the test AUC")] = 0.3,
    seeds: Annotated[str, typer.Option(help="comma-separated split seeds")] = "0,1,2,3,4",
    checkpoints: Annotated[
        int, typer.Option(min=1, help="evenly spaced points of the stream to measure")
    ] = 5,
    new_model: Annotated[
        str | None, typer.Option(help="a catalogue model left out of the seed: it joins with no history")
    ] = None,
    budget: Annotated[
        float, typer.Option(help="exploration's extra dollars as a share of spend (0: no exploration)")
    ] = 0.02,
    max_weight: Annotated[
        float,
        typer.Option(
            min=1.0, help="the inverse-propensity weight clip (1, the learner's default: plain counting)"
        ),
    ] = 1.0,
) -> None:
    """Replay judged history as live traffic through the gateway's learner (bandit feedback only) against
    the static seed fit and a full-information refit; see tagrouter.evaluation.live_replay."""
    import json

    from tagrouter.catalog import load_catalog
    from tagrouter.evaluation.live_replay import markdown, plot, run_replay
    from tagrouter.fileio import atomic_write_text
    from tagrouter.records import read_history

    records = [r for path in history for r in read_history(path)]
    started = time.perf_counter()
    results = run_replay(
        records,
        load_catalog(catalog),
        parse_seeds(seeds),
        progress=lambda line: typer.echo(line, err=True),
        seed_share=seed_share,
        test_share=test_share,
        checkpoints=checkpoints,
        new_model=new_model,
        budget=budget,
        max_weight=max_weight,
    )
    command = this_command(ctx)
    results["command"] = command
    results["runtime_s"] = round(time.perf_counter() - started, 1)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / "results.md", markdown(results, command))
    figure = plot(results, out)
    typer.echo(f"wrote {out / 'results.json'}, {out / 'results.md'}" + (f" and {figure}" if figure else ""))


def run_live_suite_entry(entry: Any, data: Path, out: Path, seeds: list[int], command: str) -> dict[str, Any]:
    """``tagrouter bench live`` on one data set of the suite: its converted history, its pool."""
    import json

    from tagrouter.catalog import Catalog
    from tagrouter.evaluation.live_replay import markdown, plot, run_replay
    from tagrouter.fileio import atomic_write_text

    converted = entry.convert(data / entry.folder)
    pool = entry.pool or converted.catalog.names
    catalog = Catalog(models=[converted.catalog[m] for m in pool])
    results = run_replay(converted.records, catalog, seeds, progress=lambda line: typer.echo(line, err=True))
    results["command"] = command
    folder = out / entry.name / "live"
    atomic_write_text(folder / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(folder / "results.md", markdown(results, command))
    plot(results, folder)
    return results
