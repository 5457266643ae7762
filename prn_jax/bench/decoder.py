"""Benchmark PRNet's decoder alone, per transposed-convolution formulation and compute dtype.

The stack is PRNet's 17 transposed 4x4 convolutions (docs/network.md): input
(B, S/32, S/32, 32*width) -> output (B, S, S, 3), ReLU after every layer, sigmoid after the
last. BatchNorm is replaced by `--norm`: "none" (default; He-scaled kernels keep activations
O(1), so no denormals) or "batch" (normalise each channel by its batch mean and variance in
float32, no affine parameters, no running statistics). Parameters are float32 and cast to the
compute dtype inside, as in mixed-precision training.

For each size, dtype and formulation it reports: compile time, the median wall time of the
forward pass and of forward+backward (gradients of a float32 mean-squared error with respect to
all kernels and the input) after one warm-up call, XLA's FLOP count from the compiled
executable's cost analysis, and time ratios against "reference" measured in the same process.

    prn-jax bench decoder --size 128 256 --batch 16 --repeats 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prn_jax.bench.timing import median_time
from prn_jax.model.decoder_ops import DECODER_IMPLS, conv_transpose_tf

KERNEL_SIZE = 4


def decoder_layers(width: int = 16) -> tuple[tuple[int, int], ...]:
    """PRNet's 17 decoder layers as (out channels, stride); width 16 is the paper's."""
    w = width
    return (
        (32 * w, 1),
        (16 * w, 2),
        (16 * w, 1),
        (16 * w, 1),
        (8 * w, 2),
        (8 * w, 1),
        (8 * w, 1),
        (4 * w, 2),
        (4 * w, 1),
        (4 * w, 1),
        (2 * w, 2),
        (2 * w, 1),
        (w, 2),
        (w, 1),
        (3, 1),
        (3, 1),
        (3, 1),
    )


def init_kernels(rng: np.random.Generator, width: int) -> list[jax.Array]:
    """float32 kernels (4, 4, Cout, Cin), He-scaled by the taps that reach one output. Drawn
    with NumPy: JAX's random ops for these 17 kernels took longer to compile than the
    benchmark's own programs."""
    kernels, cin = [], 32 * width
    for cout, stride in decoder_layers(width):
        fan_in = KERNEL_SIZE * KERNEL_SIZE * cin / stride**2
        shape = (KERNEL_SIZE, KERNEL_SIZE, cout, cin)
        kernels.append(
            jnp.asarray(rng.standard_normal(shape, np.float32) * np.float32(np.sqrt(2.0 / fan_in)))
        )
        cin = cout
    return kernels


def decoder_model_flops(size: int, width: int) -> float:
    """Multiply-adds x 2 of the 17 layers per example, counting no inserted zeros."""
    flops, cin, spatial = 0.0, 32 * width, size // 32
    for cout, stride in decoder_layers(width):
        spatial *= stride
        flops += 2.0 * spatial * spatial * cout * cin * KERNEL_SIZE**2 / stride**2
        cin = cout
    return flops


def decoder_apply(
    kernels: Sequence[jax.Array], x: jax.Array, width: int, impl: str, dtype, norm: str
) -> jax.Array:
    """(B, S/32, S/32, 32*width) -> (B, S, S, 3) float32 in (0, 1)."""
    h = x.astype(dtype)
    layers = decoder_layers(width)
    for i, ((_, stride), kernel) in enumerate(zip(layers, kernels)):
        h = conv_transpose_tf(h, kernel.astype(dtype), stride, impl)
        if norm == "batch":
            h32 = h.astype(jnp.float32)
            mean = h32.mean(axis=(0, 1, 2))
            var = h32.var(axis=(0, 1, 2))
            h = ((h32 - mean) * jax.lax.rsqrt(var + 1e-3)).astype(dtype)
        h = jax.nn.sigmoid(h.astype(jnp.float32)) if i == len(layers) - 1 else jax.nn.relu(h)
    return h


def _compile(fn, *args):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - start
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returned one dict per computation
        cost = cost[0] if cost else {}
    return compiled, seconds, float((cost or {}).get("flops", float("nan")))


def bench_one(size: int, batch: int, width: int, impl: str, dtype_name: str, norm: str, repeats: int) -> dict:
    """Measure one configuration; returns a dict of the table's columns."""
    dtype = jnp.dtype(dtype_name)
    rng = np.random.default_rng(0)
    kernels = init_kernels(rng, width)
    x = jnp.asarray(rng.standard_normal((batch, size // 32, size // 32, 32 * width), np.float32))
    target = jnp.asarray(rng.random((batch, size, size, 3), np.float32))

    def forward(kernels, x):
        return decoder_apply(kernels, x, width, impl, dtype, norm)

    def loss(kernels, x):
        return jnp.mean((forward(kernels, x) - target) ** 2)

    fwd, fwd_compile_s, fwd_flops = _compile(forward, kernels, x)
    fwd_bwd, bwd_compile_s, bwd_flops = _compile(jax.grad(loss, argnums=(0, 1)), kernels, x)
    return {
        "size": size,
        "batch": batch,
        "dtype": dtype_name,
        "impl": impl,
        "fwd_compile_s": fwd_compile_s,
        "fwd_s": median_time(lambda: fwd(kernels, x), repeats, warmup=1),
        "fwd_xla_gflop_per_ex": fwd_flops / batch / 1e9,
        "fwdbwd_compile_s": bwd_compile_s,
        "fwdbwd_s": median_time(lambda: fwd_bwd(kernels, x), repeats, warmup=1),
        "fwdbwd_xla_gflop_per_ex": bwd_flops / batch / 1e9,
    }


def format_table(rows: list[dict], width: int) -> str:
    header = (
        f"{'size':>4} {'batch':>5} {'dtype':>8} {'impl':>12} | {'fwd ms':>9} {'x ref':>6} "
        f"{'compile s':>9} {'GFLOP/ex':>8} | {'fwd+bwd ms':>10} {'x ref':>6} {'compile s':>9} "
        f"{'GFLOP/ex':>8}"
    )
    lines = [header, "-" * len(header)]
    reference = {(r["size"], r["dtype"]): r for r in rows if r["impl"] == "reference"}
    for r in rows:
        ref = reference.get((r["size"], r["dtype"]))
        fwd_ratio = r["fwd_s"] / ref["fwd_s"] if ref else float("nan")
        bwd_ratio = r["fwdbwd_s"] / ref["fwdbwd_s"] if ref else float("nan")
        lines.append(
            f"{r['size']:>4} {r['batch']:>5} {r['dtype']:>8} {r['impl']:>12} | "
            f"{r['fwd_s'] * 1e3:>9.1f} {fwd_ratio:>6.2f} {r['fwd_compile_s']:>9.2f} "
            f"{r['fwd_xla_gflop_per_ex']:>8.2f} | {r['fwdbwd_s'] * 1e3:>10.1f} {bwd_ratio:>6.2f} "
            f"{r['fwdbwd_compile_s']:>9.2f} {r['fwdbwd_xla_gflop_per_ex']:>8.2f}"
        )
    sizes = sorted({r["size"] for r in rows})
    lines.append(
        "model GFLOP/ex (forward, no inserted zeros): "
        + ", ".join(f"{s}: {decoder_model_flops(s, width) / 1e9:.2f}" for s in sizes)
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs="+", default=[256], help="output side S (multiple of 32)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=16, help="base width (16 in PRNet)")
    parser.add_argument("--impls", nargs="+", default=list(DECODER_IMPLS), choices=DECODER_IMPLS)
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--norm", default="none", choices=["none", "batch"])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after one warm-up")
    args = parser.parse_args(argv)
    for size in args.size:
        if size % 32:
            parser.error(f"--size {size} is not a multiple of 32")
    impls = ["reference"] + [i for i in args.impls if i != "reference"]  # ratios need it
    print(f"devices: {jax.devices()}  norm: {args.norm}  width: {args.width}  repeats: {args.repeats}")
    rows = []
    for size in args.size:
        for dtype_name in args.dtype:
            for impl in impls:
                row = bench_one(size, args.batch, args.width, impl, dtype_name, args.norm, args.repeats)
                rows.append(row)
                print(
                    f"  done size={size} dtype={dtype_name} impl={impl}: "
                    f"fwd {row['fwd_s'] * 1e3:.1f} ms, "
                    f"fwd+bwd {row['fwdbwd_s'] * 1e3:.1f} ms",
                    flush=True,
                )
    print(format_table(rows, args.width))
    return rows
