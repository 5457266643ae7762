#!/usr/bin/env bash
# Set up .venv (if missing or stale), check lint and format (ruff), and run the whole test suite,
# slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest tests -q -rs --durations=15 "$@"
