#!/usr/bin/env bash
# Set up .venv (if missing or stale) and run the whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
# Huge pages for glibc's large allocations (prn_jax/cpu_runtime.py): fewer page faults per XLA step.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}"
exec .venv/bin/python -m pytest tests -q -rs --durations=15 "$@"
