"""Weighted position-map losses and the paper's UV weight map (docs/training.md).

All losses take maps in the same units (the trainer uses the network's [0, 1] output against the
target divided by `model.position_scale(S)`), and a weight map W >= 0 over UV pixels.

Normalisation (all three): per example  sum_{v,u} W[v,u] * e[v,u]  /  sum_{v,u} W[v,u],
then the mean over the batch, where e is
- "weighted_l2" (default; what public re-implementations train with): squared distance
  ||P - P~||^2 summed over x, y, z;
- "euclidean" (paper eq. 1 literally): distance ||P - P~||;
- "l1": sum over x, y, z of |P - P~|.
Dividing by sum(W) makes the loss independent of the ratio tuple's overall scale, so 16:4:3:0 and
1:1:1:1 runs have comparable learning rates.

`config.loss` names one of these three or, by import path, a loss of the user's own
(`my_project.losses:my_loss` or `path/to/file.py:my_loss`; `resolve_loss`) with the signature

    my_loss(pred, target, weights, config) -> scalar float32

pred, target: (B, S, S, 3) float32, the network's output and the target in the representation's
units (prn_jax.representation; the paper's: position / (1.1 S)); weights: (B, S, S) float32 >= 0,
the UV weight map; config: the run's config without its host-only fields (trainer.HOST_FIELDS),
so a loss may read hyperparameters of its own that the config file adds. It runs inside the
jitted, pmapped train step: pure jax.numpy, no side effects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import chex
import jax.numpy as jnp
import numpy as np

from prn_jax import plugins

LOSSES = ("weighted_l2", "euclidean", "l1")

# Region labels of a UV pixel: 0 = the 68 keypoint pixels, 1 = eyes/nose/mouth, 2 = other face,
# 3 = neck / outside the face mask. The paper's ratio 16:4:3:0 gives weights ratios[label].
NUM_REGIONS = 4
PAPER_RATIOS = (16.0, 4.0, 3.0, 0.0)


def weight_map(region_labels: np.ndarray, ratios: Sequence[float] = PAPER_RATIOS) -> np.ndarray:
    """(H, W) int region labels in [0, 4) -> (H, W) float32 weights ratios[label]."""
    labels = np.asarray(region_labels)
    if len(ratios) != NUM_REGIONS:
        raise ValueError(
            f"weight ratios need {NUM_REGIONS} entries (keypoints, eyes/nose/mouth, "
            f"face, neck), got {tuple(ratios)}"
        )
    if any(r < 0 for r in ratios) or not any(r > 0 for r in ratios):
        raise ValueError(f"weight ratios must be >= 0 with at least one > 0, got {tuple(ratios)}")
    if labels.ndim != 2 or labels.min() < 0 or labels.max() >= NUM_REGIONS:
        raise ValueError(
            f"region labels must be an (H, W) map of values in [0, {NUM_REGIONS}), "
            f"got shape {labels.shape}, range [{labels.min()}, {labels.max()}]"
        )
    return np.asarray(ratios, np.float32)[labels]


def position_map_loss(
    pred: jnp.ndarray,
    target: jnp.ndarray,
    weights: jnp.ndarray,
    kind: str = "weighted_l2",
    z_offset_weight: float = 1.0,
) -> jnp.ndarray:
    """Weighted loss between position maps; scalar float32 (see module docstring).

    pred, target: (B, H, W, 3), same units. weights: (H, W) or (B, H, W), >= 0.
    z_offset_weight: the z error of each example splits into its W-weighted mean m (a depth
      offset: the target's z is shifted to min 0 over the whole mesh, which the image does not
      show, and no evaluation metric sees it) and the rest r; the error used is r + sqrt(a) m.
      1 (default): the paper's loss, unchanged; 0: depth offsets cost nothing. For weighted_l2
      the loss is then exactly (residual part) + a * (offset part).
    """
    chex.assert_rank(pred, 4)
    chex.assert_equal_shape([pred, target])
    if weights.ndim == 2:
        weights = jnp.broadcast_to(weights, pred.shape[:3])
    chex.assert_shape(weights, pred.shape[:3])
    diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
    if z_offset_weight != 1.0:
        if z_offset_weight < 0:
            raise ValueError(f"z_offset_weight must be >= 0, got {z_offset_weight}")
        w = weights.astype(jnp.float32)
        offset = jnp.sum(w * diff[..., 2], axis=(1, 2), keepdims=True) / jnp.sum(
            w, axis=(1, 2), keepdims=True
        )
        dz = diff[..., 2] - (1.0 - float(z_offset_weight) ** 0.5) * offset
        diff = jnp.concatenate([diff[..., :2], dz[..., None]], axis=-1)
    if kind == "weighted_l2":
        err = jnp.sum(diff * diff, axis=-1)
    elif kind == "euclidean":
        # Gradient-safe norm: sqrt(0) has an infinite derivative.
        sq = jnp.sum(diff * diff, axis=-1)
        safe = jnp.where(sq > 0, sq, 1.0)
        err = jnp.where(sq > 0, jnp.sqrt(safe), 0.0)
    elif kind == "l1":
        err = jnp.sum(jnp.abs(diff), axis=-1)
    else:
        raise ValueError(f"unknown loss {kind!r}; choose from {LOSSES}")
    weights = weights.astype(jnp.float32)
    per_example = jnp.sum(weights * err, axis=(1, 2)) / jnp.sum(weights, axis=(1, 2))
    return jnp.mean(per_example)


LossFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray, object], jnp.ndarray]


def _builtin(kind: str) -> LossFn:
    def loss(pred, target, weights, config):
        return position_map_loss(pred, target, weights, kind, config.get("z_offset_weight", 1.0))

    loss.__name__ = kind
    return loss


@functools.cache
def resolve_loss(name: str) -> LossFn:
    """The loss `config.loss` names: a built-in (LOSSES) or an import path (module docstring);
    raises plugins.PluginError."""
    if name in LOSSES:
        return _builtin(name)
    if ":" not in name:
        raise plugins.PluginError(f"unknown loss {name!r}: one of {LOSSES} or an import path module:function")
    return plugins.load_callable(name)
