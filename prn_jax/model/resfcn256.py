"""PRNet's resfcn256 encoder-decoder (docs/network.md), as Flax linen modules.

Input:  (B, S, S, 3) RGB in [0, 1], S divisible by 32 (256 in the paper).
Output: (B, S, S, 3) sigmoid in [0, 1]; times `position_scale(S)` (= 1.1 * S) it is a UV position
        map in crop pixels (x right, y down, z toward the camera).

Module and variable names mirror the released TensorFlow checkpoint (`resfcn256/resBlock_3/Conv_1/
weights` <-> `params/resBlock_3/Conv_1/kernel`); `tf_variable_name` gives the mapping. Decoder
kernels are stored in TF's conv2d_transpose layout (kh, kw, out, in), so the released weights load
without any flip, and every decoder formulation in `decoder_ops` uses the same parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from prn_jax.model import batch_norm, conv_ops, decoder_ops

# (channels, stride) for the 10 residual blocks and the 17 transposed convolutions, at width 16.
ENCODER_BLOCKS = ((2, 2), (2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2), (16, 1), (32, 2), (32, 1))
DECODER_LAYERS = (
    (32, 1),
    (16, 2),
    (16, 1),
    (16, 1),
    (8, 2),
    (8, 1),
    (8, 1),
    (4, 2),
    (4, 1),
    (4, 1),
    (2, 2),
    (2, 1),
    (1, 2),
    (1, 1),
    (None, 1),
    (None, 1),
    (None, 1),
)  # None: 3 output channels

# TF contrib BatchNorm defaults used by PRNet.
BN_MOMENTUM = 0.999
BN_EPSILON = 1e-3


def position_scale(image_size: int) -> float:
    """Factor between the network's [0, 1] output and crop pixels (PRNet: 256 * 1.1 = 281.6)."""
    return 1.1 * image_size


BN_IMPLS = ("fused", "flax", "flax_fast_variance")


@dataclasses.dataclass(frozen=True)
class NormOptions:
    """What every layer's BatchNorm needs: training mode, compute dtype, the device axis its
    statistics are pmean'd over, the moving-statistics decay and the implementation."""

    train: bool = False
    dtype: Any = jnp.float32
    axis_name: str | None = None
    bn_momentum: float = BN_MOMENTUM
    bn_impl: str = "fused"


def _batch_norm_act(x, norm: NormOptions, activation: str):
    """activation(BatchNorm(x)) with TF defaults; statistics pmean'd over `norm.axis_name` when
    training on devices. Must be called inside a compact method; the BatchNorm submodule is named
    "BatchNorm" as in TF, with flax's variables whatever `impl`:

    - "fused": `batch_norm.BatchNorm`, BatchNorm and activation as one op with a hand-written
      gradient and single-pass float32 statistics (2 passes over the activations forward, 2
      backward); the paper config's train step on CPU: see BUILD_NOTES, issue 9.
    - "flax": `flax.linen.BatchNorm`, two-pass variance E[(x - E[x])^2], autodiff gradient.
    - "flax_fast_variance": flax with the variance as E[x^2] - E[x]^2 in one pass; loses float32
      digits where a channel's variance is small against its squared mean.
    """
    impl = norm.bn_impl
    if impl == "fused":
        return batch_norm.BatchNorm(
            use_running_average=not norm.train,
            momentum=norm.bn_momentum,
            epsilon=BN_EPSILON,
            dtype=norm.dtype,
            axis_name=norm.axis_name,
            activation=activation,
            name="BatchNorm",
        )(x)
    if impl not in BN_IMPLS:
        raise ValueError(f"BatchNorm implementation must be one of {BN_IMPLS}, got {impl!r}")
    y = nn.BatchNorm(
        use_running_average=not norm.train,
        momentum=norm.bn_momentum,
        epsilon=BN_EPSILON,
        dtype=norm.dtype,
        param_dtype=jnp.float32,
        axis_name=norm.axis_name,
        use_fast_variance=impl == "flax_fast_variance",
        name="BatchNorm",
    )(x)
    return batch_norm.activate(y, activation)


class ConvBN(nn.Module):
    """TF-SAME convolution without bias (kernel (k, k, in, out)), optional BatchNorm and ReLU.

    `conv_impl` is one of `conv_ops.CONV_IMPLS`: same function, different gradient formulation.
    """

    features: int
    kernel: int
    stride: int = 1
    bn: bool = True
    relu: bool = True
    conv_impl: str = "xla"
    norm: NormOptions = NormOptions()

    @nn.compact
    def __call__(self, x):
        dtype = self.norm.dtype
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (self.kernel, self.kernel, x.shape[-1], self.features),
            jnp.float32,
        )
        x = conv_ops.conv_same(x.astype(dtype), kernel.astype(dtype), self.stride, impl=self.conv_impl)
        if self.bn:
            return _batch_norm_act(x, self.norm, "relu" if self.relu else "identity")
        return nn.relu(x) if self.relu else x


class ResBlock(nn.Module):
    """PRNet resBlock: 1x1 C/2 -> 4x4 stride s C/2 -> 1x1 C, plus shortcut, then BN + ReLU."""

    features: int
    stride: int
    conv_impl: str = "xla"
    norm: NormOptions = NormOptions()

    @nn.compact
    def __call__(self, x):
        kw = dict(norm=self.norm, conv_impl=self.conv_impl)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = ConvBN(self.features, 1, self.stride, bn=False, relu=False, name="shortcut", **kw)(x)
        y = ConvBN(self.features // 2, 1, 1, name="Conv", **kw)(x)
        y = ConvBN(self.features // 2, 4, self.stride, name="Conv_1", **kw)(y)
        y = ConvBN(self.features, 1, 1, bn=False, relu=False, name="Conv_2", **kw)(y)
        return _batch_norm_act(y + shortcut, self.norm, "relu")


class ConvTransposeBN(nn.Module):
    """4x4 TF-SAME transposed convolution (no bias), BatchNorm, then ReLU or sigmoid.

    The kernel parameter is (4, 4, out, in), TF's conv2d_transpose layout. `impl` picks one of
    `decoder_ops.DECODER_IMPLS`; all compute the same function of the same parameters.
    """

    features: int
    stride: int
    activation: str = "relu"  # "relu" or "sigmoid"
    impl: str = "reference"
    norm: NormOptions = NormOptions()

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(in_axis=(0, 1, 3), out_axis=2),
            (4, 4, self.features, x.shape[-1]),
            jnp.float32,
        )
        dtype = self.norm.dtype
        y = decoder_ops.conv_transpose_tf(x.astype(dtype), kernel.astype(dtype), self.stride, impl=self.impl)
        return _batch_norm_act(y, self.norm, self.activation)


class ResFCN256(nn.Module):
    """The PRNet network. `width` is the base width (16 in the paper); output is float32."""

    width: int = 16
    dtype: Any = jnp.float32
    decoder_impl: str = "reference"
    encoder_conv_impl: str = "xla"
    axis_name: str | None = None
    bn_momentum: float = BN_MOMENTUM  # decay of the moving statistics (TF: 0.999)
    bn_impl: str = "fused"  # one of BN_IMPLS (see _batch_norm_act)

    @nn.compact
    def __call__(self, images, train: bool = False):
        size = images.shape[1]
        if images.ndim != 4 or images.shape[2] != size or images.shape[3] != 3 or size % 32:
            raise ValueError(f"images must be (B, S, S, 3) with S divisible by 32, got {images.shape}")
        kw = dict(
            norm=NormOptions(
                train=train,
                dtype=self.dtype,
                axis_name=self.axis_name,
                bn_momentum=self.bn_momentum,
                bn_impl=self.bn_impl,
            )
        )
        x = images.astype(self.dtype)
        x = ConvBN(self.width, 4, 1, name="Conv", **kw)(x)
        for i, (mult, stride) in enumerate(ENCODER_BLOCKS):
            x = ResBlock(
                self.width * mult,
                stride,
                conv_impl=self.encoder_conv_impl,
                name=_indexed("resBlock", i),
                **kw,
            )(x)
        for i, (mult, stride) in enumerate(DECODER_LAYERS):
            last = i == len(DECODER_LAYERS) - 1
            x = ConvTransposeBN(
                3 if mult is None else self.width * mult,
                stride,
                activation="sigmoid" if last else "relu",
                impl=self.decoder_impl,
                name=_indexed("Conv2d_transpose", i),
                **kw,
            )(x)
        return x.astype(jnp.float32)


def _indexed(name: str, i: int) -> str:
    """TF/slim scope naming: name, name_1, name_2, ..."""
    return name if i == 0 else f"{name}_{i}"


def build_model(config, axis_name: str | None = None) -> ResFCN256:
    """The network for an ml_collections config (fields width, dtype, decoder_impl,
    encoder_conv_impl, bn_momentum, bn_impl). Configs saved before a field existed get the
    behaviour of that time: "xla", 0.999, and flax's BatchNorm (one-pass variance if their
    `bn_fast_variance` was True)."""
    bn_impl = config.get("bn_impl")
    if bn_impl is None:
        bn_impl = "flax_fast_variance" if config.get("bn_fast_variance", False) else "flax"
    return ResFCN256(
        width=config.width,
        dtype=jnp.dtype(config.dtype),
        decoder_impl=config.decoder_impl,
        encoder_conv_impl=config.get("encoder_conv_impl", "xla"),
        axis_name=axis_name,
        bn_momentum=config.get("bn_momentum", BN_MOMENTUM),
        bn_impl=bn_impl,
    )


def init_variables(model: ResFCN256, key: jax.Array, image_size: int) -> dict:
    """{'params': ..., 'batch_stats': ...} for a (1, S, S, 3) input."""
    return model.init(key, jnp.zeros((1, image_size, image_size, 3), jnp.float32), train=False)


_LEAF_TO_TF = {
    "kernel": "weights",
    "scale": "gamma",
    "bias": "beta",
    "mean": "moving_mean",
    "var": "moving_variance",
}


def tf_variable_name(path: Sequence[str]) -> str:
    """Flax variable path, collection first (('params', 'resBlock', 'Conv', 'kernel'))
    -> the released TF name ('resfcn256/resBlock/Conv/weights')."""
    return "/".join(["resfcn256", *path[1:-1], _LEAF_TO_TF[path[-1]]])


def tf_variable_shapes(variables: dict) -> dict[str, tuple[int, ...]]:
    """Map every Flax variable to its TF name -> shape."""
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    out = {}
    for keypath, leaf in flat:
        path = tuple(k.key for k in keypath)
        out[tf_variable_name(path)] = tuple(leaf.shape)
    return out


def count_params(params) -> int:
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
