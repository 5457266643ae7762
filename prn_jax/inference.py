"""Inference from a trained run: restore its variables, crop an image, predict position maps.

A predictor is `predict_fn(crops) -> maps`: crops (B, S, S, 3) float32 in [0, 1] (RGB crops of
the original image), maps (B, S, S, 3) float32 position maps in crop pixels (x right, y down, z
toward the camera).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from prn_jax import configuration
from prn_jax import model as model_lib
from prn_jax.checkpointing import Checkpointer, CheckpointError
from prn_jax.data import formats
from prn_jax.train import step as step_lib

PredictFn = Callable[[np.ndarray], np.ndarray]


def predict_maps(model, variables, crops) -> jax.Array:
    """Network forward in inference mode.

    Args:
      model: the Flax module (`model.build_model(config)`, no axis name).
      variables: {"params": ..., "batch_stats": ...}.
      crops: (B, S, S, 3) float in [0, 1], RGB crops.

    Returns:
      (B, S, S, 3) float32 position maps in crop pixels (sigmoid output * 1.1 * S).
    """
    return _forward(model, variables, jnp.asarray(crops, jnp.float32))


@functools.partial(jax.jit, static_argnums=0)
def _forward(model, variables, crops):
    out = model.apply(variables, crops, train=False)
    return out * model_lib.position_scale(crops.shape[1])


def make_predict_fn(model, variables, batch_size: int) -> PredictFn:
    """A `predict_fn` that pads every call to `batch_size` so the network compiles once."""

    def predict(crops: np.ndarray) -> np.ndarray:
        n = len(crops)
        if n > batch_size:
            raise ValueError(f"crops: batch of {n} > batch_size {batch_size}")
        padded = np.zeros((batch_size,) + crops.shape[1:], np.float32)
        padded[:n] = crops
        return np.asarray(predict_maps(model, variables, padded))[:n]

    return predict


def crop_image(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 image -> (S, S, 3) float32 crop in [0, 1], with exactly the resampling the
    training builder used (`formats.crop_image`: bilinear, black outside)."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image: expected (H, W, C), got {image.shape}")
    return formats.crop_image(image, transform, size).astype(np.float32) / 255.0


def restore_variables(workdir, checkpoint_step: int | None = None):
    """(config, step, {"params", "batch_stats"}) of a training run's checkpoint (latest default).

    The checkpoint's own metadata gives the config; the variables are restored onto one device
    into the state's abstract structure (nothing is initialised or compiled).
    """
    workdir = Path(workdir)
    if not (workdir / "checkpoints").is_dir():
        raise CheckpointError(f"{workdir}: no checkpoints/ folder (not a prn-jax run directory)")
    probe = Checkpointer(workdir, ml_collections.ConfigDict({"keep_checkpoints": 1}))
    step = probe.latest_step() if checkpoint_step is None else checkpoint_step
    if step is None:
        raise CheckpointError(f"{probe.directory}: no checkpoint")
    if step not in probe.all_steps():
        raise CheckpointError(f"{probe.directory}: no checkpoint at step {step} (have {probe.all_steps()})")
    config = ml_collections.ConfigDict(probe.read_meta(step)["config"])
    probe.close()
    config.num_devices = 1  # inference restores onto one device whatever the run used
    configuration.validate_config(config, jax.local_device_count())
    model = model_lib.build_model(config)
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        jax.eval_shape(lambda: step_lib.create_train_state(config, model, step_lib.make_optimizer(config))),
    )
    ckpt = Checkpointer(workdir, config)
    state = jax.device_get(ckpt.restore(step, abstract))
    ckpt.close()
    return config, step, {"params": state.params, "batch_stats": state.batch_stats}
