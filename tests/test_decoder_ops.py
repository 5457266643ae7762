"""Every decoder formulation equals TF's SAME conv2d_transpose (forward and gradients).

Ground truth: TF defines conv2d_transpose(x, kernel) as the vector-Jacobian product of the
stride-s SAME convolution conv(y, kernel as HWIO with I=Cout, O=Cin) with respect to y, at
cotangent x. `_vjp_oracle` computes exactly that with jax.vjp, with TF's SAME padding written
out explicitly; `_scatter_oracle` is a second, loop-based numpy version of the same definition.

Tolerances (float32): every compared array satisfies max|a - b| <= 1e-5 * max(1, max|b|).
Inputs and kernels are scaled so that outputs are O(1). bfloat16: 3e-2 of the same scale.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from prn_jax.model.decoder_ops import DECODER_IMPLS, conv_transpose_tf, tf_same_pads

# PRNet decoder layer shapes (in channels, out channels, stride), docs/network.md.
DECODER_LAYER_SHAPES = (
    (512, 512, 1),
    (512, 256, 2),
    (256, 256, 1),
    (256, 128, 2),
    (128, 128, 1),
    (128, 64, 2),
    (64, 64, 1),
    (64, 32, 2),
    (32, 32, 1),
    (32, 16, 2),
    (16, 16, 1),
    (16, 3, 1),
    (3, 3, 1),
)
SPATIAL_SIZES = ((2, 2), (4, 4), (5, 3), (8, 8))
F32_TOL = 1e-5
BF16_TOL = 3e-2
HIGHEST = lax.Precision.HIGHEST


def _vjp_oracle(x, kernel, stride):
    """TF conv2d_transpose as the VJP of a TF-SAME strided convolution (the definition)."""
    batch, height, width, _ = x.shape
    kh, kw, cout, _ = kernel.shape
    pads = [tf_same_pads(kh, stride), tf_same_pads(kw, stride)]

    def conv(y):
        return lax.conv_general_dilated(
            y,
            kernel,
            (stride, stride),
            pads,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=HIGHEST,
        )

    y = jnp.zeros((batch, height * stride, width * stride, cout), x.dtype)
    out, vjp = jax.vjp(conv, y)
    assert out.shape == x.shape  # SAME: n*stride -> n
    return vjp(x)[0]


def _scatter_oracle(x, kernel, stride):
    """Loop form of the definition: x[o] scatters x[o] @ kernel[t] to output o*s + t - lo."""
    batch, height, width, _ = x.shape
    kh, kw, cout, _ = kernel.shape
    lo_y, _ = tf_same_pads(kh, stride)
    lo_x, _ = tf_same_pads(kw, stride)
    out = np.zeros((batch, height * stride, width * stride, cout), np.float64)
    for oy in range(height):
        for ox in range(width):
            for ty in range(kh):
                for tx in range(kw):
                    iy, ix = oy * stride + ty - lo_y, ox * stride + tx - lo_x
                    if 0 <= iy < out.shape[1] and 0 <= ix < out.shape[2]:
                        out[:, iy, ix] += x[:, oy, ox] @ kernel[ty, tx].T
    return out


def _random_problem(seed, batch, height, width, cin, cout, stride, k=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, height, width, cin)).astype(np.float32)
    fan = k * k * cin / stride**2  # taps reaching one output
    kernel = (rng.normal(size=(k, k, cout, cin)) / np.sqrt(fan)).astype(np.float32)
    cotangent = rng.normal(size=(batch, height * stride, width * stride, cout)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(cotangent)


def _assert_close(actual, expected, tol, what):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    err = np.max(np.abs(actual - expected))
    bound = tol * max(1.0, float(np.max(np.abs(expected))))
    assert err <= bound, f"{what}: max abs error {err:.3g} > {bound:.3g}"


def _outputs_and_grads(fns, stride):
    """jit(x, kernel, cotangent) -> per fn: (output, d<out, cot>/dx, d<out, cot>/dkernel).

    One jit for all formulations and the oracle keeps the number of compilations down.
    """

    @jax.jit
    def run(x, kernel, cotangent):
        results = {}
        for name, fn in fns.items():
            out, vjp = jax.vjp(lambda x_, k_, fn=fn: fn(x_, k_, stride), x, kernel)
            results[name] = (out, *vjp(cotangent))
        return results

    return run


@pytest.mark.parametrize("cin,cout,stride", DECODER_LAYER_SHAPES)
def test_all_impls_match_vjp_oracle_forward_and_gradients(cin, cout, stride):
    fns = {
        impl: lambda x, k, s, impl=impl: conv_transpose_tf(x, k, s, impl, precision=HIGHEST)
        for impl in DECODER_IMPLS
    }
    fns["oracle"] = _vjp_oracle
    run = _outputs_and_grads(fns, stride)
    for seed, (height, width) in enumerate(SPATIAL_SIZES):
        batch = 2
        x, kernel, cot = _random_problem(seed, batch, height, width, cin, cout, stride)
        results = run(x, kernel, cot)
        want = results.pop("oracle")
        assert want[0].shape == (batch, height * stride, width * stride, cout)
        for impl, got in results.items():
            for name, a, b in zip(("output", "grad x", "grad kernel"), got, want):
                what = f"{impl} {cin}->{cout} s{stride} {height}x{width} {name}"
                _assert_close(a, b, F32_TOL, what)


@pytest.mark.parametrize("k,stride", [(4, 1), (4, 2), (3, 1), (2, 2), (6, 2)])
def test_vjp_oracle_and_impls_match_scatter_definition(k, stride):
    x, kernel, _ = _random_problem(7, 2, 3, 4, 5, 6, stride, k=k)
    want = _scatter_oracle(np.asarray(x, np.float64), np.asarray(kernel, np.float64), stride)
    _assert_close(_vjp_oracle(x, kernel, stride), want, F32_TOL, f"vjp oracle k{k} s{stride}")
    for impl in DECODER_IMPLS:
        got = conv_transpose_tf(x, kernel, stride, impl, precision=HIGHEST)
        _assert_close(got, want, F32_TOL, f"{impl} k{k} s{stride}")


@pytest.mark.parametrize("stride", [1, 2])
def test_flax_conv_transpose_same_matches_tf(stride):
    """Flax's nn.ConvTranspose(transpose_kernel=True, padding='SAME') is TF's op, same kernel."""
    x, kernel, _ = _random_problem(3, 2, 5, 4, 8, 6, stride)
    layer = nn.ConvTranspose(
        6,
        (4, 4),
        strides=(stride, stride),
        padding="SAME",
        transpose_kernel=True,
        use_bias=False,
        precision=HIGHEST,
    )
    variables = layer.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].shape == kernel.shape
    got = layer.apply({"params": {"kernel": kernel}}, x)
    _assert_close(got, _vjp_oracle(x, kernel, stride), F32_TOL, f"flax ConvTranspose s{stride}")


@pytest.mark.parametrize("impl", DECODER_IMPLS)
@pytest.mark.parametrize("stride", [1, 2])
def test_bfloat16_compute_close_to_float32(impl, stride):
    x, kernel, _ = _random_problem(5, 2, 8, 8, 64, 32, stride)
    want = _vjp_oracle(x, kernel, stride)
    got = conv_transpose_tf(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), stride, impl)
    assert got.dtype == jnp.bfloat16
    _assert_close(got.astype(jnp.float32), want, BF16_TOL, f"{impl} bf16 s{stride}")


def test_bad_inputs_raise_named_errors():
    x, kernel, _ = _random_problem(0, 1, 2, 2, 4, 3, 2)
    with pytest.raises(ValueError, match="decoder_ops.conv_transpose_tf: impl"):
        conv_transpose_tf(x, kernel, 2, "fft")
    with pytest.raises(ValueError, match="in-channels"):
        conv_transpose_tf(x, jnp.swapaxes(kernel, 2, 3), 2)
    with pytest.raises(ValueError, match="multiple of stride"):
        conv_transpose_tf(x, kernel[:3, :3], 2, "subpixel")


@pytest.mark.slow
def test_decoder_benchmark_smoke():
    from prn_jax.bench import decoder as bench_decoder

    row = bench_decoder.bench_one(
        size=32, batch=1, width=1, impl="subpixel", dtype_name="float32", norm="batch", repeats=1
    )
    assert row["fwd_s"] > 0 and row["fwdbwd_s"] > 0
    assert row["fwdbwd_xla_gflop_per_ex"] > row["fwd_xla_gflop_per_ex"] > 0
    table = bench_decoder.format_table([row], width=1)
    assert "subpixel" in table and "model GFLOP/ex" in table
