#!/usr/bin/env bash
# The main job on the embedded default: set up .venv, generate the synthetic data, build the tfds
# datasets, train the CPU config, evaluate and report (`prn-jax main`). Rerunning reuses the data
# and resumes training. Extra arguments go to `prn-jax main` (e.g. --out DIR, --config.FIELD=V).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/prn-jax main "$@"
