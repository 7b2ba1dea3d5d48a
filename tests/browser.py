"""Debian's headless Chromium, driven by Playwright, for the dashboard's browser test and its screenshot.

Playwright (pip package ``playwright``, in the ``dev`` extra) drives the system's Chromium
(``apt-get install chromium``: ``/usr/bin/chromium``), so no browser is downloaded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

#: Chromium's flags: headless, no sandbox (containers run as root), nothing fetched from the network.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_path() -> str | None:
    """The system Chromium (``$CHROMIUM``, else ``chromium`` on the PATH), or None."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium")


@dataclass
class Visit:
    """An open page, and the console errors and failed requests seen since it was opened."""

    page: Any
    errors: list[str] = field(default_factory=list)


@contextmanager
def browse(url: str, headers: Mapping[str, str], width: int = 1200) -> Iterator[Visit]:
    """Open ``url`` in headless Chromium, sending ``headers`` with every request; yields the visit."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no chromium found: apt-get install chromium (or set $CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=list(FLAGS))
        try:
            context = browser.new_context(
                extra_http_headers=dict(headers), viewport={"width": width, "height": 900}
            )
            page = context.new_page()
            visit = Visit(page)
            page.on("console", lambda m: visit.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: visit.errors.append(str(exc)))
            page.on("requestfailed", lambda r: visit.errors.append(f"{r.url}: {r.failure}"))
            response = page.goto(url, wait_until="load")
            if response is None or response.status != 200:
                visit.errors.append(f"{url}: status {None if response is None else response.status}")
            yield visit
        finally:
            browser.close()


def figures_on(page: Any) -> dict[str, str]:
    """Every ``data-figure`` of the dashboard page: name -> its exact ``data-value`` (or text, if none)."""
    return page.eval_on_selector_all(
        "[data-figure]",
        "els => Object.fromEntries(els.map(e => [e.dataset.figure, e.dataset.value || e.textContent]))",
    )
