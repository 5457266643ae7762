"""Periodic evaluation during training: a hook the training loop calls with its state; it never
imports the trainer."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from prn_jax import inference, representation
from prn_jax import model as model_lib
from prn_jax.evaluation import protocol
from prn_jax.geometry import uv_assets as uv_assets_lib


def make_periodic_evaluator(
    config,
    examples: Sequence[Mapping],
    assets: uv_assets_lib.UVAssets,
    batch_size: int = 16,
    crop_scale: float | None = None,
    prefix: str = "val",
    context=None,
) -> Callable[[object], dict]:
    """A cheap evaluator for the training loop: the forward is jitted once.

    Args:
      config: the run config (image_size, width, dtype, decoder_impl).
      examples: a small held-out list of example dicts (`eval_data.validation_examples`: crops).
      assets: UV assets at config.image_size.
      context: the run's `representation.Context` (as in training; None: zeros), computed once.
      crop_scale: `protocol.evaluate`'s crop rule; None: the examples are crops already.
      prefix: of the returned keys.

    Returns:
      evaluate_state(state) -> {"val_nme2d_68": mean over images, "val_nme3d_68": ...,
      "val_nme2d_68_bucket_mean": mean of bucket means (only when every bucket has images),
      and the dense means when the examples have GT maps}; plain floats, never NaN.
    """
    size = int(config.image_size)
    if assets.size != size:
        raise ValueError(f"assets: size {assets.size} != config.image_size {size}")
    examples = list(examples)
    network = model_lib.build_model(config)
    rep = representation.resolve(config.get("representation", "position"))

    def evaluate_state(state) -> dict:
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        result = protocol.evaluate(
            examples,
            inference.make_predict_fn(network, variables, batch_size, rep, context),
            assets,
            batch_size=batch_size,
            crop_scale=crop_scale,
            reconstruction_points=0,
        )
        row = protocol.summarise(result)
        out = {}
        for key in protocol.LANDMARK_METRICS + protocol.DENSE_METRICS:
            if key in row:
                out[f"{prefix}_{key}"] = row[key]["all"]
                if math.isfinite(row[key]["mean"]):
                    out[f"{prefix}_{key}_bucket_mean"] = row[key]["mean"]
        return out

    return evaluate_state
