"""Check that every optional dependency scripts/test.sh installs imports, before the tests run.

A test of an extra skips with a reason when the extra is absent, which is right on a user's machine and
wrong in CI: there a failed install must fail the run, not turn into skipped tests and a green result.
Exits 1 listing each missing import (and the PostgreSQL server binaries, with --postgres); 0 otherwise.

Usage: python scripts/check_extras.py [--postgres]
"""

from __future__ import annotations

import glob
import importlib
import os
import shutil
import sys

#: module -> what provides it (the extra of pyproject.toml, or the step of scripts/test.sh)
EXPECTED = {
    "torch": "torch==2.13.0 (CPU), installed first by scripts/test.sh",
    "transformers": "extra transformers",
    "safetensors": "extra transformers",
    "pyarrow": "extras parquet, ray",
    "ray.data": "extra ray",
    "psycopg": "extra postgres",
    "litellm": "extra litellm",
    "tiktoken": "extra tokens",
    "matplotlib": "extra bench",
    "fastapi": "extra server",
    "uvicorn": "extra server",
    "httptools": "extra server",
    "aiohttp": "extra server",
    "prometheus_client": "extra server",
    "httpx": "extras server, openai",
    "openai": "extra dev",
    "psutil": "extra dev",
    "schemathesis": "extra dev",
    "hypothesis": "extra dev (through schemathesis)",
    "pytest": "extra dev",
    "routellm": "extra routellm",
    "playwright.sync_api": "extra dev (the dashboard browser test drives Debian's chromium)",
    "tenacity": "extras openai, server",
}


def missing_imports() -> list[str]:
    """'module (provider): error' for every module of :data:`EXPECTED` that does not import."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm: no price-map download
    os.environ.setdefault("OPENAI_API_KEY", "not-used")  # routellm builds an OpenAI client at import
    missing = []
    for module, provider in EXPECTED.items():
        try:
            importlib.import_module(module)
        except Exception as exc:  # an ImportError, or a broken install failing at import
            missing.append(f"{module} ({provider}): {type(exc).__name__}: {exc}")
    return missing


def postgres_found() -> bool:
    """Whether the PostgreSQL server binaries the replica test starts (initdb, pg_ctl) are installed."""
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or shutil.which("initdb") is not None


def main(argv: list[str]) -> int:
    problems = missing_imports()
    if "--postgres" in argv and not postgres_found():
        problems.append("PostgreSQL server binaries (initdb): apt-get install postgresql")
    for problem in problems:
        print(f"missing: {problem}", file=sys.stderr)
    if problems:
        print(
            f"{len(problems)} expected optional dependencies are missing: the set-up failed", file=sys.stderr
        )
        return 1
    print(f"all {len(EXPECTED)} optional imports work")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
