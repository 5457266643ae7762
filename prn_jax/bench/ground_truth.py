"""Benchmark: ground-truth position maps from morphable-model fits on one CPU core.

    prn-jax bench ground-truth --rows 231 --cols 231 --size 256

Builds a synthetic grid model of about the real BFM size (231 x 231 = 53,361 vertices,
105,800 triangles, 199 + 29 basis vectors; BFM: 53,215 / 105,954), then reports the one-off UV
raster precomputation and the per-sample cost of fit -> position map in batches, for numpy
and for the same function jitted with JAX on CPU (and on a GPU when JAX sees one).

One core: unless --all-cores, the script re-executes itself pinned to one CPU
(os.sched_setaffinity) with OPENBLAS/OMP/MKL_NUM_THREADS=1 and
XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1, because BLAS
and XLA read those only at start-up.
"""

import argparse
import os
import subprocess
import sys
import time

_ONE_CORE_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "PRN_JAX_BENCH_CHILD": "1",
}


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=231)
    parser.add_argument("--cols", type=int, default=231)
    parser.add_argument("--size", type=int, default=256, help="position-map side S")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per batch size")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    parser.add_argument("--no-jax", action="store_true")
    return parser.parse_args(argv)


def _time(fn, repeats):
    """Best wall-clock and best process CPU seconds of `repeats` calls after a warm-up.

    CPU time is what one core spends when other jobs share the machine.
    """
    fn()  # warm-up (and compilation for JAX)
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def _run(args):
    import jax
    import numpy as np

    from prn_jax.geometry import grid_model, ground_truth, uv_raster

    print(f"cpus usable: {len(os.sched_getaffinity(0))}; jax devices: {jax.devices()}")
    start = time.perf_counter()
    model = grid_model.make_grid_face_model(args.rows, args.cols)
    print(
        f"model: {model.num_vertices} vertices, {len(model.full_triangles)} triangles, "
        f"{model.shape_basis.shape[2]} + {model.exp_basis.shape[2]} basis vectors "
        f"(built in {time.perf_counter() - start:.1f} s)"
    )
    start = time.perf_counter()
    raster = uv_raster.build_uv_raster(model.uv, model.full_triangles, args.size)
    print(
        f"raster precompute {args.size}x{args.size}: {time.perf_counter() - start:.3f} s "
        f"({len(raster.pixel_index)} covered pixels)"
    )

    start = time.perf_counter()
    matrix = uv_raster.raster_matrix(raster, model.num_vertices)
    print(f"raster sparse matrix: {time.perf_counter() - start:.3f} s")
    rng = np.random.default_rng(0)

    def fits(batch):
        shape = (rng.normal(size=(batch, 199)) * model.shape_std).astype(np.float32)
        exp = (rng.normal(size=(batch, 29)) * model.exp_std).astype(np.float32)
        pose = np.tile([[-0.13, -0.77, 0.056, 183.6, 189.5, -81.7, 1.3e-3]], (batch, 1))
        pose[:, :3] += rng.uniform(-0.3, 0.3, (batch, 3))
        return shape, exp, pose

    for batch in args.batches:
        shape, exp, pose = fits(batch)
        wall, cpu = _time(
            lambda: ground_truth.fit_to_position_maps(model, raster, shape, exp, pose, 450, matrix=matrix),
            args.repeats,
        )
        print(
            f"numpy fit->map batch {batch:3d}: {1e3 * wall / batch:.3f} ms/sample wall, "
            f"{1e3 * cpu / batch:.3f} ms/sample CPU"
        )
    start = time.perf_counter()
    renderer = ground_truth.GroundTruthRenderer(model, raster, 450)
    print(f"GroundTruthRenderer set-up: {time.perf_counter() - start:.3f} s")
    for batch in args.batches:
        shape, exp, pose = fits(batch)
        wall, cpu = _time(lambda: renderer(shape, exp, pose), args.repeats)
        print(
            f"numpy GroundTruthRenderer batch {batch:3d}: {1e3 * wall / batch:.3f} ms/sample "
            f"wall, {1e3 * cpu / batch:.3f} ms/sample CPU"
        )
    if args.no_jax:
        return
    for device in {jax.devices("cpu")[0], jax.devices()[0]}:
        fn = ground_truth.make_fit_to_position_maps_jax(model, raster, 450, device=device)
        for batch in args.batches:
            shape, exp, pose = (jax.device_put(x, device) for x in fits(batch))
            wall, cpu = _time(lambda: jax.block_until_ready(fn(shape, exp, pose)), args.repeats)
            print(
                f"jax jit ({device.platform}) fit->map batch {batch:3d}: "
                f"{1e3 * wall / batch:.3f} ms/sample wall, {1e3 * cpu / batch:.3f} ms/sample CPU"
            )


def main(argv=None):
    args = _parse(argv)
    if args.all_cores or os.environ.get("PRN_JAX_BENCH_CHILD"):
        _run(args)
        return 0
    cpu = min(os.sched_getaffinity(0))
    child_argv = sys.argv[1:] if argv is None else list(argv)
    return subprocess.run(
        [sys.executable, "-m", "prn_jax.geometry.bench_ground_truth", *child_argv],
        env={**os.environ, **_ONE_CORE_ENV},
        check=False,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    ).returncode
