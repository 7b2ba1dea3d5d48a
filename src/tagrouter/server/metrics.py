"""Prometheus metrics of one gateway app, in the app's own registry (two apps in a process never mix)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Decision latency buckets, in seconds: routing takes about a millisecond with the default tagger.
DECISION_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Upstream latency buckets, in seconds: from a few milliseconds (a local server) to minutes (long answers).
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class GatewayMetrics:
    """Requests and tokens per model, decision latency, upstream errors, fallbacks, feedback and the
    estimated cost (and cost saved versus each profile's reference model)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tagrouter_requests", "Chat completions served, by profile, answering model and outcome",
            ["profile", "model", "status"], registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "tagrouter_tokens", "Tokens reported by upstreams, by model and kind (prompt, completion)",
            ["model", "kind"], registry=r,
        )  # fmt: skip
        self.decision_seconds = Histogram(
            "tagrouter_decision_seconds", "Time to route one request (tagging, scoring, deciding)",
            ["endpoint"], buckets=DECISION_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_errors = Counter(
            "tagrouter_upstream_errors", "Failed upstream calls, by model and kind (timeout, connect, status, config, invalid_body, stream)",
            ["model", "kind"], registry=r,
        )  # fmt: skip
        self.fallbacks = Counter(
            "tagrouter_fallbacks", "Requests passed on to the next model in the ranking, by the model that failed",
            ["model"], registry=r,
        )  # fmt: skip
        self.cost = Counter(
            "tagrouter_estimated_cost_usd",
            "Estimated dollars spent on answers, by profile",
            ["profile"],
            registry=r,
        )
        self.reference_cost = Counter(
            "tagrouter_reference_cost_usd",
            "Estimated dollars the same answers would have cost on the profile's reference model",
            ["profile", "reference_model"], registry=r,
        )  # fmt: skip
        self.cost_saved = Gauge(
            "tagrouter_estimated_cost_saved_usd",
            "Estimated dollars saved versus the profile's reference model (negative if routing cost more)",
            ["profile", "reference_model"], registry=r,
        )  # fmt: skip
        self.affinity = Counter(
            "tagrouter_affinity", "Routed chat requests by session affinity: pinned (kept the session's "
            "model), routed (no live pin), escalated (re-routed above a model that lost or failed)",
            ["profile", "affinity"], registry=r,
        )  # fmt: skip
        self.sessions = Gauge("tagrouter_sessions", "Sessions with a pin or a floor in memory", registry=r)
        self.bad_usage = Counter(
            "tagrouter_bad_usage", "Upstream answers whose token usage was not valid counts (not accounted)",
            ["model"], registry=r,
        )  # fmt: skip
        self.explored = Counter(
            "tagrouter_explored", "Routed decisions that explored (chose another model than the greedy one), by profile",
            ["profile"], registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            "tagrouter_rejected", "Requests turned away with a 429 by admission control, by limit (chat, feedback, key)",
            ["kind"], registry=r,
        )  # fmt: skip
        self.feedback = Counter(
            "tagrouter_feedback",
            "Feedback calls, by result (recorded, duplicate; refused: forbidden (another key's request), conflict "
            "(a second verdict), limited (the key's bound), rejected (other bad input))",
            ["status"],
            registry=r,
        )
        self.feedback_outcomes = Counter(
            "tagrouter_feedback_outcomes", "Client feedback recorded, by outcome (win, tie, loss)",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.upstream_seconds = Histogram(
            "tagrouter_upstream_seconds", "Time from sending a chat request upstream to its answer (a stream: "
            "to its first bytes), by the model that answered, fallbacks included",
            ["model"], buckets=UPSTREAM_BUCKETS, registry=r,
        )  # fmt: skip
        self.overhead_seconds = Histogram(
            "tagrouter_overhead_seconds", "The gateway's own time per answered chat request (reading, "
            "routing, relaying: the whole handler minus the upstream's time)",
            buckets=DECISION_BUCKETS, registry=r,
        )  # fmt: skip
        self.router_version = Gauge(
            "tagrouter_router_version", "1 for the router version being served (label: its version folder)",
            ["version"], registry=r,
        )  # fmt: skip
        self.router_loaded = Gauge(
            "tagrouter_router_loaded_timestamp_seconds", "When the served router version was loaded (Unix time)",
            registry=r,
        )  # fmt: skip
        self.last_learned = Gauge(
            "tagrouter_last_learned_timestamp_seconds",
            "When the router last learned feedback (Unix time; 0: not since start)", registry=r,
        )  # fmt: skip
        self.reloads = Counter(
            "tagrouter_reloads", "Router reloads, by result (loaded, unchanged, failed)", ["result"], registry=r
        )  # fmt: skip

    def spent(self, profile: str, reference: str, cost: float, reference_cost: float) -> None:
        """Count the estimated cost of one answer and what it would have cost on the reference model."""
        self.cost.labels(profile).inc(cost)
        self.reference_cost.labels(profile, reference).inc(reference_cost)
        self.cost_saved.labels(profile, reference).inc(reference_cost - cost)

    def serving(self, version: str) -> None:
        """Mark ``version`` as the router version being served (and when it was loaded)."""
        self.router_version.clear()
        self.router_version.labels(version).set(1)
        self.router_loaded.set_to_current_time()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
