"""The CI gates themselves: a skip outside the allow-list fails a strict run (tests/strict_skips.py), and a
missing optional import fails the extras check (scripts/check_extras.py). Bug caught: a gate that reports
and still exits 0 (checked by hand: the exit status hook removed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

SKIPPING = """
import pytest

def test_runs():
    pass

@pytest.mark.skipif(True, reason="needs ../shared/data/alpaca_eval")
def test_of_the_benchmark_data():
    pass

def test_of_an_extra():
    pytest.importorskip("a_module_that_is_not_installed", reason="the xyz extra is not installed")
"""


@pytest.mark.parametrize("env", [{"TAGROUTER_STRICT_SKIPS": "1"}, {"CI": "true"}, {}])
def test_a_skip_outside_the_allow_list_fails_a_strict_run(pytester, monkeypatch, env) -> None:
    monkeypatch.delenv("TAGROUTER_STRICT_SKIPS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(test_skipping=SKIPPING)
    result = pytester.runpytest("-p", "strict_skips")
    result.assert_outcomes(passed=1, skipped=2)
    if env:
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        result.stdout.fnmatch_lines(["*skips that CI does not allow*", "*test_of_an_extra: the xyz extra*"])
        assert "test_of_the_benchmark_data:" not in result.stdout.str()  # an allowed reason
    else:
        assert result.ret == pytest.ExitCode.OK  # outside CI a skip is a skip


def test_the_extras_check_fails_on_a_missing_import(monkeypatch, capsys) -> None:
    spec = importlib.util.spec_from_file_location("check_extras", SCRIPTS / "check_extras.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    monkeypatch.setattr(
        check, "EXPECTED", {"json": "the standard library", "no_such_module_xyz": "extra xyz"}
    )
    assert check.main([]) == 1
    assert "missing: no_such_module_xyz (extra xyz)" in capsys.readouterr().err
    monkeypatch.setattr(check, "EXPECTED", {"json": "the standard library"})
    assert check.main([]) == 0
