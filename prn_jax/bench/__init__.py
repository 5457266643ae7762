"""Benchmarks that print numbers, all behind `prn-jax bench <what>`:

  prn-jax bench [model] ...       the train step, forward latency/throughput, FLOPs, MFU, batch sweep
  prn-jax bench decoder ...       the 17-layer decoder alone, per formulation
  prn-jax bench augment ...       on-device vs host augmentation
  prn-jax bench ground-truth ...  fit -> position map, numpy vs JAX
  prn-jax bench input --data DIR  the host input pipeline's examples/s per core, per mode
  prn-jax bench predict ...       per-image end-to-end inference
  prn-jax bench optimizer-layout  the train step with per-parameter vs flat Adam moments
  prn-jax bench sweep             a sweep's seconds per run against plain train runs
  prn-jax bench data-prep         prepare-model and the builds from zips, scaled to 300W-LP

External twins (PyTorch, TensorFlow) live in the repository's benchmarks/ folder.
"""

from __future__ import annotations

import importlib

SUITES = {
    "model": "prn_jax.bench.model",
    "decoder": "prn_jax.bench.decoder",
    "augment": "prn_jax.bench.augment",
    "ground-truth": "prn_jax.bench.ground_truth",
    "input": "prn_jax.bench.input",
    "predict": "prn_jax.bench.predict",
    "optimizer-layout": "prn_jax.bench.optimizer_layout",
    "sweep": "prn_jax.bench.sweep",
    "data-prep": "prn_jax.bench.data_prep",
}


def main(argv: list[str] | None = None) -> int:
    """`prn-jax bench [SUITE] ARGS...`; the model suite when SUITE is omitted."""
    argv = list(argv or [])
    name = argv.pop(0) if argv and argv[0] in SUITES else "model"
    result = importlib.import_module(SUITES[name]).main(argv)
    return result if isinstance(result, int) else 0
