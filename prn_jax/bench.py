"""`prn-jax bench`: timings that print numbers (medians after warm-up, compile time separate).

  prn-jax bench [model] --config paper [--impls reference,subpixel] [--dtypes float32,bfloat16]
                                       [--augment off,on]
  prn-jax bench decoder ...       (prn_jax.bench_decoder: the 17-layer decoder alone)
  prn-jax bench augment ...       (prn_jax.bench_augment: on-device vs host augmentation)
  prn-jax bench ground-truth ...  (prn_jax.geometry.bench_ground_truth: fit -> position map)
  prn-jax bench input --data DIR  (prn_jax.input_pipeline: host pipeline examples/s)
  prn-jax bench predict ...       (prn_jax.predict: per-image end-to-end inference)

The model benchmark times, for every (decoder impl, dtype) pair in one process: the pmapped
train step on procedural batches (images/s), forward latency at batch 1 and forward throughput at
a larger batch; FLOPs per example come from XLA's cost analysis, and model FLOP utilisation is
printed when --peak-tflops is given (e.g. 989 for an H100 SXM's dense bf16). With
`--augment off,on` each variant also runs with the on-device augmentation, and the ratios give
augmentation's share of the train step.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

SUITES = {"decoder": "prn_jax.bench_decoder", "augment": "prn_jax.bench_augment",
          "ground-truth": "prn_jax.geometry.bench_ground_truth", "input": "prn_jax.input_pipeline"}


def median_time(fn, repeats: int) -> float:
    """Median wall seconds of `repeats` calls of `fn` (its result waited for); no warm-up."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def bench_variant(config, repeats: int, forward_batch: int, peak_tflops: float | None) -> dict:
    from prn_jax import loss as loss_lib, model as model_lib, train

    trainer = train.Trainer(config)
    state = trainer.init_state()
    k = config.steps_per_dispatch
    batch = trainer.place_batch(next(train.stack_dispatch(train.make_batches(config, 0, trainer.num_local_devices), k)))
    weights = trainer.place(jnp.asarray(loss_lib.weight_map(train.region_labels(config), config.weight_ratios)))
    holder = {"state": state}

    def step():
        holder["state"], metrics = trainer.step(holder["state"], batch, weights)
        return metrics["loss"]

    t0 = time.perf_counter()
    jax.block_until_ready(step())
    train_compile = time.perf_counter() - t0
    step()  # warm-up
    train_s = median_time(step, repeats) / k

    model = model_lib.build_model(config)
    variables = {"params": holder["state"].params, "batch_stats": holder["state"].batch_stats}
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
    out = {"train_step_s": train_s, "train_images_per_s": config.batch_size / train_s,
           "train_compile_s": train_compile}
    for name, b in (("b1", 1), (f"b{forward_batch}", forward_batch)):
        x = jnp.asarray(np.random.default_rng(0).uniform(size=(b, config.image_size, config.image_size, 3)),
                        jnp.float32)
        t0 = time.perf_counter()
        compiled = fwd.lower(variables, x).compile()
        out[f"forward_{name}_compile_s"] = time.perf_counter() - t0
        jax.block_until_ready(compiled(variables, x))
        out[f"forward_{name}_s"] = median_time(lambda: compiled(variables, x), repeats)
        if b == 1:
            out["forward_flops_per_example"] = _flops(compiled)
    out[f"forward_b{forward_batch}_images_per_s"] = forward_batch / out[f"forward_b{forward_batch}_s"]
    # Training FLOPs per example: XLA's count for one device's step over its share of the batch.
    lowered = trainer.p_step.lower(holder["state"], batch, weights, None)
    per_device = config.batch_size // trainer.num_devices
    out["train_flops_per_example"] = _flops(lowered.compile()) / per_device
    if peak_tflops:
        achieved = out["train_flops_per_example"] * out["train_images_per_s"] / trainer.num_devices
        out["train_mfu"] = achieved / (peak_tflops * 1e12)
    return out


def bench_model(argv: list[str]) -> int:
    from prn_jax import configuration

    parser = argparse.ArgumentParser(prog="prn-jax bench model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="paper")
    parser.add_argument("--impls", default=None, help="comma list of decoder impls (default: config's)")
    parser.add_argument("--dtypes", default=None, help="comma list: float32,bfloat16 (default: config's)")
    parser.add_argument("--augment", default=None,
                        help="comma list: off,on (default: the config's augment.enabled)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--forward-batch", type=int, default=16)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU")
    args, overrides = parser.parse_known_args(argv)
    base = configuration.load_config(args.config, overrides)
    impls = args.impls.split(",") if args.impls else [base.decoder_impl]
    dtypes = args.dtypes.split(",") if args.dtypes else [base.dtype]
    augments = args.augment.split(",") if args.augment else ["on" if base.augment.enabled else "off"]
    if set(augments) - {"on", "off"}:
        parser.error(f"--augment {args.augment}: a comma list of on, off")
    print(f"# prn-jax bench model: config {args.config} {overrides}, image {base.image_size}, width "
          f"{base.width}, global batch {base.batch_size}, backend {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}), {args.repeats} repeats, medians")
    print(f"# XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} GLIBC_TUNABLES="
          f"{os.environ.get('GLIBC_TUNABLES', '')!r} (prn_jax.cpu_runtime)")
    rows = []
    for impl, dtype, aug in [(i, d, a) for i in impls for d in dtypes for a in augments]:
        config = configuration.load_config(args.config, overrides)
        config.decoder_impl, config.dtype = impl, dtype
        config.augment.enabled = aug == "on"
        r = bench_variant(config, args.repeats, args.forward_batch, args.peak_tflops)
        name = f"{dtype} aug {aug}"
        rows.append((impl, name, r))
        print(f"{impl:>13s} {name:>16s}  train step {r['train_step_s'] * 1e3:9.1f} ms "
              f"({r['train_images_per_s']:8.1f} img/s, compile {r['train_compile_s']:.1f} s)  "
              f"fwd b1 {r['forward_b1_s'] * 1e3:8.2f} ms  fwd b{args.forward_batch} "
              f"{r[f'forward_b{args.forward_batch}_images_per_s']:8.1f} img/s  "
              f"fwd {r['forward_flops_per_example'] / 1e9:.2f} GFLOP/img  train "
              f"{r['train_flops_per_example'] / 1e9:.2f} GFLOP/img"
              + (f"  MFU {100 * r['train_mfu']:.1f}%" if "train_mfu" in r else ""), flush=True)
    if len(rows) > 1:
        base_step = rows[0][2]["train_step_s"]
        base_fwd = rows[0][2]["forward_b1_s"]
        print(f"# ratios vs {rows[0][0]}/{rows[0][1]} (time / baseline time):")
        for impl, name, r in rows:
            print(f"{impl:>13s} {name:>16s}  train step x{r['train_step_s'] / base_step:.2f}  "
                  f"fwd b1 x{r['forward_b1_s'] / base_fwd:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if argv and argv[0] == "predict":
        from prn_jax import predict

        return predict.predict_benchmark(argv[1:]) or 0
    if argv and argv[0] in SUITES:
        return importlib.import_module(SUITES[argv[0]]).main(argv[1:]) or 0
    if argv and argv[0] == "model":
        argv = argv[1:]
    return bench_model(argv)
