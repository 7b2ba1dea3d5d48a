"""``tagrouter eval``: would routing pay off on this history? Every router, cross-validated, with intervals."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from tagrouter.cli.common import progress_bar
from tagrouter.errors import DataError
from tagrouter.model import DEFAULT_OUTPUT_TOKENS


def split_list(values: list[str] | None) -> list[str] | None:
    """Accept repeated options and comma-separated lists alike."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def parse_seeds(seeds: str) -> list[int]:
    """Comma-separated integers, at least one."""
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise DataError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    if not seed_list:
        raise DataError("--seeds: give at least one seed")
    return seed_list


def parse_pairs(pairs: list[str] | None) -> list[tuple[str, str]]:
    """``WEAK:STRONG`` values."""
    out = []
    for pair in pairs or []:
        weak, sep, strong = pair.partition(":")
        if not sep or not weak.strip() or not strong.strip():
            raise DataError(f"--pair: expected WEAK:STRONG, got {pair!r}")
        out.append((weak.strip(), strong.strip()))
    return out


def this_command(ctx: typer.Context) -> str:
    """The running command as a user would type it: its arguments, then every option not at its
    default (rebuilt from the parsed parameters, so it is the same however the command was invoked)."""
    names, level = [], ctx
    while level.parent is not None:
        names.append(level.info_name or "")
        level = level.parent
    words = ["tagrouter", *reversed(names)]
    options: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or value == [] or value == param.default:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if param.param_type_name == "argument":
            words += [str(v) for v in values]
        else:
            for v in values:
                options += [param.opts[0], str(v)]
    return shlex.join(words + options)


def evaluate(
    ctx: typer.Context,
    history: Annotated[list[Path], typer.Argument(help="History files (JSONL, CSV or Parquet).")],
    catalog: Annotated[Path, typer.Option(help="The catalogue: its models are the pool.")],
    out: Annotated[Path, typer.Option(help="Folder for results.json, results.md and the plots.")],
    pair: Annotated[
        list[str] | None, typer.Option("--pair", help="WEAK:STRONG, adds a two-model setup (repeatable).")
    ] = None,
    pool: Annotated[
        str, typer.Option(help="Comma-separated routable models (default: every catalogue model).")
    ] = "",
    seeds: Annotated[str, typer.Option(help="Comma-separated cross-validation seeds.")] = "0,1,2,3,4",
    routers: Annotated[
        list[str] | None,
        typer.Option(
            "--routers",
            help="Routers to run, e.g. tagrouter,knn; 'all' adds TagRouter's variants "
            "(default: tagrouter and every baseline).",
        ),
    ] = None,
    output_tokens: Annotated[
        float,
        typer.Option(help="Output tokens assumed for an answer without a count whose model has no counts."),
    ] = DEFAULT_OUTPUT_TOKENS,
    tagger: Annotated[
        str, typer.Option(help="Tagger spec of TagRouter and the +tags baselines (see docs/taggers.md).")
    ] = "embedded",
    workers: Annotated[
        int | None,
        typer.Option(help="Processes that run setups and seeds side by side (default: one per core)."),
    ] = None,
) -> None:
    """Cross-validate TagRouter and every baseline on a judged history: AUC, APGR, cost saving, intervals."""
    from tagrouter.catalog import load_catalog
    from tagrouter.evaluation.plots import PLOTS_HINT
    from tagrouter.evaluation.runner import run_eval
    from tagrouter.evaluation.suite import write_outputs
    from tagrouter.records import read_history

    seed_list, pairs = parse_seeds(seeds), parse_pairs(pair)
    records, cat = read_history(history), load_catalog(catalog)
    with progress_bar() as progress:
        results = run_eval(
            records,
            cat,
            out,
            pool=[m.strip() for m in pool.split(",") if m.strip()] or None,
            pairs=pairs,
            routers=split_list(routers),
            seeds=seed_list,
            default_output_tokens=output_tokens,
            tagger=tagger,
            workers=workers,
            data={"history": [str(p) for p in history], "catalog": str(catalog)},
            command=this_command(ctx),
            progress=progress,
        )
    plotted = write_outputs(results, out, title=", ".join(p.name for p in history))
    for note in results["data"]["notes"]:
        typer.echo(f"note: {note}", err=True)
    for name, setup in results["setups"].items():
        ours = setup["routers"].get("tagrouter")
        line = f"{name}: {setup['queries']} queries, mixture AUC {setup['mixture']['auc']:.4f}"
        if ours:
            line += f", tagrouter {ours['auc_mean']:.4f}"
        for c in setup.get("lead", {}).values():
            line += f"; vs {c['against']}: {c['auc_difference']:+.4f} ({c['verdict']})"
        typer.echo(line)
    if plotted:
        typer.echo(f"wrote {out / 'results.json'}, {out / 'results.md'} and {len(results['setups'])} plot(s)")
    else:
        typer.echo(
            f"wrote {out / 'results.json'} and {out / 'results.md'}; plots skipped: matplotlib is not "
            f"installed ({PLOTS_HINT} to draw them)"
        )
