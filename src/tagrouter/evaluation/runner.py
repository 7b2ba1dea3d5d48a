"""The evaluation runner: every router on every setup of a history, seeds × 5-fold cross-validation,
metrics per seed, mean ± std over seeds and TagRouter's lead with its intervals, written to
``results.json`` (schema in :func:`setup_summary`).

Embeddings and teacher tags of the query set are cached in ``OUT/.cache/``, keyed by a hash of the texts,
the embedder's name and the source of the code that computes them, so a rerun skips them.

Speed: every (setup, seed) runs in one of ``workers`` forked processes (default: one per core), BLAS is
held to one thread per process (small scikit-learn fits run many times faster so on 2 cores), and the
shared tagger of each training set is fitted once, before the runs, and shared by every router.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from tagrouter.catalog import Catalog
from tagrouter.curves import N_POINTS, Reference, realised
from tagrouter.embedding import Embedder, default_embedder
from tagrouter.errors import DataError
from tagrouter.evaluation.baselines import BASELINES, OPTIONAL_BASELINES, BaselineFactory
from tagrouter.evaluation.loading import HistoryArrays, history_arrays
from tagrouter.evaluation.metrics import CurveMetrics, curve_metrics, oracle_choice
from tagrouter.evaluation.protocol import (
    N_FOLDS,
    SEEDS,
    Benchmark,
    MethodFactory,
    Setup,
    fold_ids,
    make_setups,
    operating_choices,
    out_of_fold,
    select_setups,
)
from tagrouter.evaluation.significance import bootstrap_differences, compare
from tagrouter.evaluation.tagrouter_method import SharedFits, TagRouterMethod
from tagrouter.fileio import atomic_write_bytes, atomic_write_json
from tagrouter.model import DEFAULT_OUTPUT_TOKENS
from tagrouter.records import HistoryRecord
from tagrouter.scoring import PaperScorer, SmoothedScorer
from tagrouter.tagging.taxonomy import seed_tags
from tagrouter.tagging.teacher import KeyphraseTeacher

Log = Callable[[str], None]
Progress = Callable[[str, int, int], None]


# ---- routers ---------------------------------------------------------------------------------------------
#: The first tagger configuration (``tagrouter-v0``): an embedded student of the keyphrase teacher.
V0_TAGGER: dict[str, Any] = {"teacher_keyphrases": 4, "min_count": 3, "fine": 4}


def router_factories(catalog: Catalog, shared: SharedFits) -> dict[str, MethodFactory]:
    """Every router by name: TagRouter's default (``tagrouter``), its variants, the baselines.

    ``tagrouter`` is what ``TagRouter.fit(history, catalog)`` gives by default for the training folds'
    history and the setup's catalogue. Variants: ``-paper`` (the paper's count scorer),
    ``-smoothed-noprior`` / ``-smoothed-prior`` (the smoothed scorer as first written, α = β = 1, without /
    with the difficulty prior), ``-rasch`` (the smoothed scorer without per-model discrimination), ``-v0``
    (the first configuration: α = β = 1 with the first tagger: 4 teacher keyphrases, min_count 3, 4 fine
    tags); all but ``-v0`` use the default tagger.

    Baselines get the benchmark seed and, for the "+tags" variants, the fold's tagger: the same student
    TagRouter uses, fitted on the fold's training queries only."""

    def tagrouter(name: str, **options: Any) -> MethodFactory:
        return lambda setup, seed: TagRouterMethod(name, _catalog_of(catalog, setup), shared, **options)

    def fold_tagger(train_queries: list[str]) -> Callable[[list[str]], list[list[str]]]:
        return shared.tagger(train_queries, {}).tag

    def baseline(make: BaselineFactory) -> MethodFactory:
        return lambda setup, seed: make(seed=seed, tagger_for=fold_tagger)

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
            "tagrouter-v0", scorer=SmoothedScorer(**original), tagger_options=V0_TAGGER
        ),
    }
    factories.update({name: baseline(make) for name, make in {**BASELINES, **OPTIONAL_BASELINES}.items()})
    return factories


#: The routers of a run unless told otherwise: TagRouter's default and every baseline.
DEFAULT_ROUTERS = ("tagrouter", *BASELINES)


def _catalog_of(catalog: Catalog, setup: Setup) -> Catalog:
    return Catalog(models=[catalog[m] for m in setup.models])


def is_tagrouter(name: str) -> bool:
    """Whether a router name is a TagRouter configuration (the default or a variant)."""
    return name == "tagrouter" or name.startswith("tagrouter-")


def tagger_options(factories: dict[str, MethodFactory]) -> list[dict[str, Any]]:
    """The shared tagger configurations the routers of ``factories`` use: the run's tagger ({}), and the
    first configuration when ``tagrouter-v0`` runs."""
    return [{}, V0_TAGGER] if "tagrouter-v0" in factories else [{}]


def select_routers(
    factories: dict[str, MethodFactory], names: Sequence[str] | None
) -> dict[str, MethodFactory]:
    """The routers named in ``names``: empty, :data:`DEFAULT_ROUTERS`; ``all``: every one but the optional
    (slow) baselines, the TagRouter variants included; an unknown name is a clear error."""
    if not names:
        names = DEFAULT_ROUTERS
    if list(names) == ["all"]:
        return {n: f for n, f in factories.items() if n not in OPTIONAL_BASELINES}
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise DataError(f"unknown router(s) {', '.join(unknown)}; choose from: all, {', '.join(factories)}")
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
    """One router, one setup, one seed: its curve metrics, its 41 points [x, ar], (cost, AR) at θ and the
    chosen model of every query at each of the 41 points (points × n, for the bootstrap)."""

    metrics: CurveMetrics
    curve: np.ndarray
    theta: tuple[float, float]
    choices: np.ndarray


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
        if pair is not None and pair[0] == pair[1]:
            raise DataError(f"setup {setup.name}: both models have the same accept rate; APGR is undefined")
        try:
            ref = Reference.from_singles(single_cost, single_ar)
        except ValueError:
            raise DataError(
                f"setup {setup.name}: its most accepted model is also its cheapest; there is nothing to route"
            ) from None
        return cls(accepted, costs, ref, pair)


def seed_run(bench: Benchmark, setup: Setup, factory: MethodFactory, seed: int) -> SeedRun:
    """Out-of-fold predictions of one router for one seed, turned into its curve and metrics."""
    frame = _SetupFrame.of(bench, setup)
    run = out_of_fold(bench, setup, factory, seed)
    choices = np.array(operating_choices(setup, run), dtype=np.uint8)
    points = np.array([realised(c, frame.accepted, frame.costs) for c in choices])
    return SeedRun(
        metrics=curve_metrics(points[:, 0], points[:, 1], frame.ref, pair=frame.pair),
        curve=np.column_stack([frame.ref.normalise(points[:, 0]), points[:, 1]]),
        theta=realised(run.theta_choice, frame.accepted, frame.costs),
        choices=choices,
    )


def setup_summary(
    bench: Benchmark, setup: Setup, runs: dict[str, list[SeedRun]], *, resamples: int = 1000
) -> dict[str, Any]:
    """Singles, oracle, mixture, every router's metrics over its seed runs and TagRouter's lead, for one
    setup.

    Per router: ``auc_mean``/``auc_std`` and ``auc_seeds``, ``apgr_mean`` (pairs), ``pauc_mean``,
    ``uplift_mean``, ``cost_saving_mean`` (None unless H reaches AR_best in every seed), ``ar``/``cost`` at
    θ chosen on the training folds (means over seeds), and ``curve``: the 41 points [x, ar] averaged over
    seeds. ``lead`` (when ``tagrouter`` ran): its AUC difference to the best other router (not a TagRouter
    configuration) and to the mixture, with both intervals (:mod:`~tagrouter.evaluation.significance`)."""
    frame = _SetupFrame.of(bench, setup)
    accepted, costs, ref, pair = frame.accepted, frame.costs, frame.ref, frame.pair
    single_ar, single_cost = accepted.mean(axis=0), costs.sum(axis=0)
    oracle_cost, oracle_ar = realised(oracle_choice(accepted, costs), accepted, costs)
    mixture = curve_metrics(single_cost, single_ar, ref, pair=pair)
    result: dict[str, Any] = {
        "kind": setup.kind,
        "models": list(setup.models),
        "context_models": len(setup.context),
        "queries": len(bench.queries),
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
            "auc_seeds": [m.auc for m in metrics],
            "apgr_mean": _stats([m.apgr for m in metrics])[0] if pair else None,
            "pauc_mean": _stats([m.pauc for m in metrics])[0],
            "uplift_mean": _stats([m.uplift for m in metrics])[0],
            "cost_saving_mean": None if None in savings else _stats(savings)[0],
            "ar": _stats([r.theta[1] for r in seed_runs])[0],
            "shortfall": _stats([max(0.0, ref.ar_best - r.theta[1]) for r in seed_runs])[0],
            "cost": _stats([r.theta[0] for r in seed_runs])[0],
            "curve": np.mean([r.curve for r in seed_runs], axis=0).round(6).tolist(),
        }
    if "tagrouter" in runs:
        result["lead"] = _lead(frame, runs, mixture.auc, resamples)
    return result


def _lead(
    frame: _SetupFrame, runs: dict[str, list[SeedRun]], mixture_auc: float, resamples: int
) -> dict[str, Any]:
    """TagRouter's AUC lead over the best other router and over the mixture (see :func:`setup_summary`)."""
    ours = runs["tagrouter"]
    ours_auc = np.array([r.metrics.auc for r in ours])
    ours_choices = np.stack([r.choices for r in ours])
    lead: dict[str, Any] = {}
    others = {n: r for n, r in runs.items() if not is_tagrouter(n)}
    if others:
        best = max(others, key=lambda n: np.mean([r.metrics.auc for r in others[n]]))
        theirs = others[best]
        differences = ours_auc - np.array([r.metrics.auc for r in theirs])
        boot = bootstrap_differences(
            frame.accepted,
            frame.costs,
            ours_choices,
            np.stack([r.choices for r in theirs]),
            resamples=resamples,
        )
        lead["best_other"] = compare(best, differences.tolist(), boot).to_dict()
    boot = bootstrap_differences(frame.accepted, frame.costs, ours_choices, None, resamples=resamples)
    lead["mixture"] = compare("mixture", (ours_auc - mixture_auc).tolist(), boot).to_dict()
    return lead


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
#: What forked workers read: set by :func:`run_eval` just before its worker pool starts, so the routers'
#: factories (closures), the setups' benchmarks and the primed caches reach the workers without pickling.
_WORK: dict[str, Any] = {}


def _unit(setup: Setup, seed: int) -> tuple[str, int, dict[str, SeedRun], float]:
    """Every router of one (setup, seed), in a worker (or in the main process)."""
    started = time.perf_counter()
    bench, factories = _WORK["benches"][setup.name], _WORK["factories"]
    with threadpool_limits(1):
        runs = {name: seed_run(bench, setup, factory, seed) for name, factory in factories.items()}
    return setup.name, seed, runs, time.perf_counter() - started


def _fold_tags(train_queries: list[str], options: tuple) -> dict[str, list[str]]:
    """The shared tagger's tags of every query for one training set (a priming job)."""
    shared, queries = _WORK["shared"], _WORK["queries"]
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


def training_sets(benches: Sequence[Benchmark], seeds: Sequence[int]) -> list[list[str]]:
    """The distinct training query lists of every (setup benchmark, seed, fold)."""
    out: dict[tuple[str, ...], list[str]] = {}
    for bench in benches:
        for seed in seeds:
            folds = fold_ids(len(bench.queries), seed)
            for fold in range(N_FOLDS):
                train = [bench.queries[i] for i in np.flatnonzero(folds != fold)]
                out.setdefault(tuple(train), train)
    return list(out.values())


def prime_taggers(
    queries: list[str],
    train_sets: Sequence[list[str]],
    shared: SharedFits,
    options: Sequence[dict[str, Any]],
    workers: int,
    progress: Progress | None = None,
) -> None:
    """Fit the shared tagger of every training set (one per tagger ``options``) and tag every query with
    it, ``workers`` at a time, so the runs that follow only look tags up. A tagger whose fits share state
    across training sets (a generative backend generates each query once) is fitted in this process."""
    jobs = [(train, tuple(sorted(o.items()))) for train in train_sets for o in options]
    if not shared.parallel_fits:
        # every fit first: the training sets of one seed cover every query, so each is generated once
        taggers = [shared.tagger(train, dict(key)) for train, key in jobs]
        for done, tagger in enumerate(taggers, start=1):
            tagger.tag(queries)
            if progress:
                progress("fitting taggers", done, len(taggers))
        return
    _WORK.update(queries=queries, shared=shared)
    with _pool(workers) as pool:
        futures = [pool.submit(_fold_tags, train, key) for train, key in jobs]
        for done, ((train, key), future) in enumerate(zip(jobs, futures, strict=True), start=1):
            shared.prime(train, dict(key), future.result())
            if progress:
                progress("fitting taggers", done, len(jobs))


# ---- the run ---------------------------------------------------------------------------------------------
PROTOCOL = {
    "folds": N_FOLDS,
    "points_per_curve": N_POINTS,
    "pair_sweep": "top share q = k/40 by score(strong) - score(weak) goes to the strong model",
    "pool_sweep": "argmax(score - lambda * training mean cost); lambda_0 = 0, lambda_k the least lambda "
    "whose expected cost is at most E_0 - k/40 (E_0 - E_cheapest)",
    "theta": "the router's own deployed knob where it has one (TagRouter's self-tuned default), else the "
    "cheapest setting (pair: any share; pool: the 41-step grid) whose in-sample training accept rate "
    "reaches the best single model's; shortfall = max(0, best single model's accept rate - accept rate at "
    "theta), on the unseen folds",
    "context_models": "every history model outside the pool and the setup (never routed to)",
    "missing_outcomes": "a setup keeps the queries on which all its models were judged; an unjudged context "
    "cell is unknown, not a loss",
    "lead": "tagrouter minus the best other router (not a TagRouter configuration) and minus the mixture, "
    "in AUC: 95% t-interval over seeds and 95% paired bootstrap interval over queries "
    "(1000 resamples, seed 0); beyond noise when both exclude 0",
}


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide the numbers."""
    out = {"python": platform.python_version()}
    for package in ("tagrouter", "numpy", "scikit-learn", "scipy", "wordllama"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def run_eval(
    records: Sequence[HistoryRecord],
    catalog: Catalog,
    out_dir: str | Path,
    *,
    pool: Sequence[str] | None = None,
    pairs: Sequence[tuple[str, str]] = (),
    setups: Sequence[str] | None = None,
    routers: Sequence[str] | None = None,
    seeds: Sequence[int] = SEEDS,
    default_output_tokens: float = DEFAULT_OUTPUT_TOKENS,
    tagger: str = "embedded",
    workers: int | None = None,
    resamples: int = 1000,
    data: dict[str, Any] | None = None,
    command: str | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Evaluate every router on the history and write ``OUT/results.json``; returns the results.

    ``pool``: the routable models (default: the catalogue's); ``pairs``: (weak, strong) setups, both
    models in the catalogue; ``setups``/``routers``: names to run (default: all setups,
    :data:`DEFAULT_ROUTERS`). ``tagger``: the tagger spec of TagRouter and the "+tags" baselines, fitted
    on each training set. ``workers``: processes that run (setup, seed) units side by side (default: one
    per CPU core); the results do not depend on it. ``data``: what to record about the data set;
    ``command``: the command line that reproduces the run."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    pool = list(pool) if pool is not None else catalog.names
    arrays = history_arrays(records, catalog, default_output_tokens=default_output_tokens)
    _check_setup_models(arrays, catalog, pool, pairs)
    chosen_setups = select_setups(make_setups(arrays.models, pool, pairs), setups)
    embedder = default_embedder()
    shared = SharedFits(embedder=embedder, spec=tagger)
    chosen_routers = select_routers(router_factories(catalog, shared), routers)
    cache = out_dir / ".cache"
    embeddings = cached_embeddings(cache, arrays.queries, embedder)
    if shared.spec is None or "tagrouter-v0" in chosen_routers:  # the embedded students' teacher
        cached_teacher_tags(cache, arrays.queries, shared)
    full = Benchmark(
        arrays.queries,
        embeddings,
        arrays.models,
        arrays.outcomes,
        arrays.costs,
        arrays.known,
        arrays.history,
        arrays.rows,
    )
    benches = {s.name: full.for_setup(s) for s in chosen_setups}
    workers = default_workers() if workers is None else max(1, workers)
    with threadpool_limits(1):
        train_sets = training_sets(list(benches.values()), seeds)
        prime_taggers(arrays.queries, train_sets, shared, tagger_options(chosen_routers), workers, progress)
    if log:
        log(f"taggers of {len(train_sets)} training sets fitted ({time.perf_counter() - started:.1f}s)")
    _WORK.update(benches=benches, factories=chosen_routers, shared=shared)
    units = [(setup, seed) for setup in chosen_setups for seed in seeds]
    # the pool (most routers' slowest fits) first, so that the last units to finish are short ones
    units.sort(key=lambda unit: (unit[0].kind != "pool", -len(benches[unit[0].name].queries)))
    by_seed: dict[tuple[str, int], dict[str, SeedRun]] = {}
    with _pool(workers) as executor:
        futures = [executor.submit(_unit, setup, seed) for setup, seed in units]
        for done, future in enumerate(as_completed(futures), start=1):
            name, seed, seed_runs, seconds = future.result()
            by_seed[name, seed] = seed_runs
            if progress:
                progress("cross-validating (setup × seed)", done, len(units))
            if log:
                log(f"{name:55s} seed {seed}: {len(seed_runs)} routers ({seconds:.1f}s)")
    _WORK.clear()
    results: dict[str, Any] = {
        "protocol": {
            **PROTOCOL,
            "seeds": list(seeds),
            "queries": len(arrays.queries),
            "tagger": tagger,
            "routers": list(chosen_routers),
            "command": command,
        },
        "data": {
            **(data or {}),
            "queries": len(arrays.queries),
            "models": len(arrays.models),
            "pool": pool,
            "context_models": [m for m in arrays.models if m not in pool],
            "notes": arrays.notes,
        },
        "environment": versions(),
        "setups": {},
    }
    for done, setup in enumerate(chosen_setups, start=1):
        runs = {router: [by_seed[setup.name, seed][router] for seed in seeds] for router in chosen_routers}
        summary = setup_summary(benches[setup.name], setup, runs, resamples=resamples)
        summary["dropped_queries"] = len(arrays.queries) - summary["queries"]
        results["setups"][setup.name] = summary
        if progress:
            progress("bootstrap intervals", done, len(chosen_setups))
    results["protocol"]["runtime_s"] = round(time.perf_counter() - started, 1)
    results["protocol"]["workers"] = workers
    atomic_write_json(out_dir / "results.json", results)
    return results


def _check_setup_models(
    arrays: HistoryArrays, catalog: Catalog, pool: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> None:
    """Every pool and pair model is a catalogue model with records; a pair has two different models."""
    for model in pool:
        if model not in catalog:
            raise DataError(f"pool model {model!r} is not in the catalogue")
    if len(pool) < 2:
        raise DataError("the pool needs at least two models")
    for weak, strong in pairs:
        if weak == strong:
            raise DataError(f"--pair {weak}:{strong}: a pair needs two different models")
        for model in (weak, strong):
            if model not in catalog:
                where = "in the history but not in the catalogue" if model in arrays.models else "unknown"
                raise DataError(
                    f"--pair {weak}:{strong}: model {model!r} is {where}; pair models need catalogue prices "
                    f"(catalogue: {', '.join(catalog.names)})"
                )
