"""A pytest plugin (loaded by conftest.py): no silent skips in CI.

With TAGROUTER_STRICT_SKIPS=1 (scripts/test.sh sets it) or CI=true, a skipped test fails the run unless
its reason matches one of :data:`ALLOWED_SKIPS`: only the tests of the benchmark data, which no fresh
machine has, may skip there. A missing extra, server binary or tool is an error of the set-up, not a skip.
"""

from __future__ import annotations

import os
import re

import pytest

ALLOWED_SKIPS = (
    re.compile(r"^needs the benchmark data in "),
    re.compile(r"^needs \S*(shared/data|alpaca_eval)"),
)


def strict() -> bool:
    """Whether skips outside :data:`ALLOWED_SKIPS` fail the run."""
    return os.environ.get("TAGROUTER_STRICT_SKIPS") == "1" or os.environ.get("CI", "").lower() == "true"


def pytest_configure(config: pytest.Config) -> None:
    if strict():
        config.pluginmanager.register(StrictSkips(), "tagrouter-strict-skips")


class StrictSkips:
    """Notes every skip outside :data:`ALLOWED_SKIPS`, lists them after the run and fails it."""

    def __init__(self) -> None:
        self.forbidden: list[tuple[str, str]] = []

    def _note(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reason = reason.removeprefix("Skipped: ")
            if not any(allowed.search(reason) for allowed in ALLOWED_SKIPS):
                self.forbidden.append((report.nodeid, reason))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)  # a module that skips as a whole (pytest.importorskip at its top)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.forbidden:
            terminalreporter.section("skips that CI does not allow (TAGROUTER_STRICT_SKIPS / CI)", red=True)
            for nodeid, reason in self.forbidden:
                terminalreporter.line(f"{nodeid}: {reason}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.forbidden and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
