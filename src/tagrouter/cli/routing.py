"""The routing commands: ``fit``, ``update``, ``route``, ``tag``, ``calibrate`` and ``inspect``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tagrouter.cli.common import err, progress_bar, queries_from, read_queries
from tagrouter.conversation import Conversation
from tagrouter.deciding import Rule
from tagrouter.engines.kinds import EngineKind
from tagrouter.scoring import ScorerKind

if TYPE_CHECKING:
    from tagrouter.model import Progress, RoutingModel
    from tagrouter.router import TagRouter
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
    ) + "".join(
        f"\n{line}"
        for line in [*describe_residual(tuning), *describe_conversation(tuning), *describe_menu(tuning)]
    )


def describe_residual(tuning: dict) -> list[str]:
    """Whether the fit added the embedding residual, and the inner routing AUC with and without it."""
    residual = tuning.get("embedding_residual")
    if not residual:
        return []
    verdict = "added" if residual["chosen"] else "left out"
    return [
        f"embedding residual {verdict}: inner routing AUC {residual['tags_and_embedding']:.4f} with it, "
        f"{residual['tags']:.4f} with the tags alone"
    ]


def describe_conversation(tuning: dict) -> list[str]:
    """How the fit chose to count earlier turns, with each mode's inner routing AUC (none: the history
    had no conversations)."""
    found = tuning.get("conversation")
    if not found:
        return []
    chosen = Conversation.from_dict(found["chosen"])
    tried = ", ".join(f"{Conversation.from_dict(c).describe()} {c['auc']:.4f}" for c in found["candidates"])
    return [
        f"earlier turns: {chosen.describe()}, chosen on the {found['queries']} conversation queries by "
        f"inner routing AUC ({tried})"
    ]


def describe_rule(model: RoutingModel) -> str:
    """How a router counts earlier turns, and whether the fit chose it."""
    if model.conversation is None:
        return f"earlier turns: {model.conversation_rule.describe()} (the measured fallback: no choice by the fit)"
    return f"earlier turns: {model.conversation.describe()} (chosen by the fit)"


def describe_menu(tuning: dict) -> list[str]:
    """The saved menu of operating points, one line each (none for a router fitted before menus)."""
    menu = tuning.get("menu") or []
    if not menu:
        return []
    best = tuning["operating_point"]["best_single"]
    lines = [
        "operating points (inner out-of-fold; 'tagrouter calibrate DIR --max-accept-drop D' picks one; "
        "drop: the accept-rate loss against the best single model that unseen queries stay within, 95%):"
    ]
    for m in menu:
        traffic = ", ".join(f"{name} {share:.0%}" for name, share in m["shares"].items() if share >= 0.005)
        lines.append(
            f"  drop <= {m['max_accept_drop']:.3f}: knob {m['knob']:.6g}, accept {m['accept_rate']:.3f}, "
            f"${m['mean_cost']:.6f} per query, saving {m['saving']:.1%} against {best}; traffic {traffic}"
        )
    return lines


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


def models(
    router_dir: Annotated[Path, typer.Argument(help="A saved router; a new version is saved into it.")],
    catalog: Annotated[
        Path,
        typer.Option(
            help="The catalogue to route over from now on: its new models start with no history, the "
            "others keep their counts and take its cards (prices, endpoints, limits), models it lacks are "
            "no longer routed to."
        ),
    ],
) -> None:
    """Route a saved router over another catalogue (add, re-price or drop models) with no new history,
    saved as a new version: a gateway serving the folder reloads it without a restart, and explores the
    new models until their estimates are tight."""
    from tagrouter.catalog import load_catalog
    from tagrouter.live import for_models
    from tagrouter.router import TagRouter

    before = TagRouter.load(router_dir)
    cards = load_catalog(catalog)
    router = TagRouter(before.model.with_models(cards), for_models(before.decider, len(cards.names)))
    router.save(router_dir)
    old = before.catalog
    added = [m for m in cards.names if m not in old]
    dropped = [m for m in old.names if m not in cards]
    changed = [m for m in cards.names if m in old and cards[m] != old[m]]
    typer.echo(
        json.dumps(
            {"models": cards.names, "added": added, "dropped": dropped, "changed": changed},
            ensure_ascii=False,
        )
    )
    _say_rewritten(router_dir, router, before)


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
    queries: Annotated[
        Path | None, typer.Option(help="Calibration queries: text (one per line) or JSONL.")
    ] = None,
    strong_share: Annotated[
        float | None, typer.Option(help="Target share of traffic to the strong model.")
    ] = None,
    mean_cost: Annotated[float | None, typer.Option(help="Target mean cost per query in dollars.")] = None,
    strong_model: Annotated[
        str | None, typer.Option(help="The model strong_share counts (default: the dearest).")
    ] = None,
    max_accept_drop: Annotated[
        float | None,
        typer.Option(
            help="Pick the cheapest point of the fit's menu whose accept rate stays within this much of the "
            "best single model's (e.g. 0.01; no queries needed)."
        ),
    ] = None,
) -> None:
    """Set the router's threshold so that a traffic share or a mean cost per query is met, or pick a point
    of the menu the fit saved."""
    from tagrouter.deciding import Decider
    from tagrouter.router import TagRouter

    if [strong_share, mean_cost, max_accept_drop].count(None) != 2:
        raise typer.BadParameter("give exactly one of --strong-share, --mean-cost and --max-accept-drop")
    before = TagRouter.load(router_dir)
    if max_accept_drop is not None:
        router = before
        point = menu_point(router.model.tuning, max_accept_drop, router_dir)
        rule = router.model.tuning["operating_point"]["rule"]  # the menu's knobs are of the fit's rule
        router = router.with_decider(Decider(rule, point["knob"]))
        router.save(router_dir)
        typer.echo(json.dumps({"rule": str(router.decider.rule), **point}))
        _say_rewritten(router_dir, router, before)
        return
    if queries is None:
        raise typer.BadParameter("--queries is needed with --strong-share or --mean-cost")
    router = before.calibrated(
        read_queries(queries), strong_share=strong_share, mean_cost=mean_cost, strong_model=strong_model
    )
    router.save(router_dir)
    result = router.decider.calibration
    typer.echo(json.dumps({"rule": str(router.decider.rule), **result.to_dict()}))
    _say_rewritten(router_dir, router, before)


def _say_rewritten(router_dir: Path, router: TagRouter, before: TagRouter) -> None:
    """Say on stderr which version ``calibrate`` wrote and the knob it replaced."""
    from tagrouter.artifact import live_version

    typer.echo(
        f"rewrote {router_dir} (version {live_version(router_dir).name}): rule {router.decider.rule}, knob "
        f"{router.decider.knob:g} (was {before.decider.knob:g})",
        err=True,
    )


def menu_point(tuning: dict | None, max_accept_drop: float, router_dir: Path) -> dict:
    """The menu point with the largest tolerated drop at most ``max_accept_drop`` (the cheapest such)."""
    from tagrouter.errors import DataError

    menu = (tuning or {}).get("menu") or []
    if not menu:
        raise DataError(
            f"{router_dir}: this router has no menu of operating points (it was fitted with a given scorer or "
            "before menus); refit it without --scorer, or calibrate with --strong-share or --mean-cost"
        )
    within = [m for m in menu if m["max_accept_drop"] <= max_accept_drop + 1e-12]
    if not within:
        raise DataError(
            f"--max-accept-drop {max_accept_drop:g} is below the menu's smallest drop "
            f"{menu[0]['max_accept_drop']:g}"
        )
    return max(within, key=lambda m: m["max_accept_drop"])


def inspect(
    router_dir: Annotated[Path, typer.Argument(help="A saved router.")],
    top: Annotated[int, typer.Option(help="Tags to list per model and side.")] = 5,
    min_support: Annotated[int, typer.Option(help="Only tags with at least this many judged answers.")] = 10,
) -> None:
    """Show each model's strongest and weakest tags compared with the other models (its accept-rate lift on
    the tag over the others' lift; only differences beyond noise), the fit's choices and its menu."""
    from rich.table import Table

    from tagrouter.cli.inspection import tag_strengths
    from tagrouter.router import TagRouter

    router = TagRouter.load(router_dir)
    table = Table(
        title=f"{router_dir}: strongest / weakest tags per model, against the other models (beyond noise)"
    )
    for column in ("model", "overall accept", "strongest tags", "weakest tags"):
        table.add_column(column)
    for row in tag_strengths(router.table, router.models, top=top, min_support=min_support):
        table.add_row(
            row.model,
            f"{row.overall:.3f}",
            "\n".join(f"{t} ({d:+.3f}, n={n})" for t, d, n in row.strongest) or "none beyond noise",
            "\n".join(f"{t} ({d:+.3f}, n={n})" for t, d, n in row.weakest) or "none beyond noise",
        )
    console = Console()
    console.print(table)
    console.print(
        f"scorer: {router.scorer.config()}; rule {router.decider.rule}, knob {router.decider.knob:g}"
    )
    console.print(describe_rule(router.model))
    if router.model.tuning is not None:
        console.print(describe_tuning(router.model.tuning))
