"""Train state, the pmapped train step and the training loop.

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
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import flax
import jax
import jax.flatten_util
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from prn_jax import augment, configuration, cpu_runtime, generated_data, loss as loss_lib, model as model_lib
from prn_jax.checkpointing import Checkpointer
from prn_jax.geometry import ground_truth

AXIS = "batch"


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # () int32, number of updates done
    params: Any              # float32 network weights
    batch_stats: Any         # BatchNorm moving mean / variance
    opt_state: Any           # Adam moments


def learning_rate_schedule(config) -> optax.Schedule:
    """lr * factor ** floor(step / (lr_decay_epochs * steps_per_epoch)) (staircase)."""
    return optax.exponential_decay(
        init_value=config.learning_rate,
        transition_steps=config.lr_decay_epochs * configuration.steps_per_epoch(config),
        decay_rate=config.lr_decay_factor, staircase=True)


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


def create_train_state(config, model, tx) -> TrainState:
    variables = model_lib.init_variables(model, jax.random.PRNGKey(config.seed), config.image_size)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables["batch_stats"], opt_state=tx.init(params))


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


def augment_per_device(config, params: augment.AugmentParams, step, images, pos):
    """Augment this device's examples; example j of the global batch uses the key
    fold_in(fold_in(PRNGKey(seed), step), j), whatever the device count."""
    if not params.any_enabled:
        return images, pos
    per_device = images.shape[0]
    first = jax.lax.axis_index(AXIS) * per_device
    step_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), step)
    keys = jax.vmap(lambda j: jax.random.fold_in(step_key, j))(first + jnp.arange(per_device))
    return jax.vmap(augment.augment_example, in_axes=(0, 0, 0, None))(keys, images, pos, params)


def batch_position_maps(batch, geometry) -> jax.Array:
    """The batch's (B, S, S, 3) target maps: stored, or rendered from its fits with `geometry`."""
    if "pos_map" in batch:
        return batch["pos_map"]
    return ground_truth.position_maps_from_fits(
        geometry, batch["pose"], batch["shape"], batch["expression"], batch["crop_transform"],
        batch["image_height"])


def make_train_step(config, model, tx) -> Callable:
    """Per-device step(state, batch, weights, geometry) -> (state, metrics); call it under pmap.

    geometry: `ground_truth.FitRenderArrays` for batches of fits (maps_on_device), else None.
    """
    scale = model_lib.position_scale(config.image_size)
    aug_params = augment.AugmentParams.from_config(config)

    def step(state: TrainState, batch, weights, geometry=None):
        images = batch["image"]
        if images.dtype == jnp.uint8:
            images = images.astype(jnp.float32) / 255.0
        images, pos_map = augment_per_device(config, aug_params, state.step, images,
                                             batch_position_maps(batch, geometry))
        target = pos_map / scale

        def loss_fn(params):
            out, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, images,
                                       train=True, mutable=["batch_stats"])
            data_loss = loss_lib.position_map_loss(out, target, weights, config.loss)
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
        metrics = {"loss": jax.lax.pmean(data_loss, AXIS), "total_loss": jax.lax.pmean(total, AXIS),
                   "grad_norm": _global_norm(grads, config),
                   "learning_rate": learning_rate_schedule(config)(state.step)}
        return TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                          opt_state=opt_state), metrics

    return step


# Config fields the compiled programs never read: the host loop's (run length, logging,
# checkpoints, periodic evaluation, where the data lives and how it is read; the devices are part
# of the program key instead of num_devices) and the loss weight ratios (the step gets the weight
# map as an argument). The programs are built from the config without them, so reading one there
# raises, and runs in one process that differ only in them share their compiled programs.
HOST_FIELDS = ("num_epochs", "num_steps", "num_devices", "log_every_steps", "checkpoint_every_steps",
               "keep_checkpoints", "eval_every_steps", "eval_data", "eval_model_dir", "eval_limit",
               "compilation_cache_dir", "weight_ratios", "data.dir", "data.model_dir", "data.split",
               "data.builder", "data.builder_config", "data.num_threads", "data.worker_count",
               "data.prefetch_batches")
_PROGRAM_CACHE_SIZE = 16


def program_config(config):
    """A copy of `config` without HOST_FIELDS: all that the compiled programs may read."""
    out = ml_collections.ConfigDict(config.to_dict())
    for dotted in HOST_FIELDS:
        *scopes, name = dotted.split(".")
        node = out
        for scope in scopes:
            node = node.get(scope, {})
        if name in node:
            del node[name]
    return out


class _Programs:
    """Model, optimizer, pmapped step and (once compiled) initialiser of one program config on one
    device list; shared by the Trainers of this process that have both in common."""

    def __init__(self, config, devices):
        self.config = config
        self.mesh = jax.sharding.Mesh(np.asarray(devices), (AXIS,))
        self.replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        self.model = model_lib.build_model(config, axis_name=AXIS)
        self.tx = make_optimizer(config)
        self.trace_count = 0
        self._compiled_init = None
        step = make_train_step(config, self.model, self.tx)
        k = config.steps_per_dispatch

        def dispatch(state, batch, weights, geometry):
            self.trace_count += 1  # runs at trace time only: counts compilations
            if k == 1:
                return step(state, batch, weights, geometry)
            state, metrics = jax.lax.scan(lambda s, b: step(s, b, weights, geometry), state, batch)
            return state, jax.tree.map(lambda m: m[-1], metrics)

        self.p_step = jax.pmap(dispatch, axis_name=AXIS, in_axes=(None, 0, None, None), out_axes=None,
                               devices=devices, donate_argnums=(0,))

    def _create_state(self) -> TrainState:
        return create_train_state(self.config, self.model, self.tx)

    def init_state(self) -> TrainState:
        """See `Trainer.init_state`; the program is compiled on the first call."""
        if self._compiled_init is None:
            lowered = jax.jit(self._create_state, out_shardings=self.replicated).lower()
            cpu = self.mesh.devices.flat[0].platform == "cpu"
            options = cpu_runtime.RUN_ONCE_COMPILER_OPTIONS if cpu else None
            self._compiled_init = lowered.compile(compiler_options=options)
        return self._compiled_init()

    def abstract_state(self) -> TrainState:
        """See `Trainer.abstract_state`."""
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated),
                            jax.eval_shape(self._create_state))


_programs: dict[str, _Programs] = {}


def _programs_for(config, devices) -> _Programs:
    """The process's `_Programs` for this program config, devices and x64 mode (least recently
    used ones dropped beyond _PROGRAM_CACHE_SIZE)."""
    pconfig = program_config(config)
    key = json.dumps([pconfig.to_json(sort_keys=True), [(d.process_index, d.id) for d in devices],
                      jax.process_count(), bool(jax.config.jax_enable_x64)])
    programs = _programs.pop(key, None) or _Programs(pconfig, devices)
    _programs[key] = programs  # most recently used last
    while len(_programs) > _PROGRAM_CACHE_SIZE:
        del _programs[next(iter(_programs))]
    return programs


class Trainer:
    """Everything compiled for one config: model, optimizer, pmapped step, devices.

    With `config.steps_per_dispatch = k > 1` one call runs k steps (a `lax.scan` on the device)
    over batches stacked as (devices, k, per-device batch, ...); metrics are the last step's.

    Multi-process (after `jax.distributed.initialize`): the step spans every device of every
    process; each process feeds its `local_devices` share of the global batch.

    Trainers of one process whose configs differ only in HOST_FIELDS share one model,
    optimizer and set of compiled programs (a resumed or longer run in the same process compiles
    nothing).
    """

    def __init__(self, config):
        multi = jax.process_count() > 1
        if multi and config.num_devices != -1:
            raise configuration.ConfigError(
                f"config.num_devices = {config.num_devices}: must be -1 (all devices) when running "
                f"{jax.process_count()} processes")
        configuration.validate_config(config, jax.device_count() if multi else jax.local_device_count())
        self.config = config
        if multi:
            self.devices = jax.devices()
        else:
            n = jax.local_device_count() if config.num_devices == -1 else config.num_devices
            self.devices = jax.local_devices()[:n]
        self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
        self._programs = _programs_for(config, self.devices)
        self.mesh = self._programs.mesh
        self.model, self.tx, self.p_step = self._programs.model, self._programs.tx, self._programs.p_step

    @property
    def trace_count(self) -> int:
        """How often the step was traced (compiled) for this Trainer's programs, in this process."""
        return self._programs.trace_count

    @property
    def num_devices(self) -> int:
        """Devices of all processes."""
        return len(self.devices)

    @property
    def num_local_devices(self) -> int:
        return len(self.local_devices)

    def init_state(self) -> TrainState:
        """The initial state from one compiled program (cached, and identical on every process)
        written straight into the replicated sharding of `place`.

        It runs once, so on CPU it is compiled with LLVM at -O0: the program (random kernels, BatchNorm
        and Adam state) took 19-25 s to compile at XLA's default -O3 and 4-11 s at -O0 (once per
        process and program, see HOST_FIELDS). The values are deterministic either way (a few
        differ from -O3's by <= 2e-7)."""
        return self._programs.init_state()

    def abstract_state(self) -> TrainState:
        """The initial state's shapes and dtypes with the replicated sharding of `place`
        (`jax.ShapeDtypeStruct` leaves): traced, not compiled. The restore target of a resumed
        run, which so never compiles or runs the initialiser."""
        return self._programs.abstract_state()

    def place(self, tree):
        """Replicate `tree` with the sharding the pmapped step returns, so it compiles once."""
        return jax.device_put(tree, self._programs.replicated)

    def place_batch(self, batch: dict) -> dict:
        """This process's host batch (local devices, ...) -> global device arrays (devices, ...),
        an explicit transfer."""
        sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(AXIS))
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)

    def step(self, state, batch, weights, geometry=None):
        """One dispatch (`steps_per_dispatch` updates); `batch` must already be on the devices,
        `weights` and `geometry` (FitRenderArrays or None) placed with `place`."""
        state, metrics = self.p_step(state, batch, weights, geometry)
        if jax.process_count() > 1:
            state = self.globalize(state)
        return state, metrics

    def globalize(self, tree):
        """Multi-process: pmap returns replicated arrays sharded over this process's devices only;
        re-wrap their shards (no copy) as global arrays over all devices, which Orbax can save
        and which the next step gets with the sharding of `place`."""
        return jax.tree.map(lambda x: jax.make_array_from_single_device_arrays(
            x.shape, self._programs.replicated, [s.data for s in x.addressable_shards]), tree)


def stack_dispatch(batches: Iterator[dict], steps: int) -> Iterator[dict]:
    """Group `steps` consecutive batches (D, B, ...) into one (D, steps, B, ...)."""
    if steps == 1:
        yield from batches
        return
    while True:
        group = [next(batches) for _ in range(steps)]
        yield {k: np.stack([g[k] for g in group], axis=1) for k in group[0]}


def prepare_data_config(config) -> None:
    """Fill in what the data determines (tfds: the dataset's size sets steps per epoch)."""
    if config.data.source == "tfds":
        from prn_jax import input_pipeline

        config.data.num_train_examples = input_pipeline.num_examples(config.data.dir, config)
    elif config.data.source != "generated":
        raise configuration.ConfigError(
            f"config.data.source = {config.data.source!r}: must be 'generated' or 'tfds'")


def make_data_iterator(config, num_local_devices: int):
    """The checkpointable grain iterator of a tfds run (None for generated data, whose batches
    are a pure function of the step)."""
    if config.data.source != "tfds":
        return None
    from prn_jax import input_pipeline

    return input_pipeline.make_train_loader(
        config, config.data.dir, process_index=jax.process_index(), process_count=jax.process_count(),
        num_local_devices=num_local_devices, seed=config.seed)


def make_batches(config, start_step: int, num_local_devices: int) -> Iterator[dict]:
    """This process's share of the generated batches from `start_step` on: (local devices,
    per-device batch, ...)."""
    return generated_data.batches(config.seed, start_step, config.batch_size, num_local_devices,
                                  config.data.num_train_examples, config.image_size,
                                  jax.process_index(), jax.process_count())


def region_labels(config) -> np.ndarray:
    """(S, S) UV region labels of the training maps (see `prn_jax.loss`)."""
    return training_geometry(config)[0]


def training_geometry(config) -> tuple[np.ndarray, ground_truth.FitRenderArrays | None]:
    """(S, S) UV region labels, and the numpy `FitRenderArrays` when the maps are rendered on
    the device (`config.data.maps_on_device`, which needs BFM.mat + BFM_UV.mat), else None."""
    on_device = bool(config.data.get("maps_on_device", False))
    if config.data.source == "generated":
        if on_device:
            raise configuration.ConfigError("config.data.maps_on_device = True needs "
                                            "config.data.source = 'tfds' (generated data has no fits)")
        return generated_data.region_labels(config.image_size), None
    if not config.data.model_dir:
        raise configuration.ConfigError("config.data.model_dir = '': a tfds run needs the face model "
                                        "(BFM.mat + BFM_UV.mat or PRNet uv-data) for the weight map")
    from prn_jax import evaluate

    assets, _, model, raster = evaluate.load_assets(config.data.model_dir, config.image_size)
    if not on_device:
        return assets.region_labels, None
    if model is None:
        raise configuration.ConfigError(
            f"config.data.maps_on_device = True: {config.data.model_dir} holds PRNet uv-data, which "
            f"has no morphable model; point config.data.model_dir at BFM.mat + BFM_UV.mat")
    return assets.region_labels, ground_truth.fit_render_arrays(model, raster)


def make_periodic_eval(config, log: Callable[[str], None]):
    """evaluate(state) -> {"eval_nme2d_68": ...} on `config.eval_limit` images, or None."""
    if not config.eval_every_steps:
        return None
    from prn_jax import evaluate

    if not config.eval_data:
        raise configuration.ConfigError("config.eval_data = '': eval_every_steps needs an "
                                        "AFLW2000-3D tfds dir, folder or synth root")
    model_dir = config.eval_model_dir or config.data.model_dir
    assets = evaluate.load_assets(model_dir, config.image_size)[0]
    examples = evaluate.load_examples(Path(config.eval_data), config.eval_limit)
    log(f"periodic evaluation every {config.eval_every_steps} steps on {len(examples)} images "
        f"from {config.eval_data}")
    return evaluate.make_periodic_evaluator(config, examples, assets)


def train_and_evaluate(config, workdir: str | Path, log: Callable[[str], None] = print) -> dict:
    """Train from scratch or resume from WORKDIR's latest checkpoint.

    Returns {"state", "last_metrics", "trace_count"}: the final state and logged metrics, and how
    often the step was traced (compiled) during this call: 1, or 0 when this process had already
    compiled the same programs (see `Trainer`).

    Writes WORKDIR/metrics.jsonl (one line per logged step) and WORKDIR/checkpoints/. The step
    runs under `jax.transfer_guard("disallow")`: batches are put on the devices explicitly and
    metrics fetched explicitly, so any hidden host round-trip inside the loop is an error.
    """
    workdir = Path(workdir)
    if jax.process_index() != 0:
        log = lambda message: None  # noqa: E731 - only process 0 reports
    if config.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(config.compilation_cache_dir))
    prepare_data_config(config)
    trainer = Trainer(config)  # validates the config before any compilation
    traces_before = trainer.trace_count
    labels, geometry = training_geometry(config)
    weights = trainer.place(jnp.asarray(loss_lib.weight_map(labels, config.weight_ratios)))
    geometry = trainer.place(geometry) if geometry is not None else None
    periodic_eval = make_periodic_eval(config, log)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(workdir, config)
    data_iterator = make_data_iterator(config, trainer.num_local_devices)
    latest = ckpt.latest_step()
    if latest is None:
        state = trainer.init_state()
    else:
        state = ckpt.restore(latest, trainer.abstract_state(), data_iterator)
        log(f"resumed from {ckpt.directory / str(latest)}")
    start = int(to_host(state.step))
    total = configuration.total_steps(config)
    k = config.steps_per_dispatch
    lead = jax.process_index() == 0
    logger = MetricsLogger(workdir, start, enabled=lead)
    best = BestCheckpoint(workdir, config, logger.history) if periodic_eval else None
    batches = data_iterator if data_iterator is not None else make_batches(config, start,
                                                                           trainer.num_local_devices)
    batches = stack_dispatch(batches, k)
    log(f"training steps {start}..{total} on {trainer.num_devices} {jax.default_backend()} device(s), "
        f"global batch {config.batch_size}, {configuration.steps_per_epoch(config)} steps/epoch")
    last, t0 = {}, time.perf_counter()
    for step in range(start, total, k):
        batch = trainer.place_batch(next(batches))
        with jax.transfer_guard("disallow"):
            state, metrics = trainer.step(state, batch, weights, geometry)
        done = step + k
        if done % config.log_every_steps == 0 or done == total:
            last = {k_: float(to_host(v)) for k_, v in metrics.items()}
            last["seconds"] = round(time.perf_counter() - t0, 3)
            logger.write(done, last)
            log(f"step {done}/{total}  loss {last['loss']:.6f}  lr {last['learning_rate']:.2e}  "
                f"({last['seconds']:.1f}s)")
        if periodic_eval and (done % config.eval_every_steps == 0 or done == total):
            host_state = jax.tree.map(to_host, state)
            scores = periodic_eval(host_state)
            logger.write(done, scores)
            log(f"step {done}/{total}  eval " + "  ".join(f"{n} {v:.4f}" for n, v in scores.items()))
            best.update(done, scores, state)
        if done % config.checkpoint_every_steps == 0 or done == total:
            ckpt.save(done, state, data_iterator)
    ckpt.close()
    logger.close()
    if best:
        best.close()
    return {"state": state, "last_metrics": last, "trace_count": trainer.trace_count - traces_before}


class MetricsLogger:
    """Appends {"step": ..., metrics} lines to WORKDIR/metrics.jsonl and writes the same scalars
    as TensorBoard events (WORKDIR/tensorboard); lines past the resumed step are dropped first."""

    def __init__(self, workdir: Path, start_step: int, enabled: bool = True):
        self.path = workdir / "metrics.jsonl"
        self.enabled = enabled
        self.history = read_log(workdir) if enabled else []
        self.history = [r for r in self.history if r["step"] <= start_step]
        self.writer = None
        if enabled:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(workdir / "tensorboard"), purge_step=start_step + 1)

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        record = {"step": step, **scalars}
        self.history.append(record)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer:
            self.writer.close()


class BestCheckpoint:
    """Keeps the state with the lowest `BEST_METRIC` in WORKDIR/best (one Orbax step)."""

    def __init__(self, workdir: Path, config, history: list[dict]):
        self.checkpointer = Checkpointer(workdir, config, keep=1, subdir="best")
        past = [r[BEST_METRIC] for r in history if BEST_METRIC in r]
        self.best = min(past) if past else float("inf")

    def update(self, step: int, scores: dict, state) -> None:
        value = scores.get(BEST_METRIC)
        if value is not None and value < self.best:
            self.best = value
            self.checkpointer.save(step, state)

    def close(self) -> None:
        self.checkpointer.close()


BEST_METRIC = "eval_nme2d_68"


def to_host(x) -> np.ndarray:
    """A replicated (possibly multi-process) device array -> numpy, without a global gather."""
    return np.asarray(x.addressable_data(0))


def read_log(workdir: str | Path) -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
