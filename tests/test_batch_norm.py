"""The fused BatchNorm + activation op (prn_jax.model.batch_norm) against autodiff of the plain formula."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prn_jax.model import batch_norm

EPS = 1e-3
ACT = {"identity": lambda z: z, "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}


def _reference(x, scale, bias, activation):
    """Two-pass statistics, autodiff gradient: (y, mean, biased var)."""
    mean = jnp.mean(x, axis=tuple(range(x.ndim - 1)))
    var = jnp.mean(jnp.square(x - mean), axis=tuple(range(x.ndim - 1)))
    return ACT[activation]((x - mean) * jax.lax.rsqrt(var + EPS) * scale + bias), mean, var


def _inputs(shape, seed, offset=3.0):
    kx, ks, kb, kc = jax.random.split(jax.random.PRNGKey(seed), 4)
    c = shape[-1]
    x = offset + 2.0 * jax.random.normal(kx, shape)  # mean far from 0: tests the shifted sums
    return (
        x,
        jax.random.uniform(ks, (c,), minval=0.5, maxval=1.5),
        jax.random.normal(kb, (c,)),
        jax.random.normal(kc, shape),
    )


def _loss(fn, activation):
    """A scalar of y and of the statistics, so the statistics' cotangents are tested too."""

    def loss(x, scale, bias, cot):
        y, mean, var = fn(x, scale, bias, activation)
        return jnp.sum(y * cot) + jnp.sum(jnp.sin(mean)) + 0.5 * jnp.sum(var)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def _fused(x, scale, bias, activation):
    return batch_norm.batch_norm_train(x, scale, bias, activation, None, EPS)


@pytest.mark.parametrize("activation", ["identity", "relu", "sigmoid"])
@pytest.mark.parametrize("shape", [(4, 16, 16, 8), (3, 5, 7, 6), (2, 1, 1, 32), (4, 32, 32, 3)])
def test_fused_batch_norm_equals_autodiff_of_the_formula(shape, activation):
    x, scale, bias, cot = _inputs(shape, seed=sum(shape))
    y, mean, var = _fused(x, scale, bias, activation)
    y_ref, mean_ref, var_ref = _reference(x, scale, bias, activation)
    np.testing.assert_allclose(mean, mean_ref, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(var, var_ref, rtol=2e-5)
    np.testing.assert_allclose(y, y_ref, atol=2e-5)
    (loss, grads), (loss_ref, grads_ref) = (
        _loss(_fused, activation)(x, scale, bias, cot),
        _loss(_reference, activation)(x, scale, bias, cot),
    )
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
    for name, g, g_ref in zip(("x", "scale", "bias"), grads, grads_ref):
        scale_of = float(jnp.max(jnp.abs(g_ref)))
        np.testing.assert_allclose(g, g_ref, atol=2e-5 * scale_of, err_msg=name)


def test_statistics_are_accurate_for_a_large_mean():
    """Mean 1000, std 1: E[x^2] - E[x]^2 in float32 would lose the variance entirely."""
    x = 1000.0 + jax.random.normal(jax.random.PRNGKey(0), (16, 32, 32, 4))
    mean, var = jax.jit(batch_norm.batch_statistics)(x)
    x64 = np.asarray(x, np.float64).reshape(-1, 4)
    np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-7)
    np.testing.assert_allclose(var, x64.var(0), rtol=1e-4)


def test_bfloat16_input_keeps_float32_statistics():
    x, scale, bias, _ = _inputs((4, 16, 16, 8), seed=1)
    y, mean, var = _fused(x.astype(jnp.bfloat16), scale, bias, "relu")
    assert y.dtype == jnp.bfloat16 and mean.dtype == var.dtype == jnp.float32
    _, mean_ref, var_ref = _reference(x.astype(jnp.bfloat16).astype(jnp.float32), scale, bias, "relu")
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-6)
    np.testing.assert_allclose(var, var_ref, rtol=1e-5)


def test_under_pmap_statistics_and_gradients_are_those_of_the_whole_batch():
    """4 devices x 2 examples == one device with 8: the outputs, the input gradient of the summed
    loss, and the per-device scale/bias gradients summed over devices."""
    devices = 4
    x, scale, bias, cot = _inputs((8, 8, 8, 16), seed=7, offset=-5.0)

    def device_loss(x, scale, bias, cot):
        y, mean, var = batch_norm.batch_norm_train(x, scale, bias, "relu", "d", EPS)
        return jnp.sum(y * cot) + jnp.sum(jnp.sin(mean)) / devices + 0.5 * jnp.sum(var) / devices

    split = lambda a: a.reshape(devices, -1, *a.shape[1:])
    grads = jax.pmap(jax.grad(device_loss, argnums=(0, 1, 2)), axis_name="d", in_axes=(0, None, None, 0))(
        split(x), scale, bias, split(cot)
    )
    _, want = _loss(_reference, "relu")(x, scale, bias, cot)
    np.testing.assert_allclose(
        grads[0].reshape(x.shape), want[0], atol=2e-5 * float(jnp.max(jnp.abs(want[0])))
    )
    np.testing.assert_allclose(grads[1].sum(0), want[1], rtol=2e-5, atol=1e-4)
    np.testing.assert_allclose(grads[2].sum(0), want[2], rtol=2e-5, atol=1e-4)
    y = jax.pmap(lambda x: batch_norm.batch_norm_train(x, scale, bias, "relu", "d", EPS)[0], axis_name="d")(
        split(x)
    )
    np.testing.assert_allclose(y.reshape(x.shape), _reference(x, scale, bias, "relu")[0], atol=2e-5)


@pytest.mark.parametrize("activation", ["identity", "relu", "sigmoid"])
def test_module_has_flax_variables_and_moving_statistics(activation):
    x, _, _, _ = _inputs((4, 8, 8, 6), seed=3)
    ours = batch_norm.BatchNorm(use_running_average=False, momentum=0.9, activation=activation)
    flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=EPS)
    variables = ours.init(jax.random.PRNGKey(0), x)
    flax_variables = flax_bn.init(jax.random.PRNGKey(0), x)
    assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, flax_variables)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(flax_variables)):
        np.testing.assert_array_equal(a, b)  # initialising leaves the moving statistics alone
    variables = {
        "params": {"scale": jnp.linspace(0.5, 2, 6), "bias": jnp.linspace(-1, 1, 6)},
        "batch_stats": {"mean": jnp.full((6,), 0.5), "var": jnp.full((6,), 2.0)},
    }
    y, updated = ours.apply(variables, x, mutable=["batch_stats"])
    y_flax, updated_flax = flax_bn.apply(variables, x, mutable=["batch_stats"])
    np.testing.assert_allclose(y, ACT[activation](y_flax), atol=2e-5)
    for a, b in zip(jax.tree.leaves(updated), jax.tree.leaves(updated_flax)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    inference = batch_norm.BatchNorm(use_running_average=True, activation=activation)
    flax_inference = nn.BatchNorm(use_running_average=True, epsilon=EPS)
    np.testing.assert_allclose(
        inference.apply(variables, x), ACT[activation](flax_inference.apply(variables, x)), atol=2e-6
    )


def test_bad_arguments_name_the_problem():
    x = jnp.ones((2, 4, 4, 3))
    with pytest.raises(ValueError, match="activation must be one of"):
        batch_norm.batch_norm_train(x, jnp.ones(3), jnp.zeros(3), "tanh", None, EPS)
    with pytest.raises(ValueError, match=r"scale \(4,\) and bias \(3,\) must be \(3,\)"):
        batch_norm.batch_norm_train(x, jnp.ones(4), jnp.zeros(3), "relu", None, EPS)


def test_output_gets_its_own_buffer_on_cpu():
    """On CPU the output (and the input gradient) pass a conditional, so XLA cannot fuse the
    normalisation into the transposes of the kernel gradients; NaN statistics give NaN."""
    x, scale, bias, cot = _inputs((2, 8, 8, 4), seed=2)
    loss = _loss(_fused, "relu")
    assert loss.lower(x, scale, bias, cot).compile().as_text().count("conditional(") == 2
    y = _fused(x.at[0, 0, 0, 0].set(jnp.nan), scale, bias, "relu")[0]
    assert bool(jnp.all(jnp.isnan(y)))
