"""One collection run: answer the sampled queries with every pool model and the reference, judge each
answer against the reference's, and turn the verdicts into history records.

Every call goes through the cache (so a rerun pays only for what is missing) and the budget (so the run
stops before it could pass it). The reference model's own records are ties by definition (no judge call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tagrouter.catalog import Catalog
from tagrouter.collect.answering import AnswerEntry, answer
from tagrouter.collect.budget import Budget, BudgetExhausted
from tagrouter.collect.cache import CollectCache
from tagrouter.collect.client import ChatClient, ChatError, ChatTarget, settle_all
from tagrouter.collect.judging import PROMPT_VERSION, SYSTEM_PROMPT, USER_TEMPLATE, Judge
from tagrouter.collect.sampling import SampledQuery
from tagrouter.errors import DataError
from tagrouter.records import HistoryRecord

#: done, total, dollars spent in this run
Progress = Callable[[int, int, float], None]
#: The router's estimate of characters per token, for the expected cost of a collection.
CHARS_PER_TOKEN = 4.0
#: Tokens of a judge's reply (a short explanation and the verdict) that the expected cost assumes.
VERDICT_TOKENS = 150


@dataclass(frozen=True)
class CollectPlan:
    """What to collect: queries × pool models, each judged against the reference by the judge."""

    queries: list[SampledQuery]
    pool: list[ChatTarget]
    reference: ChatTarget
    judge: Judge
    max_tokens: int = 1024

    def check_endpoints(self) -> None:
        """Raise :class:`DataError` unless every model to call has an endpoint."""
        missing = [t.name for t in [*self.pool, self.reference, self.judge.target] if not t.base_url]
        if missing:
            raise DataError(
                f"no endpoint to call for {', '.join(missing)}: add one to the catalogue", field="endpoint"
            )


def build_plan(
    catalog: Catalog,
    queries: list[SampledQuery],
    *,
    reference: str,
    judge: Judge,
    models: Sequence[str] | None = None,
    max_tokens: int = 1024,
) -> CollectPlan:
    """The plan for ``models`` (default: the whole catalogue); every model named must be in ``catalog``."""
    names = list(models) if models else catalog.names
    for name in [*names, reference]:
        if name not in catalog:
            raise DataError(
                f"model {name!r} is not in the catalogue ({', '.join(catalog.names)})", field="models"
            )
    return CollectPlan(
        queries=queries,
        pool=[ChatTarget.from_card(catalog[name]) for name in names],
        reference=ChatTarget.from_card(catalog[reference]),
        judge=judge,
        max_tokens=max_tokens,
    )


@dataclass
class CollectResult:
    """What a run produced: records of the finished pairs, dollars spent now, and what is left."""

    records: list[HistoryRecord] = field(default_factory=list)
    spent: float = 0.0
    budget_stop: str | None = None  # why the budget stopped the run
    failures: list[str] = field(default_factory=list)
    unfinished: int = 0  # pairs without a record (budget stop or failure)
    no_verdicts: int = 0  # judge orders without a readable verdict (counted as ties)

    @property
    def complete(self) -> bool:
        return self.unfinished == 0


async def run_collection(
    plan: CollectPlan,
    client: ChatClient,
    cache: CollectCache,
    budget: Budget,
    progress: Progress | None = None,
) -> CollectResult:
    """Collect every (query, model) pair of ``plan``; records come in query order, then pool order."""
    result = CollectResult()
    references: dict[str, asyncio.Future[AnswerEntry]] = {}  # one reference answer per query
    total = len(plan.queries) * len(plan.pool)
    done = 0

    def reference_answer(query: SampledQuery) -> asyncio.Future[AnswerEntry]:
        if query.query_id not in references:
            references[query.query_id] = ask(plan.reference, query)
        return references[query.query_id]

    def ask(target: ChatTarget, query: SampledQuery) -> asyncio.Future[AnswerEntry]:
        return asyncio.ensure_future(
            answer(
                client,
                target,
                query.query_id,
                query.query,
                max_tokens=plan.max_tokens,
                budget=budget,
                cache=cache.answers,
            )
        )

    async def pair(query: SampledQuery, target: ChatTarget) -> HistoryRecord | None:
        nonlocal done
        try:
            if target.name == plan.reference.name:
                own = await reference_answer(query)
                return _record(query, own, "tie", plan.reference.name, None)
            mine, theirs = await settle_all(ask(target, query), reference_answer(query))
            comparison = await plan.judge.compare(
                client, query.query, mine.text, theirs.text, budget=budget, cache=cache.verdicts
            )
            result.no_verdicts += [comparison.first.choice, comparison.second.choice].count(None)
            return _record(query, mine, comparison.outcome, plan.reference.name, plan.judge)
        except BudgetExhausted as exc:
            result.budget_stop = result.budget_stop or str(exc)
        except ChatError as exc:
            result.failures.append(f"{target.name} on {query.query_id}: {exc}")
        finally:
            done += 1
            if progress:
                progress(done, total, budget.spent)
        return None

    records = await asyncio.gather(*(pair(q, t) for q in plan.queries for t in plan.pool))
    # a reference answer whose pairs all failed is still paid for: let it finish into the cache
    await asyncio.gather(*references.values(), return_exceptions=True)
    result.records = [r for r in records if r is not None]
    result.unfinished = total - len(result.records)
    result.spent = budget.spent
    return result


def _record(
    query: SampledQuery, entry: AnswerEntry, outcome: str, reference: str, judge: Judge | None
) -> HistoryRecord:
    return HistoryRecord(
        query_id=query.query_id,
        query=query.query,
        model=entry.model,
        outcome=outcome,
        reference=reference,
        input_tokens=entry.input_tokens,
        output_tokens=entry.output_tokens,
        cost=entry.cost,
        judge=judge.identity if judge else None,
        judge_prompt=PROMPT_VERSION if judge else None,
    )


@dataclass(frozen=True)
class EstimateRow:
    """The calls and dollars one model (or the judge) adds to a collection."""

    what: str
    calls: int
    expected_usd: float
    at_most_usd: float


def estimate(
    plan: CollectPlan, *, answer_tokens: int = 300, verdict_tokens: int = VERDICT_TOKENS
) -> list[EstimateRow]:
    """The cost of a whole collection from the catalogue's prices, nothing cached.

    *Expected*: queries of characters / 4 tokens, answers of ``answer_tokens``, verdicts of
    ``verdict_tokens``, one judge attempt per order. *At most*: the budget's worst case of every call
    (prompt bytes as tokens, every answer and verdict of ``max_tokens``, every malformed retry).
    """
    judged = [t for t in plan.pool if t.name != plan.reference.name]
    answering = [*judged, plan.reference]
    template = len(SYSTEM_PROMPT) + len(USER_TEMPLATE)
    judge, n = plan.judge, len(plan.queries)
    rows = []
    for target in answering:
        expected = sum(target.cost(len(q.query) / CHARS_PER_TOKEN, answer_tokens) for q in plan.queries)
        worst = sum(
            target.worst_case_cost([{"role": "user", "content": q.query}], plan.max_tokens)
            for q in plan.queries
        )
        label = f"{target.name} (reference)" if target is plan.reference else target.name
        rows.append(EstimateRow(f"answers: {label}", n, expected, worst))
    judge_in = sum((template + len(q.query)) / CHARS_PER_TOKEN + 2 * answer_tokens for q in plan.queries)
    judge_worst_in = sum(
        template + len(q.query.encode("utf-8")) + 2 * plan.max_tokens + 32 for q in plan.queries
    )
    calls = 2 * len(judged)
    attempts = 1 + judge.malformed_retries
    rows.append(
        EstimateRow(
            f"judge: {judge.identity}",
            calls * n,
            calls * judge.target.cost(judge_in, verdict_tokens * n),
            calls * attempts * judge.target.cost(judge_worst_in, judge.max_tokens * n),
        )
    )
    return rows


def total_row(rows: Sequence[EstimateRow]) -> EstimateRow:
    """The sum of estimate rows."""
    return EstimateRow(
        "total",
        sum(r.calls for r in rows),
        sum(r.expected_usd for r in rows),
        sum(r.at_most_usd for r in rows),
    )
