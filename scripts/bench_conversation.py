"""Second-turn routing on MT-bench: the conversation vs the last message only.

Data: RouteLLM's MT-bench files (80 two-turn questions; GPT-4 scores 1-10 per model and turn for
gpt-4-1106-preview and Mixtral-8x7B-Instruct). A turn is accepted when its score is at least ``--accept``.
Protocol (the project's): 5-fold cross-validation over questions × seeds 0-4 (``fold_ids``), TagRouter
fitted on both turns of the training questions, scored on the second turns of the test fold; the 41
operating points of a pair (``pair_choices``) and the hull AUC / APGR of ``curve_metrics``.

Variants (rows):
- the fixed modes of :mod:`tagrouter.conversation`, applied to a router fitted with no earlier turns in its
  history (as every router was before the fit chose a mode; what a router without a choice gets): ``last`` (the second
  user turn alone), ``weighted w`` ((1 − w) × score(second turn) + w × score(earlier turns), w in the
  fit's grid and 0.3, the gateway's earlier default), ``concatenated`` (the earlier turn and the
  second joined, tagged as one text, on the same table);
- ``concatenated, trained on it``: a router fitted on the training second turns' joined text (the
  earlier ``concatenated`` row);
- ``chosen by the fit``: a router fitted on records whose second turns carry the first as ``earlier``, so
  that the self-tuning fit chooses the mode by inner cross-validation; scored with its choice.
The best fixed mode of the fit's grid is the fallback of a router without a choice
(``conversation.FALLBACK``).

Costs: per query, (characters / 4) input tokens and 300 output tokens at $0.60 / $0.60 (Mixtral) and
$10 / $30 (GPT-4 Turbo) per 1M tokens. Usage: ``python scripts/bench_conversation.py [--data DIR]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from tagrouter.catalog import Catalog
from tagrouter.chat import ChatMessage, earlier_text
from tagrouter.conversation import CANDIDATES, Conversation, joined
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


def conversation(first: str, second: str) -> list[ChatMessage]:
    """The second turn's request messages (the first answer's text is not in the data set)."""
    return [
        ChatMessage(role="user", content=first),
        ChatMessage(role="assistant", content="…"),
        ChatMessage(role="user", content=second),
    ]


def earlier_of(turns: list[list[str]]) -> list[str]:
    """The earlier text of each question's second turn, as the gateway reads it."""
    return [earlier_text(conversation(a, b)) for a, b in turns]


def costs_of(queries: list[str]) -> np.ndarray:
    tokens = np.array([len(q) / 4 for q in queries])
    return np.stack([(tokens * PRICES[m][0] + 300 * PRICES[m][1]) / 1e6 for m in (WEAK, STRONG)], axis=1)


def fit(
    turns: list[list[str]],
    second: list[str],
    accepted: np.ndarray,
    rows: np.ndarray,
    earlier: list[str] | None = None,
) -> TagRouter:
    """A router fitted on both turns of the questions ``rows`` (second turns' text ``second``, with
    ``earlier`` turns when given)."""
    records = []
    for i in rows:
        for turn, text in ((0, turns[i][0]), (1, second[i])):
            before = earlier[i] if earlier is not None and turn == 1 else None
            for m, model in enumerate((WEAK, STRONG)):
                outcome = "win" if accepted[i, turn, m] else "loss"
                records.append(
                    HistoryRecord(
                        query_id=f"q{i}t{turn}", query=text, model=model, outcome=outcome, earlier=before
                    )
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
    last = [b for _, b in turns]
    earlier = earlier_of(turns)
    together = [joined(e, b) for e, b in zip(earlier, last, strict=True)]
    fixed = {mode.describe(): mode for mode in (*CANDIDATES, Conversation.weighted(0.3))}
    variants = [*fixed, "concatenated, trained on the joined text", "chosen by the fit"]
    costs = costs_of(last)
    singles = [realised(np.full(n, m), second, costs) for m in (0, 1)]
    ref = Reference.from_singles([c for c, _ in singles], [a for _, a in singles])
    pair = (singles[0][1], singles[1][1])
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    choices: Counter[str] = Counter()
    start = time.perf_counter()
    for seed in SEEDS:
        folds = fold_ids(n, seed)
        scores = {v: np.zeros((n, 2)) for v in variants}
        for fold in range(N_FOLDS):
            train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
            tested, before = [last[i] for i in test], [earlier[i] for i in test]
            plain = fit(turns, last, accepted, train)
            for name, mode in fixed.items():
                scores[name][test] = plain.score_batch(tested, before, mode)[1]
            trained = fit(turns, together, accepted, train)
            joined_scores = trained.score_batch([together[i] for i in test])[1]
            scores["concatenated, trained on the joined text"][test] = joined_scores
            chooser = fit(turns, last, accepted, train, earlier)
            choices[chooser.model.conversation_rule.describe()] += 1
            scores["chosen by the fit"][test] = chooser.score_batch(tested, before)[1]
        for variant in variants:
            points = [realised(c, second, costs) for c in pair_choices(scores[variant])]
            m = curve_metrics([c for c, _ in points], [a for _, a in points], ref, pair=pair)
            results[variant].append((m.auc, m.apgr))
    print(
        f"MT-bench second turns: {n} questions, accept = GPT-4 score >= {args.accept}; "
        f"accept rate {WEAK.split('/')[-1]} {pair[0]:.3f}, {STRONG} {pair[1]:.3f}; "
        f"seeds {list(SEEDS)}, {N_FOLDS} folds, {time.perf_counter() - start:.0f} s"
    )
    print("| second turn routed on | hull AUC | APGR | APGR − last's, same seed |\n|---|---:|---:|---:|")
    base = np.array(results[Conversation("last").describe()])[:, 1]
    for variant, values in results.items():
        auc, apgr = np.array(values).T
        gain = apgr - base
        print(
            f"| {variant} | {auc.mean():.4f} ± {auc.std():.4f} | {apgr.mean():.3f} ± {apgr.std():.3f} "
            f"| {gain.mean():+.3f} ± {gain.std():.3f} |"
        )
    grid = [mode.describe() for mode in CANDIDATES]
    best = max(grid, key=lambda v: np.mean(np.array(results[v])[:, 1]))
    print(f"best fixed mode of the fit's grid (the fallback of a router without a choice): {best}")
    print("the fit's choices over the folds: " + "; ".join(f"{c}: {k}" for c, k in choices.most_common()))


if __name__ == "__main__":
    main()
