"""The routing commands: ``fit``, ``update``, ``route``, ``tag``, ``calibrate`` and ``inspect``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tagrouter.cli.common import err, progress_bar, queries_from, read_queries
from tagrouter.deciding import Rule
from tagrouter.engines.kinds import EngineKind
from tagrouter.scoring import ScorerKind

if TYPE_CHECKING:
    from tagrouter.model import Progress
    from tagrouter.tagging.base import Tagger

EngineOption = Annotated[
    EngineKind,
    typer.Option(
        help="Where to run: 'local' (this process) or 'ray' (Ray Data; pip install 'tagrouter[ray]')."
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster address for --engine ray: 'auto' (the cluster 'ray start' began here) or ray://HOST:10001."
    ),
]
HistoryArgument = Annotated[
    list[str],
    typer.Argument(help="History files (.jsonl, .csv, .parquet) or quoted glob patterns ('hist/*.parquet')."),
]
SkipOption = Annotated[
    bool, typer.Option(help="Skip invalid rows (and report them) instead of stopping at the first.")
]


def fit(
    history: HistoryArgument,
    catalog: Annotated[Path, typer.Option(help="Model catalogue (YAML).")],
    out: Annotated[Path, typer.Option(help="Folder to save the router into.")],
    scorer: Annotated[
        ScorerKind | None,
        typer.Option(
            help="A fixed scorer with its default settings (default: the smoothed scorer with settings, "
            "and the knob, chosen for this history by inner cross-validation)."
        ),
    ] = None,
    rule: Annotated[
        Rule | None, typer.Option(help="Decision rule (default: gap for 2 models, utility for more).")
    ] = None,
    knob: Annotated[
        float, typer.Option(help="The rule's knob: θ (gap, within) or λ per dollar (utility).")
    ] = 0.0,
    skip_bad_rows: SkipOption = False,
    tagger: Annotated[
        str,
        typer.Option(
            help="Tagger spec: 'embedded' (default), 'embedded:DIR', 'transformers:PATH_OR_ID[?...]' or "
            "'openai:MODEL@URL[?...]' (see docs/taggers.md)."
        ),
    ] = "embedded",
    engine: EngineOption = EngineKind.LOCAL,
    address: AddressOption = None,
) -> None:
    """Fit a router on judged history (streamed from the files) and save it."""
    from tagrouter.catalog import load_catalog
    from tagrouter.deciding import Decider
    from tagrouter.engines import HistorySource, engine_named
    from tagrouter.records import ReadReport
    from tagrouter.router import TagRouter
    from tagrouter.scoring import scorer_from_config

    source = HistorySource.of(history, on_error="skip" if skip_bad_rows else "raise")
    runner = engine_named(engine, address=address)
    cards = load_catalog(catalog)
    decider = Decider(rule=rule, knob=knob) if rule else None
    if decider is not None:
        decider.check(len(cards.names))
    report = ReadReport()
    with progress_bar() as progress:
        # a tagger spec other than the default is built from the distinct queries of the fit's first read
        chosen = None if tagger == "embedded" else _tagger_builder(tagger, progress)
        router = TagRouter.fit(
            source,
            cards,
            tagger=chosen,
            scorer=scorer_from_config({"kind": scorer}) if scorer else None,
            decider=decider,
            progress=progress,
            engine=runner,
            report=report,
        )
    err.print(report.summary())
    router.save(out)
    typer.echo(
        f"saved router to {out}: {len(router.table.tags)} tags, models {', '.join(router.models)}, "
        f"rule {router.decider.rule} (knob {router.decider.knob:g})"
    )
    if router.model.tuning is not None:
        typer.echo(describe_tuning(router.model.tuning))


def _tagger_builder(spec: str, progress: Progress) -> Callable[[list[str]], Tagger]:
    """What builds the tagger ``spec`` names from a history's distinct queries."""
    from tagrouter.tagging.registry import tagger_from_spec

    def build(queries: list[str]) -> Tagger:
        return tagger_from_spec(spec, queries=queries, progress=progress)

    return build


def describe_tuning(tuning: dict) -> str:
    """One paragraph saying what the fit chose by inner cross-validation, and what it expects there."""
    chosen = {k: v for k, v in tuning["chosen"].items() if k != "kind"}
    point = tuning["operating_point"]
    return (
        f"chosen by {tuning['folds']}-fold inner cross-validation on {tuning['queries']} queries: scorer "
        f"{chosen}; inner routing AUC {tuning['chosen_auc']:.4f} vs {tuning['mixture_auc']:.4f} for the best "
        f"single model for the cost; at the chosen knob the inner out-of-fold accept rate is "
        f"{point['accept_rate']:.3f} at ${point['mean_cost']:.6f} per query (always {point['best_single']}: "
        f"{point['best_single_accept_rate']:.3f} at ${point['best_single_mean_cost']:.6f})"
    )


def update(
    router_dir: Annotated[Path, typer.Argument(help="A saved router.")],
    history: HistoryArgument,
    catalog: Annotated[
        Path | None,
        typer.Option(help="A new catalogue to route over (e.g. with a new model); default: the router's."),
    ] = None,
    models: Annotated[
        str,
        typer.Option(help="Learn only these models' records (e.g. the one 'collect --models NEW' added)."),
    ] = "",
    out: Annotated[Path | None, typer.Option(help="Folder to save into (default: the router's own).")] = None,
    skip_bad_rows: SkipOption = False,
    engine: EngineOption = EngineKind.LOCAL,
    address: AddressOption = None,
) -> None:
    """Teach a saved router new judged records without a refit (its tagger tags them; the table becomes
    exactly that of a refit with this tagger) and save it as a new version."""
    from tagrouter.catalog import load_catalog
    from tagrouter.engines import HistorySource, engine_named, update_model
    from tagrouter.model import RoutingModel
    from tagrouter.records import ReadReport
    from tagrouter.router import TagRouter

    router = TagRouter.load(router_dir)
    only = frozenset(name.strip() for name in models.split(",") if name.strip())
    source = HistorySource.of(history, on_error="skip" if skip_bad_rows else "raise", models=only)
    report = ReadReport()
    with progress_bar() as progress:
        runner = engine_named(engine, address=address)
        model = update_model(router.model, source, engine=runner, report=report, progress=progress)
    err.print(report.summary())
    if catalog is not None:  # the learned table, routed over the new catalogue's models
        model = RoutingModel.build(
            model.tagger, model.table, load_catalog(catalog), model.scorer, model.output_tokens
        )
    learned = model.table.records - router.table.records
    router = TagRouter(model, router.decider)
    router.save(out or router_dir)
    typer.echo(
        f"learned {learned} records; saved the router to {out or router_dir} (models {', '.join(router.models)})"
    )


def route(
    router_dir: Annotated[Path, typer.Argument(help="A saved router.")],
    query: Annotated[str | None, typer.Argument(help="One query to route.")] = None,
    file: Annotated[Path | None, typer.Option(help="Queries: text (one per line) or JSONL.")] = None,
) -> None:
    """Route queries; prints one JSON object per query (model, tags, scores, costs, reason)."""
    from tagrouter.router import TagRouter

    queries = queries_from(query, file)
    router = TagRouter.load(router_dir)
    for start in range(0, len(queries), 1024):
        for decision in router.route_batch(queries[start : start + 1024]):
            typer.echo(json.dumps({"query": decision.query, **decision.to_dict()}, ensure_ascii=False))


def tag(
    router_dir: Annotated[Path, typer.Argument(help="A saved router (its tagger is used).")],
    query: Annotated[str | None, typer.Argument(help="One query to tag.")] = None,
    file: Annotated[Path | None, typer.Option(help="Queries: text (one per line) or JSONL.")] = None,
) -> None:
    """Print the tags of queries, one JSON object per query."""
    from tagrouter.router import TagRouter

    queries = queries_from(query, file)
    tagger = TagRouter.load(router_dir).tagger
    for text, tags in zip(queries, tagger.tag(queries), strict=True):
        typer.echo(json.dumps({"query": text, "tags": tags}, ensure_ascii=False))


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
    """Set the router's threshold so that a traffic share or a mean cost per query is met.

    Prints the calibration as JSON on stdout and, on stderr, what it rewrote."""
    from tagrouter.artifact import live_version
    from tagrouter.router import TagRouter

    if (strong_share is None) == (mean_cost is None):
        raise typer.BadParameter("give exactly one of --strong-share and --mean-cost")
    before = TagRouter.load(router_dir)
    router = before.calibrated(
        read_queries(queries), strong_share=strong_share, mean_cost=mean_cost, strong_model=strong_model
    )
    router.save(router_dir)
    version = live_version(router_dir).name
    result = router.decider.calibration
    typer.echo(json.dumps({"rule": str(router.decider.rule), **result.to_dict()}))
    typer.echo(
        f"rewrote {router_dir} (version {version}): rule {router.decider.rule}, knob "
        f"{router.decider.knob:g} (was {before.decider.knob:g})",
        err=True,
    )


def inspect(
    router_dir: Annotated[Path, typer.Argument(help="A saved router.")],
    top: Annotated[int, typer.Option(help="Tags to list per model and side.")] = 5,
    min_support: Annotated[int, typer.Option(help="Only tags with at least this many judged answers.")] = 10,
) -> None:
    """Show each model's strongest and weakest tags (accept rate on the tag minus the model's overall rate)."""
    from rich.table import Table

    from tagrouter.cli.inspection import tag_strengths
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
    console = Console()
    console.print(table)
    console.print(
        f"scorer: {router.scorer.config()}; rule {router.decider.rule}, knob {router.decider.knob:g}"
    )
    if router.model.tuning is not None:
        console.print(describe_tuning(router.model.tuning))
