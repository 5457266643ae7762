"""`prn-jax bench input`: the host input pipeline's examples/s, decoding included.

prn-jax bench input --data DIR [--config tiny] [--steps 50] [--config.FIELD=VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from prn_jax import configuration
from prn_jax.data.input_pipeline import DataSettings, ReadExample, make_train_loader, open_source


def benchmark(config: Any, data_dir: str | Path | None, steps: int, warmup: int = 3) -> dict:
    """Pipeline and per-core throughput, decoding included.

    Returns {'examples_per_s': the loader's wall-clock rate over `steps` batches after `warmup`,
    'examples_per_core_s': examples read + decoded per CPU second by one thread
    (`ReadExample` serially, process CPU time), 'examples', 'seconds'}.
    """
    loader = make_train_loader(config, data_dir, num_local_devices=1)
    for _ in range(warmup):
        next(loader)
    start = time.perf_counter()
    for _ in range(steps):
        next(loader)
    seconds = time.perf_counter() - start
    examples = steps * int(config["batch_size"])
    del loader

    settings = DataSettings.from_config(config)
    source = open_source(settings.dir if data_dir is None else data_dir, settings)
    read = ReadExample(source, int(config["image_size"]), settings.maps_on_device, "benchmark")
    serial = min(examples, 4 * len(source))
    cpu_start = time.process_time()
    for i in range(serial):
        read.map(i % len(source))
    cpu = time.process_time() - cpu_start
    return {
        "examples": examples,
        "seconds": seconds,
        "examples_per_s": examples / seconds,
        "examples_per_core_s": serial / cpu,
    }


def main(argv=None) -> int:
    """Host pipeline throughput: batches of the configured size, decoding included."""
    parser = argparse.ArgumentParser(prog="prn-jax bench input", description=main.__doc__)
    parser.add_argument("--data", required=True, help="tfds data dir holding prn_300w_lp")
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--steps", type=int, default=50)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args([a for a in argv if not a.startswith("--config.")])
    config = configuration.load_config(args.config, [a for a in argv if a.startswith("--config.")])
    settings = DataSettings.from_config(config)
    result = benchmark(config, args.data, args.steps)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"input pipeline: {settings.builder}/{settings.builder_config}, batch "
        f"{config.batch_size}, threads {settings.num_threads}, workers {settings.worker_count}, "
        f"maps_on_device {settings.maps_on_device}: {result['examples_per_s']:.0f} examples/s "
        f"on {cores} cores ({result['examples']} in {result['seconds']:.2f} s); one core reads "
        f"and decodes {result['examples_per_core_s']:.0f} examples/s"
    )
    return 0
