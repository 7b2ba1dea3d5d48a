"""``tagrouter bench alpacaeval``: run the quality benchmark and write results, tables and plots."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

from tagrouter.evaluation.datasets.alpacaeval import DEFAULT_DATA


def _split(values: list[str] | None) -> list[str] | None:
    """Accept repeated options and comma-separated lists alike."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def bench_alpacaeval(
    data: Annotated[Path, typer.Option(help="the alpaca_eval data folder")] = DEFAULT_DATA,
    out: Annotated[Path, typer.Option(help="folder for results.json, results.md and the plots")] = Path(
        "results/alpacaeval1"
    ),
    setups: Annotated[
        list[str] | None, typer.Option("--setups", help="setups to run, e.g. pool:8 (default: all seven)")
    ] = None,
    routers: Annotated[
        list[str] | None,
        typer.Option(
            "--routers",
            help="routers to run, e.g. tagrouter,knn (default: every one)",
        ),
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
    readme: Annotated[
        Path | None,
        typer.Option(help="README whose results block to rewrite; docs/results.md beside it is written too"),
    ] = None,
    also: Annotated[
        Path | None,
        typer.Option(
            help="results.json of another run (e.g. every router, one seed) to summarise in the docs"
        ),
    ] = None,
) -> None:
    """AlpacaEval 1.0 quality-cost benchmark: six pairs and the 8-model pool, 5 seeds × 5-fold CV."""
    from tagrouter.errors import DataError
    from tagrouter.evaluation.plots import plot_setup
    from tagrouter.evaluation.report import results_markdown, update_readme
    from tagrouter.evaluation.runner import run_alpacaeval
    from tagrouter.fileio import atomic_write_text

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise DataError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    if not seed_list:
        raise DataError("--seeds: give at least one seed")
    other = _read_results(also) if also is not None else None
    command = f"tagrouter bench alpacaeval --data {data} --out {out}"
    for flag, value in (("--setups", setups), ("--routers", routers)):
        if value:
            command += f" {flag} {','.join(_split(value) or [])}"
    if seed_list != [0, 1, 2, 3, 4]:
        command += f" --seeds {','.join(map(str, seed_list))}"
    if tagger != "embedded":
        command += f" --tagger {shlex.quote(tagger)}"
    if readme is not None:
        command += f" --readme {readme}" + (f" --also {also}" if also is not None else "")
    results = run_alpacaeval(
        data,
        out,
        setups=_split(setups),
        routers=_split(routers),
        seeds=seed_list,
        log=lambda line: typer.echo(line, err=True),
        command=command,
        tagger=tagger,
        workers=workers,
    )
    for name, setup in results["setups"].items():
        plot_setup(name, setup, out)
    atomic_write_text(out / "results.md", results_markdown(results, also=other))
    written = [out / "results.json", out / "results.md"]
    if readme is not None:
        docs = readme.parent / "docs" / "results.md"
        atomic_write_text(
            docs, results_markdown(results, plot_dir=os.path.relpath(out, docs.parent), also=other)
        )
        update_readme(readme, results, os.path.relpath(out, readme.parent), also=other)
        written += [docs, readme]
    typer.echo(f"wrote {', '.join(map(str, written))} and {len(results['setups'])} plot(s) in {out}")


def _read_results(path: Path) -> dict:
    """A results.json written by this command, with a clear error otherwise."""
    import json

    from tagrouter.errors import DataError

    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read results ({exc})", path=path) from None
    if not isinstance(results, dict) or "setups" not in results or "protocol" not in results:
        raise DataError("not a results.json of 'tagrouter bench alpacaeval'", path=path)
    return results
