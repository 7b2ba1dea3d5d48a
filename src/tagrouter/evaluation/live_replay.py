"""``tagrouter bench live``: judged history replayed as live traffic through the gateway's learner.

Per seed, the queries that have an outcome for every catalogue model are split at random
(``numpy.random.default_rng(seed).permutation``) into a seed set (``seed_share``: every model's outcome
known, the fit's history), a stream (the rest) and a test set (``test_share``). The static router is fitted
on the seed set (settings chosen by the fit's inner cross-validation). A :class:`~tagrouter.live.LiveLearner`
around it then decides each stream query in order and learns only the chosen model's judged outcome
(bandit feedback), with the propensity of that choice. At ``checkpoints`` evenly spaced points of the
stream, routing quality is the pool AUC (the benchmark's 41-point curve, :mod:`tagrouter.curves`)
on the test queries of:

- ``static``: the seed fit, never updated;
- ``live``: the learner's current router (its posterior-mean scores);
- ``full``: a fit on the seed set plus the stream so far with *every* model's outcome, with the seed fit's
  tagger (the line that learning could reach with full information).

With ``new_model``, that model's records are removed from the seed set: the static router does not know
it, the learner adds it with no history (:meth:`~tagrouter.live.LiveLearner.with_catalog`), and the
new model's share of the stream's last fifth (so far) is reported for live and, under the learner's
current policy (same rule and knob), for full. Costs are the history's own (each answer's dollars). Exploration cost is the dollars the
explored answers cost beyond what the greedy choice's answer would have cost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagrouter.catalog import Catalog
from tagrouter.curves import Reference, area, hull, pool_choices, realised
from tagrouter.errors import DataError
from tagrouter.evaluation.loading import single_turns
from tagrouter.live import Judged, LiveLearner, LivePolicy
from tagrouter.records import OUTCOMES, History, HistoryRecord
from tagrouter.router import TagRouter

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Judgements:
    """Every judged answer of a history as arrays over (queries × models of the history)."""

    ids: list[str]
    texts: list[str]
    models: list[str]
    outcome: np.ndarray  # codes, -1 missing
    cost: np.ndarray  # dollars, NaN missing
    output_tokens: np.ndarray  # NaN missing

    @classmethod
    def of(cls, records: Sequence[HistoryRecord], catalog: Catalog) -> Judgements:
        ids = list(dict.fromkeys(r.query_id for r in records))
        models = list(dict.fromkeys(r.model for r in records))
        row, col = {q: i for i, q in enumerate(ids)}, {m: j for j, m in enumerate(models)}
        texts = [""] * len(ids)
        outcome = np.full((len(ids), len(models)), -1, dtype=np.int8)
        cost = np.full((len(ids), len(models)), np.nan)
        tokens = np.full((len(ids), len(models)), np.nan)
        code = {name: i for i, name in enumerate(OUTCOMES)}
        for r in records:
            i, j = row[r.query_id], col[r.model]
            texts[i] = r.query
            outcome[i, j] = code[r.outcome]
            if r.output_tokens is not None:
                tokens[i, j] = r.output_tokens
            if r.cost is not None:
                cost[i, j] = r.cost
            elif r.model in catalog and r.input_tokens is not None and r.output_tokens is not None:
                cost[i, j] = catalog[r.model].cost(r.input_tokens, r.output_tokens)
        return cls(ids, texts, models, outcome, cost, tokens)

    def history(self, rows: np.ndarray, models: Sequence[str] | None = None) -> History:
        """Every known outcome of queries ``rows`` (of ``models``, default all) as a history."""
        cols = [self.models.index(m) for m in (models or self.models)]
        qi, mj = np.nonzero(self.outcome[np.ix_(rows, cols)] >= 0)
        rows_, cols_ = np.asarray(rows)[qi], np.asarray(cols)[mj]
        return History(
            [self.ids[i] for i in rows_],
            [self.texts[i] for i in rows_],
            [self.models[j] for j in cols_],
            self.outcome[rows_, cols_].astype(np.int8),
            self.output_tokens[rows_, cols_],
        )


def pool_auc(
    scores: np.ndarray, expected: np.ndarray, accepted: np.ndarray, costs: np.ndarray, ref: Reference
) -> float:
    """AUC of the 41-point pool curve of ``scores`` (test queries × the router's models) against the
    pool's reference ``ref`` (``accepted`` and ``costs``: the router's columns)."""
    points = np.array([realised(choice, accepted, costs) for choice in pool_choices(scores, expected)])
    return area(hull(ref.normalise(points[:, 0]), points[:, 1], ref.ar_cheapest))


def replay_seed(
    data: Judgements,
    catalog: Catalog,
    seed: int,
    *,
    seed_share: float = 0.1,
    test_share: float = 0.3,
    checkpoints: int = 5,
    new_model: str | None = None,
    budget: float = 0.02,
    max_weight: float = LivePolicy.max_weight,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """One replay (see the module docstring); the run's entry of ``results.json``. ``max_weight``: the
    learner's inverse-propensity clip (1: plain counting)."""
    pool = catalog.names
    cols = [data.models.index(m) for m in pool]
    complete = np.flatnonzero(
        (data.outcome[:, cols] >= 0).all(axis=1) & ~np.isnan(data.cost[:, cols]).any(axis=1)
    )
    order = complete[np.random.default_rng(seed).permutation(len(complete))]
    n_seed, n_test = int(len(order) * seed_share), int(len(order) * test_share)
    seed_rows, stream, test = (
        order[:n_seed],
        order[n_seed : len(order) - n_test],
        order[len(order) - n_test :],
    )
    if n_seed < 10 or len(stream) < checkpoints or n_test < 10:
        raise DataError(
            f"{len(complete)} complete queries give {n_seed} seed, {len(stream)} stream and {n_test} test "
            "queries: too few to replay (each needs at least 10, the stream one per checkpoint)"
        )
    seed_models = [m for m in data.models if m != new_model]
    static_catalog = Catalog(models=[catalog[m] for m in pool if m != new_model])
    static = TagRouter.fit(data.history(seed_rows, seed_models), static_catalog)
    accepted = data.outcome[np.ix_(test, cols)] != 2
    costs = data.cost[np.ix_(test, cols)]
    ref = Reference.from_singles(costs.sum(axis=0), accepted.mean(axis=0))
    test_texts = [data.texts[i] for i in test]

    def auc(router: TagRouter) -> float:
        _, scores = router.score_batch(test_texts)
        here = [pool.index(m) for m in router.models]
        return pool_auc(scores, router.expected_costs(test_texts), accepted[:, here], costs[:, here], ref)

    learner = LiveLearner(
        static,
        LivePolicy(budget_share=budget, max_weight=max_weight),
        history=data.history(seed_rows, seed_models),
        rng=np.random.default_rng(seed),
        clock=lambda: 0.0,
    )
    if new_model is not None:
        learner.with_catalog(catalog)
    static_auc = auc(static)
    stream_texts = [data.texts[i] for i in stream]
    static_picks = [data.models.index(d.model) for d in static.route_batch(stream_texts)]
    static_stream = {
        "accept_rate": float(np.mean(data.outcome[stream, static_picks] != 2)),
        "cost": float(data.cost[stream, static_picks].sum()),
    }
    marks = sorted({math.ceil(len(stream) * k / checkpoints) for k in range(1, checkpoints + 1)})
    chosen, spent, extra, accepted_n = [], 0.0, 0.0, 0
    points = []
    started = time.perf_counter()
    for n, row in enumerate(stream, start=1):
        text = data.texts[row]
        live = learner.decide(text)
        j, g = data.models.index(live.model), data.models.index(live.greedy)
        outcome = OUTCOMES[data.outcome[row, j]]
        tokens = data.output_tokens[row, j]
        learner.learn(
            [
                Judged(
                    text,
                    live.model,
                    outcome,  # type: ignore[arg-type]
                    live.propensity,
                    tags=tuple(live.decision.tags),
                    output_tokens=None if np.isnan(tokens) else int(tokens),
                )
            ]
        )
        chosen.append(live.model)
        spent += float(data.cost[row, j])
        accepted_n += outcome != "loss"
        if live.explored:
            extra += max(float(data.cost[row, j] - data.cost[row, g]), 0.0)
        if n in marks:
            last = chosen[len(chosen) - max(len(chosen) // 5, 1) :]
            seen = np.concatenate([seed_rows, stream[:n]])
            full = TagRouter.fit(data.history(seen), catalog, tagger=static.tagger)
            full_share = None
            if new_model is not None:
                tail = [data.texts[i] for i in stream[n - len(last) : n]]
                picked = [d.model for d in full.with_decider(learner.decider).route_batch(tail)]
                full_share = picked.count(new_model) / len(picked)
            points.append(
                {
                    "stream_seen": n,
                    "live": {
                        "auc": auc(learner.router),
                        "accept_rate": accepted_n / n,
                        "cost": spent,
                        "exploration_cost_share": extra / spent if spent else 0.0,
                        "new_model_share": None if new_model is None else last.count(new_model) / len(last),
                        "explored_share": learner.stats.explored / max(learner.stats.decisions, 1),
                        "reselections": learner.stats.reselections,
                    },
                    "full": {"auc": auc(full), "new_model_share": full_share},
                }
            )
            if progress:
                progress(
                    f"seed {seed}: {n}/{len(stream)} stream queries, live AUC {points[-1]['live']['auc']:.4f}, "
                    f"full {points[-1]['full']['auc']:.4f}, static {static_auc:.4f}"
                )
    return {
        "seed": seed,
        "queries": {"seed": int(n_seed), "stream": int(len(stream)), "test": int(n_test)},
        "static": {"auc": static_auc, "stream": static_stream},
        "checkpoints": points,
        "seconds": round(time.perf_counter() - started, 1),
    }


#: A live AUC this far below the static one counts as a seed where learning hurt.
BELOW_STATIC = 0.002


def summarise(runs: Sequence[dict[str, Any]], new_model: str | None) -> dict[str, Any]:
    """The summary of ``results.json`` (see the issue's schema in the README)."""
    gaps, below, shares, live_new, full_new = [], [], [], [], []
    for run in runs:
        last, static = run["checkpoints"][-1], run["static"]["auc"]
        span = last["full"]["auc"] - static
        gaps.append((last["live"]["auc"] - static) / span if span > 0 else None)  # None: no gap to close
        if last["live"]["auc"] < static - BELOW_STATIC:
            below.append(run["seed"])
        shares.append(last["live"]["exploration_cost_share"])
        if new_model is not None:
            live_new.append(last["live"]["new_model_share"])
            full_new.append(last["full"]["new_model_share"])
    finite = [g for g in gaps if g is not None]
    static_mean = np.mean([r["static"]["auc"] for r in runs])
    live_mean = np.mean([r["checkpoints"][-1]["live"]["auc"] for r in runs])
    full_mean = np.mean([r["checkpoints"][-1]["full"]["auc"] for r in runs])
    ratio = None
    if new_model is not None and np.mean(full_new) > 0:
        ratio = float(np.mean(live_new) / np.mean(full_new))
    return {
        "gap_closed_mean": float(np.mean(finite)) if finite else None,
        "gap_closed": gaps,
        # the gap of the seeds' mean AUCs (steadier: a seed where full is at or below static has no gap)
        "gap_closed_of_means": float((live_mean - static_mean) / (full_mean - static_mean))
        if full_mean > static_mean
        else None,
        "live_below_static_seeds": below,
        "exploration_cost_share_mean": float(np.mean(shares)),
        "new_model_share_ratio": ratio,
    }


def run_replay(
    records: Sequence[HistoryRecord],
    catalog: Catalog,
    seeds: Sequence[int],
    *,
    progress: Progress | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Every seed's replay and the summary."""
    new_model = options.get("new_model")
    if new_model is not None and new_model not in catalog:
        raise DataError(f"--new-model: {new_model!r} is not in the catalogue ({', '.join(catalog.names)})")
    data = Judgements.of(single_turns(records), catalog)
    missing = [m for m in catalog.names if m not in data.models]
    if missing:
        raise DataError(f"the history has no record of catalogue model(s) {', '.join(missing)}")
    runs = [replay_seed(data, catalog, seed, progress=progress, **options) for seed in seeds]
    return {"options": {**options, "seeds": list(seeds)}, "runs": runs, "summary": summarise(runs, new_model)}


def markdown(results: dict[str, Any], command: str) -> str:
    """``results.md``: one row per seed at the last checkpoint, then the summary."""
    summary, new_model = results["summary"], results["options"].get("new_model")
    lines = [
        "# Live learning replay",
        "",
        f"Command: `{command}`",
        "",
        "| seed | static AUC | live AUC | full AUC | gap closed | stream accept rate static / live "
        "| stream $ static / live | exploration cost share |"
        + (" new model share live / full |" if new_model else ""),
        "|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if new_model else ""),
    ]
    for run, gap in zip(results["runs"], summary["gap_closed"], strict=True):
        last = run["checkpoints"][-1]
        row = (
            f"| {run['seed']} | {run['static']['auc']:.4f} | {last['live']['auc']:.4f} | "
            f"{last['full']['auc']:.4f} | {'n/a' if gap is None else f'{gap:.0%}'} | {run['static']['stream']['accept_rate']:.3f} / "
            f"{last['live']['accept_rate']:.3f} | {run['static']['stream']['cost']:.3f} / "
            f"{last['live']['cost']:.3f} | {last['live']['exploration_cost_share']:.2%} |"
        )
        if new_model:
            row += f" {last['live']['new_model_share']:.2f} / {last['full']['new_model_share']:.2f} |"
        lines.append(row)
    gap_mean, of_means = summary["gap_closed_mean"], summary["gap_closed_of_means"]
    lines += [
        "",
        f"Mean gap closed (seeds with a gap): {'n/a' if gap_mean is None else f'{gap_mean:.0%}'}; "
        f"gap of the mean AUCs closed: {'n/a' if of_means is None else f'{of_means:.0%}'}; "
        f"seeds with live more than {BELOW_STATIC} below static: {summary['live_below_static_seeds'] or 'none'}; "
        f"mean exploration cost share: {summary['exploration_cost_share_mean']:.2%}"
        + (
            f"; new model share ratio (live / full): {summary['new_model_share_ratio']:.2f}"
            if summary["new_model_share_ratio"] is not None
            else ""
        ),
        "",
    ]
    return "\n".join(lines)


def plot(results: dict[str, Any], out: Path) -> Path | None:
    """``live.png``: mean AUC against stream queries for static, live and full (and the new model's share);
    None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    from tagrouter.fileio import atomic_write_bytes

    runs = results["runs"]
    seen = [p["stream_seen"] for p in runs[0]["checkpoints"]]
    new_model = results["options"].get("new_model")
    fig, axes = plt.subplots(1, 2 if new_model else 1, figsize=(11 if new_model else 6.5, 4.2), dpi=110)
    ax = axes[0] if new_model else axes
    static = np.mean([r["static"]["auc"] for r in runs])
    for line in ("live", "full"):
        ys = np.mean([[p[line]["auc"] for p in r["checkpoints"]] for r in runs], axis=0)
        ax.plot(seen, ys, marker="o", label=line)
    ax.axhline(static, color="grey", linestyle="--", label="static")
    ax.set_xlabel("stream queries seen")
    ax.set_ylabel(f"test pool AUC (mean of {len(runs)} seeds)")
    ax.legend()
    if new_model:
        for line in ("live", "full"):
            ys = np.mean([[p[line]["new_model_share"] for p in r["checkpoints"]] for r in runs], axis=0)
            axes[1].plot(seen, ys, marker="o", label=line)
        axes[1].set_xlabel("stream queries seen")
        axes[1].set_ylabel(f"share of recent stream to {new_model}")
        axes[1].legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    path = out / "live.png"
    atomic_write_bytes(path, buffer.getvalue())
    return path
