"""Benchmark-only: prn-jax's paper-config train step vs the PyTorch one, interleaved, on this CPU.

The machines here are shared and noisy, so the two are run in alternation, ROUNDS times, each in
a fresh process, and the script prints every time plus per-side minimum and median. PyTorch runs
under each of its environment variants (default; glibc malloc without mmap, which spares it the
page faults of fresh large buffers; glibc huge pages); prn-jax runs as `prn-jax bench`, i.e. with
its own tuned CPU settings (prn_jax/cpu_runtime.py). PyTorch comes from a throwaway venv (see
benchmarks/torch_prnet_cpu.py):

    python benchmarks/compare_torch_cpu.py --torch-python /tmp/torchvenv/bin/python --rounds 3
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_ENVS = {
    "default": {},
    "malloc-no-mmap": {
        "MALLOC_MMAP_MAX_": "0",
        "MALLOC_TRIM_THRESHOLD_": "100000000000",
        "MALLOC_TOP_PAD_": "1000000000",
    },
    "hugepages": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
}


def run(cmd: list[str], env_extra: dict[str, str], pattern: str) -> float:
    import os

    env = dict(os.environ, **env_extra)
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(pattern, out)
    if not m:
        raise RuntimeError(f"{cmd}: no match for {pattern!r} in output:\n{out}")
    return float(m.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--torch-python", required=True)
    parser.add_argument("--prn-jax", default=str(Path(sys.executable).with_name("prn-jax")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--torch-envs", default=",".join(TORCH_ENVS))
    parser.add_argument(
        "--encoder-conv-impl",
        default="fast_grad",
        help="prn-jax encoder_conv_impl (the 2026-11-29 numbers: fast_grad)",
    )
    args = parser.parse_args()
    torch_cmd = [
        args.torch_python,
        "benchmarks/torch_prnet_cpu.py",
        "--size",
        str(args.size),
        "--batch",
        "16",
        "--steps",
        "3",
    ]
    jax_cmd = [
        args.prn_jax,
        "bench",
        "--config",
        "paper",
        "--repeats",
        "3",
        "--forward-batch",
        "1",
        "--config.data.source=generated",
        f"--config.image_size={args.size}",
        f"--config.encoder_conv_impl={args.encoder_conv_impl}",
    ]
    times: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for name in args.torch_envs.split(","):
            t = run(torch_cmd, TORCH_ENVS[name], r"train step median ([0-9.]+) s")
            times.setdefault(f"pytorch ({name})", []).append(t)
            print(f"round {r}: pytorch ({name}) {t:.3f} s", flush=True)
        t = run(jax_cmd, {}, r"train step\s+([0-9.]+) ms") / 1e3
        times.setdefault("prn-jax", []).append(t)
        print(f"round {r}: prn-jax {t:.3f} s", flush=True)
    print(f"# train step at {args.size}x{args.size}, batch 16, seconds (each a median of 3 steps):")
    best_torch = min(min(v) for k, v in times.items() if k.startswith("pytorch"))
    for k, v in times.items():
        print(
            f"{k:28s} min {min(v):6.3f}  median {statistics.median(v):6.3f}  "
            f"min / best PyTorch min x{min(v) / best_torch:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
