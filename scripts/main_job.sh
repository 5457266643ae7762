#!/usr/bin/env bash
# The main job on the embedded default: set up .venv, then train the CPU config (resumes if the
# run directory exists) and print where the results are. Extra arguments go to `prn-jax train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
RUN=${RUN:-runs/default}
.venv/bin/prn-jax train --config configs/tiny.py --workdir "$RUN" "$@"
echo "run directory: $RUN (checkpoints/, metrics.jsonl)"
