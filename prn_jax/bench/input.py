"""`prn-jax bench input`: the host input pipeline's examples/s, decoding included, per mode.

prn-jax bench input --data DIR [--config tiny] [--modes stored,fits,raw] [--steps 50]
                    [--images-per-s 10500] [--config.FIELD=VALUE ...]

Modes (each needs its dataset built in DIR; a missing one is reported and skipped):
  stored  the builder's `size{S}` records: JPEG decode + position-map decode (zlib, cumsum)
  fits    the same records with `maps_on_device`: JPEG decode; the fits (~1 KB) instead of the map
  raw     `size{S}_raw` records (crops stored as raw pixels: `prn-jax build --raw-crops`)
          with `maps_on_device`: no decode at all

For each: the loader's wall-clock rate with the config's threads, examples read per CPU second by
one thread (`ReadExample` serially, process CPU time) and so the host cores one device needs to be
fed at --images-per-s (default 10,500: 25% MFU of the paper step on one H100 / H200, issue 9).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import ml_collections

from prn_jax import configuration
from prn_jax.data.input_pipeline import DataSettings, ReadExample, make_train_loader, open_source

MODES = {  # mode -> (builder config suffix, maps_on_device)
    "stored": ("", False),
    "fits": ("", True),
    "raw": ("_raw", True),
}
GPU_IMAGES_PER_S = 10500.0


def mode_config(config: Any, mode: str) -> Any:
    """A copy of `config` reading the dataset of `mode` (see MODES)."""
    suffix, on_device = MODES[mode]
    out = ml_collections.ConfigDict(config.to_dict())
    base = (config.data.builder_config or f"size{config.image_size}").removesuffix("_raw")
    out.data.builder_config = base + suffix
    out.data.maps_on_device = on_device
    return out


def benchmark(
    config: Any, data_dir: str | Path | None, steps: int, warmup: int = 3, min_cpu_s: float = 2.0
) -> dict:
    """Pipeline and per-core throughput, decoding included.

    Returns {'examples_per_s': the loader's wall-clock rate over `steps` batches after `warmup`,
    'examples_per_core_s': examples read + decoded per CPU second by one thread (`ReadExample`
    serially over the records, after one warm pass; process CPU time, at least `min_cpu_s` and
    as many examples as the loader's), 'examples', 'seconds'}.
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
    for i in range(min(len(source), examples)):  # warm: files opened and in the page cache
        read.map(i)
    serial, cpu_start = 0, time.process_time()
    while serial < examples or time.process_time() - cpu_start < min_cpu_s:
        read.map(serial % len(source))
        serial += 1
    cpu = time.process_time() - cpu_start
    return {
        "examples": examples,
        "seconds": seconds,
        "examples_per_s": examples / seconds,
        "examples_per_core_s": serial / cpu,
    }


def main(argv=None) -> int:
    """Host pipeline throughput per mode: batches of the configured size, decoding included."""
    parser = argparse.ArgumentParser(prog="prn-jax bench input", description=main.__doc__)
    parser.add_argument("--data", required=True, help="tfds data dir holding prn_300w_lp")
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)} (default: all)"
    )
    parser.add_argument(
        "--images-per-s",
        type=float,
        default=GPU_IMAGES_PER_S,
        help="a device's training rate, for the host cores needed to feed it",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args([a for a in argv if not a.startswith("--config.")])
    config = configuration.load_config(args.config, [a for a in argv if a.startswith("--config.")])
    modes = args.modes.split(",")
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"--modes {args.modes}: {unknown} not among {', '.join(MODES)}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"# prn-jax bench input: {args.data}, config {args.config}, image {config.image_size}, batch "
        f"{config.batch_size}, threads {config.data.num_threads}, workers {config.data.worker_count}, "
        f"{cores} cores; host cores per device at {args.images_per_s:,.0f} images/s"
    )
    for mode in modes:
        mode_cfg = mode_config(config, mode)
        settings = DataSettings.from_config(mode_cfg)
        name = f"{settings.builder}/{settings.builder_config}"
        try:
            result = benchmark(mode_cfg, args.data, args.steps)
        except FileNotFoundError:
            print(f"{mode:>6s}  {name}: not built in {args.data}, skipped")
            continue
        per_core = result["examples_per_core_s"]
        print(
            f"{mode:>6s}  {name}, maps_on_device {settings.maps_on_device}: "
            f"{result['examples_per_s']:7.0f} examples/s on {cores} cores ({result['examples']} in "
            f"{result['seconds']:.2f} s); {per_core:7.0f} examples/s per core; host cores needed per "
            f"device at {args.images_per_s:,.0f} images/s: {args.images_per_s / per_core:.1f}",
            flush=True,
        )
    return 0
