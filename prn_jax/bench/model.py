"""`prn-jax bench model`: the network's train step and forward (medians after warm-up, compile
time separate).

  prn-jax bench [model] --config paper [--impls reference,subpixel] [--dtypes float32,bfloat16]
                                       [--augment off,on] [--batch-sizes 16,64,256]
                                       [--peak-tflops 989] [--json FILE] [--plot PNG]
                                       [--resident | --resident-only]

The model benchmark times, for every (decoder impl, dtype) pair in one process: the pmapped
train step on procedural batches (images/s), forward latency at batch 1 and forward throughput at
a larger batch. FLOPs per example are XLA's count for the program as lowered, before optimisation
(the same on every platform; per device, over the examples it sees). Model FLOP utilisation (train
step FLOPs x images/s per device / peak) is printed when --peak-tflops is given (e.g. 989 for an
H100 or H200 SXM's dense bf16). With `--augment off,on` each variant also runs with the on-device
augmentation, and the ratios give augmentation's share of the train step. `--batch-sizes` times
the train step at each global batch size in increasing order and stops at the first that does
not fit in device memory (recorded as such): the largest batch that fits, and its images/s.
`--json FILE` writes every row with the versions and the device, `--plot PNG` draws images/s
(and MFU) against the batch size.

`--resident` adds, per variant and batch, the device-resident step (`config.data.source =
"device"`): the full train step with the batch gathered on the devices by index from a resident
set (RESIDENT_BATCHES global batches of records), augmentation and the maps rendered on the device
from fits, against the same step on pre-placed batches of fits; both on fits of the procedural face
model (prn_jax.synth, 199 + 29 components), timed alternately in one process, and their ratio.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from prn_jax import checkpointing, configuration
from prn_jax import loss as loss_lib
from prn_jax import model as model_lib
from prn_jax.bench.timing import median_time
from prn_jax.data import device_data, generated, train_data
from prn_jax.train import trainer as trainer_lib

# Distinct procedural examples in a benchmark batch; larger batches repeat them (the step's time
# does not depend on the pixel values, and generating 1,000 examples would take longer than timing).
DISTINCT_EXAMPLES = 32
# The benchmark feeds procedural batches, whatever data the config names.
PROCEDURAL = ("data.source='generated'",)


def _flops(cost) -> float:
    """FLOPs from a cost analysis (a dict, or a list of one dict per program), NaN if absent."""
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def is_out_of_memory(error: BaseException) -> bool:
    """True for XLA's device-memory exhaustion (raised by compile or run)."""
    return isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(error)


def procedural_batch(config, num_local_devices: int) -> dict[str, np.ndarray]:
    """One host batch (local devices, [steps_per_dispatch,] per-device batch, S, S, 3) of the
    generated data: DISTINCT_EXAMPLES examples repeated up to the global batch."""
    local = config.batch_size // jax.process_count()
    distinct = [
        generated.example(config.seed, i, config.image_size) for i in range(min(local, DISTINCT_EXAMPLES))
    ]
    shape = (num_local_devices, local // num_local_devices) + (config.image_size,) * 2 + (3,)
    batch = {
        name: np.stack([distinct[i % len(distinct)][j] for i in range(local)]).reshape(shape)
        for j, name in enumerate(("image", "pos_map"))
    }
    return next(trainer_lib.stack_dispatch(itertools.repeat(batch), config.steps_per_dispatch))


# The device-resident rows hold this many global batches of records on the devices.
RESIDENT_BATCHES = 4


def procedural_fit_records(config, num_records: int) -> tuple[dict[str, np.ndarray], object]:
    """`num_records` training records of fits of the procedural face model (random identities,
    expressions and 300W-LP-like poses in a 450-pixel image, face3d's 1.5-rule crops) with the
    generated data's images as uint8: ({field: (num_records, ...)} as the streaming pipeline yields
    them with maps_on_device, numpy `FitRenderArrays` at config.image_size)."""
    from prn_jax.geometry import build_uv_raster, crop, fit_render_arrays, pose
    from prn_jax.synth import face_generator, sampling

    model = face_generator.make_procedural_face(face_generator.ModelSpec()).model
    size = config.image_size
    rng = np.random.default_rng(config.seed)
    poses, shapes, exps = [], [], []
    for _ in range(num_records):
        appearance = sampling.sample_appearance(rng, model)
        angles = sampling.profile_angles(rng, 2)[rng.integers(2)]
        poses.append(sampling.place_pose(model, appearance, angles, rng.uniform(180, 270, 2)))
        shapes.append(appearance.shape)
        exps.append(appearance.exp)
    poses, shapes, exps = np.stack(poses), np.stack(shapes), np.stack(exps)
    k = model.kpt_ind
    keypoints = pose.to_image(
        pose.transform_vertices(
            pose.synthesize_vertices(model.mean[k], model.shape_basis[k], model.exp_basis[k], shapes, exps),
            poses,
        ),
        sampling.IMAGE_SIZE,
    )
    distinct = [
        np.round(generated.example(config.seed, i, size)[0] * 255).astype(np.uint8)
        for i in range(min(num_records, DISTINCT_EXAMPLES))
    ]
    records = {
        "image": np.stack([distinct[i % len(distinct)] for i in range(num_records)]),
        "pose": poses.astype(np.float32),
        "shape": shapes.astype(np.float32),
        "expression": exps.astype(np.float32),
        "crop_transform": crop.crop_from_keypoints(keypoints, size).astype(np.float32),
        "image_height": np.full(num_records, sampling.IMAGE_SIZE, np.float32),
    }
    raster = build_uv_raster(model.uv, model.full_triangles, size)
    return records, fit_render_arrays(model, raster)


def bench_resident(config, repeats: int, peak_tflops: float | None) -> dict:
    """The device-resident train step (gather + augmentation + maps rendered on the device) and
    the same step on pre-placed batches of fits, timed alternately (`repeats` each, medians):
    seconds, images/s, FLOPs per example (XLA's count), their ratio. Single process."""
    config.data.maps_on_device = True
    trainer = trainer_lib.Trainer(config)
    g, d = config.batch_size, trainer.num_devices
    records, geometry = procedural_fit_records(config, RESIDENT_BATCHES * g)
    m = -(-len(records["image"]) // d)
    blocks = {k: np.zeros((d * m, *v.shape[1:]), v.dtype) for k, v in records.items()}
    for k, v in records.items():
        blocks[k][: len(v)] = v
    sharding = jax.sharding.NamedSharding(trainer.mesh, jax.sharding.PartitionSpec(trainer_lib.AXIS))
    resident = {k: jax.device_put(v.reshape(d, m, *v.shape[1:]), sharding) for k, v in blocks.items()}
    order = device_data.DeviceOrder(len(records["image"]), g, trainer.num_local_devices, config.seed)
    k = config.steps_per_dispatch
    preplaced = trainer.place_batch(
        next(
            trainer_lib.stack_dispatch(
                itertools.repeat({n: v[:g].reshape(d, g // d, *v.shape[1:]) for n, v in records.items()}),
                k,
            )
        )
    )
    indices = trainer_lib.stack_dispatch(order, k)
    labels = generated.region_labels(config.image_size)  # any labels: the time is the same
    weights = trainer.place(jnp.asarray(loss_lib.weight_map(labels, config.weight_ratios)))
    geometry = trainer.place(geometry)
    holder = {"state": trainer.init_state()}

    def run(batch, res):
        holder["state"], metrics = trainer.step(holder["state"], batch, weights, geometry, None, res)
        return metrics["loss"]

    inputs = {  # one dispatch's (batch, resident); the resident step sends fresh indices each time
        "preplaced": lambda: (preplaced, None),
        "resident": lambda: (trainer.place_batch(next(indices)), resident),
    }
    out = {"batch_size": g, "num_devices": d}
    per_device = g // d
    for name, make in inputs.items():
        batch, res = make()
        lowered = trainer.p_step.lower(holder["state"], batch, weights, geometry, trainer.run_inputs, res)
        out[f"{name}_flops_per_example"] = _flops(lowered.cost_analysis()) / (per_device * k)
        t0 = time.perf_counter()
        jax.block_until_ready(run(*make()))
        out[f"{name}_compile_s"] = time.perf_counter() - t0
        jax.block_until_ready(run(*make()))  # warm-up
    times = {name: [] for name in inputs}
    for _ in range(repeats):  # alternately, so that load changes hit both alike
        for name, make in inputs.items():
            times[name].append(median_time(lambda make=make: run(*make()), 1))
    for name in inputs:
        seconds = float(np.median(times[name])) / k
        out[f"{name}_step_s"] = seconds
        out[f"{name}_images_per_s"] = g / seconds
        if peak_tflops:
            achieved = out[f"{name}_flops_per_example"] * out[f"{name}_images_per_s"] / d
            out[f"{name}_mfu"] = achieved / (peak_tflops * 1e12)
    out["resident_over_preplaced"] = out["resident_step_s"] / out["preplaced_step_s"]
    return out


def bench_variant(
    config, repeats: int, forward_batch: int | None, peak_tflops: float | None, latency_repeats: int = 20
) -> dict:
    """Train step (and, unless forward_batch is None, forward at batch 1 and forward_batch) of
    `config` on all its devices: seconds, images/s, compile seconds, FLOPs per example."""
    trainer = trainer_lib.Trainer(config)
    state = trainer.init_state()
    k = config.steps_per_dispatch
    batch = trainer.place_batch(procedural_batch(config, trainer.num_local_devices))
    weights = trainer.place(
        jnp.asarray(loss_lib.weight_map(train_data.region_labels(config), config.weight_ratios))
    )
    holder = {"state": state}

    def step():
        holder["state"], metrics = trainer.step(holder["state"], batch, weights)
        return metrics["loss"]

    # Training FLOPs per example: XLA's count for the step's program (before optimisation) over the
    # examples one device sees in one dispatch.
    lowered = trainer.p_step.lower(holder["state"], batch, weights, None, trainer.run_inputs, None)
    per_device = config.batch_size // trainer.num_devices
    out = {
        "batch_size": config.batch_size,
        "num_devices": trainer.num_devices,
        "train_flops_per_example": _flops(lowered.cost_analysis()) / (per_device * k),
    }
    t0 = time.perf_counter()
    jax.block_until_ready(step())
    out["train_compile_s"] = time.perf_counter() - t0
    step()  # warm-up
    train_s = median_time(step, repeats) / k
    out.update(train_step_s=train_s, train_images_per_s=config.batch_size / train_s)
    if peak_tflops:
        achieved = out["train_flops_per_example"] * out["train_images_per_s"] / trainer.num_devices
        out["train_mfu"] = achieved / (peak_tflops * 1e12)
    if forward_batch is None:
        return out

    model = model_lib.build_model(config)
    variables = {"params": holder["state"].params, "batch_stats": holder["state"].batch_stats}
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
    rng = np.random.default_rng(0)
    v = jax.device_put(variables, trainer.devices[0])
    for name, b, n in (
        ("b1", 1, max(repeats, latency_repeats)),
        (f"b{forward_batch}", forward_batch, repeats),
    ):
        x = jax.device_put(
            jnp.asarray(rng.uniform(size=(b, config.image_size, config.image_size, 3)), jnp.float32),
            trainer.devices[0],
        )
        t0 = time.perf_counter()
        lowered = fwd.lower(v, x)
        compiled = lowered.compile()
        out[f"forward_{name}_compile_s"] = time.perf_counter() - t0
        jax.block_until_ready(compiled(v, x))
        out[f"forward_{name}_s"] = median_time(lambda: compiled(v, x), n)
        if b == 1:
            out["forward_flops_per_example"] = _flops(lowered.cost_analysis())
    out[f"forward_b{forward_batch}_images_per_s"] = forward_batch / out[f"forward_b{forward_batch}_s"]
    return out


def sweep_batch_sizes(run_one, batch_sizes: list[int]) -> list[dict]:
    """`run_one(batch_size, first)` for each size in increasing order, until one runs out of
    device memory: that one is recorded as {"batch_size": b, "out_of_memory": True, "error": ...}
    and the larger ones are not tried. Other errors propagate."""
    rows = []
    for i, b in enumerate(sorted(batch_sizes)):
        try:
            rows.append(run_one(b, i == 0))
        except Exception as error:  # noqa: BLE001 (only out-of-memory is caught, see below)
            if not is_out_of_memory(error):
                raise
            rows.append({"batch_size": b, "out_of_memory": True, "error": str(error).splitlines()[0][:300]})
            break
    return rows


def _format_resident_row(impl: str, name: str, r: dict) -> str:
    if r.get("out_of_memory"):
        head = f"{impl:>13s} {name:>16s}  batch {r['batch_size']:5d}"
        return f"{head}  device-resident: out of device memory: {r['error']}"
    mfu = "  MFU {:.1f}%".format(100 * r["resident_mfu"]) if "resident_mfu" in r else ""
    return (
        f"{impl:>13s} {name:>16s}  batch {r['batch_size']:5d}  device-resident step "
        f"{r['resident_step_s'] * 1e3:9.1f} ms ({r['resident_images_per_s']:8.1f} img/s{mfu}, gather + "
        f"augmentation + maps on device, {r['resident_flops_per_example'] / 1e9:.2f} GFLOP/img)  pre-placed "
        f"fits {r['preplaced_step_s'] * 1e3:9.1f} ms  ratio x{r['resident_over_preplaced']:.3f}"
    )


def _format_row(impl: str, name: str, r: dict, forward_batch: int) -> str:
    if r.get("out_of_memory"):
        return f"{impl:>13s} {name:>16s}  batch {r['batch_size']:5d}  out of device memory: {r['error']}"
    text = (
        f"{impl:>13s} {name:>16s}  batch {r['batch_size']:5d}  train step {r['train_step_s'] * 1e3:9.1f} ms "
        f"({r['train_images_per_s']:8.1f} img/s, compile {r['train_compile_s']:.1f} s)  train "
        f"{r['train_flops_per_example'] / 1e9:.2f} GFLOP/img"
        + (f"  MFU {100 * r['train_mfu']:.1f}%" if "train_mfu" in r else "")
    )
    if "forward_b1_s" in r:
        text += (
            f"  fwd b1 {r['forward_b1_s'] * 1e3:8.3f} ms  fwd b{forward_batch} "
            f"{r[f'forward_b{forward_batch}_images_per_s']:8.1f} img/s  "
            f"fwd {r['forward_flops_per_example'] / 1e9:.2f} GFLOP/img"
        )
    return text


def plot_throughput(rows: list[dict], path: str | Path, title: str) -> Path:
    """PNG of train images/s (and MFU, when the rows have it) against the global batch size, one
    line per (decoder impl, dtype, augmentation); batches that did not fit are marked with an x."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mfu = any("train_mfu" in r for r in rows)
    fig = Figure(figsize=(11 if mfu else 6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if mfu else 1, squeeze=False)[0]
    variants = dict.fromkeys((r["decoder_impl"], r["dtype"], r["augment"]) for r in rows)
    for impl, dtype, aug in variants:
        mine = [r for r in rows if (r["decoder_impl"], r["dtype"], r["augment"]) == (impl, dtype, aug)]
        timed = [r for r in mine if not r.get("out_of_memory")]
        label = f"{impl} {dtype}" + (" aug" if aug else "")
        for ax, key, scale in zip(axes, ("train_images_per_s", "train_mfu"), (1.0, 100.0)):
            (line,) = ax.plot(
                [r["batch_size"] for r in timed], [scale * r[key] for r in timed], "o-", label=label
            )
            for r in mine:
                if r.get("out_of_memory"):
                    ax.axvline(r["batch_size"], color=line.get_color(), ls=":", lw=1)
                    ax.plot([r["batch_size"]], [0], "x", color=line.get_color(), ms=9)
    sizes = sorted({r["batch_size"] for r in rows})
    for ax, ylabel in zip(axes, ("train images / s", "model FLOP utilisation (%)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.minorticks_off()
        ax.set_xlabel("global batch (x: out of device memory)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="prn-jax bench model", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="paper")
    parser.add_argument("--impls", default=None, help="comma list of decoder impls (default: config's)")
    parser.add_argument("--dtypes", default=None, help="comma list: float32,bfloat16 (default: config's)")
    parser.add_argument(
        "--augment", default=None, help="comma list: off,on (default: the config's augment.enabled)"
    )
    parser.add_argument(
        "--batch-sizes",
        default=None,
        help="comma list of global batch sizes, tried in increasing order until one "
        "does not fit in device memory (default: the config's batch_size)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed train steps (and forwards)")
    parser.add_argument("--latency-repeats", type=int, default=20, help="timed batch-1 forwards")
    parser.add_argument(
        "--forward-batch",
        type=int,
        default=16,
        help="batch of the forward throughput (0: no forward timings)",
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--plot", default=None, help="also plot images/s (and MFU) per batch to this PNG")
    parser.add_argument(
        "--resident",
        action="store_true",
        help="also time the device-resident step (gather, augmentation, maps on the device) "
        "against the step on pre-placed fits, and their ratio",
    )
    parser.add_argument(
        "--resident-only", action="store_true", help="--resident without the other train-step rows"
    )
    args, overrides = parser.parse_known_args(argv)
    base = configuration.load_config(args.config, [*PROCEDURAL, *overrides])
    impls = args.impls.split(",") if args.impls else [base.decoder_impl]
    dtypes = args.dtypes.split(",") if args.dtypes else [base.dtype]
    augments = args.augment.split(",") if args.augment else ["on" if base.augment.enabled else "off"]
    if set(augments) - {"on", "off"}:
        parser.error(f"--augment {args.augment}: a comma list of on, off")
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else [base.batch_size]
    except ValueError:
        parser.error(f"--batch-sizes {args.batch_sizes}: a comma list of integers")
    num_devices = jax.device_count() if base.num_devices == -1 else base.num_devices
    if bad := [b for b in batch_sizes if b <= 0 or b % num_devices]:
        parser.error(
            f"--batch-sizes {args.batch_sizes}: {bad} not a positive multiple of the "
            f"{num_devices} devices the step runs on"
        )
    device = jax.devices()[0]
    print(
        f"# prn-jax bench model: config {args.config} {overrides}, image {base.image_size}, width "
        f"{base.width}, global batches {sorted(batch_sizes)}, backend {jax.default_backend()} "
        f"({device.device_kind}) x{jax.device_count()}, jax {jax.__version__}, {args.repeats} "
        f"repeats ({args.latency_repeats} at batch 1), medians"
    )
    print(
        f"# XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} GLIBC_TUNABLES="
        f"{os.environ.get('GLIBC_TUNABLES', '')!r} (prn_jax.cpu_runtime)"
    )
    report = {
        "command": ["prn-jax", "bench", "model", *argv],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "packages": checkpointing.package_versions(),
        "git_revision": checkpointing.git_revision(),
        "peak_tflops": args.peak_tflops,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "rows": [],
    }
    rows = report["rows"]
    for impl, dtype, aug in itertools.product(impls, dtypes, augments):
        name = f"{dtype} aug {aug}"

        def run_one(batch_size: int, first: bool) -> dict:
            config = configuration.load_config(args.config, [*PROCEDURAL, *overrides])
            config.decoder_impl, config.dtype = impl, dtype
            config.augment.enabled = aug == "on"
            config.batch_size = batch_size
            return bench_variant(
                config,
                args.repeats,
                args.forward_batch if first and args.forward_batch else None,
                args.peak_tflops,
                args.latency_repeats,
            )

        for r in sweep_batch_sizes(run_one, [] if args.resident_only else batch_sizes):
            rows.append({"decoder_impl": impl, "dtype": dtype, "augment": aug == "on", **r})
            print(_format_row(impl, name, r, args.forward_batch), flush=True)
            if args.json:  # after every row: a run stopped by a time limit keeps what it measured
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        if not (args.resident or args.resident_only):
            continue

        def run_resident(batch_size: int, first: bool) -> dict:
            config = configuration.load_config(args.config, [*PROCEDURAL, *overrides])
            config.decoder_impl, config.dtype = impl, dtype
            config.augment.enabled = aug == "on"
            config.batch_size = batch_size
            return bench_resident(config, args.repeats, args.peak_tflops)

        for r in sweep_batch_sizes(run_resident, batch_sizes):
            report.setdefault("resident_rows", []).append(
                {"decoder_impl": impl, "dtype": dtype, "augment": aug == "on", **r}
            )
            print(_format_resident_row(impl, name, r), flush=True)
            if args.json:
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    timed = [r for r in rows if not r.get("out_of_memory")]
    first_size = min(batch_sizes)
    firsts = [r for r in timed if r["batch_size"] == first_size]
    if len(firsts) > 1:
        base_row = firsts[0]
        print(
            f"# ratios at batch {first_size} vs {base_row['decoder_impl']}/{base_row['dtype']} aug "
            f"{'on' if base_row['augment'] else 'off'} (time / baseline time):"
        )
        for r in firsts:
            print(
                f"{r['decoder_impl']:>13s} {r['dtype']:>8s} aug {'on ' if r['augment'] else 'off'}  "
                f"train step x{r['train_step_s'] / base_row['train_step_s']:.2f}"
                + (
                    f"  fwd b1 x{r['forward_b1_s'] / base_row['forward_b1_s']:.2f}"
                    if "forward_b1_s" in r
                    else ""
                )
            )
    if args.json:
        print(f"# wrote {args.json}")
    if args.plot and timed:
        title = (
            f"prn-jax train step, config {args.config} ({base.image_size}px, width {base.width}), "
            f"{device.device_kind} x{jax.device_count()}"
        )
        print(f"# wrote {plot_throughput(rows, args.plot, title)}")
    return 0
