"""The operator's dashboard: ``GET /dashboard``, one server-rendered HTML page (no script, no CDN).

Every figure comes from the gateway's Prometheus registry, the counters ``/metrics`` exposes, read at the
moment the page is drawn: traffic per model (and its share over time, from snapshots of the same counter
every ``interval_s``), spend against the profiles' reference model (by default the dearest model: what
sending everything to it would have cost), accept rates from client feedback and shadow verdicts,
latency percentiles estimated from the histograms' buckets as Prometheus' ``histogram_quantile`` does,
fallbacks and errors, and the router version. Only the last decisions (tags, reason, cost) are kept here,
in a bounded list. The style sheet ships in the package (``server/assets/dashboard.css``).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from prometheus_client import CollectorRegistry

#: The percentiles shown for the latency histograms.
PERCENTILES = (0.5, 0.9, 0.99)
#: Decisions listed on the page (the newest first) and the tags shown of each.
SHOWN_DECISIONS, SHOWN_TAGS = 15, 6
#: Colours of the models in the traffic chart, in catalogue order (repeated past the last).
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d")


def stylesheet() -> bytes:
    """The dashboard's CSS, shipped as package data."""
    return resources.files("tagrouter.server").joinpath("assets/dashboard.css").read_bytes()


Samples = dict[str, list[tuple[dict[str, str], float]]]


def read_samples(registry: CollectorRegistry) -> Samples:
    """Every sample of ``registry`` by name (``tagrouter_requests_total``, ``…_bucket``): what /metrics shows."""
    samples: Samples = defaultdict(list)
    for family in registry.collect():
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), float(sample.value)))
    return samples


def total(samples: Samples, name: str, **match: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``match``."""
    return sum(v for labels, v in samples.get(name, []) if all(labels.get(k) == x for k, x in match.items()))


def by_label(samples: Samples, name: str, label: str, **match: str) -> dict[str, float]:
    """The samples called ``name`` (labels including ``match``), summed per value of ``label``."""
    sums: dict[str, float] = defaultdict(float)
    for labels, value in samples.get(name, []):
        if all(labels.get(k) == x for k, x in match.items()):
            sums[labels[label]] += value
    return dict(sums)


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of a histogram from its cumulative bucket counts (upper bound -> count), by
    linear interpolation inside the bucket, as Prometheus' ``histogram_quantile``; None without data."""
    bounds = sorted(buckets)
    count = buckets[bounds[-1]] if bounds else 0.0
    if count <= 0:
        return None
    rank, lower, below = q * count, 0.0, 0.0
    for upper in bounds:
        if buckets[upper] >= rank:
            if math.isinf(upper):  # the top bucket has no upper bound: its lower bound is the answer
                return lower
            inside = buckets[upper] - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = upper, buckets[upper]
    return lower


def histogram(samples: Samples, name: str) -> dict[float, float]:
    """The cumulative bucket counts of histogram ``name``, summed over its other labels."""
    buckets: dict[float, float] = defaultdict(float)
    for labels, value in samples.get(name + "_bucket", []):
        buckets[float(labels["le"])] += value
    return dict(buckets)


@dataclass(frozen=True)
class Recent:
    """One routed chat request as the dashboard lists it."""

    at: float
    profile: str
    model: str
    tags: tuple[str, ...]
    reason: str
    expected_cost_usd: float


def figures(samples: Samples, models: Iterable[str]) -> dict[str, Any]:
    """The dashboard's numbers, from the registry's samples (names as in /metrics)."""
    traffic = {m: total(samples, "tagrouter_requests_total", model=m, status="ok") for m in models}
    spent = total(samples, "tagrouter_estimated_cost_usd_total")
    reference = total(samples, "tagrouter_reference_cost_usd_total")
    feedback = by_label(samples, "tagrouter_feedback_outcomes_total", "outcome")
    shadow = by_label(samples, "tagrouter_shadow_judged_total", "outcome")
    version = [labels["version"] for labels, v in samples.get("tagrouter_router_version", []) if v == 1]
    return {
        "requests": sum(traffic.values()),
        "traffic": traffic,
        "spent_usd": spent,
        "reference_usd": reference,
        "reference_models": sorted(
            {labels["reference_model"] for labels, _ in samples.get("tagrouter_reference_cost_usd_total", [])}
        ),
        "saved_usd": reference - spent,
        "saved_share": (reference - spent) / reference if reference > 0 else None,
        "feedback": _verdicts(feedback),
        "shadow": _verdicts(shadow),
        "overhead_s": {q: quantile(q, histogram(samples, "tagrouter_overhead_seconds")) for q in PERCENTILES},
        "upstream_s": {q: quantile(q, histogram(samples, "tagrouter_upstream_seconds")) for q in PERCENTILES},
        "fallbacks": total(samples, "tagrouter_fallbacks_total"),
        "errors": by_label(samples, "tagrouter_upstream_errors_total", "kind"),
        "failed": total(samples, "tagrouter_requests_total", status="failed"),
        "client_errors": total(samples, "tagrouter_requests_total", status="client_error"),
        "version": version[0] if version else "unknown",
        "loaded_at": total(samples, "tagrouter_router_loaded_timestamp_seconds") or None,
        "learned_at": total(samples, "tagrouter_last_learned_timestamp_seconds") or None,
    }


def _verdicts(counts: Mapping[str, float]) -> dict[str, Any]:
    n = sum(counts.values())
    accepted = counts.get("win", 0.0) + counts.get("tie", 0.0)
    return {"count": n, "accepted": accepted, "accept_rate": accepted / n if n else None, "by": dict(counts)}


class Dashboard:
    """The gateway's dashboard: snapshots of the traffic counter over time, the last decisions, and the
    page drawn from the registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        models: list[str],
        *,
        interval_s: float = 10.0,
        points: int = 360,
        recent: int = SHOWN_DECISIONS,
    ) -> None:
        self.registry, self.models, self.interval_s = registry, models, interval_s
        self.timeline: deque[tuple[float, dict[str, float]]] = deque(maxlen=points)
        self.recent: deque[Recent] = deque(maxlen=recent)
        self._task: asyncio.Task[None] | None = None

    def remember(self, item: Recent) -> None:
        """Keep one routed request for the 'last decisions' table (the oldest drops out)."""
        self.recent.append(item)

    def snapshot(self) -> None:
        """Add the traffic counter's current values to the timeline."""
        traffic = figures(read_samples(self.registry), self.models)["traffic"]
        self.timeline.append((time.time(), traffic))

    def start(self) -> None:
        """Snapshot the traffic every ``interval_s`` (call from the running event loop)."""
        self.snapshot()

        async def run() -> None:
            while True:
                await asyncio.sleep(self.interval_s)
                self.snapshot()

        self._task = asyncio.get_running_loop().create_task(run(), name="tagrouter-dashboard")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def page(self) -> str:
        """The dashboard as one HTML page, with the registry's values of now."""
        numbers = figures(read_samples(self.registry), self.models)
        timeline = [*self.timeline, (time.time(), numbers["traffic"])]
        return render(numbers, timeline, list(self.recent)[::-1][:SHOWN_DECISIONS], self.models)


# ---- drawing ----------------------------------------------------------------------------------------------
def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _figure(name: str, value: float | None, shown: str) -> str:
    """A number the page shows, with its exact value in ``data-value`` (what the browser test reads)."""
    raw = "" if value is None else repr(float(value))
    return f'<span class="figure" data-figure="{_e(name)}" data-value="{raw}">{_e(shown)}</span>'


def _ms(seconds: float | None) -> str:
    return "no data" if seconds is None else f"{seconds * 1000:.1f} ms"


def _pct(share: float | None) -> str:
    return "no data" if share is None else f"{share * 100:.1f}%"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "not since start"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _colour(models: list[str], model: str) -> str:
    return PALETTE[models.index(model) % len(PALETTE)] if model in models else "#999999"


def traffic_chart(timeline: list[tuple[float, dict[str, float]]], models: list[str]) -> str:
    """Inline SVG: one stacked bar per snapshot interval, each model's share of the requests answered in it."""
    steps = []
    for (_, before), (at, after) in zip(timeline, timeline[1:], strict=False):
        delta = {m: after.get(m, 0.0) - before.get(m, 0.0) for m in models}
        if sum(delta.values()) > 0:
            steps.append((at, delta))
    if not steps:
        return '<p class="empty">No traffic answered yet.</p>'
    width, height, gap = 720, 160, 2
    bar = max(2.0, (width - gap * len(steps)) / len(steps))
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
        'aria-label="share of requests per model over time">'
    ]
    for i, (at, delta) in enumerate(steps):
        x, y, n = i * (bar + gap), float(height), sum(delta.values())
        for model in models:
            h = height * delta[model] / n
            if h > 0:
                y -= h
                title = f"{_when(at)}: {model} {delta[model]:g} of {n:g} ({delta[model] / n:.0%})"
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.2f}" width="{bar:.1f}" height="{h:.2f}" '
                    f'fill="{_colour(models, model)}"><title>{_e(title)}</title></rect>'
                )
    parts.append("</svg>")
    start, end = timeline[0][0], steps[-1][0]
    parts.append(
        f'<p class="axis">One bar per interval with traffic, from {_e(_when(start))} to {_e(_when(end))} '
        "(hover a bar for its counts).</p>"
    )
    return "".join(parts)


def render(
    numbers: dict[str, Any],
    timeline: list[tuple[float, dict[str, float]]],
    recent: list[Recent],
    models: list[str],
) -> str:
    """The page: summary cards, traffic, quality, latency, faults and the last decisions."""
    n = numbers["requests"]
    traffic = numbers["traffic"]
    legend = "".join(
        f'<li><span class="swatch" style="background:{_colour(models, m)}"></span>{_e(m)}: '
        f"{_figure('traffic.' + m, traffic[m], format(traffic[m], 'g'))} "
        f"({_pct(traffic[m] / n if n else None)})</li>"
        for m in models
    )
    reference = ", ".join(numbers["reference_models"]) or "the dearest model"
    quality = "".join(
        f"<tr><th>{label}</th><td>{_figure(key + '.accept_rate', v['accept_rate'], _pct(v['accept_rate']))}"
        f"</td><td>{_figure(key + '.count', v['count'], format(v['count'], 'g'))}</td>"
        f"<td>{_e(', '.join(f'{o} {c:g}' for o, c in sorted(v['by'].items())) or '-')}</td></tr>"
        for key, label, v in (
            ("feedback", "client feedback", numbers["feedback"]),
            ("shadow", "shadow verdicts", numbers["shadow"]),
        )
    )
    latency = "".join(
        f"<tr><th>{label}</th>"
        + "".join(f"<td>{_figure(f'{key}.p{round(q * 100)}', numbers[key][q], _ms(numbers[key][q]))}</td>" for q in PERCENTILES)
        + "</tr>"
        for key, label in (("overhead_s", "gateway overhead"), ("upstream_s", "upstream"))
    )  # fmt: skip
    errors = "".join(
        f"<li>{_e(kind)}: {_figure('errors.' + kind, count, f'{count:g}')}</li>"
        for kind, count in sorted(numbers["errors"].items())
    )
    rows = "".join(
        f"<tr><td>{_e(time.strftime('%H:%M:%S', time.gmtime(r.at)))}</td><td>{_e(r.profile)}</td>"
        f"<td>{_e(r.model)}</td><td>{_e(', '.join(r.tags[:SHOWN_TAGS]))}</td><td>{_e(r.reason)}</td>"
        f"<td>${r.expected_cost_usd:.6f}</td></tr>"
        for r in recent
    )
    saved = numbers["saved_usd"]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>TagRouter gateway</title>
<link rel="stylesheet" href="/dashboard/dashboard.css">
<link rel="icon" href="data:,">
</head>
<body>
<header>
<h1>TagRouter gateway</h1>
<p>Router version {_figure("version", None, numbers["version"])}, loaded {_e(_when(numbers["loaded_at"]))};
last learned {_e(_when(numbers["learned_at"]))}. Figures of this process since it started, as on
<a href="/metrics">/metrics</a>; drawn {_e(_when(time.time()))}.</p>
</header>
<section class="cards">
<div class="card"><h2>Requests answered</h2><p class="big">{_figure("requests", n, f"{n:g}")}</p></div>
<div class="card"><h2>Spent</h2><p class="big">{_figure("spent_usd", numbers["spent_usd"], f"${numbers['spent_usd']:.4f}")}</p>
<p>vs {_figure("reference_usd", numbers["reference_usd"], f"${numbers['reference_usd']:.4f}")} on {_e(reference)} alone</p></div>
<div class="card"><h2>Saved</h2><p class="big">{_figure("saved_usd", saved, f"${saved:.4f}")}</p>
<p>{_figure("saved_share", numbers["saved_share"], _pct(numbers["saved_share"]))} of sending everything to {_e(reference)}</p></div>
</section>
<section><h2>Traffic per model</h2>{traffic_chart(timeline, models)}<ul class="legend">{legend}</ul></section>
<section><h2>Quality</h2><table><tr><th></th><th>accept rate</th><th>verdicts</th><th>by outcome</th></tr>{quality}</table></section>
<section><h2>Latency</h2><table><tr><th></th><th>p50</th><th>p90</th><th>p99</th></tr>{latency}</table></section>
<section><h2>Faults</h2><ul>
<li>fallbacks: {_figure("fallbacks", numbers["fallbacks"], f"{numbers['fallbacks']:g}")}</li>
<li>requests no upstream could answer: {_figure("failed", numbers["failed"], f"{numbers['failed']:g}")}</li>
<li>requests refused by the upstream (4xx): {_figure("client_errors", numbers["client_errors"], f"{numbers['client_errors']:g}")}</li>
{errors}</ul></section>
<section><h2>Last decisions</h2>
<table class="decisions"><tr><th>time (UTC)</th><th>profile</th><th>model</th><th>tags</th><th>reason</th><th>expected cost</th></tr>
{rows or '<tr><td colspan="6">none yet</td></tr>'}</table></section>
</body>
</html>
"""
