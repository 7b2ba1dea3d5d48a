#!/usr/bin/env bash
# Set up a virtual environment with every extra and run the linter and the whole test suite.
# Usage: bash scripts/test.sh [extra pytest arguments]
# Every install step must succeed: a missing extra fails the run (scripts/check_extras.py) instead of
# turning its tests into skips, and pytest fails on a skip whose reason CI does not allow (tests/strict_skips.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

install_python_packages() {
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # torch first, pinned to the CPU build (a plain 'torch' requirement would pull a multi-GB CUDA build);
  # the transformers and routellm extras then find it installed
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0" \
    || { echo "error: torch==2.13.0 could not be installed" >&2; return 1; }
  # dev includes the litellm, ray and postgres extras: the LiteLLM plugin, the Ray engine and the PostgreSQL
  # store are tested against the real packages; routellm runs RouteLLM's own MF code as a baseline
  "$VENV/bin/python" -m pip install --quiet -e ".[dev,transformers,routellm]"
}

apt_install() {
  # apt_install PACKAGE: install one Debian package (as root, or through sudo); a failure fails the run
  command -v apt-get >/dev/null || { echo "error: $1 is missing and there is no apt-get to install it" >&2; return 1; }
  local sudo
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get install -y -qq "$1" >/dev/null 2>&1 \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq "$1" >/dev/null; } \
    || { echo "error: $1 could not be installed" >&2; return 1; }
}

install_postgresql() {
  # A PostgreSQL server for the gateway-replica test (it starts its own on a temp folder).
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || apt_install postgresql
}

install_chromium() {
  # Debian's headless Chromium for the dashboard's browser test (Playwright drives it; no browser download).
  command -v chromium >/dev/null || apt_install chromium
}

check_extras() {
  # every optional import the suite tests must work, and the PostgreSQL binaries must be there
  "$VENV/bin/python" scripts/check_extras.py --postgres
}

lint() {
  "$VENV/bin/ruff" check src tests scripts
  "$VENV/bin/ruff" format --check src tests scripts
}

run_tests() {
  # TAGROUTER_STRICT_SKIPS: a skip outside ALLOWED_SKIPS of tests/strict_skips.py fails the run
  TAGROUTER_STRICT_SKIPS=1 "$VENV/bin/python" -m pytest -q "$@"
}

install_python_packages
install_postgresql
install_chromium
check_extras
lint
run_tests "$@"
