#!/usr/bin/env bash
# Create .venv with the project (editable) and its test extra; no-op when already up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "prn-jax needs Python 3.11+ ($PY is $("$PY" --version 2>&1))" >&2; exit 1
fi
stamp=.venv/.prn_jax_installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
touch "$stamp"
