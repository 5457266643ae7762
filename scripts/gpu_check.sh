#!/usr/bin/env bash
# Issue 9's GPU measurements as one prepared run (a lent GPU machine: the `device` tool's `run`).
#
#   bash scripts/gpu_check.sh --prepare   here, once: wheels the GPU image lacks into .whl/
#   run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=600)   on the GPU machine
#   bash scripts/gpu_check.sh --smoke     here: the benchmark steps on the CPU, tiny config (~5 min)
#   run(command="PART=resident bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=600)   issue 25's
#     checks instead, as a second run: the precision of the ground truth on the hardware
#     (tests/test_precision.py: maps vs CPU maps and float64, max px difference, at Precision.HIGHEST
#     and, for comparison, the default precision) and bench_resident.json (paper config, bfloat16,
#     augmentation on: the device-resident train step - gather + augmentation + maps rendered on the
#     device - against the same step on pre-placed fits, images/s and MFU, at growing batches until
#     one does not fit). PART=resident bash scripts/gpu_check.sh --smoke runs them on this CPU.
#
# On the GPU machine (its python3 has jax with CUDA, flax, optax, orbax, chex, pytest; not
# ml_collections) it writes under $OUT, most important first, each step time-boxed so that a slow
# one leaves the others' results: bench_b16.json (paper config, bfloat16, sub-pixel vs reference
# decoder: train step, forward latency at batch 1, MFU against 989 TFLOP/s), bench_sweep.json
# (bfloat16 train step at growing batches until one does not fit; plotted in bench_sweep.png),
# bench_f32.json, bench_fast_grad.json (encoder_conv_impl=fast_grad), and gpu_check.log (all
# output, and the decoder, convolution and BatchNorm tests run on the GPU at float32 precision).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
  rm -rf .whl && mkdir -p .whl
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d .whl "ml-collections==1.1.0"
  git rev-parse HEAD > .whl/REVISION
  git status --porcelain --untracked-files=no | grep -q . && echo "(uncommitted changes)" >> .whl/REVISION
  ls -l .whl
  exit 0
fi

if [ "${1:-}" = "--smoke" ]; then
  PY=${PY:-.venv/bin/python}
  OUT=${OUT:-$(mktemp -d)}
  CONFIG=(--config tiny --config.image_size=32 --config.width=2 --config.num_devices=1)
  BATCH=2 SWEEP=2,4 FWD=2 REPEATS=1 LATENCY=2 LIMIT=300 TOTAL=1200 PEAK=0.5 RESIDENT_SWEEP=2
else
  PY=python3
  : "${OUT:?OUT: the output folder of the device tool}"
  if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
  fi
  CONFIG=(--config paper)
  BATCH=16 SWEEP=64,256,1024,2048 FWD=64 REPEATS=10 LATENCY=100 LIMIT=200 TOTAL=570 PEAK=989
  RESIDENT_SWEEP=256,1024
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# prn_jax.cpu_runtime's XLA CPU flag is for jaxlib 0.10's CPU backend; not for this machine.
# JAX may take 95% of the GPU's memory instead of 75%: the sweep looks for the largest batch (the
# CPU-compiled paper step needs ~71 MiB per example in bfloat16, so ~1,900 might fit in 132 GiB).
export PRN_JAX_CPU_DEFAULTS=0 XLA_PYTHON_CLIENT_MEM_FRACTION=0.95
MODE=${1:-}
PART=${PART:-}

check() {
  echo "# gpu_check $(date -u +%FT%TZ), revision $(cat .whl/REVISION 2>/dev/null || git rev-parse HEAD 2>/dev/null)"
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" -c "import jax, jaxlib, flax, optax; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" || exit 1

  DEADLINE=$((SECONDS + TOTAL))  # the device tool's command limit is 600 s
  limit() {  # limit SECONDS: at most that, and no later than the deadline
    local left=$((DEADLINE - SECONDS))
    echo $(($1 < left ? $1 : (left > 0 ? left : 1)))
  }
  bench() {  # bench NAME ARGS...: one `prn-jax bench model` process, time-boxed
    local name=$1; shift
    echo "## $name ($(limit "$LIMIT") s at most)"
    timeout "$(limit "$LIMIT")" "$PY" -m prn_jax.cli bench model "${CONFIG[@]}" --repeats "$REPEATS" \
      --latency-repeats "$LATENCY" --peak-tflops "$PEAK" --json "$OUT/$name.json" "$@"
    echo "## $name: exit $?"
  }
  if [ "$PART" = "resident" ]; then  # issue 25: a run of its own (the default run fills 570 s)
    echo "## precision of the on-device ground truth on this hardware"
    JAX_PLATFORMS=${JAX_PLATFORMS:-cuda,cpu} timeout "$(limit 150)" "$PY" -m pytest -q -s -p no:cacheprovider \
      tests/test_precision.py -k "on_hardware or prevents"
    echo "## precision: exit $?"
    LIMIT=$((LIMIT * 2))  # two programs a batch size, the face model and the fits made first
    bench bench_resident --dtypes bfloat16 --augment on --batch-sizes "$RESIDENT_SWEEP" --forward-batch 0 \
      --resident-only
    return
  fi
  bench bench_b16 --impls subpixel,reference --dtypes bfloat16 --batch-sizes "$BATCH" --forward-batch "$FWD"
  bench bench_sweep --dtypes bfloat16 --batch-sizes "$SWEEP" --forward-batch 0 --plot "$OUT/bench_sweep.png"
  bench bench_f32 --dtypes float32 --batch-sizes "$BATCH" --forward-batch "$FWD"
  bench bench_fast_grad --dtypes bfloat16 --batch-sizes "$BATCH" --forward-batch 0 --config.encoder_conv_impl=fast_grad

  if [ "$MODE" != "--smoke" ]; then
    echo "## tests on the GPU (float32 at full precision)"
    # (Not the 4-device pmap test, nor the CPU-only fusion-boundary test.)
    JAX_PLATFORMS=cuda JAX_DEFAULT_MATMUL_PRECISION=highest timeout "$(limit 150)" "$PY" -m pytest -q -p no:cacheprovider \
      tests/test_decoder_ops.py tests/test_conv_ops.py tests/test_batch_norm.py -k "not under_pmap and not on_cpu"
    echo "## tests: exit $?"
  fi
}
# A pipeline, so that the log is complete when the script returns.
check 2>&1 | tee "$OUT/gpu_check.log"
