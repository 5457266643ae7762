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

from prn_jax import configuration, representation
from prn_jax import model as model_lib
from prn_jax.checkpointing import Checkpointer, CheckpointError
from prn_jax.data import formats
from prn_jax.train import step as step_lib

PredictFn = Callable[[np.ndarray], np.ndarray]


def predict_maps(model, variables, crops, rep=None, context=None) -> jax.Array:
    """Network forward in inference mode, decoded to position maps.

    Args:
      model: the Flax module (`model.build_model(config)`, no axis name).
      variables: {"params": ..., "batch_stats": ...}.
      crops: (B, S, S, 3) float in [0, 1], RGB crops.
      rep: the run's `representation.Representation` (default: the paper's, output * 1.1 S).
      context: its `representation.Context` (default: zeros).

    Returns:
      (B, S, S, 3) float32 position maps in crop pixels.
    """
    rep = representation.REPRESENTATIONS["position"] if rep is None else rep
    if context is None:
        context = representation.make_context(crops.shape[1])
    return _forward(model, rep, variables, jnp.asarray(crops, jnp.float32), context)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _forward(model, rep, variables, crops, context):
    return rep.decode(model.apply(variables, crops, train=False), context)


def make_predict_fn(model, variables, batch_size: int, rep=None, context=None) -> PredictFn:
    """A `predict_fn` that pads every call to `batch_size` so the network compiles once
    (rep, context: as `predict_maps`)."""

    def predict(crops: np.ndarray) -> np.ndarray:
        n = len(crops)
        if n > batch_size:
            raise ValueError(f"crops: batch of {n} > batch_size {batch_size}")
        padded = np.zeros((batch_size,) + crops.shape[1:], np.float32)
        padded[:n] = crops
        return np.asarray(predict_maps(model, variables, padded, rep, context))[:n]

    return predict


def run_predict_fn(config, variables, batch_size: int, context=None) -> PredictFn:
    """The `predict_fn` of a run: its network and its representation (`config.representation`),
    decoded with `context` (`representation.make_context` of the face model; None: zeros)."""
    rep = representation.resolve(config.get("representation", "position"))
    return make_predict_fn(model_lib.build_model(config), variables, batch_size, rep, context)


def crop_image(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 image -> (S, S, 3) float32 crop in [0, 1], with exactly the resampling the
    training builder used (`formats.crop_image`: bilinear, black outside)."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image: expected (H, W, C), got {image.shape}")
    return formats.crop_image(image, transform, size).astype(np.float32) / 255.0


CHECKPOINT_NAMES = ("best", "last")


def resolve_checkpoint(workdir, checkpoint: int | str | None = None) -> tuple[Path, str, int]:
    """(run directory, checkpoint folder ("checkpoints" or "best"), step) named by `checkpoint`.

    Args:
      workdir: a training run directory, or its best/ folder (then `checkpoint` defaults to best).
      checkpoint: "last" (default: the latest periodic checkpoint), "best" (the one kept by
        validation, best/), or a step number (checkpoints/STEP, else best/STEP).
    """
    workdir = Path(workdir)
    if workdir.name == "best" and (workdir.parent / "checkpoints").is_dir():
        workdir, checkpoint = workdir.parent, "best" if checkpoint is None else checkpoint
    if not (workdir / "checkpoints").is_dir():
        raise CheckpointError(f"{workdir}: no checkpoints/ folder (not a prn-jax run directory)")
    checkpoint = "last" if checkpoint is None else checkpoint
    steps = {folder: _steps(workdir / folder) for folder in ("checkpoints", "best")}
    if checkpoint in ("last", "best"):
        folder = "checkpoints" if checkpoint == "last" else "best"
        if not steps[folder]:
            why = "no periodic validation (eval_every_steps = 0)?" if folder == "best" else "no checkpoint"
            raise CheckpointError(f"{workdir / folder}: no checkpoint ({why}); have {_listing(steps)}")
        return workdir, folder, max(steps[folder])
    try:
        step = int(checkpoint)
    except (TypeError, ValueError):
        raise CheckpointError(f"checkpoint {checkpoint!r}: expected best, last or a step number") from None
    for folder in ("checkpoints", "best"):
        if step in steps[folder]:
            return workdir, folder, step
    raise CheckpointError(f"{workdir}: no checkpoint at step {step}; have {_listing(steps)}")


def _steps(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def _listing(steps: dict[str, list[int]]) -> str:
    return ", ".join(f"{folder}/ {found or 'none'}" for folder, found in steps.items())


def restore_variables(workdir, checkpoint: int | str | None = None):
    """(config, step, {"params", "batch_stats"}) of a training run's checkpoint
    (`resolve_checkpoint`: "last" by default, "best", or a step).

    The checkpoint's own metadata gives the config; the variables are restored onto one device
    into the state's abstract structure (nothing is initialised or compiled).
    """
    workdir, folder, step = resolve_checkpoint(workdir, checkpoint)
    probe = Checkpointer(workdir, ml_collections.ConfigDict({"keep_checkpoints": 1}), subdir=folder)
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
    ckpt = Checkpointer(workdir, config, subdir=folder)
    state = jax.device_get(ckpt.restore(step, abstract))
    ckpt.close()
    return config, step, {"params": state.params, "batch_stats": state.batch_stats}
