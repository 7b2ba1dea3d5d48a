"""Cost of learning feedback: milliseconds per judged record on routers of 1k, 10k and 100k tags × 8 and 32
models, through the gateway's profiles (one shared model for one or three profiles).

Each router is a synthetic table of random counts (20 judged records per tag and model on average) with a
tagger that gives every query 10 fixed tags, so that the figures measure the table and the scorer, not the
tagger. Each update learns one record (the gateway learns feedback in small batches); the mean includes the
periodic full rescoring (see ``tagrouter.model``), the median shows a plain update. For contrast, ``full``
is the time of rescoring the whole table once, which is what every update cost before.

With ``--history`` and ``--catalog`` (e.g. the AlpacaEval pool: ``tagrouter data alpacaeval --out
runs/pool8``), it also times what one feedback really costs with a router's own (embedded) tagger, one
judged outcome at a time, in process through :class:`~tagrouter.live.LiveLearner` (tagging the query,
inverse-propensity weight, table and rescoring) and through the gateway's profiles
(:meth:`~tagrouter.server.profiles.ProfileSet.update`, what a gateway runs to learn a stored feedback):
on the router fitted on the whole history, on one fitted on a 10% seed of it (the replay's; its refreshes
come every few records), and on every saved router ``--router`` names (a larger one, e.g. the router
``scripts/bench_scaling.py`` fits on millions of records), fed the history's query texts.

    python scripts/bench_learning.py [--updates 200] [--out bench-learning.json]
        [--history runs/pool8/history.jsonl --catalog runs/pool8/catalog.yaml [--router DIR ...]]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Sequence

import numpy as np

from tagrouter import (
    Catalog,
    Decider,
    ModelCard,
    RoutingModel,
    TagRouter,
    TagTable,
    load_catalog,
    read_history,
)
from tagrouter.live import Judged, LiveLearner, LivePolicy
from tagrouter.server.config import GatewayConfig
from tagrouter.server.profiles import ProfileSet

TAGS_PER_QUERY = 10


class FixedTagger:
    """Tags each query with the 10 tags listed for it (a stand-in, so that only learning is timed)."""

    def __init__(self, tags_of: dict[str, list[str]]) -> None:
        self.tags_of = tags_of

    def tag(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.tags_of[t] for t in texts]


def router(n_tags: int, n_models: int, rng: np.random.Generator) -> tuple[TagRouter, list[str]]:
    tags = [f"tag{i}" for i in range(n_tags)]
    models = [f"m{i}" for i in range(n_models)]
    counts = rng.poisson(20 / 3, size=(n_tags, n_models, 3)).astype(float)
    model_counts = counts.sum(axis=0) / TAGS_PER_QUERY
    queries = [f"query {i}" for i in range(1000)]
    tags_of = {q: list(rng.choice(tags, size=TAGS_PER_QUERY, replace=False)) for q in queries}
    catalog = Catalog(
        models=[
            ModelCard(name=m, input_usd_per_1m=i + 1, output_usd_per_1m=i + 1) for i, m in enumerate(models)
        ]
    )
    model = RoutingModel.build(FixedTagger(tags_of), TagTable(tags, models, counts, model_counts), catalog)
    return TagRouter(model, Decider("utility")), queries


def measure(n_tags: int, n_models: int, n_profiles: int, updates: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    base, queries = router(n_tags, n_models, rng)
    config = GatewayConfig.model_validate({"profiles": {f"p{i}": {} for i in range(n_profiles)}})
    profiles = ProfileSet(base, config)
    times = []
    for i in range(updates):
        judged = Judged(queries[i % len(queries)], f"m{i % n_models}", "loss")
        start = time.perf_counter()
        profiles.update([(judged, 1.0)])
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    base.model.refreshed()
    full = time.perf_counter() - start
    return {
        "tags": n_tags,
        "models": n_models,
        "profiles": n_profiles,
        "ms_per_record_median": 1e3 * float(np.median(times)),
        "ms_per_record_mean": 1e3 * float(np.mean(times)),
        "full_rescoring_ms": 1e3 * full,
    }


def fitted(history: str, catalog_path: str, seed_share: float | None) -> tuple[TagRouter, int]:
    """A router fitted on ``history`` (or on a ``seed_share`` of its queries), and its number of queries."""
    records = read_history(history)
    if seed_share is not None:
        ids = list(dict.fromkeys(r.query_id for r in records))
        keep = set(np.random.default_rng(0).permutation(ids)[: int(len(ids) * seed_share)])
        records = [r for r in records if r.query_id in keep]
    return TagRouter.fit(records, load_catalog(catalog_path)), len({r.query_id for r in records})


def measure_real(router: TagRouter, texts: Sequence[str], updates: int) -> dict[str, float]:
    """Milliseconds per learned feedback on ``router`` with its own tagger, in process
    (:class:`LiveLearner`) and through the gateway's profiles (one profile); each feedback is a new
    query (a text of ``texts`` made distinct) whose answer by one model lost, propensity 1/2."""
    names = router.catalog.names
    learner = LiveLearner(router, LivePolicy(reselect_growth=None))
    profiles = ProfileSet(router, GatewayConfig())
    times: dict[str, list[float]] = {"in_process": [], "gateway": []}
    for i in range(updates):
        judged = Judged(f"{texts[i % len(texts)]} (variant {i})", names[i % len(names)], "loss", 0.5)
        start = time.perf_counter()
        learner.learn([judged])
        times["in_process"].append(time.perf_counter() - start)
        judged = Judged(f"{texts[i % len(texts)]} (gateway {i})", names[i % len(names)], "loss", 0.5)
        weight = profiles.weigh(judged)  # at POST /v1/feedback; the learning is the update
        start = time.perf_counter()
        profiles.update([(judged, weight)])
        times["gateway"].append(time.perf_counter() - start)
    row: dict[str, float] = {"tags": len(router.table.tags), "models": len(names)}
    for path, seconds in times.items():
        row[f"{path}_ms_median"] = 1e3 * float(np.median(seconds))
        row[f"{path}_ms_p90"] = 1e3 * float(np.percentile(seconds, 90))
        row[f"{path}_ms_mean"] = 1e3 * float(np.mean(seconds))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--out", default=None)
    parser.add_argument("--history", default=None, help="judged history to fit a real router on")
    parser.add_argument("--catalog", default=None, help="its catalogue")
    parser.add_argument("--real-only", action="store_true", help="skip the synthetic tables")
    parser.add_argument(
        "--router", action="append", default=[], help="a saved router to time too (needs --history)"
    )
    args = parser.parse_args()
    if args.router and not args.history:
        parser.error("--router needs --history (the query texts of its feedback)")
    real = []
    if args.history and args.catalog:
        texts = list(dict.fromkeys(r.query for r in read_history(args.history)))
        routers = [("whole history", None), ("10% seed", 0.1)] + [(path, path) for path in args.router]
        print(
            f"{'router':>24} {'tags':>6} {'models':>6} {'in process: median ms':>22} {'p90':>7} "
            f"{'gateway: median ms':>19} {'p90':>7}"
        )
        for name, how in routers:
            if isinstance(how, str):
                router, queries = TagRouter.load(how), None
            else:
                router, queries = fitted(args.history, args.catalog, how)
            row = {"router": name, "fitted_on_queries": queries, **measure_real(router, texts, args.updates)}
            real.append(row)
            print(
                f"{name[-24:]:>24} {row['tags']:>6} {row['models']:>6} {row['in_process_ms_median']:>22.3f} "
                f"{row['in_process_ms_p90']:>7.3f} {row['gateway_ms_median']:>19.3f} {row['gateway_ms_p90']:>7.3f}"
            )
    rows = []
    print(f"machine: {platform.machine()} {platform.processor() or ''}, python {platform.python_version()}")
    print(
        f"{'tags':>7} {'models':>6} {'profiles':>8} {'median ms/rec':>14} {'mean ms/rec':>12} {'full rescoring ms':>18}"
    )
    for n_tags in () if args.real_only else (1_000, 10_000, 100_000):
        for n_models in (8, 32):
            for n_profiles in (1, 3):
                row = measure(n_tags, n_models, n_profiles, args.updates)
                rows.append(row)
                print(
                    f"{n_tags:>7} {n_models:>6} {n_profiles:>8} {row['ms_per_record_median']:>14.3f} "
                    f"{row['ms_per_record_mean']:>12.3f} {row['full_rescoring_ms']:>18.1f}"
                )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(
                {"machine": platform.platform(), "updates": args.updates, "rows": rows, "real": real},
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
