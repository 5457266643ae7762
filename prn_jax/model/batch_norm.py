"""BatchNorm + activation in training mode as one op with a hand-written gradient.

XLA's CPU backend runs autodiff'd `flax.linen.BatchNorm` slowly: it rewrites every channel
reduction over (B, H, W) into an unfused `reduce-window` tree, so each statistic costs an extra
write and read of the activations (BUILD_NOTES, issue 9). Here every reduction is one *variadic*
reduce (two sums in one pass; XLA leaves those unrewritten and fuses them with their producer)
over the activations viewed as (rows, k * C), and the backward pass is written out:

  forward:  1 pass for (sum d, sum d^2), d = x - shift (a per-channel sample: one-pass and
            accurate, no E[x^2] - E[x]^2 cancellation), 1 pass for y = act((x - mean) * rstd *
            scale + bias);
  backward: 1 pass for (sum gz, sum gz * xhat), 1 pass for dx; gz = dL/d(pre-activation).

On CPU, y and dx are written to buffers of their own (`_own_buffer`), so that XLA does not
recompute the normalisation inside the transposes of the convolutions' kernel gradients.

Statistics are float32 (float64 for float64 x) whatever x's dtype. Under `pmap` (`axis_name`),
mean and variance are over the global batch (equal per-device batches), combined exactly from
per-device moments; the input gradient accounts for every device's loss, the scale and bias
gradients are this device's (the train step averages gradients over devices), as with autodiff
of flax's BatchNorm.

`BatchNorm` is the Flax module: same variables as `flax.linen.BatchNorm` (params scale, bias;
batch_stats mean, var, biased batch variance in the moving average), so checkpoints and the
released-weight import do not change.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

ACTIVATIONS = ("identity", "relu", "sigmoid")
_LANES = 256  # row width of the reduction view (k * C), at most
_BLOCK_ROWS = 128  # rows summed sequentially per partial sum, at least


def _block_view(a: jax.Array) -> tuple[jax.Array, int]:
    """(n, C) -> (q, rows, k * C) (a bitcast): k the largest power of 2 dividing n with
    k * C <= 256, q the largest power of 2 dividing n / k that leaves rows >= 128 (each at least 1).
    Partial sums over blocks of `rows` consecutive rows (128-255 rows for the network's
    power-of-2 sizes) keep float32 sums accurate and sweep memory contiguously; one sequential
    sum over all 65,536 rows of a 16x256x256x16 activation lost 8.9e-6 relative, blocks 1.2e-7."""
    n, c = a.shape
    k = 1
    while 2 * k * c <= _LANES and n % (2 * k) == 0:
        k *= 2
    rows = n // k
    q = 1
    while rows % (2 * q) == 0 and rows // (2 * q) >= _BLOCK_ROWS:
        q *= 2
    return a.reshape(q, rows // q, k * c), k


def _channel_sums(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel sums of two (n, C) arrays in one variadic reduction; two (C,)."""
    c = a.shape[1]
    a3, k = _block_view(a)
    b3, _ = _block_view(b)
    zero = jnp.zeros((), a.dtype)
    sa, sb = lax.reduce((a3, b3), (zero, zero), lambda p, q: (p[0] + q[0], p[1] + q[1]), (1,))
    return sa.sum(0).reshape(k, c).sum(0), sb.sum(0).reshape(k, c).sum(0)


def activate(z: jax.Array, activation: str) -> jax.Array:
    """One of ACTIVATIONS, elementwise (jax.nn's relu and sigmoid, so autodiff through the
    inference path matches flax's)."""
    if activation == "relu":
        return jax.nn.relu(z)
    if activation == "sigmoid":
        return jax.nn.sigmoid(z)
    return z


def _activation_grad(z: jax.Array, g: jax.Array, activation: str) -> jax.Array:
    """d act(z) / dz * g, elementwise (relu: 0 at z == 0, as jax.nn.relu)."""
    if activation == "relu":
        return jnp.where(z > 0, g, 0)
    if activation == "sigmoid":
        s = jax.nn.sigmoid(z)
        return g * s * (1 - s)
    return g


def _compute_dtype(x: jax.Array):
    """float32, or float64 for float64 input (as flax: at least float32)."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _own_buffer(a: jax.Array, ok: jax.Array) -> jax.Array:
    """`a`, computed into a buffer of its own when the program runs on XLA CPU (unchanged on
    other platforms; the choice is made when the program is lowered for its platform).

    XLA's CPU fusion copies cheap elementwise producers into every consumer, so the transposes
    in front of the kernel-gradient convolutions recompute BatchNorm in transposed order, ~3x
    slower than transposing a buffer (BUILD_NOTES, issue 9). A conditional is a fusion boundary
    XLA keeps when its branches differ: `ok` (False only when the statistics are NaN, and then
    the network's output is NaN anyway) returns `a`, else NaNs. Not on GPU, where a conditional
    would read its predicate back to the host.
    """
    return lax.platform_dependent(
        a,
        ok,
        cpu=lambda v, p: lax.cond(p, lambda w: w, lambda w: jnp.full_like(w, jnp.nan), v),
        default=lambda v, p: v,
    )


def batch_statistics(x: jax.Array, axis_name: str | None = None) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and biased variance of x (..., C) over all other axes (and over devices
    on `axis_name`); (C,), (C,) in `_compute_dtype(x)`. One pass over x, shifted by its first row."""
    flat = x.reshape(-1, x.shape[-1]).astype(_compute_dtype(x))
    n = flat.shape[0]
    shift = lax.stop_gradient(flat[0])
    d = flat - shift
    s1, s2 = _channel_sums(d, d * d)
    offset = s1 / n
    mean = shift + offset
    var = jnp.maximum(s2 / n - offset * offset, 0.0)
    if axis_name is None:
        return mean, var
    global_mean = lax.pmean(mean, axis_name)
    return global_mean, lax.pmean(var + jnp.square(mean - global_mean), axis_name)


@partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def batch_norm_train(
    x, scale, bias, activation: str = "identity", axis_name: str | None = None, epsilon: float = 1e-3
):
    """act((x - mean) / sqrt(var + epsilon) * scale + bias) with the batch's statistics.

    Args:
      x: (..., C), any float dtype; statistics and arithmetic in float32 (float64 for float64).
      scale, bias: (C,) float32.
      activation: one of ACTIVATIONS.
      axis_name: pmap axis to take the statistics over, or None.

    Returns:
      (y, mean, var): y like x; mean and biased variance (C,), float32 (float64 for float64 x).
    """
    return _forward(x, scale, bias, activation, axis_name, epsilon)[0]


def _forward(x, scale, bias, activation, axis_name, epsilon):
    if activation not in ACTIVATIONS:
        raise ValueError(f"batch_norm: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if scale.shape != (x.shape[-1],) or bias.shape != (x.shape[-1],):
        raise ValueError(
            f"batch_norm: scale {scale.shape} and bias {bias.shape} must be ({x.shape[-1]},) for x {x.shape}"
        )
    mean, var = batch_statistics(x, axis_name)
    rstd = lax.rsqrt(var + epsilon)
    z = (x.astype(mean.dtype) - mean) * (rstd * scale) + bias
    y = _own_buffer(activate(z, activation).astype(x.dtype), ~jnp.isnan(var[0]))
    return (y, mean, var), (x, scale, bias, mean, rstd)


def _backward(activation, axis_name, epsilon, residuals, cotangents):
    del epsilon
    x, scale, bias, mean, rstd = residuals
    gy, g_mean, g_var = cotangents
    c = x.shape[-1]
    x32 = x.reshape(-1, c).astype(mean.dtype)
    xhat = (x32 - mean) * rstd
    gz = _activation_grad(xhat * scale + bias, gy.reshape(-1, c).astype(mean.dtype), activation)
    sum_gz, sum_gz_xhat = _channel_sums(gz, gz * xhat)
    count = x32.shape[0]
    total = jnp.stack([sum_gz, sum_gz_xhat, g_mean, g_var])
    if axis_name is not None:
        total = lax.psum(total, axis_name)
        count = count * lax.psum(1, axis_name)
    s_gz, s_gz_xhat, g_mean, g_var = total / count
    dx = scale * rstd * (gz - s_gz - xhat * s_gz_xhat) + g_mean + 2 * g_var * (x32 - mean)
    dx = _own_buffer(dx.reshape(x.shape).astype(x.dtype), ~jnp.isnan(s_gz_xhat[0]))
    return (dx, sum_gz_xhat.astype(scale.dtype), sum_gz.astype(bias.dtype))


batch_norm_train.defvjp(_forward, _backward)


class BatchNorm(nn.Module):
    """BatchNorm over all axes but the last, followed by `activation`; TF/flax variables.

    Training (`use_running_average=False`) uses `batch_norm_train` and updates the moving
    statistics (mean <- momentum * mean + (1 - momentum) * batch mean; var likewise with the
    biased batch variance), except while initialising. Inference normalises with the moving
    statistics. Output dtype: `dtype`.
    """

    use_running_average: bool
    momentum: float = 0.99
    epsilon: float = 1e-3
    dtype: Any = jnp.float32
    axis_name: str | None = None
    activation: str = "identity"

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        if self.use_running_average:
            rstd = lax.rsqrt(ra_var.value + self.epsilon)
            z = (x.astype(_compute_dtype(x)) - ra_mean.value) * (rstd * scale) + bias
            return activate(z, self.activation).astype(self.dtype)
        initializing = self.is_initializing()
        y, mean, var = batch_norm_train(
            x, scale, bias, self.activation, None if initializing else self.axis_name, self.epsilon
        )
        if not initializing:
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y.astype(self.dtype)
