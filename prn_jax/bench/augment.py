"""Benchmark: on-device (jitted JAX) augmentation of a batch vs the same transforms per example on
the host with numpy/scipy, given the same draws.

  prn-jax bench augment --batch 16 --size 256 --repeats 20

Both sides get the paper's augmentations with occlusion on every example (the most work). The
JAX time covers sampling + applying (`augment_batch`, jitted, inputs already on the device); the
host time covers applying pre-sampled draws (`augment_example_numpy`, one example after another).
Each number is the median of `--repeats` runs after `--warmup` runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import numpy as np

from prn_jax import augment
from prn_jax.bench.timing import median_time


def run(batch: int, size: int, repeats: int, warmup: int, seed: int = 0) -> dict[str, float]:
    """Times both paths; returns seconds per batch {'jax': ..., 'numpy': ...} and their ratio."""
    params = augment.AugmentParams(occlusion_prob=1.0)
    rng = np.random.default_rng(seed)
    images = jax.device_put(rng.random((batch, size, size, 3), dtype=np.float32))
    pos = jax.device_put(rng.uniform(0, size, (batch, size, size, 3)).astype(np.float32))
    key = jax.random.PRNGKey(seed)
    on_device = jax.jit(augment.augment_batch, static_argnames="params")
    jax_s = median_time(lambda: on_device(key, images, pos, params=params), repeats, warmup)

    host_images, host_pos = np.asarray(images), np.asarray(pos)
    draws = jax.device_get(augment.sample_batch_draws(key, batch, size, params))
    per_example = [jax.tree.map(lambda a, i=i: a[i], draws) for i in range(batch)]

    def host_batch():
        return [
            augment.augment_example_numpy(per_example[i], host_images[i], host_pos[i], params)
            for i in range(batch)
        ]

    numpy_s = median_time(host_batch, repeats, min(warmup, 1))
    return {"jax": jax_s, "numpy": numpy_s, "ratio": jax_s / numpy_s}


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.batch, args.size, args.repeats, args.warmup)
    device = jax.devices()[0]
    print(f"augmentation of a batch of {args.batch} at {args.size}x{args.size} (median of {args.repeats})")
    print(f"  jax jitted on {device.platform} ({device.device_kind}): {result['jax'] * 1e3:9.2f} ms/batch")
    print(f"  numpy/scipy on the host, per example: {result['numpy'] * 1e3:9.2f} ms/batch")
    print(f"  ratio jax / numpy: {result['ratio']:.3f} (numpy / jax: {1 / result['ratio']:.1f}x)")
    return result
