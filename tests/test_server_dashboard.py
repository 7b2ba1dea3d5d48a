"""The dashboard's keys and page, the quantiles it shows, and the headers that explain a decision."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from gateway_fixtures import KEY, ask  # noqa: E402
from server_support import CODE_QUERY, GREETING_QUERY  # noqa: E402

from tagrouter.server.dashboard import quantile  # noqa: E402

ADMIN = "sk-test-admin"


def test_the_dashboard_takes_admin_keys_only(gateway) -> None:
    server = gateway(admin_keys=[ADMIN])
    url = server.url + "/dashboard"
    missing = httpx.get(url)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(url, headers={"authorization": "Bearer sk-wrong"}).status_code == 401
    client = httpx.get(url, headers={"authorization": f"Bearer {KEY}"})
    assert client.status_code == 403 and client.json()["error"]["code"] == "not_admin"
    page = httpx.get(url, headers={"authorization": f"Bearer {ADMIN}"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<h1>TagRouter gateway</h1>" in page.text
    basic = base64.b64encode(f"anyone:{ADMIN}".encode()).decode()  # what a browser sends after its prompt
    assert httpx.get(url, headers={"authorization": f"Basic {basic}"}).status_code == 200
    css = httpx.get(server.url + "/dashboard/dashboard.css")  # public: it holds no figures
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "http" not in css.text.split("*/", 1)[1]  # nothing fetched from elsewhere
    admin = {"authorization": f"Bearer {ADMIN}"}
    # an admin key is also a client key (it may correct feedback on any request, see tagrouter.live)
    assert httpx.post(server.url + "/v1/route", json={"query": "hi"}, headers=admin).status_code == 200
    server.stop()
    without = gateway()
    refused = httpx.get(without.url + "/dashboard", headers={"authorization": f"Bearer {KEY}"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_disabled"


def test_the_page_counts_what_was_answered_and_lists_the_last_decisions(gateway) -> None:
    server = gateway(admin_keys=[ADMIN])
    for query in (CODE_QUERY, GREETING_QUERY, GREETING_QUERY):
        ask(server, query)
    page = httpx.get(server.url + "/dashboard", headers={"authorization": f"Bearer {ADMIN}"}).text
    assert 'data-figure="traffic.mid" data-value="1.0"' in page
    assert 'data-figure="traffic.cheap" data-value="2.0"' in page
    assert 'data-figure="requests" data-value="3.0"' in page
    assert page.count("<td>cheap</td>") == 2 and "coding" in page  # the last decisions, with their tags


def test_quantiles_interpolate_inside_the_bucket_as_prometheus_does() -> None:
    buckets = {0.1: 2.0, 0.5: 6.0, 1.0: 8.0, float("inf"): 10.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (5 - 2) / 4)
    assert quantile(0.1, buckets) == pytest.approx(0.1 * 1 / 2)
    assert quantile(0.99, buckets) == 1.0  # in the open top bucket: its lower bound
    assert quantile(0.5, {float("inf"): 0.0}) is None


def test_the_headers_explain_the_decision(gateway, tmp_path: Path) -> None:
    server = gateway()
    raw, completion = ask(server, CODE_QUERY, extra_body={"tagrouter": {"exclude": ["mid"]}})
    headers = raw.headers
    assert completion.model == headers["x-tagrouter-model"] == "dear"
    assert headers["x-tagrouter-rule"] == "within" and float(headers["x-tagrouter-knob"]) == 0.3
    assert headers["x-tagrouter-removed"] == "mid=excluded"
    reason = headers["x-tagrouter-reason"]
    assert "dear" in reason and "excluded" in reason
    assert "x-tagrouter-router-version" not in headers  # a router given without its folder
