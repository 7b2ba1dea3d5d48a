"""The development suite: every data set of the shared benchmark data, converted and evaluated the same way.

Each data set is converted in memory to history records and a catalogue (``tagrouter data NAME`` writes
the same as ``history.jsonl`` + ``catalog.yaml``; the results never hold the data itself) and evaluated on
its pool and pairs; a data set whose folder is absent is skipped with a line saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagrouter.evaluation.datasets import alpacaeval, dcrouter, routellm
from tagrouter.evaluation.datasets.common import Converted
from tagrouter.evaluation.plots import can_plot, plot_setup
from tagrouter.evaluation.report import results_markdown
from tagrouter.evaluation.runner import Progress, run_eval
from tagrouter.fileio import atomic_write_text

#: MMLU questions evaluated (of 14,042), a seeded sample, to keep the suite within its time budget.
MMLU_SAMPLE = 3000


@dataclass(frozen=True)
class SuiteData:
    """One data set of the suite: its folder under the data root, converter, pool and pairs."""

    name: str
    title: str
    folder: str
    convert: Callable[[Path], Converted]
    pool: tuple[str, ...] | None = None  # None: the catalogue's models
    pairs: tuple[tuple[str, str], ...] = ()
    marker: str = ""  # a file the folder must hold
    extra: dict[str, Any] = field(default_factory=dict)

    def present(self, root: Path) -> bool:
        return (root / self.folder / self.marker).is_file()


def _alpacaeval(folder: Path) -> Converted:
    """The 8-model pool and the pairs' models priced, every other judged model as context."""
    data = alpacaeval.load_alpacaeval(folder)
    priced = list(dict.fromkeys([*alpacaeval.POOL_8, *(m for pair in alpacaeval.PAIRS for m in pair)]))
    return alpacaeval.convert_alpacaeval(folder, pool=priced, context=data.models)


DATASETS: tuple[SuiteData, ...] = (
    SuiteData(
        "alpacaeval",
        "AlpacaEval 1.0 (805 open-domain instructions, GPT-4 judge vs text_davinci_003)",
        "alpaca_eval",
        _alpacaeval,
        pool=alpacaeval.POOL_8,
        pairs=alpacaeval.PAIRS,
        marker="instructions.jsonl",
    ),
    SuiteData(
        "dcrouter",
        "LLMRouter DCRouter (14 task types, correctness)",
        "llmrouter_dcrouter",
        dcrouter.convert_dcrouter,
        pairs=dcrouter.PAIRS,
        marker="prompts.jsonl.gz",
    ),
    SuiteData(
        "mmlu",
        f"RouteLLM MMLU ({MMLU_SAMPLE}-question sample, correctness)",
        "routellm",
        lambda folder: routellm.convert_mmlu(folder, sample=MMLU_SAMPLE),
        marker="mmlu_responses.csv.gz",
    ),
    SuiteData(
        "gsm8k",
        "RouteLLM GSM8K (correctness)",
        "routellm",
        routellm.convert_gsm8k,
        marker="gsm8k_responses.csv.gz",
    ),
    SuiteData(
        "mt_bench",
        f"RouteLLM MT-bench (both turns, accept = GPT-4 score >= {routellm.MT_BENCH_ACCEPT})",
        "routellm",
        routellm.convert_mt_bench,
        marker="mt_bench_judgements.jsonl.gz",
    ),
)


def by_name(name: str) -> SuiteData:
    return next(d for d in DATASETS if d.name == name)


def run_dataset(
    entry: SuiteData,
    data_folder: Path,
    out: Path,
    *,
    command: str,
    seeds: Sequence[int],
    routers: Sequence[str] | None = None,
    setups: Sequence[str] | None = None,
    tagger: str = "embedded",
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Convert one data set and evaluate it into ``out`` (results.json, results.md, plots)."""
    converted = entry.convert(data_folder)
    results = run_eval(
        converted.records,
        converted.catalog,
        out,
        pool=entry.pool,
        pairs=entry.pairs,
        setups=setups,
        routers=routers,
        seeds=seeds,
        tagger=tagger,
        workers=workers,
        data={"name": entry.name, "source": str(data_folder), "conversion": converted.notes},
        command=command,
        progress=progress,
    )
    write_outputs(results, out, entry.title)
    return results


def write_outputs(results: dict[str, Any], out: Path, title: str) -> bool:
    """``out/results.md`` and one plot per setup when matplotlib is installed; returns whether it was."""
    plots = can_plot()
    if plots:
        for name, setup in results["setups"].items():
            plot_setup(name, setup, out, title)
    atomic_write_text(out / "results.md", results_markdown(results, title=title, plots=plots))
    return plots
