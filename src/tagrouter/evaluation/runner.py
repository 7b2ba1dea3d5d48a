"""The AlpacaEval benchmark runner: every router on every setup, five seeds of 5-fold cross-validation,
metrics per seed, mean ± std over seeds, written to ``results.json`` (schema in :func:`evaluate_setup`).

Embeddings and teacher tags of the query set are cached in ``OUT/.cache/``, keyed by a hash of the texts,
the embedder's name and the source of the code that computes them, so a rerun skips them.

Speed: every (setup, seed) runs in one of ``workers`` forked processes (default: one per core), BLAS is
held to one thread per process (small scikit-learn fits run many times faster so on 2 cores), and the
shared tagger of each training set is fitted once, before the runs, and shared by every router.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from tagrouter.embedding import Embedder, default_embedder
from tagrouter.errors import DataError
from tagrouter.evaluation.baselines import BASELINES, BaselineFactory
from tagrouter.evaluation.datasets.alpacaeval import ANNOTATOR, AlpacaEvalData, load_alpacaeval
from tagrouter.evaluation.metrics import CurveMetrics, Reference, curve_metrics, oracle_choice, realised
from tagrouter.evaluation.protocol import (
    N_FOLDS,
    N_POINTS,
    SEEDS,
    Benchmark,
    MethodFactory,
    Setup,
    fold_ids,
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
#: The first tagger configuration (``tagrouter-v0``): an embedded student of the keyphrase teacher.
V0_TAGGER: dict[str, Any] = {"teacher_keyphrases": 4, "min_count": 3, "fine": 4}


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
            tagger_options=V0_TAGGER,
        ),
    }
    factories.update({name: baseline(make) for name, make in BASELINES.items()})
    return factories


def tagger_options(factories: dict[str, MethodFactory]) -> list[dict[str, Any]]:
    """The shared tagger configurations the routers of ``factories`` use: the run's tagger ({}), and the
    first configuration when ``tagrouter-v0`` runs."""
    return [{}, V0_TAGGER] if "tagrouter-v0" in factories else [{}]


def select_routers(
    factories: dict[str, MethodFactory], names: Sequence[str] | None
) -> dict[str, MethodFactory]:
    """The routers named in ``names`` (empty or ``all``: every one), with a clear error for an unknown
    name."""
    if not names or list(names) == ["all"]:
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


def _code(*modules: str) -> str:
    """The source of ``modules``: part of a cache key, so that a change of the code that computes a cached
    value (e.g. the tag normaliser) misses the cache instead of reading stale values."""
    import importlib
    import inspect

    return "".join(inspect.getsource(importlib.import_module(m)) for m in modules)


def cached_embeddings(cache: Path, texts: Sequence[str], embedder: Embedder) -> np.ndarray:
    """Embeddings of ``texts``, read from or written to ``cache`` (keyed by texts, embedder name and the
    embedding code)."""
    path = cache / f"embeddings-{_key(texts, embedder.name, _code('tagrouter.embedding'))}.npy"
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
    code = _code(
        "tagrouter.embedding", *(f"tagrouter.tagging.{m}" for m in ("teacher", "normalize", "taxonomy"))
    )
    path = cache / f"teacher-tags-{_key(texts, shared.embedder.name, teacher, taxonomy, code)}.json"
    if path.is_file():
        tags = json.loads(path.read_text(encoding="utf-8"))
        if len(tags) == len(texts):
            shared.teacher_tags.update(zip(texts, tags, strict=True))
            return
    atomic_write_json(path, shared.teacher_tags_of(texts))


# ---- evaluation ------------------------------------------------------------------------------------------
def _stats(values: Sequence[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


@dataclass(frozen=True)
class SeedRun:
    """One router, one setup, one seed: its curve metrics, its 41 points [x, ar] and (cost, AR) at θ."""

    metrics: CurveMetrics
    curve: np.ndarray
    theta: tuple[float, float]


@dataclass(frozen=True)
class _SetupFrame:
    """What every router's evaluation of a setup shares: the setup's outcomes, costs and reference."""

    accepted: np.ndarray
    costs: np.ndarray
    ref: Reference
    pair: tuple[float, float] | None

    @classmethod
    def of(cls, bench: Benchmark, setup: Setup) -> _SetupFrame:
        columns = bench.columns(setup.models)
        accepted, costs = bench.accepted[:, columns], bench.costs[:, columns]
        single_ar, single_cost = accepted.mean(axis=0), costs.sum(axis=0)
        pair = (float(single_ar[0]), float(single_ar[1])) if setup.kind == "pair" else None
        return cls(accepted, costs, Reference.from_singles(single_cost, single_ar), pair)


def seed_run(bench: Benchmark, setup: Setup, factory: MethodFactory, seed: int) -> SeedRun:
    """Out-of-fold predictions of one router for one seed, turned into its curve and metrics."""
    frame = _SetupFrame.of(bench, setup)
    run = out_of_fold(bench, setup, factory, seed)
    points = np.array([realised(c, frame.accepted, frame.costs) for c in operating_choices(setup, run)])
    return SeedRun(
        metrics=curve_metrics(points[:, 0], points[:, 1], frame.ref, pair=frame.pair),
        curve=np.column_stack([frame.ref.normalise(points[:, 0]), points[:, 1]]),
        theta=realised(run.theta_choice, frame.accepted, frame.costs),
    )


def setup_summary(bench: Benchmark, setup: Setup, runs: dict[str, list[SeedRun]]) -> dict[str, Any]:
    """Singles, oracle, mixture and every router's metrics over its seed runs, for one setup.

    Per router: ``auc_mean``/``auc_std``, ``apgr_mean`` (pairs), ``pauc_mean``, ``uplift_mean``,
    ``cost_saving_mean`` (None unless H reaches AR_best in every seed), ``ar``/``cost`` at θ chosen on the
    training folds (means over seeds), and ``curve``: the 41 points [x, ar] averaged over seeds."""
    frame = _SetupFrame.of(bench, setup)
    accepted, costs, ref, pair = frame.accepted, frame.costs, frame.ref, frame.pair
    single_ar, single_cost = accepted.mean(axis=0), costs.sum(axis=0)
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
    for name, seed_runs in runs.items():
        metrics = [r.metrics for r in seed_runs]
        auc_mean, auc_std = _stats([m.auc for m in metrics])
        savings = [m.cost_saving for m in metrics]
        result["routers"][name] = {
            "auc_mean": auc_mean,
            "auc_std": auc_std,
            "apgr_mean": _stats([m.apgr for m in metrics])[0] if pair else None,
            "pauc_mean": _stats([m.pauc for m in metrics])[0],
            "uplift_mean": _stats([m.uplift for m in metrics])[0],
            "cost_saving_mean": None if None in savings else _stats(savings)[0],
            "ar": _stats([r.theta[1] for r in seed_runs])[0],
            "cost": _stats([r.theta[0] for r in seed_runs])[0],
            "curve": np.mean([r.curve for r in seed_runs], axis=0).round(6).tolist(),
        }
    return result


def evaluate_setup(
    bench: Benchmark,
    setup: Setup,
    factories: dict[str, MethodFactory],
    seeds: Sequence[int] = SEEDS,
    log: Log | None = None,
) -> dict[str, Any]:
    """Every router of ``factories`` on every seed of one setup, in this process (see
    :func:`setup_summary` for the schema)."""
    runs: dict[str, list[SeedRun]] = {}
    with threadpool_limits(1):
        for name, factory in factories.items():
            started = time.perf_counter()
            runs[name] = [seed_run(bench, setup, factory, seed) for seed in seeds]
            if log:
                auc = [r.metrics.auc for r in runs[name]]
                log(
                    f"{setup.name:55s} {name:28s} AUC {np.mean(auc):.4f} ± {np.std(auc):.4f}  "
                    f"({time.perf_counter() - started:.1f}s)"
                )
    return setup_summary(bench, setup, runs)


# ---- parallel runs ---------------------------------------------------------------------------------------
#: What forked workers read: set by :func:`run_alpacaeval` just before its worker pool starts, so the
#: routers' factories (closures) and the primed caches reach the workers without pickling.
_WORK: dict[str, Any] = {}


def _unit(setup: Setup, seed: int) -> tuple[str, int, dict[str, SeedRun], float]:
    """Every router of one (setup, seed), in a worker (or in the main process)."""
    started = time.perf_counter()
    bench, factories = _WORK["bench"], _WORK["factories"]
    with threadpool_limits(1):
        runs = {name: seed_run(bench, setup, factory, seed) for name, factory in factories.items()}
    return setup.name, seed, runs, time.perf_counter() - started


def _fold_tags(train_queries: list[str], options: tuple) -> dict[str, list[str]]:
    """The shared tagger's tags of every benchmark query for one training set (a priming job)."""
    shared, queries = _WORK["shared"], _WORK["bench"].queries
    with threadpool_limits(1):
        return dict(zip(queries, shared.tagger(train_queries, dict(options)).tag(queries), strict=True))


def _pool(workers: int) -> Executor:
    if workers <= 1:
        return _InProcess()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


class _InProcess(Executor):
    """An executor that runs each job at once in this process (one worker)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


def default_workers() -> int:
    """Worker processes of a run: one per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def prime_taggers(
    bench: Benchmark,
    shared: SharedFits,
    seeds: Sequence[int],
    options: Sequence[dict[str, Any]],
    workers: int,
) -> None:
    """Fit the shared tagger of every training set of ``seeds`` (one per tagger ``options``) and tag every
    query with it, ``workers`` at a time, so the runs that follow only look tags up. A tagger whose fits
    share state across folds (a generative backend generates each query once) is fitted in this process."""
    train_sets = []
    for seed in seeds:
        folds = fold_ids(len(bench.queries), seed)
        for fold in range(N_FOLDS):
            train_sets.append([bench.queries[i] for i in np.flatnonzero(folds != fold)])
    jobs = [(train, tuple(sorted(o.items()))) for train in train_sets for o in options]
    if not shared.parallel_fits:
        # every fit first: the training sets of one seed cover every query, so each is generated once
        taggers = [shared.tagger(train, dict(key)) for train, key in jobs]
        for tagger in taggers:
            tagger.tag(bench.queries)
        return
    _WORK.update(bench=bench, shared=shared)
    with _pool(workers) as pool:
        futures = [pool.submit(_fold_tags, train, key) for train, key in jobs]
        for (train, key), future in zip(jobs, futures, strict=True):
            shared.prime(train, dict(key), future.result())


def run_alpacaeval(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    setups: Sequence[str] | None = None,
    routers: Sequence[str] | None = None,
    seeds: Sequence[int] = SEEDS,
    log: Log | None = None,
    command: str | None = None,
    tagger: str = "embedded",
    workers: int | None = None,
) -> dict[str, Any]:
    """Run the benchmark and write ``OUT/results.json``; returns the results (see :func:`setup_summary`).
    ``command``: the command line that reproduces the run, recorded in the results. ``tagger``: the tagger
    spec of TagRouter and the "+tags" baselines (:func:`tagrouter.tagging.spec.tagger_from_spec`; each
    training set gets its own fit). ``workers``: processes that run (setup, seed) units side by side
    (default: one per CPU core); the results do not depend on it."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    data = load_alpacaeval(data_dir)
    chosen_setups = select_setups(setups)
    embedder = default_embedder()
    shared = SharedFits(embedder=embedder, spec=tagger)
    chosen_routers = select_routers(router_factories(data, shared), routers)
    queries = [data.instructions[i] for i in sorted(data.instructions)]
    cache = out_dir / ".cache"
    embeddings = cached_embeddings(cache, queries, embedder)
    if shared.spec is None or "tagrouter-v0" in chosen_routers:  # the embedded students' teacher
        cached_teacher_tags(cache, queries, shared)
    bench = Benchmark.from_alpacaeval(data, embeddings)
    workers = default_workers() if workers is None else max(1, workers)
    with threadpool_limits(1):
        prime_taggers(bench, shared, seeds, tagger_options(chosen_routers), workers)
    if log:
        log(f"taggers of {len(seeds) * N_FOLDS} training sets fitted ({time.perf_counter() - started:.1f}s)")
    _WORK.update(bench=bench, factories=chosen_routers, shared=shared)
    units = [(setup, seed) for setup in chosen_setups for seed in seeds]
    # the pool (most routers' slowest fits) first, so that the last units to finish are short ones
    units.sort(key=lambda unit: unit[0].kind != "pool")
    runs: dict[str, dict[str, list[SeedRun]]] = {
        s.name: {n: [] for n in chosen_routers} for s in chosen_setups
    }
    by_seed: dict[tuple[str, int], dict[str, SeedRun]] = {}
    with _pool(workers) as pool:
        futures = [pool.submit(_unit, setup, seed) for setup, seed in units]
        for future in as_completed(futures):
            name, seed, seed_runs, seconds = future.result()
            by_seed[name, seed] = seed_runs
            if log:
                log(f"{name:55s} seed {seed}: {len(seed_runs)} routers ({seconds:.1f}s)")
    _WORK.clear()
    for setup in chosen_setups:
        for seed in seeds:
            for router, run in by_seed[setup.name, seed].items():
                runs[setup.name][router].append(run)
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
            "tagger": tagger,
            "routers": list(chosen_routers),
            "command": command,
        },
        "setups": {},
    }
    for setup in chosen_setups:
        summary = setup_summary(bench, setup, runs[setup.name])
        results["setups"][setup.name] = summary
        if log:
            for router, r in summary["routers"].items():
                log(f"{setup.name:55s} {router:28s} AUC {r['auc_mean']:.4f} ± {r['auc_std']:.4f}")
    results["protocol"]["runtime_s"] = round(time.perf_counter() - started, 1)
    results["protocol"]["workers"] = workers
    atomic_write_json(out_dir / "results.json", results)
    return results
