"""Shadow judging: for a share of live requests, after the client has its answer, ask the reference model
too, have a judge compare the two answers (both orders, as ``tagrouter collect`` does) and feed the
verdict back as feedback, so that the router keeps learning from live traffic.

Off unless the config has a ``shadow`` section. A sampled request starts a background job once its
response has been sent (a Starlette background task), so the client never waits for it. A job runs only
when its worst-case cost fits in what is left of the day's budget (UTC days) and fewer than
``concurrency`` jobs are running; otherwise the request is skipped (never queued). Only non-streamed
answers to routable text are judged; the reference is asked the routing text alone (the history the
router learns from is of single queries). Verdicts go through the gateway's feedback writer with feedback
id ``shadow-<request id>``, and count in Prometheus: ``tagrouter_shadow_judged_total{outcome}``,
``tagrouter_shadow_skipped_total{reason}``, ``tagrouter_shadow_spend_usd_total`` and
``tagrouter_shadow_agreement_total{result}`` (agree / disagree with explicit feedback on the same request).

Upstreams' token usage is not trusted for the budget: each call is charged the larger of the cost it
reports (when that is a finite number ≥ 0) and the cost estimated from the texts' token counts, and never
more than the job's reserved worst case; so a judge that reports negative, absurd or no usage still uses
the budget up. A job that fails in any way is logged and counted (``skipped{reason="failed"}``), never left
as an unretrieved task exception; one that fails in a way that leaves its cost unknown is charged its
reserved worst case.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from tagrouter.catalog import Catalog, Endpoint
from tagrouter.collect.answering import answer
from tagrouter.collect.budget import Budget, BudgetExhausted
from tagrouter.collect.client import ChatClient, ChatError, ChatTarget
from tagrouter.collect.judging import Judge, judge_messages, parse_judge
from tagrouter.errors import DataError, TagRouterError
from tagrouter.records import query_id
from tagrouter.server.feedback import Feedback, FeedbackWriter
from tagrouter.server.metrics import GatewayMetrics
from tagrouter.tokens import count_tokens

log = logging.getLogger("tagrouter.server")

#: Request ids whose shadow verdict (or explicit feedback) is kept to measure agreement.
REMEMBER = 10_000


class ShadowConfig(BaseModel):
    """The ``shadow`` section of a gateway config."""

    model_config = ConfigDict(extra="forbid")

    share: float = Field(default=0.05, ge=0, le=1, description="share of answered requests judged")
    reference: str = Field(min_length=1, description="catalogue model whose answer is the reference")
    judge: str = Field(min_length=1, description="judge spec: MODEL@URL[?options] or a catalogue model")
    daily_budget_usd: float = Field(default=5.0, gt=0, description="dollars per UTC day, all shadow calls")
    concurrency: int = Field(default=2, ge=1, description="shadow jobs running at once")
    max_tokens: int = Field(default=1024, ge=1, description="longest reference answer, in tokens")


Submit = Callable[[Feedback], Awaitable[Any]]


class ShadowJudge:
    """Runs the shadow jobs of one gateway (see the module docstring)."""

    def __init__(
        self,
        config: ShadowConfig,
        catalog: Catalog,
        endpoints: dict[str, Endpoint],
        submit: Submit,
        registry: CollectorRegistry,
    ) -> None:
        self.judge, self.reference = shadow_targets(config, catalog, endpoints)
        self.config = config
        self._submit = submit
        self._client: ChatClient | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._day = datetime.now(UTC).date()
        self._budget = Budget(config.daily_budget_usd)
        self._verdicts: OrderedDict[str, str] = OrderedDict()
        self._explicit: OrderedDict[str, str] = OrderedDict()
        self.judged = Counter(
            "tagrouter_shadow_judged", "Shadow verdicts fed back, by outcome", ["outcome"], registry=registry
        )
        self.skipped = Counter(
            "tagrouter_shadow_skipped",
            "Sampled requests not judged, by reason (budget, busy, reference, failed)",
            ["reason"],
            registry=registry,
        )
        self.spend = Counter(
            "tagrouter_shadow_spend_usd", "Dollars spent on shadow judging", registry=registry
        )
        self.agreement = Counter(
            "tagrouter_shadow_agreement",
            "Requests with both a shadow verdict and explicit feedback, by whether they agree",
            ["result"],
            registry=registry,
        )

    def follow(self, catalog: Catalog, endpoints: dict[str, Endpoint]) -> None:
        """Judge with the cards and endpoints of ``catalog`` from now on (a reload's; checked by
        :func:`shadow_targets` when it was loaded); jobs already running finish with the old ones."""
        self.judge, self.reference = shadow_targets(self.config, catalog, endpoints)

    # ---- hooks of the gateway -----------------------------------------------------------------------------
    def after_response(
        self, request_id: str, query: str | None, model: str, completion: Any
    ) -> BackgroundTask | None:
        """The background task that may judge this answered request once its response is sent (None when
        the request is not sampled, or has no routing text)."""
        if query is None or random.random() >= self.config.share:
            return None
        return BackgroundTask(self.offer, request_id, query, model, completion)

    async def offer(self, request_id: str, query: str, model: str, completion: Any) -> None:
        """Start a shadow job for an answered request unless the budget or the concurrency says no."""
        text = _answer_text(completion)
        if text is None:
            return
        if model == self.reference.name:
            self.skipped.labels("reference").inc()
            return
        if len(self._jobs) >= self.config.concurrency:
            self.skipped.labels("busy").inc()
            return
        worst = self.worst_case_cost(query, text)
        try:
            self._today().reserve(worst)
        except BudgetExhausted:
            self.skipped.labels("budget").inc()
            return
        job = asyncio.get_running_loop().create_task(self._judge(request_id, query, model, text, worst))
        self._jobs.add(job)
        job.add_done_callback(self._finished)

    def _finished(self, job: asyncio.Task[None]) -> None:
        """Forget a finished job, retrieving its exception (``_judge`` catches its own; this is the net)."""
        self._jobs.discard(job)
        if not job.cancelled() and (exc := job.exception()) is not None:
            log.error("shadow job failed unexpectedly: %s: %s", type(exc).__name__, exc)
            self.skipped.labels("failed").inc()

    def explicit(self, request_id: str, outcome: str) -> None:
        """Explicit feedback on ``request_id``: counted as agreeing or not with its shadow verdict."""
        _remember(self._explicit, request_id, outcome)
        self._compare(request_id)

    async def aclose(self) -> None:
        """Cancel the jobs in flight (shadow judging is best effort) and close the client."""
        for job in list(self._jobs):
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    # ---- jobs ---------------------------------------------------------------------------------------------
    def worst_case_cost(self, query: str, answer_text: str) -> float:
        """The most one job can cost: the reference's answer at ``max_tokens`` and every judge attempt of
        both orders with that answer."""
        reference = self.reference.worst_case_cost(
            [{"role": "user", "content": query}], self.config.max_tokens
        )
        longest = "x" * (4 * self.config.max_tokens)  # no reference answer has more bytes than this bound
        judge = self.judge.target.worst_case_cost(
            judge_messages(query, answer_text, longest), self.judge.max_tokens
        )
        return reference + 2 * (1 + self.judge.malformed_retries) * judge

    def _today(self) -> Budget:
        today = datetime.now(UTC).date()
        if today != self._day:
            self._day, self._budget = today, Budget(self.config.daily_budget_usd)
        return self._budget

    async def _judge(self, request_id: str, query: str, model: str, text: str, reserved: float) -> None:
        budget, spent = self._budget, 0.0
        try:
            client = self._client = self._client or ChatClient(concurrency=self.config.concurrency)
            theirs = await answer(
                client, self.reference, query_id(query), query, max_tokens=self.config.max_tokens
            )
            estimate = self.reference.cost(count_tokens(query), count_tokens(theirs.text))
            spent += charged(theirs.cost, estimate)
            comparison = await self.judge.compare(client, query, text, theirs.text)
            prompt = sum(count_tokens(m["content"]) for m in judge_messages(query, text, theirs.text))
            spent += charged(comparison.cost, 2 * self.judge.target.cost(prompt, 1))  # both orders
            await self._submit(
                Feedback(
                    feedback_id=f"shadow-{request_id}", outcome=comparison.outcome, model=model, query=query
                )
            )
        except (ChatError, DataError, RuntimeError) as exc:  # RuntimeError: the writer is closing
            log.warning("shadow judging of %s failed: %s", request_id, exc)
            self.skipped.labels("failed").inc()
            return
        except Exception as exc:  # e.g. usage no cost can be computed from: charge the worst case
            log.warning("shadow judging of %s failed: %s: %s", request_id, type(exc).__name__, exc)
            self.skipped.labels("failed").inc()
            spent = reserved
            return
        finally:
            spent = min(spent, reserved)  # the reservation is an upper bound of what the calls can cost
            budget.settle(reserved, spent)
            self.spend.inc(spent)
        self.judged.labels(comparison.outcome).inc()
        _remember(self._verdicts, request_id, comparison.outcome)
        self._compare(request_id)

    def _compare(self, request_id: str) -> None:
        if request_id in self._verdicts and request_id in self._explicit:
            same = self._verdicts.pop(request_id) == self._explicit.pop(request_id)
            self.agreement.labels("agree" if same else "disagree").inc()


def charged(reported: Any, estimated: float) -> float:
    """What a call is charged: the larger of its reported cost (if a finite number ≥ 0) and ``estimated``."""
    if isinstance(reported, bool) or not isinstance(reported, int | float):
        return estimated
    try:
        value = float(reported)
    except OverflowError:  # an int beyond any float: not a cost
        return estimated
    return max(value, estimated) if math.isfinite(value) and value >= 0 else estimated


def shadow_targets(
    config: ShadowConfig, catalog: Catalog, endpoints: dict[str, Endpoint]
) -> tuple[Judge, ChatTarget]:
    """The judge and the reference model's target of ``config`` over ``catalog`` and its ``endpoints``.

    Raises :class:`DataError` when the reference model has no endpoint or the judge spec does not fit."""
    if config.reference not in endpoints:
        raise DataError(
            f"reference model {config.reference!r} has no endpoint in the catalogue or the config",
            field="shadow.reference",
        )
    try:
        judge = parse_judge(config.judge, catalog)
    except TagRouterError as exc:
        raise DataError(str(exc), field="shadow.judge") from None
    return judge, ChatTarget.from_card(catalog[config.reference], endpoints[config.reference])


def shadow_judging(
    config: ShadowConfig | None,
    catalog: Catalog,
    endpoints: dict[str, Endpoint],
    writer: FeedbackWriter,
    metrics: GatewayMetrics,
) -> ShadowJudge | None:
    """The gateway's shadow judge, or None when its config has no ``shadow`` section."""
    if config is None:
        return None
    return ShadowJudge(config, catalog, endpoints, writer.submit, metrics.registry)


def _answer_text(completion: Any) -> str | None:
    """The text of a chat completion's first choice, or None."""
    try:
        text = completion["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) and text.strip() else None


def _remember(store: OrderedDict[str, str], key: str, value: str) -> None:
    store[key] = value
    while len(store) > REMEMBER:
        store.popitem(last=False)
