"""Import of the released TF checkpoint: name/shape mapping onto the 245 released variables, clear
errors, and TF's conv2d_transpose convention checked against a direct numpy implementation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prn_jax import model as model_lib
from prn_jax.model import tf_weights


def _released(shared):
    return {
        name: tuple(shape)
        for name, shape in json.loads((shared / "reference" / "prnet_resfcn256_variables.json").read_text())
    }


def _random_arrays(shapes, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("moving_variance"):
            out[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            out[name] = (
                rng.normal(0, 0.05, shape) if name.endswith("weights") else rng.normal(0, 0.2, shape)
            ).astype(np.float32)
    return out


def test_released_names_round_trip_and_forward_runs(shared):
    released = _released(shared)
    assert len(released) == 245
    assert tf_weights.expected_tf_shapes(width=16) == released
    arrays = _random_arrays(released)
    # A real checkpoint also holds Adam slots and optimiser state: they are dropped.
    with_slots = dict(arrays, **{"resfcn256/Conv/weights/Adam": np.zeros(1), "beta1_power": np.zeros(())})
    variables = tf_weights.variables_from_tf_arrays(tf_weights.network_variables(with_slots))
    assert model_lib.count_params(variables["params"]) == 13_353_618
    np.testing.assert_array_equal(
        variables["params"]["Conv2d_transpose_5"]["kernel"], arrays["resfcn256/Conv2d_transpose_5/weights"]
    )
    np.testing.assert_array_equal(
        variables["batch_stats"]["resBlock_9"]["BatchNorm"]["var"],
        arrays["resfcn256/resBlock_9/BatchNorm/moving_variance"],
    )
    back = tf_weights.tf_arrays_from_variables(variables)
    assert back.keys() == arrays.keys() and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    # Fully convolutional: a 32 x 32 input is enough to run every layer.
    out = model_lib.ResFCN256(width=16).apply(variables, jnp.full((1, 32, 32, 3), 0.5), train=False)
    assert out.shape == (1, 32, 32, 3) and bool(jnp.all(jnp.isfinite(out)))


def test_missing_unexpected_and_misshaped_names_are_named(shared):
    arrays = _random_arrays(_released(shared))
    bad = dict(arrays)
    del bad["resfcn256/resBlock_4/Conv_2/weights"]
    bad["resfcn256/extra/weights"] = np.zeros(3, np.float32)
    bad["resfcn256/Conv2d_transpose_14/weights"] = np.zeros((4, 4, 16, 3), np.float32)  # (out, in) swapped
    with pytest.raises(tf_weights.WeightImportError) as error:
        tf_weights.variables_from_tf_arrays(bad, source="ckpt")
    message = str(error.value)
    assert "\n" not in message and message.startswith("ckpt:")
    assert "missing 1: resfcn256/resBlock_4/Conv_2/weights" in message
    assert "unexpected 1: resfcn256/extra/weights" in message
    assert "resfcn256/Conv2d_transpose_14/weights has shape (4, 4, 16, 3), expected (4, 4, 3, 16)" in message
    with pytest.raises(tf_weights.WeightImportError, match="width 8"):
        tf_weights.variables_from_tf_arrays(arrays, width=8)


def test_weights_file_round_trip(tmp_path):
    variables = tf_weights.variables_from_tf_arrays(
        _random_arrays(tf_weights.expected_tf_shapes(width=2, image_size=32)), width=2, image_size=32
    )
    path = tf_weights.save_weights(tmp_path / "w.npz", variables)
    width, loaded = tf_weights.load_weights(path, image_size=32)
    assert width == 2
    jax.tree.map(np.testing.assert_array_equal, loaded, variables)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(tf_weights.WeightImportError, match="junk.npz"):
        tf_weights.load_weights(tmp_path / "junk.npz")


def test_without_tensorflow_the_error_says_how_to_install(tmp_path):
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install 'prn-jax\[tf\]'"):
            tf_weights.import_tf_checkpoint(tmp_path / "ckpt")
    else:
        with pytest.raises(tf_weights.WeightImportError, match="ckpt"):
            tf_weights.import_tf_checkpoint(tmp_path / "ckpt")


def tf_conv2d_transpose_numpy(x, kernel, stride):
    """TF's definition, written out: conv2d_transpose(padding='SAME') is the gradient of a SAME
    conv2d from (H*s, W*s, Cout) to (H, W, Cin) with the (kh, kw, Cout, Cin) kernel. That conv pads
    total = max(k - s, 0) with total // 2 before (the extra pad after), so input pixel o, tap t
    scatter-adds x[o] @ kernel[t].T into output pixel o*s + t - total//2 (when inside).

    x: (H, W, Cin), kernel: (kh, kw, Cout, Cin) -> (H*s, W*s, Cout), float64.
    """
    h, w, _ = x.shape
    kh, kw, cout, _ = kernel.shape
    lo_y, lo_x = max(kh - stride, 0) // 2, max(kw - stride, 0) // 2
    out = np.zeros((h * stride, w * stride, cout))
    for oy in range(h):
        for ox in range(w):
            for ty in range(kh):
                for tx in range(kw):
                    iy, ix = oy * stride + ty - lo_y, ox * stride + tx - lo_x
                    if 0 <= iy < h * stride and 0 <= ix < w * stride:
                        out[iy, ix] += kernel[ty, tx] @ x[oy, ox]
    return out


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("impl", ["reference", "subpixel"])
def test_decoder_layer_applies_tf_kernels_like_tf(stride, impl):
    rng = np.random.default_rng(stride)
    x = rng.normal(size=(1, 5, 6, 3))
    kernel = rng.normal(size=(4, 4, 4, 3))  # TF layout (kh, kw, out, in), asymmetric on purpose
    layer = model_lib.ConvTransposeBN(features=4, stride=stride, impl=impl)
    identity_bn = {"mean": jnp.zeros(4), "var": jnp.full(4, 1 - model_lib.BN_EPSILON)}
    variables = {
        "params": {
            "kernel": jnp.asarray(kernel, jnp.float32),
            "BatchNorm": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
        },
        "batch_stats": {"BatchNorm": identity_bn},
    }
    ours = layer.apply(variables, jnp.asarray(x, jnp.float32))
    want = np.maximum(tf_conv2d_transpose_numpy(x[0], kernel, stride), 0)
    assert ours.shape == (1, 5 * stride, 6 * stride, 4)
    np.testing.assert_allclose(np.asarray(ours[0]), want, atol=1e-4, rtol=1e-4)
    # The flipped-kernel reading (Flax's default ConvTranspose) is a different function.
    wrong = np.maximum(tf_conv2d_transpose_numpy(x[0], kernel[::-1, ::-1], stride), 0)
    assert np.abs(np.asarray(ours[0]) - wrong).max() > 0.1
