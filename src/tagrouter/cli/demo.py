"""The main job end to end: history -> fitted router -> decisions on held-out and example queries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from tagrouter.catalog import Catalog, load_catalog
from tagrouter.cli.common import progress_bar
from tagrouter.records import HistoryRecord, read_history
from tagrouter.router import TagRouter

EXAMPLES = Path(__file__).parent.parent / "examples"
#: Where the demo looks for AlpacaEval first: the benchmark data next to a checkout of the project. Only the
#: demo has this default, and it falls back on the shipped example history when the folder is absent.
DEMO_DATA = Path("../shared/data/alpaca_eval")
EXAMPLE_QUERIES = (
    "Hi there! How is your day going?",
    "Write a Python function that merges two sorted lists in linear time.",
    "What is the capital of Canada?",
    "Prove that there are infinitely many prime numbers.",
    "Write a haiku about the sea.",
)


def load_demo_history(data: Path) -> tuple[list[HistoryRecord], Catalog, str]:
    """The AlpacaEval 8-model pool (plus every other model as context) if ``data`` exists, else the
    small example history shipped with the package."""
    if (data / "instructions.jsonl").is_file():
        from tagrouter.evaluation.datasets.alpacaeval import POOL_8, load_alpacaeval

        dataset = load_alpacaeval(data)
        context = [m for m in dataset.models if m not in POOL_8 and m in dataset.prices]
        return (
            dataset.records([*POOL_8, *context]),
            dataset.catalog(list(POOL_8)),
            f"AlpacaEval 1.0 ({data}): 8 routable models + {len(context)} context models",
        )
    return (
        read_history(EXAMPLES / "history.jsonl"),
        load_catalog(EXAMPLES / "catalog.yaml"),
        f"the example history shipped with tagrouter ({data} not found)",
    )


def split_queries(records: Sequence[HistoryRecord], held_out: float, seed: int) -> tuple[set[str], set[str]]:
    """Split query ids at random into training and held-out sets."""
    ids = sorted({r.query_id for r in records})
    order = np.random.default_rng(seed).permutation(len(ids))
    cut = int(round(len(ids) * (1 - held_out)))
    return {ids[i] for i in order[:cut]}, {ids[i] for i in order[cut:]}


def run_demo(
    data: Path,
    out: Path,
    *,
    console: Console,
    budget_share: float = 0.3,
    held_out: float = 0.2,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, float]:
    """Fit on 80% of the queries, calibrate the knob to ``budget_share`` of the best model's cost on them,
    then compare routing with always using the best model on the held-out 20%, with real outcomes."""
    records, catalog, source = load_demo_history(data)
    console.print(f"[bold]History:[/bold] {source}: {len(records):,} judged answers")
    train_ids, test_ids = split_queries(records, held_out, seed)
    train = [r for r in records if r.query_id in train_ids]
    router = TagRouter.fit(train, catalog, progress=progress)
    console.print(
        f"[bold]Fitted[/bold] on {len(train_ids)} queries: {len(router.table.tags)} tags, "
        f"{len(router.models)} routable models, rule '{router.decider.rule}'"
    )

    outcome = {(r.query_id, r.model): r for r in records if r.model in catalog}
    best = _best_model(train, router.models)
    train_queries = sorted({(r.query_id, r.query) for r in train})
    best_cost = np.mean([outcome[(q, best)].cost or 0.0 for q, _ in train_queries])
    router = router.calibrated([q for _, q in train_queries], mean_cost=budget_share * best_cost)
    result = router.decider.calibration
    console.print(
        f"Calibrated the knob to {result.knob:.4g}: mean expected cost ${result.mean_cost:.6f} per "
        f"query on the training queries, {budget_share:.0%} of always using {best}"
    )

    test = sorted({(r.query_id, r.query) for r in records if r.query_id in test_ids})
    decisions = router.route_batch([q for _, q in test])
    routed = [outcome[(qid, d.model)] for (qid, _), d in zip(test, decisions, strict=True)]
    always = [outcome[(qid, best)] for qid, _ in test]
    summary = {
        "routed_accept": float(np.mean([r.accepted for r in routed])),
        "routed_cost": float(sum(r.cost or 0.0 for r in routed)),
        "best_accept": float(np.mean([r.accepted for r in always])),
        "best_cost": float(sum(r.cost or 0.0 for r in always)),
    }
    table = Table(title=f"{len(test)} held-out queries, real judged outcomes")
    for column in ("policy", "accept rate", "total cost", "cost saved"):
        table.add_column(column)
    table.add_row(f"always {best}", f"{summary['best_accept']:.1%}", f"${summary['best_cost']:.4f}", "")
    saved = 1 - summary["routed_cost"] / summary["best_cost"] if summary["best_cost"] else 0.0
    table.add_row(
        "TagRouter", f"{summary['routed_accept']:.1%}", f"${summary['routed_cost']:.4f}", f"{saved:.1%}"
    )
    console.print(table)
    shares = {m: sum(d.model == m for d in decisions) / len(decisions) for m in router.models}
    console.print("Traffic: " + ", ".join(f"{m} {s:.0%}" for m, s in shares.items() if s))

    console.print("\n[bold]Example decisions[/bold]")
    for decision in router.route_batch(list(EXAMPLE_QUERIES)):
        console.print(
            f"• {decision.query}\n  -> [green]{decision.model}[/green]  tags: "
            f"{', '.join(decision.tags)}\n  {decision.reason}"
        )
    router.save(out)
    console.print(f'\nSaved the router to {out}. Try: tagrouter route {out} "your question"')
    return {**summary, "cost_saved": saved}


def _best_model(records: Sequence[HistoryRecord], models: Sequence[str]) -> str:
    """The model with the highest accept rate in ``records`` (ties: the first in catalogue order)."""
    rates = {m: np.mean([r.accepted for r in records if r.model == m]) for m in models}
    return max(models, key=lambda m: rates[m])


def demo(
    data: Annotated[
        Path,
        typer.Option(
            help="The alpaca_eval data folder; where it is absent, the shipped example history is used."
        ),
    ] = DEMO_DATA,
    out: Annotated[Path, typer.Option(help="Where to save the fitted router.")] = Path("runs/demo-router"),
) -> None:
    """The main job: fit a router on judged history, route held-out and example queries, show the saving."""
    with progress_bar() as progress:
        run_demo(data, out, console=Console(), progress=progress)
