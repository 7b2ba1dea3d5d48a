"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright): after a scripted
load it loads without console errors, and every number it shows equals what /metrics says."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("playwright", reason="the browser test needs Playwright (the dev extra)")

from browser import browse, chromium_path, figures_on  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from traffic import ADMIN_KEY, demo_gateway, example_traffic  # noqa: E402

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium; scripts/test.sh does)"
)


def metric_samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def summed(samples, name: str, **match: str) -> float:
    return sum(v for labels, v in samples[name] if all(labels.get(k) == x for k, x in match.items()))


def test_the_dashboard_shows_what_metrics_counts(tmp_path: Path) -> None:
    with demo_gateway(tmp_path, shadow_share=1.0) as gateway:
        chosen = example_traffic(gateway.url)
        deadline = time.monotonic() + 120
        while True:  # every answered request is judged in the background or skipped, with a reason
            samples = metric_samples(httpx.get(gateway.url + "/metrics").text)
            settled = summed(samples, "tagrouter_shadow_judged_total") + summed(
                samples, "tagrouter_shadow_skipped_total"
            )
            if settled == len(chosen):
                break
            assert time.monotonic() < deadline, f"{settled} of {len(chosen)} shadow jobs settled"
            time.sleep(0.2)
        with browse(gateway.url + "/dashboard", {"authorization": f"Bearer {ADMIN_KEY}"}) as visit:
            assert visit.errors == []
            shown = figures_on(visit.page)
            visit.page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        metrics = metric_samples(httpx.get(gateway.url + "/metrics").text)
    assert (tmp_path / "dashboard.png").stat().st_size > 20_000
    served = [m for m in ("small-7b", "mid-70b", "large-api") if float(shown[f"traffic.{m}"]) > 0]
    assert len(served) >= 2 and float(shown["saved_usd"]) > 0  # the example routes, and saves
    for model in ("small-7b", "mid-70b", "large-api"):
        assert (
            float(shown[f"traffic.{model}"])
            == summed(metrics, "tagrouter_requests_total", model=model, status="ok")
            == chosen.count(model)
        )
    spent = summed(metrics, "tagrouter_estimated_cost_usd_total")
    reference = summed(metrics, "tagrouter_reference_cost_usd_total")
    assert float(shown["spent_usd"]) == pytest.approx(spent, rel=1e-12)
    assert float(shown["reference_usd"]) == pytest.approx(reference, rel=1e-12)
    assert float(shown["saved_usd"]) == pytest.approx(reference - spent, rel=1e-12)
    assert float(shown["saved_share"]) == pytest.approx((reference - spent) / reference, rel=1e-12)
    for key, name in (
        ("feedback", "tagrouter_feedback_outcomes_total"),
        ("shadow", "tagrouter_shadow_judged_total"),
    ):
        count = summed(metrics, name)
        accepted = summed(metrics, name, outcome="win") + summed(metrics, name, outcome="tie")
        assert count > 0 and float(shown[f"{key}.count"]) == count
        assert float(shown[f"{key}.accept_rate"]) == pytest.approx(accepted / count, rel=1e-12)
    assert float(shown["feedback.count"]) == len(range(0, len(chosen), 2))  # feedback on every other answer
    for key, name in (
        ("overhead_s", "tagrouter_overhead_seconds"),
        ("upstream_s", "tagrouter_upstream_seconds"),
    ):
        buckets = defaultdict(float)
        for labels, value in metrics[name + "_bucket"]:
            buckets[float(labels["le"])] += value
        bounds, count = sorted(buckets), buckets[float("inf")]
        assert count == len(chosen)
        for q in (50, 90, 99):  # each percentile lies in the bucket where the cumulative count passes it
            value = float(shown[f"{key}.p{q}"])
            upper = next(b for b in bounds if buckets[b] >= q / 100 * count)
            lower = max([b for b in bounds if b < upper], default=0.0)
            assert lower <= value <= upper
    assert float(shown["fallbacks"]) == summed(metrics, "tagrouter_fallbacks_total") == 0
    assert re.fullmatch(r"v-\d{8}T\d{6}-[0-9a-f]{8}", shown["version"])
    assert shown["version"] == (gateway.router_dir / "CURRENT").read_text().strip()
