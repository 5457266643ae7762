import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from prn_jax import cpu_runtime
from prn_jax import model as model_lib

PAPER_PARAMS = 13_353_618


def _abstract_variables(width=16, size=256, dtype=jnp.float32):
    net = model_lib.ResFCN256(width=width, dtype=dtype)
    return jax.eval_shape(lambda k: model_lib.init_variables(net, k, size), jax.random.PRNGKey(0))


def test_parameter_count_is_papers():
    variables = _abstract_variables()
    assert model_lib.count_params(variables["params"]) == PAPER_PARAMS
    bn_stats = model_lib.count_params(variables["batch_stats"])
    assert bn_stats == 11_890


def test_variables_map_one_to_one_onto_released_checkpoint(shared):
    released = json.loads((shared / "reference" / "prnet_resfcn256_variables.json").read_text())
    expected = {name: tuple(shape) for name, shape in released}
    assert len(expected) == 245
    ours = model_lib.tf_variable_shapes(_abstract_variables())
    assert ours == expected


def _run_at_o0(fn, *args):
    """fn(*args) as one program compiled at LLVM -O0: these run once, and compiling them at
    XLA's default -O3 (or running them op by op) cost ~1 min of the suite."""
    return jax.jit(fn).lower(*args).compile(compiler_options=cpu_runtime.RUN_ONCE_COMPILER_OPTIONS)(*args)


def _init_compiled(net, key, size):
    return _run_at_o0(lambda k: model_lib.init_variables(net, k, size), key)


def test_output_shape_range_and_dtypes():
    net = model_lib.ResFCN256(width=4, dtype=jnp.bfloat16)
    variables = _init_compiled(net, jax.random.PRNGKey(1), 64)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(variables))
    x = jax.random.uniform(jax.random.PRNGKey(2), (2, 64, 64, 3))
    out = jax.jit(lambda v, x: net.apply(v, x, train=False))(variables, x)
    assert out.shape == (2, 64, 64, 3) and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert model_lib.position_scale(256) == pytest.approx(281.6)


def test_rejects_bad_input_size():
    net = model_lib.ResFCN256(width=4)
    with pytest.raises(ValueError, match="divisible by 32"):
        net.init(jax.random.PRNGKey(0), jnp.zeros((1, 48, 48, 3)))


def test_decoder_impls_give_same_network_output():
    x = jax.random.uniform(jax.random.PRNGKey(3), (2, 32, 32, 3))
    ref = model_lib.ResFCN256(width=2, decoder_impl="reference")
    variables = _init_compiled(ref, jax.random.PRNGKey(4), 32)
    want = jax.jit(ref.apply)(variables, x)
    for impl in ("flipped_conv", "subpixel"):
        got = jax.jit(model_lib.ResFCN256(width=2, decoder_impl=impl).apply)(variables, x)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-6)


def test_batch_norm_impls_compute_the_same_training_step():
    """config.bn_impl reaches every BatchNorm (with its activation): "fused" and
    "flax_fast_variance" give flax's two-pass outputs and moving statistics up to float32
    rounding at a per-device batch of 4, and "fused" flax's parameter gradients in float64.
    Configs saved before bn_impl get flax's BatchNorm."""

    def config(dtype="float32", **fields):
        return ml_collections.ConfigDict({"width": 4, "dtype": dtype, "decoder_impl": "subpixel", **fields})

    assert model_lib.build_model(config(bn_impl="fused")).bn_impl == "fused"
    assert model_lib.build_model(config()).bn_impl == "flax"
    assert model_lib.build_model(config(bn_fast_variance=True)).bn_impl == "flax_fast_variance"
    nets = {impl: model_lib.build_model(config(bn_impl=impl)) for impl in model_lib.BN_IMPLS}
    variables = _init_compiled(nets["flax"], jax.random.PRNGKey(5), 64)
    fused_shapes = jax.eval_shape(
        lambda k: model_lib.init_variables(nets["fused"], k, 64), jax.random.PRNGKey(5)
    )
    assert jax.tree.map(np.shape, fused_shapes) == jax.tree.map(np.shape, variables)
    x = jax.random.uniform(jax.random.PRNGKey(6), (4, 64, 64, 3))
    outs = {
        impl: jax.jit(lambda v, x, net=net: net.apply(v, x, train=True, mutable=["batch_stats"]))(
            variables, x
        )
        for impl, net in nets.items()
    }
    y_ref, s_ref = outs.pop("flax")
    for impl, (y, stats) in outs.items():
        # Rounding differences grow through 27 BatchNorms: measured up to 1.6e-4 on the [0, 1]
        # output for flax_fast_variance.
        np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), atol=5e-4, err_msg=impl)
        for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(s_ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-5, err_msg=impl)
    # Gradients at width 4 and batch 4 are ill-conditioned in float32 (flax's own two variance
    # formulas differ by 3% in some leaves); in float64 the formulations must agree.
    with jax.enable_x64(True):
        target = jax.random.uniform(jax.random.PRNGKey(7), (4, 32, 32, 3), jnp.float64)
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        grads = {}
        for impl in ("fused", "flax"):
            net = model_lib.build_model(config("float64", bn_impl=impl))

            def loss(params, net=net):
                y, _ = net.apply(
                    {**v64, "params": params},
                    x[:, ::2, ::2].astype(jnp.float64),
                    train=True,
                    mutable=["batch_stats"],
                )
                return jnp.mean(jnp.square(y - target))

            grads[impl] = jax.tree.leaves(_run_at_o0(jax.grad(loss), v64["params"]))
    for a, b in zip(grads["fused"], grads["flax"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-9 * float(np.max(np.abs(b))))
