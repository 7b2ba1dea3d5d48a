#!/usr/bin/env bash
# Set up a virtual environment with every extra and run the linter and the whole test suite.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first, pinned to the CPU build (a plain 'torch' requirement would pull a multi-GB CUDA build);
# if it cannot be installed, the transformers tests skip with a reason and everything else still runs.
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0" || echo "warning: torch==2.13.0 not installed; transformers tests will skip" >&2
# dev includes the litellm, ray and postgres extras: the LiteLLM plugin, the Ray engine and the PostgreSQL store
# are tested against the real packages (their tests skip with a reason when one is absent)
"$VENV/bin/python" -m pip install --quiet -e ".[dev,transformers]"
# A PostgreSQL server for the gateway-replica tests (they start their own on a temp folder, and skip with a
# reason when no initdb is found).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null && command -v apt-get >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  { $SUDO apt-get install -y -qq postgresql >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql >/dev/null; }; } \
    || echo "warning: PostgreSQL not installed; the PostgreSQL replica test will skip" >&2
fi
# Debian's headless Chromium for the dashboard's browser test (Playwright drives it; no browser download).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  { $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; }; } \
    || echo "warning: chromium not installed; the dashboard browser test will skip" >&2
fi

"$VENV/bin/ruff" check src tests scripts
"$VENV/bin/ruff" format --check src tests scripts
"$VENV/bin/python" -m pytest -q "$@"
