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
# dev includes the litellm extra: the LiteLLM plugin is tested against the real package (its tests skip
# with a reason when it is absent)
"$VENV/bin/python" -m pip install --quiet -e ".[dev,transformers]"

"$VENV/bin/ruff" check src tests scripts
"$VENV/bin/ruff" format --check src tests scripts
"$VENV/bin/python" -m pytest -q "$@"
