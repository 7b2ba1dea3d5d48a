"""How far a judge can be trusted: its agreement with labelled pairs, and its position bias.

Each pair is judged in both orders (as in a collection); the combined verdict is compared with the label.
*Agreement* is the share of pairs where they match; *Cohen's kappa* corrects it for the agreement that
the two label distributions give by chance. *Position bias rate*: the share of pairs where the judge
picked the same position in both orders (the first answer both times, or the second both times), so its
choice followed the position rather than the answer; *inconsistency rate*: the share of pairs whose two
orders disagree in any way (position bias included). *No verdict*: orders without a readable verdict
after the retries (combined like a tie).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tagrouter.collect.budget import Budget, BudgetExhausted
from tagrouter.collect.client import ChatClient, ChatError
from tagrouter.collect.judging import Comparison, Judge, judge_messages
from tagrouter.collect.labels import LabelledPair
from tagrouter.collect.run import CHARS_PER_TOKEN, VERDICT_TOKENS, EstimateRow

LABELS = ("A", "B", "tie")
_AS_LABEL = {"win": "A", "loss": "B", "tie": "tie"}


@dataclass
class CheckResult:
    """A judge's agreement with the labels of the pairs it judged."""

    judge: str
    pairs: int
    judged: int = 0
    agreement: float = 0.0
    kappa: float = 0.0
    position_bias_rate: float = 0.0
    inconsistency_rate: float = 0.0
    no_verdicts: int = 0
    #: label -> verdict -> pairs
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    failures: list[str] = field(default_factory=list)
    budget_stop: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cohen_kappa(labels: Sequence[str], verdicts: Sequence[str]) -> float:
    """Cohen's kappa of two labelings of the same items (1: perfect, 0: chance level)."""
    n = len(labels)
    if n == 0:
        return 0.0
    observed = sum(a == b for a, b in zip(labels, verdicts, strict=True)) / n
    left, right = Counter(labels), Counter(verdicts)
    chance = sum(left[k] * right[k] for k in left) / n**2
    return 1.0 if chance == 1 else (observed - chance) / (1 - chance)


def summarize(
    judge: str, pairs: Sequence[LabelledPair], comparisons: Sequence[Comparison | None]
) -> CheckResult:
    """The check's figures from each pair's comparison (None: not judged)."""
    result = CheckResult(judge=judge, pairs=len(pairs))
    labels, verdicts = [], []
    same_position = inconsistent = 0
    for pair, comparison in zip(pairs, comparisons, strict=True):
        if comparison is None:
            continue
        verdict = _AS_LABEL[comparison.outcome]
        labels.append(pair.label)
        verdicts.append(verdict)
        first, second = comparison.first.choice, comparison.second.choice
        result.no_verdicts += [first, second].count(None)
        same_position += first == second and first in ("A", "B")
        # the better answer by each order, in the pair's own terms (the second order shows B first)
        inconsistent += {"A": "A", "B": "B"}.get(first or "", "tie") != {"A": "B", "B": "A"}.get(
            second or "", "tie"
        )
        for verdict_of_order in (comparison.first, comparison.second):
            result.input_tokens += verdict_of_order.input_tokens
            result.output_tokens += verdict_of_order.output_tokens
            result.cost_usd += verdict_of_order.cost
    n = len(labels)
    result.judged = n
    if n:
        result.agreement = sum(a == b for a, b in zip(labels, verdicts, strict=True)) / n
        result.kappa = cohen_kappa(labels, verdicts)
        result.position_bias_rate = same_position / n
        result.inconsistency_rate = inconsistent / n
    counts = Counter(zip(labels, verdicts, strict=True))
    result.confusion = {a: {b: counts[a, b] for b in LABELS} for a in LABELS}
    return result


async def check_judge(
    judge: Judge,
    pairs: Sequence[LabelledPair],
    client: ChatClient,
    budget: Budget,
    progress: Callable[[int, int, float], None] | None = None,
) -> CheckResult:
    """Judge every pair in both orders (within ``budget``) and compare with the labels."""
    done = 0
    failures: list[str] = []
    stops: list[str] = []

    async def one(pair: LabelledPair) -> Comparison | None:
        nonlocal done
        try:
            return await judge.compare(client, pair.query, pair.answer_a, pair.answer_b, budget=budget)
        except BudgetExhausted as exc:
            stops.append(str(exc))
        except ChatError as exc:
            failures.append(f"{pair.id}: {exc}")
        finally:
            done += 1
            if progress:
                progress(done, len(pairs), budget.spent)
        return None

    comparisons = await asyncio.gather(*(one(p) for p in pairs))
    result = summarize(judge.identity, pairs, comparisons)
    result.failures, result.budget_stop = failures, stops[0] if stops else None
    return result


def estimate_check(judge: Judge, pairs: Sequence[LabelledPair]) -> EstimateRow:
    """What checking ``pairs`` costs: expected (prompts of characters / 4 tokens, verdicts of
    :data:`~tagrouter.collect.run.VERDICT_TOKENS`, one attempt per order) and at most (the budget's worst
    case of every attempt)."""
    target, expected, worst = judge.target, 0.0, 0.0
    for pair in pairs:
        messages = judge_messages(pair.query, pair.answer_a, pair.answer_b)
        chars = sum(len(m["content"]) for m in messages)
        expected += 2 * target.cost(chars / CHARS_PER_TOKEN, VERDICT_TOKENS)
        worst += 2 * (1 + judge.malformed_retries) * target.worst_case_cost(messages, judge.max_tokens)
    return EstimateRow(f"judge: {judge.identity}", 2 * len(pairs), expected, worst)
