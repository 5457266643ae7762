"""conv_ops.conv_same: "fast_grad" equals XLA's convolution, forward and gradients, for every
PRNet encoder layer shape; both equal TF's SAME convolution (numpy oracle). Tolerance (float32):
max|a - b| <= 1e-5 * max(1, max|b|), inputs scaled so outputs are O(1)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from prn_jax.model import conv_ops
from prn_jax.model.decoder_ops import tf_same_pads

HIGHEST = lax.Precision.HIGHEST
F32_TOL = 1e-5
# PRNet encoder convolutions at width 16 (in, out, kernel, stride): the first conv, each
# resBlock's strided 4x4 and 1x1 shortcut, and a stride-1 4x4 and 1x1.
ENCODER_LAYER_SHAPES = (
    (3, 16, 4, 1),
    (16, 16, 4, 2),
    (16, 32, 1, 2),
    (32, 32, 4, 2),
    (32, 64, 1, 2),
    (64, 64, 4, 2),
    (128, 128, 4, 2),
    (128, 256, 1, 2),
    (256, 256, 4, 2),
    (256, 512, 1, 2),
    (16, 16, 4, 1),
    (64, 32, 1, 1),
)


def _close(a, b, tol=F32_TOL):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    err, scale = np.max(np.abs(a - b)), max(1.0, float(np.max(np.abs(b))))
    assert err <= tol * scale, f"max error {err:.3g} > {tol} * {scale:.3g}"


def _numpy_same_conv(x, kernel, stride):
    """TF conv2d SAME as an explicit loop over kernel taps (float64)."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    kh, kw = kernel.shape[:2]
    (py, _), (px, _) = tf_same_pads(kh, stride), tf_same_pads(kw, stride)
    b, h, w, _ = x.shape
    ho, wo = h // stride, w // stride
    xp = np.pad(x, ((0, 0), (py, kh), (px, kw), (0, 0)))
    out = np.zeros((b, ho, wo, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i : i + stride * ho : stride, j : j + stride * wo : stride]
            out += patch @ kernel[i, j]
    return out


def _inputs(cin, cout, k, stride, size, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2, size, size, cin)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin), jnp.float32)
    cot = jnp.asarray(rng.normal(size=(2, size // stride, size // stride, cout)), jnp.float32)
    return x, kernel, cot


@pytest.mark.parametrize("cin,cout,k,stride", ENCODER_LAYER_SHAPES)
@pytest.mark.parametrize("size", (4, 8))
def test_fast_grad_equals_xla_forward_and_gradients(cin, cout, k, stride, size):
    x, kernel, cot = _inputs(cin, cout, k, stride, size)
    results = {}
    for impl in conv_ops.CONV_IMPLS:
        fn = jax.jit(lambda x, w, impl=impl: conv_ops.conv_same(x, w, stride, impl, precision=HIGHEST))
        out, vjp = jax.vjp(fn, x, kernel)
        results[impl] = (out, *vjp(cot))
    _close(results["xla"][0], _numpy_same_conv(x, kernel, stride))
    for a, b in zip(results["fast_grad"], results["xla"]):
        _close(a, b)


def test_fast_grad_input_gradient_is_not_xla_dilated_convolution():
    """The point of fast_grad: its backward has no input-dilated convolution (XLA CPU's slow path)."""
    x, kernel, cot = _inputs(16, 16, 4, 2, 16)

    def hlo(impl):
        fn = jax.jit(jax.grad(lambda x, w: jnp.sum(conv_ops.conv_same(x, w, 2, impl) * cot), (0, 1)))
        return fn.lower(x, kernel).as_text()

    dilated = re.compile(r"lhs_dilate = \[2, 2\]")
    assert dilated.search(hlo("xla"))
    assert not dilated.search(hlo("fast_grad"))


def test_bad_arguments_are_named():
    x = jnp.zeros((1, 8, 8, 4))
    with pytest.raises(ValueError, match="conv_ops.conv_same: impl"):
        conv_ops.conv_same(x, jnp.zeros((4, 4, 4, 4)), 2, impl="winograd")
    with pytest.raises(ValueError, match="kernel"):
        conv_ops.conv_same(x, jnp.zeros((4, 4, 3, 4)), 2)
    with pytest.raises(ValueError, match="not divisible by stride"):
        conv_ops.conv_same(jnp.zeros((1, 7, 7, 4)), jnp.zeros((4, 4, 4, 4)), 2, impl="fast_grad")
