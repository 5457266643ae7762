"""Devices, compiled programs and placement: the `Trainer` that runs `step.make_train_step`.

Trainers of one process whose configs differ only in HOST_FIELDS share one model, optimizer and
set of compiled programs (`_programs_for`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np

from prn_jax import configuration, cpu_runtime
from prn_jax import model as model_lib
from prn_jax.train.step import (
    AXIS,
    TrainState,
    create_train_state,
    make_optimizer,
    make_train_step,
    run_inputs,
)

# Config fields the compiled programs never read: the host loop's (run length, logging,
# checkpoints, periodic evaluation, where the data lives and how it is read; the devices are part
# of the program key instead of num_devices), the loss weight ratios (the step gets the weight
# map as an argument) and the seed (an argument too: `step.RunInputs`). The programs are built
# from the config without them, so reading one there raises, and runs in one process that differ
# only in them (seeds and weight ratios of a sweep) share their compiled programs.
HOST_FIELDS = (
    "seed",
    "test_data",
    "num_epochs",
    "num_steps",
    "num_devices",
    "log_every_steps",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "eval_every_steps",
    "eval_limit",
    "compilation_cache_dir",
    "weight_ratios",
    "data.dir",
    "data.model_dir",
    "data.split",
    "data.builder",
    "data.builder_config",
    "data.num_threads",
    "data.worker_count",
    "data.prefetch_batches",
    "data.device_memory_bytes",
    "data.device_memory_fraction",
)
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

        def dispatch(state, batch, weights, geometry, run, resident):
            self.trace_count += 1  # runs at trace time only: counts compilations
            if k == 1:
                return step(state, batch, weights, geometry, run, resident)
            state, metrics = jax.lax.scan(
                lambda s, b: step(s, b, weights, geometry, run, resident), state, batch
            )
            return state, jax.tree.map(lambda m: m[-1], metrics)

        # resident (device-resident training data, or None) is sharded over the devices.
        self.p_step = jax.pmap(
            dispatch,
            axis_name=AXIS,
            in_axes=(None, 0, None, None, None, 0),
            out_axes=None,
            devices=devices,
            donate_argnums=(0,),
        )

    def _create_state(self, seed) -> TrainState:
        return create_train_state(self.config, self.model, self.tx, seed)

    def init_state(self, seed: int) -> TrainState:
        """See `Trainer.init_state`; the program is compiled on the first call."""
        if self._compiled_init is None:
            lowered = jax.jit(self._create_state, out_shardings=self.replicated).lower(
                jax.ShapeDtypeStruct((), np.int32)
            )
            cpu = self.mesh.devices.flat[0].platform == "cpu"
            options = cpu_runtime.RUN_ONCE_COMPILER_OPTIONS if cpu else None
            self._compiled_init = lowered.compile(compiler_options=options)
        return self._compiled_init(np.int32(seed))

    def abstract_state(self) -> TrainState:
        """See `Trainer.abstract_state`."""
        return jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated),
            jax.eval_shape(self._create_state, jax.ShapeDtypeStruct((), np.int32)),
        )


_programs: dict[str, _Programs] = {}


def clear_program_cache() -> None:
    """Drops the process's compiled programs (with `jax.clear_caches()`, their executables' memory
    is freed; the test suite does so after each module)."""
    _programs.clear()


def _programs_for(config, devices) -> _Programs:
    """The process's `_Programs` for this program config, devices and x64 mode (least recently
    used ones dropped beyond _PROGRAM_CACHE_SIZE)."""
    pconfig = program_config(config)
    key = json.dumps(
        [
            pconfig.to_json(sort_keys=True),
            [(d.process_index, d.id) for d in devices],
            jax.process_count(),
            bool(jax.config.jax_enable_x64),
        ]
    )
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
                f"{jax.process_count()} processes"
            )
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
        # The seed and a zero representation context; the training loop passes the run's own.
        self.run_inputs = self.place(run_inputs(config))

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
        return self._programs.init_state(self.config.seed)

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

    def step(self, state, batch, weights, geometry=None, run=None, resident=None):
        """One dispatch (`steps_per_dispatch` updates); `batch` must already be on the devices,
        `weights`, `geometry` (FitRenderArrays or None) and `run` (`step.RunInputs`; default
        `self.run_inputs`) placed with `place`; `resident`: the device-resident training set
        (`device_data.load_resident`; then batches hold record indices) or None."""
        run = self.run_inputs if run is None else run
        state, metrics = self.p_step(state, batch, weights, geometry, run, resident)
        if jax.process_count() > 1:
            state = self.globalize(state)
        return state, metrics

    def globalize(self, tree):
        """Multi-process: pmap returns replicated arrays sharded over this process's devices only;
        re-wrap their shards (no copy) as global arrays over all devices, which Orbax can save
        and which the next step gets with the sharding of `place`."""
        return jax.tree.map(
            lambda x: jax.make_array_from_single_device_arrays(
                x.shape, self._programs.replicated, [s.data for s in x.addressable_shards]
            ),
            tree,
        )


def stack_dispatch(batches: Iterator[dict], steps: int) -> Iterator[dict]:
    """Group `steps` consecutive batches (D, B, ...) into one (D, steps, B, ...)."""
    if steps == 1:
        yield from batches
        return
    while True:
        group = [next(batches) for _ in range(steps)]
        yield {k: np.stack([g[k] for g in group], axis=1) for k in group[0]}


def to_host(x) -> np.ndarray:
    """A replicated (possibly multi-process) device array -> numpy, without a global gather."""
    return np.asarray(x.addressable_data(0))
