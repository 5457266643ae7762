"""Parity of the imported weights with TensorFlow's own forward pass of PRNet's graph.

Not run by the test suite (needs TensorFlow, which prn-jax only uses as the optional `tf` extra).
Two steps, in two environments (TensorFlow need not share a virtualenv with JAX):

  # 1. TensorFlow: random values for the 245 released variable names and shapes (plus Adam slots,
  #    as in the released file), a TF1-style checkpoint written by tf.compat.v1.train.Saver, TF's
  #    forward of the resfcn256 graph (tf.nn.conv2d / conv2d_transpose SAME, BN eps 1e-3 inference)
  python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu numpy
  /tmp/tfvenv/bin/python benchmarks/tf_forward_parity.py tf --out /tmp/tf_parity \\
      --variables prnet_resfcn256_variables.json  # the released model's variable list (name -> shape)

  # 2. JAX: import the checkpoint (`tf_weights.import_tf_checkpoint` when TensorFlow is importable,
  #    else the tensors step 1 read back with tf.train.load_checkpoint) and compare outputs.
  .venv/bin/python benchmarks/tf_forward_parity.py jax --out /tmp/tf_parity

The TF graph below is written from docs/network.md (PRNet's resfcn256), independently of
prn_jax.model, with TF's own ops.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ENCODER = ((32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1))
DECODER = (
    (512, 1),
    (256, 2),
    (256, 1),
    (256, 1),
    (128, 2),
    (128, 1),
    (128, 1),
    (64, 2),
    (64, 1),
    (64, 1),
    (32, 2),
    (32, 1),
    (16, 2),
    (16, 1),
    (3, 1),
    (3, 1),
    (3, 1),
)
EPS = 1e-3


def _name(base, i):
    return base if i == 0 else f"{base}_{i}"


def tf_step(out: Path, variables_json: Path, size: int, batch: int, seed: int) -> None:
    import tensorflow as tf

    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    shapes = {n: tuple(s) for n, s in json.loads(variables_json.read_text())}
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in shapes.items():
        if name.endswith("weights"):
            fan_in = np.prod(shape[:2]) * (shape[3] if "Conv2d_transpose" in name else shape[2])
            values[name] = rng.normal(0, 1 / np.sqrt(fan_in), shape)
        elif name.endswith("moving_variance"):
            values[name] = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("gamma"):
            values[name] = rng.uniform(0.8, 1.2, shape)
        else:  # beta, moving_mean
            values[name] = rng.normal(0, 0.1, shape)
    images = rng.uniform(0, 1, (batch, size, size, 3)).astype(np.float32)

    graph = tf.Graph()
    with graph.as_default():
        var = {n: tf1.get_variable(n, initializer=v.astype(np.float32)) for n, v in values.items()}
        slots = [
            tf1.get_variable(n + "/Adam", initializer=np.zeros(shapes[n], np.float32))
            for n in list(shapes)[:3]
        ]  # optimiser slots, as in the released checkpoint
        beta1_power = tf1.get_variable("beta1_power", initializer=np.float32(0.9))

        def bn(x, scope):
            return tf.nn.batch_normalization(
                x,
                var[f"{scope}/BatchNorm/moving_mean"],
                var[f"{scope}/BatchNorm/moving_variance"],
                var[f"{scope}/BatchNorm/beta"],
                var[f"{scope}/BatchNorm/gamma"],
                EPS,
            )

        def conv(x, scope, stride):
            return tf.nn.conv2d(x, var[f"{scope}/weights"], [1, stride, stride, 1], "SAME")

        x = tf1.placeholder(tf.float32, (batch, size, size, 3))
        h = tf.nn.relu(bn(conv(x, "resfcn256/Conv", 1), "resfcn256/Conv"))
        for i, (c, s) in enumerate(ENCODER):
            scope = f"resfcn256/{_name('resBlock', i)}"
            shortcut = conv(h, f"{scope}/shortcut", s) if (s != 1 or h.shape[-1] != c) else h
            y = tf.nn.relu(bn(conv(h, f"{scope}/Conv", 1), f"{scope}/Conv"))
            y = tf.nn.relu(bn(conv(y, f"{scope}/Conv_1", s), f"{scope}/Conv_1"))
            y = conv(y, f"{scope}/Conv_2", 1)
            h = tf.nn.relu(bn(y + shortcut, scope))
        for i, (c, s) in enumerate(DECODER):
            scope = f"resfcn256/{_name('Conv2d_transpose', i)}"
            n, hh, ww, _ = h.shape
            y = tf.nn.conv2d_transpose(
                h, var[f"{scope}/weights"], [n, hh * s, ww * s, c], [1, s, s, 1], "SAME"
            )
            y = bn(y, scope)
            h = tf.sigmoid(y) if i == len(DECODER) - 1 else tf.nn.relu(y)
        saver = tf1.train.Saver(var_list=list(var.values()) + slots + [beta1_power])
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            out.mkdir(parents=True, exist_ok=True)
            prefix = saver.save(sess, str(out / "256_256_resfcn256_weight"), write_meta_graph=False)
            outputs = sess.run(h, {x: images})
    reader = tf.train.load_checkpoint(prefix)
    stored = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    np.savez(out / "tf_forward.npz", images=images, outputs=outputs, checkpoint=prefix)
    np.savez(out / "checkpoint_tensors.npz", **stored)
    print(
        f"TF {tf.__version__}: wrote {prefix} ({len(stored)} tensors) and TF outputs {outputs.shape} "
        f"(range {outputs.min():.4f}..{outputs.max():.4f}) to {out}"
    )


def jax_step(out: Path) -> int:
    import jax.numpy as jnp

    from prn_jax import model as model_lib
    from prn_jax.model import tf_weights

    ref = np.load(out / "tf_forward.npz")
    prefix = str(ref["checkpoint"])
    try:
        variables = tf_weights.import_tf_checkpoint(prefix)
        how = f"tf_weights.import_tf_checkpoint({prefix})"
    except ImportError:
        with np.load(out / "checkpoint_tensors.npz") as npz:
            arrays = tf_weights.network_variables({n: npz[n] for n in npz.files})
        variables = tf_weights.variables_from_tf_arrays(arrays, tf_weights.infer_width(arrays))
        how = "tensors read by tf.train.load_checkpoint in step 1 -> tf_weights.variables_from_tf_arrays"
    worst = 0.0
    for impl in ("reference", "flipped_conv", "subpixel"):
        network = model_lib.ResFCN256(width=16, decoder_impl=impl)
        ours = np.asarray(network.apply(variables, jnp.asarray(ref["images"]), train=False))
        err = float(np.abs(ours - ref["outputs"]).max())
        worst = max(worst, err)
        print(f"decoder {impl:<12} max |JAX - TF| = {err:.3e}  (x 281.6 px: {err * 281.6:.3e} px)")
    print(
        f"import via {how}; outputs {ref['outputs'].shape}; worst {worst:.3e} "
        f"({'PASS' if worst <= 1e-4 else 'FAIL'} at 1e-4)"
    )
    return 0 if worst <= 1e-4 else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("tf", "jax"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/tf_parity"))
    parser.add_argument(
        "--variables",
        type=Path,
        default=Path(__file__).resolve().parents[2]
        / "shared"
        / "reference"
        / "prnet_resfcn256_variables.json",
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.step == "tf":
        tf_step(args.out, args.variables, args.size, args.batch, args.seed)
        return 0
    return jax_step(args.out)


if __name__ == "__main__":
    sys.exit(main())
