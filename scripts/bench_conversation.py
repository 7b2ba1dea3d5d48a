"""Second-turn routing on MT-bench: the conversation vs the last message only (issue 12).

Data: RouteLLM's MT-bench files (80 two-turn questions; GPT-4 scores 1-10 per model and turn for
gpt-4-1106-preview and Mixtral-8x7B-Instruct). A turn is accepted when its score is at least ``--accept``.
Protocol (the project's): 5-fold cross-validation over questions × seeds 0-4 (``fold_ids``), TagRouter
fitted on both turns of the training questions, scored on the second turns of the test fold; the 41
operating points of a pair (``pair_choices``) and the hull AUC / APGR of ``curve_metrics``.

Variants of the text routed on (training second turns use the same text):
- ``last``: the second user turn alone;
- ``concatenated``: the earlier user turn's text, then the second (``chat.earlier_text`` + the turn);
- ``weighted``: the ``last`` router, (1 − w) × score(second turn) + w × score(earlier turns), w =
  ``chat.EARLIER_WEIGHT`` = 0.3 (chosen before measuring; the gateway's ``conversation_weight``).

Costs: per query, (characters / 4) input tokens and 300 output tokens at $0.60 / $0.60 (Mixtral) and
$10 / $30 (GPT-4 Turbo) per 1M tokens. Usage: ``python scripts/bench_conversation.py [--data DIR]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

from tagrouter.catalog import Catalog
from tagrouter.chat import EARLIER_WEIGHT, earlier_text
from tagrouter.curves import Reference, pair_choices, realised
from tagrouter.evaluation.metrics import curve_metrics
from tagrouter.evaluation.protocol import N_FOLDS, SEEDS, fold_ids
from tagrouter.records import HistoryRecord
from tagrouter.router import TagRouter

WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
PRICES = {WEAK: (0.6, 0.6), STRONG: (10.0, 30.0)}
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routellm"


def load(folder: Path, accept: int) -> tuple[list[list[str]], np.ndarray]:
    """The questions' two user turns and accepted[question, turn, model] (models: WEAK, STRONG)."""
    with gzip.open(folder / "mt_bench_question.jsonl.gz", "rt") as handle:
        questions = [json.loads(line) for line in handle]
    index = {q["question_id"]: i for i, q in enumerate(questions)}
    accepted = np.zeros((len(questions), 2, 2), dtype=bool)
    seen = np.zeros_like(accepted)
    with gzip.open(folder / "mt_bench_judgements.jsonl.gz", "rt") as handle:
        for line in handle:
            row = json.loads(line)
            at = (index[row["question_id"]], row["turn"] - 1, [WEAK, STRONG].index(row["model"]))
            accepted[at], seen[at] = row["score"] >= accept, True
    assert seen.all(), "every question needs a score per turn and model"
    return [q["turns"][:2] for q in questions], accepted


def conversation(first: str, second: str) -> list[dict[str, str]]:
    """The second turn's request messages (the first answer's text is not in the data set)."""
    return [
        {"role": "user", "content": first},
        {"role": "assistant", "content": "…"},
        {"role": "user", "content": second},
    ]


def texts(turns: list[list[str]], variant: str) -> list[str]:
    """The routed text of each question's second turn."""
    if variant != "concatenated":
        return [second for _, second in turns]
    return [f"{earlier_text(conversation(a, b))}\n\n{b}" for a, b in turns]


def costs_of(queries: list[str]) -> np.ndarray:
    tokens = np.array([len(q) / 4 for q in queries])
    return np.stack([(tokens * PRICES[m][0] + 300 * PRICES[m][1]) / 1e6 for m in (WEAK, STRONG)], axis=1)


def fit(turns: list[list[str]], second: list[str], accepted: np.ndarray, rows: np.ndarray) -> TagRouter:
    records = []
    for i in rows:
        for turn, text in ((0, turns[i][0]), (1, second[i])):
            for m, model in enumerate((WEAK, STRONG)):
                outcome = "win" if accepted[i, turn, m] else "loss"
                records.append(
                    HistoryRecord(query_id=f"q{i}t{turn}", query=text, model=model, outcome=outcome)
                )
    catalog = Catalog.model_validate(
        {
            "models": [
                {"name": m, "input_usd_per_1m": p[0], "output_usd_per_1m": p[1]} for m, p in PRICES.items()
            ]
        }
    )
    return TagRouter.fit(records, catalog)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--accept", type=int, default=8, help="a turn is accepted at this GPT-4 score or more"
    )
    args = parser.parse_args()
    turns, accepted = load(args.data, args.accept)
    n = len(turns)
    second = accepted[:, 1, :]
    variants = ("last", "concatenated", "weighted")
    routed = {v: texts(turns, v) for v in ("last", "concatenated")}
    costs = costs_of(routed["last"])
    singles = [realised(np.full(n, m), second, costs) for m in (0, 1)]
    ref = Reference.from_singles([c for c, _ in singles], [a for _, a in singles])
    pair = (singles[0][1], singles[1][1])
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    start = time.perf_counter()
    for seed in SEEDS:
        folds = fold_ids(n, seed)
        scores = {v: np.zeros((n, 2)) for v in variants}
        for fold in range(N_FOLDS):
            train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
            for variant in ("last", "concatenated"):
                router = fit(turns, routed[variant], accepted, train)
                scores[variant][test] = router.score_batch([routed[variant][i] for i in test])[1]
                if variant == "last":  # the same router, the earlier turn's scores weighing EARLIER_WEIGHT
                    earlier = [earlier_text(conversation(*turns[i])) for i in test]
                    last = [routed[variant][i] for i in test]
                    scores["weighted"][test] = router.score_batch(last, earlier, EARLIER_WEIGHT)[1]
        for variant in variants:
            points = [realised(c, second, costs) for c in pair_choices(scores[variant])]
            m = curve_metrics([c for c, _ in points], [a for _, a in points], ref, pair=pair)
            results[variant].append((m.auc, m.apgr))
    print(
        f"MT-bench second turns: {n} questions, accept = GPT-4 score >= {args.accept}; "
        f"accept rate {WEAK.split('/')[-1]} {pair[0]:.3f}, {STRONG} {pair[1]:.3f}; "
        f"seeds {list(SEEDS)}, {N_FOLDS} folds, {time.perf_counter() - start:.0f} s"
    )
    print("| routed on | hull AUC | APGR | APGR − last's, same seed |\n|---|---:|---:|---:|")
    base = np.array(results["last"])[:, 1]
    for variant, values in results.items():
        auc, apgr = np.array(values).T
        gain = apgr - base
        print(
            f"| {variant} | {auc.mean():.4f} ± {auc.std():.4f} | {apgr.mean():.3f} ± {apgr.std():.3f} "
            f"| {gain.mean():+.3f} ± {gain.std():.3f} |"
        )


if __name__ == "__main__":
    main()
