"""The pure train step: state, optimizer, learning-rate schedule and the per-device step.

The step runs per device under `jax.pmap(axis_name="batch")` on batches shaped
(devices, per-device batch, ...); gradients, loss metrics and BatchNorm statistics are
`pmean`'d over "batch", so every device holds identical state. The state stays unreplicated
(`in_axes=(None, 0, None, None)` for state, batch, weight map, geometry; `out_axes=None`) and
is donated.

Batch interface (what every input pipeline yields):
  {"image":   (D, B, S, S, 3) float32 in [0, 1] (or uint8 0..255),
   "pos_map": (D, B, S, S, 3) float32 position map in crop pixels}
or, with `config.data.maps_on_device`, instead of "pos_map" the fits and crops ("pose" (D, B, 7),
"shape", "expression", "crop_transform" (D, B, 3, 3), "image_height" (D, B)), from which the
step renders the maps with `geometry.position_maps_from_fits` and the `FitRenderArrays` it is
given (model + UV raster, replicated like the weight map).

Device-resident data (`config.data.source = "device"`, `data.device_data`): the batch is
{"index": (D, G) int32}, the global batch's record indices, and the step gathers its examples
from the `resident` training set it is given (sharded over the devices) before anything else.

Run inputs (`RunInputs`, replicated): the seed and the representation's context are arguments of
the compiled step, not constants in it, so runs that differ only in them (seeds of a sweep) share
one compiled program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.flatten_util
import jax.numpy as jnp
import optax

from prn_jax import augment, configuration, representation
from prn_jax import loss as loss_lib
from prn_jax import model as model_lib
from prn_jax.data import device_data
from prn_jax.geometry import ground_truth

AXIS = "batch"


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # () int32, number of updates done
    params: Any  # float32 network weights
    batch_stats: Any  # BatchNorm moving mean / variance
    opt_state: Any  # Adam moments


@flax.struct.dataclass
class RunInputs:
    seed: jax.Array  # () int32: init, data order and augmentation keys
    context: representation.Context  # the target representation's context


def run_inputs(config, context: representation.Context | None = None) -> RunInputs:
    """The run inputs of `config` (context: zeros, as for procedural data, when None)."""
    if context is None:
        context = representation.make_context(config.image_size)
    return RunInputs(seed=jnp.asarray(config.seed, jnp.int32), context=context)


def learning_rate_schedule(config) -> optax.Schedule:
    """lr * factor ** floor(step / (lr_decay_epochs * steps_per_epoch)) (staircase)."""
    return optax.exponential_decay(
        init_value=config.learning_rate,
        transition_steps=config.lr_decay_epochs * configuration.steps_per_epoch(config),
        decay_rate=config.lr_decay_factor,
        staircase=True,
    )


def make_optimizer(config) -> optax.GradientTransformation:
    """Adam with the staircase schedule.

    With `config.flat_optimizer_state` (the default since 2026-12-02) Adam sees the parameters as
    one vector (`optax.flatten`): its moments are one float32 vector each, in `ravel_pytree` order,
    and its update is a few fused ops instead of a few per parameter. Same update formula; the
    results agree to float32 rounding (XLA fuses the two programs differently). The tiny train
    step has ~16% fewer XLA fusions and compiles ~18% faster (BUILD_NOTES, issue 9, 2026-12-02).
    Configs saved before the field existed keep Adam's per-parameter moments, so their
    checkpoints still restore.
    """
    tx = optax.adam(learning_rate_schedule(config))
    return optax.flatten(tx) if config.get("flat_optimizer_state", False) else tx


def create_train_state(config, model, tx, seed=None) -> TrainState:
    """The initial state; seed: int or traced int32 (default config.seed)."""
    seed = config.seed if seed is None else seed
    variables = model_lib.init_variables(model, jax.random.PRNGKey(seed), config.image_size)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(params),
    )


def _global_norm(tree, config) -> jax.Array:
    """sqrt(sum of squares) of all leaves; with a flat optimizer state over the same one vector
    (one reduction instead of one per leaf)."""
    if config.get("flat_optimizer_state", False):
        return jnp.linalg.norm(jax.flatten_util.ravel_pytree(tree)[0])
    return optax.global_norm(tree)


def _weight_penalty(params) -> jax.Array:
    """TF's l2_regularizer: sum(w^2) / 2 over convolution kernels (not BatchNorm)."""
    leaves = [x for p, x in jax.tree_util.tree_flatten_with_path(params)[0] if p[-1].key == "kernel"]
    return 0.5 * sum(jnp.sum(jnp.square(x)) for x in leaves)


def augment_per_device(seed, params: augment.AugmentParams, step, images, pos):
    """Augment this device's examples; example j of the global batch uses the key
    fold_in(fold_in(PRNGKey(seed), step), j), whatever the device count."""
    if not params.any_enabled:
        return images, pos
    per_device = images.shape[0]
    first = jax.lax.axis_index(AXIS) * per_device
    keys = jax.vmap(augment.train_example_key, in_axes=(None, None, 0))(
        seed, step, first + jnp.arange(per_device)
    )
    return jax.vmap(augment.augment_example, in_axes=(0, 0, 0, None))(keys, images, pos, params)


def batch_position_maps(batch, geometry) -> jax.Array:
    """The batch's (B, S, S, 3) target maps: stored, or rendered from its fits with `geometry`."""
    if "pos_map" in batch:
        return batch["pos_map"]
    return ground_truth.position_maps_from_fits(
        geometry,
        batch["pose"],
        batch["shape"],
        batch["expression"],
        batch["crop_transform"],
        batch["image_height"],
    )


def make_train_step(config, model, tx) -> Callable:
    """Per-device step(state, batch, weights, geometry, run, resident=None) -> (state, metrics); call
    it under pmap.

    geometry: `ground_truth.FitRenderArrays` for batches of fits (maps_on_device), else None.
    run: `RunInputs`. resident: this device's block of the device-resident training set
    (`device_data.load_resident`), with batches {"index": (G,) int32}; None for host batches.
    The loss is `loss.resolve_loss(config.loss)`, the target
    `representation.resolve(config.representation).encode` of the position maps.
    """
    aug_params = augment.AugmentParams.from_config(config)
    loss_fn_of_config = loss_lib.resolve_loss(config.loss)
    rep = representation.resolve(config.get("representation", "position"))

    def step(state: TrainState, batch, weights, geometry, run: RunInputs, resident=None):
        if resident is not None:
            batch = device_data.gather_batch(resident, batch["index"], AXIS)
        images = batch["image"]
        if images.dtype == jnp.uint8:
            images = images.astype(jnp.float32) / 255.0
        images, pos_map = augment_per_device(
            run.seed, aug_params, state.step, images, batch_position_maps(batch, geometry)
        )
        target = rep.encode(pos_map, run.context)
        batch_weights = jnp.broadcast_to(weights, pos_map.shape[:3]).astype(jnp.float32)

        def loss_fn(params):
            out, updates = model.apply(
                {"params": params, "batch_stats": state.batch_stats},
                images,
                train=True,
                mutable=["batch_stats"],
            )
            data_loss = loss_fn_of_config(out, target, batch_weights, config)
            total = data_loss
            if config.l2_regularization:
                total = total + config.l2_regularization * _weight_penalty(params)
            return total, (data_loss, updates["batch_stats"])

        (total, (data_loss, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = jax.lax.pmean(grads, AXIS)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # Statistics stay in their stored dtype (float32) whatever the compute dtype.
        batch_stats = jax.tree.map(lambda new, old: new.astype(old.dtype), batch_stats, state.batch_stats)
        metrics = {
            "loss": jax.lax.pmean(data_loss, AXIS),
            "total_loss": jax.lax.pmean(total, AXIS),
            "grad_norm": _global_norm(grads, config),
            "learning_rate": learning_rate_schedule(config)(state.step),
        }
        return TrainState(
            step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
        ), metrics

    return step
