"""The AlpacaEval benchmark runner: every router on every setup, five seeds of 5-fold cross-validation,
metrics per seed, mean ± std over seeds, written to ``results.json`` (schema in :func:`evaluate_setup`).

Embeddings and teacher tags of the query set are cached in ``OUT/.cache/``, keyed by a hash of the texts
and the embedder's name, so a rerun skips them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagrouter.datasets.alpacaeval import ANNOTATOR, AlpacaEvalData, load_alpacaeval
from tagrouter.embedding import Embedder, default_embedder
from tagrouter.errors import DataError
from tagrouter.evaluation.baselines import BASELINES, BaselineFactory
from tagrouter.evaluation.metrics import Reference, curve_metrics, oracle_choice, realised
from tagrouter.evaluation.protocol import (
    N_FOLDS,
    N_POINTS,
    SEEDS,
    Benchmark,
    MethodFactory,
    Setup,
    operating_choices,
    out_of_fold,
    select_setups,
)
from tagrouter.evaluation.tagrouter_method import SharedFits, TagRouterMethod
from tagrouter.fileio import atomic_write_bytes, atomic_write_json
from tagrouter.scoring import PaperScorer, SmoothedScorer
from tagrouter.tagging.taxonomy import seed_tags
from tagrouter.tagging.teacher import KeyphraseTeacher

Log = Callable[[str], None]


# ---- routers ---------------------------------------------------------------------------------------------
def router_factories(data: AlpacaEvalData, shared: SharedFits) -> dict[str, MethodFactory]:
    """Every benchmarked router by name: TagRouter's default (``tagrouter``), its variants, the baselines.

    TagRouter variants: ``-paper`` (the paper's count scorer), ``-smoothed-noprior`` / ``-smoothed-prior``
    (the smoothed scorer as first written, α = β = 1, without / with the difficulty prior), ``-rasch`` (the
    default without per-model discrimination), ``-v0`` (that
    scorer with the first tagger: 4 teacher keyphrases, min_count 3, 4 fine tags); all but ``-v0`` use the
    default tagger.

    Baselines get the benchmark seed and, for the "+tags" variants, the fold's tagger: the same student
    TagRouter uses, fitted on the fold's training queries only."""

    def tagrouter(name: str, **options: Any) -> MethodFactory:
        return lambda setup, seed: TagRouterMethod(name, data.catalog(setup.models), shared, **options)

    def fold_tagger(train_queries: list[str]) -> Callable[[list[str]], list[list[str]]]:
        return shared.tagger(train_queries, {}).tag

    def baseline(make: BaselineFactory) -> MethodFactory:
        return lambda setup, seed: make(seed=seed, tagger_for=fold_tagger)

    # the scorer before tuning
    original = {"difficulty_weight": 1.0, "specific_weight": 1.0, "discrimination": False}
    factories: dict[str, MethodFactory] = {
        "tagrouter": tagrouter("tagrouter"),
        "tagrouter-paper": tagrouter("tagrouter-paper", scorer=PaperScorer()),
        "tagrouter-smoothed-noprior": tagrouter(
            "tagrouter-smoothed-noprior", scorer=SmoothedScorer(difficulty=False, **original)
        ),
        "tagrouter-smoothed-prior": tagrouter("tagrouter-smoothed-prior", scorer=SmoothedScorer(**original)),
        "tagrouter-rasch": tagrouter("tagrouter-rasch", scorer=SmoothedScorer(discrimination=False)),
        "tagrouter-v0": tagrouter(
            "tagrouter-v0",
            scorer=SmoothedScorer(**original),
            tagger_options={"teacher_keyphrases": 4, "min_count": 3, "fine": 4},
        ),
    }
    factories.update({name: baseline(make) for name, make in BASELINES.items()})
    return factories


#: Routers of a run without ``routers``: what fits the 10-minute budget on 2 cores. The others (the slow
#: learned baselines and ``tagrouter-v0``) run with ``--routers`` (see docs/results.md).
DEFAULT_ROUTERS = (
    "tagrouter",
    "tagrouter-paper",
    "tagrouter-smoothed-noprior",
    "tagrouter-smoothed-prior",
    "tagrouter-rasch",
    "random",
    "knn",
    "knn-prior",
    "knn+tags",
    "sw-ranking",
)


def select_routers(
    factories: dict[str, MethodFactory], names: Sequence[str] | None
) -> dict[str, MethodFactory]:
    """The routers named in ``names`` (``all``: every one; empty: :data:`DEFAULT_ROUTERS`), with a clear
    error for an unknown name."""
    if not names:
        names = [n for n in DEFAULT_ROUTERS if n in factories]
    if list(names) == ["all"]:
        return factories
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise DataError(f"unknown router(s) {', '.join(unknown)}; choose from: {', '.join(factories)}")
    return {n: factories[n] for n in names}


# ---- caches ----------------------------------------------------------------------------------------------
def _key(texts: Sequence[str], *parts: str) -> str:
    h = hashlib.sha256()
    for part in (*parts, *texts):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:20]


def cached_embeddings(cache: Path, texts: Sequence[str], embedder: Embedder) -> np.ndarray:
    """Embeddings of ``texts``, read from or written to ``cache`` (keyed by texts + embedder name)."""
    path = cache / f"embeddings-{_key(texts, embedder.name)}.npy"
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors
    vectors = embedder.embed(list(texts))
    import io

    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    return vectors


def cached_teacher_tags(cache: Path, texts: Sequence[str], shared: SharedFits) -> None:
    """Fill ``shared``'s teacher tags of ``texts`` from ``cache``, or compute and write them."""
    # the teacher's defaults and its seed taxonomy decide its tags
    teacher = f"keyphrase-teacher:{KeyphraseTeacher.keyphrases}:{KeyphraseTeacher.redundancy}"
    taxonomy = json.dumps(seed_tags(), sort_keys=True)
    path = cache / f"teacher-tags-{_key(texts, shared.embedder.name, teacher, taxonomy)}.json"
    if path.is_file():
        tags = json.loads(path.read_text(encoding="utf-8"))
        if len(tags) == len(texts):
            shared.teacher_tags.update(zip(texts, tags, strict=True))
            return
    atomic_write_json(path, shared.teacher_tags_of(texts))


# ---- evaluation ------------------------------------------------------------------------------------------
def _stats(values: Sequence[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def evaluate_setup(
    bench: Benchmark,
    setup: Setup,
    factories: dict[str, MethodFactory],
    seeds: Sequence[int] = SEEDS,
    log: Log | None = None,
) -> dict[str, Any]:
    """Singles, oracle, mixture and every router's metrics for one setup.

    Per router: ``auc_mean``/``auc_std``, ``apgr_mean`` (pairs), ``pauc_mean``, ``uplift_mean``,
    ``cost_saving_mean`` (None unless H reaches AR_best in every seed), ``ar``/``cost`` at θ chosen on the
    training folds (means over seeds), and ``curve``: the 41 points [x, ar] averaged over seeds."""
    columns = bench.columns(setup.models)
    accepted, costs = bench.accepted[:, columns], bench.costs[:, columns]
    single_ar, single_cost = accepted.mean(axis=0), costs.sum(axis=0)
    ref = Reference.from_singles(single_cost, single_ar)
    pair = (float(single_ar[0]), float(single_ar[1])) if setup.kind == "pair" else None
    oracle_cost, oracle_ar = realised(oracle_choice(accepted, costs), accepted, costs)
    mixture = curve_metrics(single_cost, single_ar, ref, pair=pair)
    result: dict[str, Any] = {
        "kind": setup.kind,
        "models": list(setup.models),
        "singles": {
            m: {"ar": float(single_ar[j]), "cost": float(single_cost[j])} for j, m in enumerate(setup.models)
        },
        "reference": {
            "cost_lo": ref.cost_lo,
            "ar_cheapest": ref.ar_cheapest,
            "cost_best": ref.cost_best,
            "ar_best": ref.ar_best,
        },
        "oracle": {"ar": oracle_ar, "cost": oracle_cost},
        "mixture": {"auc": mixture.auc, "apgr": mixture.apgr, "pauc": mixture.pauc, "uplift": mixture.uplift},
        "routers": {},
    }
    for name, factory in factories.items():
        started = time.perf_counter()
        metrics, curves, theta = [], [], []
        for seed in seeds:
            run = out_of_fold(bench, setup, factory, seed)
            points = np.array([realised(c, accepted, costs) for c in operating_choices(setup, run)])
            metrics.append(curve_metrics(points[:, 0], points[:, 1], ref, pair=pair))
            curves.append(np.column_stack([ref.normalise(points[:, 0]), points[:, 1]]))
            theta.append(realised(run.theta_choice, accepted, costs))
        auc_mean, auc_std = _stats([m.auc for m in metrics])
        savings = [m.cost_saving for m in metrics]
        result["routers"][name] = {
            "auc_mean": auc_mean,
            "auc_std": auc_std,
            "apgr_mean": _stats([m.apgr for m in metrics])[0] if pair else None,
            "pauc_mean": _stats([m.pauc for m in metrics])[0],
            "uplift_mean": _stats([m.uplift for m in metrics])[0],
            "cost_saving_mean": None if None in savings else _stats(savings)[0],
            "ar": _stats([t[1] for t in theta])[0],
            "cost": _stats([t[0] for t in theta])[0],
            "curve": np.mean(curves, axis=0).round(6).tolist(),
        }
        if log:
            log(
                f"{setup.name:55s} {name:28s} AUC {auc_mean:.4f} ± {auc_std:.4f}  ({time.perf_counter() - started:.1f}s)"
            )
    return result


def run_alpacaeval(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    setups: Sequence[str] | None = None,
    routers: Sequence[str] | None = None,
    seeds: Sequence[int] = SEEDS,
    log: Log | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the benchmark and write ``OUT/results.json``; returns the results (see :func:`evaluate_setup`).
    ``command``: the command line that reproduces the run, recorded in the results."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    data = load_alpacaeval(data_dir)
    chosen_setups = select_setups(setups)
    embedder = default_embedder()
    shared = SharedFits(embedder=embedder)
    chosen_routers = select_routers(router_factories(data, shared), routers)
    queries = [data.instructions[i] for i in sorted(data.instructions)]
    cache = out_dir / ".cache"
    embeddings = cached_embeddings(cache, queries, embedder)
    cached_teacher_tags(cache, queries, shared)
    bench = Benchmark.from_alpacaeval(data, embeddings)
    results: dict[str, Any] = {
        "protocol": {
            "data": "AlpacaEval 1.0",
            "annotator": ANNOTATOR,
            "queries": len(queries),
            "folds": N_FOLDS,
            "seeds": list(seeds),
            "points_per_curve": N_POINTS,
            "context_models": "every AlpacaEval 1.0 model outside the 8-model pool and the setup",
            "pair_sweep": "top share q = k/40 by score(strong) - score(weak) goes to the strong model",
            "pool_sweep": "argmax(score - lambda * training mean cost); lambda_0 = 0, lambda_k the least lambda "
            "whose expected cost is at most E_0 - k/40 (E_0 - E_cheapest)",
            "theta": "cheapest setting (pair: any share; pool: the 41-step grid) whose in-sample training accept rate reaches the best single model's",
            "routers": list(chosen_routers),
            "command": command,
        },
        "setups": {},
    }
    for setup in chosen_setups:
        results["setups"][setup.name] = evaluate_setup(bench, setup, chosen_routers, seeds, log)
    results["protocol"]["runtime_s"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out_dir / "results.json", results)
    return results
