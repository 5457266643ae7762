"""TF-SAME convolution (PRNet's encoder layers) with a fast input gradient for stride > 1.

XLA computes the input gradient of a strided convolution as an input-dilated ("transposed")
convolution, which its CPU backend runs through a slow generic loop: in the paper config's train
step the three 4x4 stride-2 layers at 256 and 128 pixels took about 1.5 s of backward time (see
BUILD_NOTES, issue 9). That gradient is by definition TF's `conv2d_transpose` of the output
gradient with the same kernel, so `conv_same` supplies it through `decoder_ops`'s sub-pixel
formulation instead (no multiplications by inserted zeros). The forward pass and the kernel
gradient are XLA's own. 1x1 strided convolutions (the resBlock shortcuts) are a subsample then
a 1x1 convolution, whose gradient is a cheap scatter.

All arrays NHWC; kernels HWIO (kh, kw, Cin, Cout), as `flax.linen.Conv` stores them.
"""

from __future__ import annotations

from functools import partial

import jax
from jax import lax

from prn_jax.model import decoder_ops

CONV_IMPLS = ("xla", "fast_grad")

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _same_pads(kernel: jax.Array, stride: int) -> list[tuple[int, int]]:
    return [
        decoder_ops.tf_same_pads(kernel.shape[0], stride),
        decoder_ops.tf_same_pads(kernel.shape[1], stride),
    ]


def _conv(x, kernel, stride, precision):
    return lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        _same_pads(kernel, stride),
        dimension_numbers=_DIMENSION_NUMBERS,
        precision=precision,
    )


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_subpixel_grad(x, kernel, stride, precision):
    return _conv(x, kernel, stride, precision)


def _fwd(x, kernel, stride, precision):
    return _conv(x, kernel, stride, precision), (x, kernel)


def _bwd(stride, precision, residuals, g):
    x, kernel = residuals
    # d<conv(x, K), g>/dx is TF's conv2d_transpose(g, K): K read as (kh, kw, Cout_t, Cin_t)
    # with Cout_t = x's channels, Cin_t = g's channels, i.e. the HWIO kernel as stored.
    dx = decoder_ops.conv_transpose_tf(g, kernel, stride, impl="subpixel", precision=precision)
    _, kernel_vjp = jax.vjp(lambda k: _conv(x, k, stride, precision), kernel)
    return dx, kernel_vjp(g)[0]


_conv_subpixel_grad.defvjp(_fwd, _bwd)


def conv_same(
    x: jax.Array, kernel: jax.Array, stride: int, impl: str = "xla", precision: lax.PrecisionLike = None
) -> jax.Array:
    """TF `conv2d(x, kernel, strides=stride, padding='SAME')`, no bias.

    Args:
      x: (B, H, W, Cin), H and W divisible by `stride`.
      kernel: (kh, kw, Cin, Cout), x's dtype.
      stride: 1 or more.
      impl: "xla" (XLA's convolution and its autodiff) or "fast_grad" (same forward; for
        stride > 1 the input gradient by sub-pixel transposed convolution, or a subsample for
        1x1 kernels). Both compute the same function and gradients up to float rounding.

    Returns:
      (B, H/stride, W/stride, Cout), x's dtype.
    """
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != x.shape[3]:
        raise ValueError(
            f"conv_ops.conv_same: expected x (B, H, W, Cin) and kernel (kh, kw, Cin, "
            f"Cout), got x {x.shape} and kernel {kernel.shape}"
        )
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv_ops.conv_same: impl must be one of {CONV_IMPLS}, got {impl!r}")
    stride = int(stride)
    if impl == "xla" or stride == 1:
        return _conv(x, kernel, stride, precision)
    if x.shape[1] % stride or x.shape[2] % stride:
        raise ValueError(f"conv_ops.conv_same: spatial size {x.shape[1:3]} not divisible by stride {stride}")
    if kernel.shape[:2] == (1, 1):
        return _conv(x[:, ::stride, ::stride], kernel, 1, precision)
    if kernel.shape[0] % stride or kernel.shape[1] % stride:
        return _conv(x, kernel, stride, precision)
    return _conv_subpixel_grad(x, kernel, stride, precision)
