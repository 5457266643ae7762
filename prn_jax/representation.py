"""Target representations: what the network regresses in place of the position map.

A representation is a pair of pure, jit-able functions of arrays:

    encode(position_maps, context) -> targets    (training: the loss compares outputs with these)
    decode(outputs, context) -> position_maps    (inference and evaluation)

position_maps: (B, S, S, 3) float32 UV position maps in crop pixels (x right, y down, z toward the
camera); targets and outputs: (B, S, S, 3) float32 in the network's output range, the sigmoid's
[0, 1]; context: `Context`, the same for every example of a run. Evaluation always decodes, so
every representation gets the same metrics.

`config.representation` names one of REPRESENTATIONS or, by import path (`module:object` or
`file.py:object`), a `Representation` of the user's own.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import chex
import jax.numpy as jnp
import numpy as np

from prn_jax import plugins
from prn_jax.geometry import mean_face
from prn_jax.geometry import uv_assets as uv_assets_lib
from prn_jax.model import position_scale


@chex.dataclass(frozen=True)
class Context:
    """What a representation may use besides the maps (a pytree, placed on the devices).

    mean_map: (S, S, 3) float32 crop pixels: the model's mean face, frontal, placed by the
      ground-truth crop rule (`geometry.mean_face.mean_face_crop_map`; the mean-face baseline's
      map); zeros for procedural data, which has no face model.
    """

    mean_map: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class Representation:
    name: str
    encode: Callable[[jnp.ndarray, Context], jnp.ndarray]
    decode: Callable[[jnp.ndarray, Context], jnp.ndarray]


def _scale(maps: jnp.ndarray) -> float:
    return position_scale(maps.shape[-2])


def _position_encode(pos, context):
    return pos / _scale(pos)


def _position_decode(out, context):
    return out * _scale(out)


def _offset_encode(pos, context):
    return 0.5 + (pos - context.mean_map) / (2.0 * _scale(pos))


def _offset_decode(out, context):
    return (out - 0.5) * (2.0 * _scale(out)) + context.mean_map


REPRESENTATIONS = {
    # The paper's: the position map over 1.1 S (a sigmoid covers [0, 1.1 S] in crop pixels).
    "position": Representation("position", _position_encode, _position_decode),
    # The offset from the mean face's map, 0.5 + offset / (2.2 S): a zero output of the last
    # layer's pre-activation is the mean face; offsets of +-1.1 S are representable.
    "mean_offset": Representation("mean_offset", _offset_encode, _offset_decode),
}


@functools.cache
def resolve(name: str) -> Representation:
    """The representation `config.representation` names (raises plugins.PluginError)."""
    if name in REPRESENTATIONS:
        return REPRESENTATIONS[name]
    if ":" not in name:
        raise plugins.PluginError(
            f"unknown representation {name!r}: one of {tuple(REPRESENTATIONS)} or an import path "
            f"module:object"
        )
    rep = plugins.load_object(name)
    if not isinstance(rep, Representation):
        raise plugins.PluginError(f"{name!r} is not a prn_jax.representation.Representation")
    return rep


def make_context(size: int, frontal_map: np.ndarray | None = None, assets=None) -> Context:
    """The run's context at map size S: the mean face from the model's frontal map and UV assets
    (`geometry.model_assets.load_assets`), or zeros when there is no face model."""
    if frontal_map is None:
        return Context(mean_map=jnp.zeros((size, size, 3), jnp.float32))
    if not isinstance(assets, uv_assets_lib.UVAssets) or assets.size != size:
        raise ValueError(f"assets: UV assets at {size}x{size} are needed with a frontal map")
    return Context(mean_map=jnp.asarray(mean_face.mean_face_crop_map(frontal_map, assets), jnp.float32))
