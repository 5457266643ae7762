"""Exact formulations of TensorFlow's SAME transposed convolution (PRNet's decoder layers).

PRNet's decoder is 17 `tf.nn.conv2d_transpose` layers (4x4 kernels, stride 1 or 2, padding
'SAME', no bias). TensorFlow defines that op as the vector-Jacobian product of a strided SAME
convolution: with `kernel` of shape (kh, kw, Cout, Cin) read as an HWIO kernel (I = Cout,
O = Cin),

    conv2d_transpose(x, kernel) = d/dy <conv(y, kernel, stride, SAME), x>,
    y: (B, H*stride, W*stride, Cout),  x: (B, H, W, Cin).

Per spatial axis, TF's SAME convolution of length n*s down to n pads `total = max(k - s, 0)`
with `lo = total // 2` before and the rest after, so output position `i` of the transposed
convolution collects `x[o] @ kernel[t]` over all `o, t` with `o*s + t - lo == i`.

`conv_transpose_tf` computes exactly that function in three interchangeable ways (same
parameters, same outputs, gradients equal up to float rounding):

- "reference": `jax.lax.conv_transpose(transpose_kernel=True)` with explicit padding derived
  from the TF rule above (the same op as Flax's `nn.ConvTranspose(transpose_kernel=True)`).
- "flipped_conv": an ordinary convolution with the spatially flipped, channel-swapped kernel;
  stride 2 writes the input-dilated (zero-interleaved) convolution out explicitly.
- "subpixel": stride 1 as "flipped_conv"; stride s > 1 by phase decomposition: output pixel
  `s*m + p` only sees the taps `t` with `t = p + lo (mod s)`, i.e. a (k/s)-tap sub-kernel applied
  to x around `m`. s*s small convolutions (one per output phase, each H x W) and a
  depth-to-space interleave. No multiplications by inserted zeros, and the weight gradients are
  ordinary convolution gradients (XLA CPU is very slow on the weight gradient of
  input-dilated convolutions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

DECODER_IMPLS = ("reference", "flipped_conv", "subpixel")

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def tf_same_pads(kernel_size: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF's SAME convolution from length n*stride to n outputs."""
    total = max(kernel_size - stride, 0)
    return total // 2, total - total // 2


def transposed_pads(kernel_size: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of the stride-dilated input for the flipped-kernel convolution.

    The dilated input has length (n-1)*stride + 1; these pads make the output n*stride long
    and align it with TF's SAME convention.
    """
    lo, _ = tf_same_pads(kernel_size, stride)
    return kernel_size - 1 - lo, stride - 1 + lo


def flip_kernel(kernel: jax.Array) -> jax.Array:
    """(kh, kw, Cout, Cin) TF transposed-conv kernel -> (kh, kw, Cin, Cout) HWIO conv kernel."""
    return jnp.swapaxes(kernel[::-1, ::-1], 2, 3)


def _phase_table(kernel_size: int, stride: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Per-axis phase decomposition of a TF SAME transposed convolution.

    Output position s*m + p only receives x[m + d] @ kernel[t] with t = p + lo - s*d, i.e. a
    (kernel_size // stride)-tap correlation of x around m.

    Returns
      taps: (stride, kernel_size // stride) int, taps[p, a] is the kernel index that output
        phase p applies to the a-th input of its window (offsets ascending);
      pads: per phase, (before, after) padding of x so that phase p's correlation with those
        taps yields exactly n outputs for n inputs.
    """
    if kernel_size % stride:
        raise ValueError(
            f"decoder_ops.conv_transpose_tf: kernel size {kernel_size} is not a multiple of "
            f"stride {stride}, needed by the 'subpixel' formulation"
        )
    width = kernel_size // stride
    lo, _ = tf_same_pads(kernel_size, stride)
    taps = np.zeros((stride, width), dtype=np.int64)
    pads = []
    for p in range(stride):
        offsets = sorted((p + lo - t) // stride for t in range(kernel_size) if (p + lo - t) % stride == 0)
        taps[p] = [p + lo - stride * d for d in offsets]
        pads.append((-offsets[0], offsets[-1]))
    return taps, pads


def _reference(x, kernel, stride, precision):
    kh, kw = kernel.shape[:2]
    return lax.conv_transpose(
        x,
        kernel,
        strides=(stride, stride),
        padding=[transposed_pads(kh, stride), transposed_pads(kw, stride)],
        dimension_numbers=_DIMENSION_NUMBERS,
        transpose_kernel=True,
        precision=precision,
    )


def _flipped_conv(x, kernel, stride, precision):
    kh, kw = kernel.shape[:2]
    return lax.conv_general_dilated(
        x,
        flip_kernel(kernel),
        window_strides=(1, 1),
        padding=[transposed_pads(kh, stride), transposed_pads(kw, stride)],
        lhs_dilation=(stride, stride),
        dimension_numbers=_DIMENSION_NUMBERS,
        precision=precision,
    )


def _subpixel(x, kernel, stride, precision):
    if stride == 1:
        return _flipped_conv(x, kernel, stride, precision)
    kh, kw, cout, _ = kernel.shape
    batch, height, width, _ = x.shape
    taps_y, pads_y = _phase_table(kh, stride)
    taps_x, pads_x = _phase_table(kw, stride)
    kernel_io = jnp.swapaxes(kernel, 2, 3)  # (kh, kw, Cin, Cout)
    # One small convolution per phase, each exactly (B, H, W, Cout): no zero taps, no
    # overhang. Measured on XLA CPU, a single convolution emitting all phases on the
    # channel axis has a far slower weight gradient (e.g. 4.4 s vs 37 ms for 128->64 at
    # 16x16, batch 16).
    rows = []
    for py in range(stride):
        cols = []
        for px in range(stride):
            sub = kernel_io[taps_y[py]][:, taps_x[px]]  # (kh/s, kw/s, Cin, Cout)
            cols.append(
                lax.conv_general_dilated(
                    x,
                    sub,
                    window_strides=(1, 1),
                    padding=[pads_y[py], pads_x[px]],
                    dimension_numbers=_DIMENSION_NUMBERS,
                    precision=precision,
                )
            )
        rows.append(jnp.stack(cols, axis=3))  # (B, H, W, px, Cout)
    out = jnp.stack(rows, axis=2)  # (B, H, py, W, px, Cout)
    return out.reshape(batch, height * stride, width * stride, cout)


_IMPLS = {"reference": _reference, "flipped_conv": _flipped_conv, "subpixel": _subpixel}


def conv_transpose_tf(
    x: jax.Array,
    kernel: jax.Array,
    stride: int,
    impl: str = "reference",
    precision: lax.PrecisionLike = None,
) -> jax.Array:
    """TF `conv2d_transpose(x, kernel, strides=stride, padding='SAME')`, no bias.

    Args:
      x: (B, H, W, Cin) NHWC input, any float dtype (the caller casts for bfloat16 compute).
      kernel: (kh, kw, Cout, Cin), TensorFlow's conv2d_transpose storage layout, which is also
        the released PRNet checkpoint's layout and Flax's `nn.ConvTranspose(
        transpose_kernel=True)` kernel shape. Same dtype as x.
      stride: 1 or more (PRNet uses 1 and 2); "subpixel" needs kh and kw divisible by it.
      impl: one of DECODER_IMPLS; all compute the same function.
      precision: passed to the underlying lax convolution.

    Returns:
      (B, H*stride, W*stride, Cout), x's dtype.
    """
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(
            f"decoder_ops.conv_transpose_tf: expected x (B, H, W, Cin) and kernel "
            f"(kh, kw, Cout, Cin), got x {x.shape} and kernel {kernel.shape}"
        )
    if kernel.shape[3] != x.shape[3]:
        raise ValueError(
            f"decoder_ops.conv_transpose_tf: kernel in-channels (axis 3) {kernel.shape[3]} "
            f"!= x channels {x.shape[3]}"
        )
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"decoder_ops.conv_transpose_tf: stride must be a positive int, got {stride!r}")
    if impl not in _IMPLS:
        raise ValueError(f"decoder_ops.conv_transpose_tf: impl must be one of {DECODER_IMPLS}, got {impl!r}")
    return _IMPLS[impl](x, kernel, int(stride), precision)
