"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 0) -> float:
    """Median wall seconds of `repeats` calls of `fn` (its result waited for with
    `jax.block_until_ready`), after `warmup` untimed calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
