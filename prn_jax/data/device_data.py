"""Device-resident training data (`config.data.source = "device"`): the training split loaded once
into device memory, each step's batch gathered there by index.

    order = DeviceOrder(num_records, config.batch_size, num_local_devices, config.seed)
    resident = load_resident(config, mesh, log=print)   # prints the memory plan, refuses if too big
    batch = next(order)     # {'index': (local devices, G) int32}: the global batch's record indices
    ... step(state, batch, ..., resident)   # calls gather_batch(resident, batch['index'], axis)

Layout. The N records are split into D contiguous blocks of M = ceil(N / D) (the last one padded
with zeros, never indexed): device d (position d of the trainer's mesh, whose batch slice is
examples d*B .. (d+1)*B - 1 of the global batch, B = G / D) holds records d*M .. d*M + M - 1,
as (D, M, ...) arrays sharded over the devices like the batches. Each process reads from disk only
its own devices' blocks. Per record: 'image' (S, S, 3) uint8; and, as the streaming pipeline
yields them (`input_pipeline.ReadExample`), either the fit fields (`input_pipeline.PARAM_FIELDS`,
float32, ~1 KB: `config.data.maps_on_device`, the step renders the maps) or the position map as its
stored uint16 levels ('pos_map_levels', (S, S, 3); 2 bytes a value, decoded exactly in the step).

Order. `DeviceOrder` yields, for every step, the G record indices of the global batch: the slice
of `input_pipeline.epoch_permutation(seed, epoch, N)` the streaming pipeline reads (the same
epochs, the same batches, the same remainder dropped). Its state is (epoch, position) - the step
within the epoch - saved in checkpoints like the grain iterator's (`get_state` / `set_state`).

Gather (`gather_batch`, inside the pmapped step): each device takes, for all G indices, the
records it holds (zeros for the others), and a reduce-scatter (`psum_scatter`, on the bits as
int32: exact) hands every device its own B examples. The host does nothing per step but send G
int32 indices. On one device it is a plain gather.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

LEVELS_FIELD = "pos_map_levels"


class DeviceMemoryError(ValueError):
    """The training set does not fit in the device memory allowed for it (message: the numbers)."""


# ------------------------------------------------------------------------------------ memory plan


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Bytes per device of a device-resident training set.

    num_records N over num_devices D: records_per_device M = ceil(N / D), record_bytes per record
    (its fields), resident_bytes = M * record_bytes; gather_bytes: the step's temporary (every
    device gathers all G examples' fields before the reduce-scatter; G = B on one device).
    limit_bytes: the device's memory; budget_bytes = fraction * limit the set may use.
    """

    num_records: int
    num_devices: int
    records_per_device: int
    record_bytes: int
    field_bytes: dict
    resident_bytes: int
    gather_bytes: int
    limit_bytes: int
    limit_source: str
    budget_bytes: int

    @property
    def needed_bytes(self) -> int:
        return self.resident_bytes + self.gather_bytes

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.budget_bytes

    def describe(self) -> str:
        fields = " + ".join(f"{name} {size:,}" for name, size in self.field_bytes.items())
        return (
            f"device-resident data: {self.num_records:,} records over {self.num_devices} device(s), "
            f"{self.records_per_device:,} per device x {self.record_bytes:,} B ({fields}) = "
            f"{_gib(self.resident_bytes)} per device, + {_gib(self.gather_bytes)} per step for the "
            f"gather; {_gib(self.needed_bytes)} of the {_gib(self.budget_bytes)} allowed per device "
            f"({self.limit_source}: {_gib(self.limit_bytes)})"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:.3f} GiB"


def record_layout(example: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{field: (shape, dtype)} of one resident record, from one example of `ReadExample` (a
    'pos_map' is held as its uint16 levels)."""
    layout = {}
    for name, value in example.items():
        if name == "pos_map":
            layout[LEVELS_FIELD] = (value.shape, np.dtype(np.uint16))
        else:
            layout[name] = (value.shape, value.dtype)
    return layout


def memory_plan(
    num_records: int,
    layout: dict,
    num_devices: int,
    global_batch: int,
    limit_bytes: int,
    fraction: float,
    limit_source: str = "device memory",
) -> MemoryPlan:
    """The `MemoryPlan` of N records of `layout` over D devices with a global batch G."""
    field_bytes = {
        name: math.prod(shape) * np.dtype(dtype).itemsize for name, (shape, dtype) in layout.items()
    }
    record = sum(field_bytes.values())
    per_device = -(-num_records // num_devices)
    return MemoryPlan(
        num_records=num_records,
        num_devices=num_devices,
        records_per_device=per_device,
        record_bytes=record,
        field_bytes=field_bytes,
        resident_bytes=per_device * record,
        gather_bytes=global_batch * record,
        limit_bytes=int(limit_bytes),
        limit_source=limit_source,
        budget_bytes=int(fraction * limit_bytes),
    )


def device_memory_bytes(device) -> tuple[int, str]:
    """(bytes, where from) of one device's memory: the runtime's `bytes_limit` (GPU, TPU); on the
    CPU backend, which reports none, the machine's physical memory shared by its local devices."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.platform} memory_stats bytes_limit"
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    shared = max(1, sum(d.platform == device.platform for d in jax.local_devices()))
    return physical // shared, f"host memory / {shared} local {device.platform} device(s)"


def check_plan(plan: MemoryPlan) -> None:
    """Raise `DeviceMemoryError` with the numbers, naming the streaming source, when the plan
    does not fit."""
    if plan.fits:
        return
    raise DeviceMemoryError(
        f"config.data.source = 'device': the training set needs {_gib(plan.needed_bytes)} per device "
        f"({plan.records_per_device:,} records x {plan.record_bytes:,} B + {_gib(plan.gather_bytes)} "
        f"per step for the gather), more than the {_gib(plan.budget_bytes)} allowed "
        f"(config.data.device_memory_fraction x {_gib(plan.limit_bytes)}, {plan.limit_source}); "
        f"stream it instead with config.data.source = 'tfds' (faster without decoding: `prn-jax build "
        f"--raw-crops` and config.data.maps_on_device = True), or use more devices"
    )


# ------------------------------------------------------------------------------------------ order


class DeviceOrder:
    """Endless host iterator of the global batches' record indices, in the streaming order.

    next() -> {'index': (num_local_devices, G) int32}, every row the G record indices of the
    step's global batch (`input_pipeline.epoch_permutation(seed, epoch, N)[b*G:(b+1)*G]` for
    batch b of the epoch). State: epoch and position (the step within the epoch).
    """

    def __init__(self, num_records: int, global_batch: int, num_local_devices: int, seed: int):
        if num_records < global_batch:
            raise ValueError(
                f"{num_records} records are fewer than one global batch (config.batch_size = {global_batch})"
            )
        self.num_records, self.global_batch, self.seed = num_records, global_batch, seed
        self.num_local_devices = num_local_devices
        self.steps_per_epoch = num_records // global_batch
        self.epoch, self.position = 0, 0
        self._permutation = (None, None)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._permutation[0] != self.epoch:
            from prn_jax.data import input_pipeline  # grain: not for the step's importers

            self._permutation = (
                self.epoch,
                input_pipeline.epoch_permutation(self.seed, self.epoch, self.num_records),
            )
        start = self.position * self.global_batch
        index = self._permutation[1][start : start + self.global_batch].astype(np.int32)
        self.position += 1
        if self.position == self.steps_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        return {"index": np.repeat(index[None], self.num_local_devices, axis=0)}

    # grain's checkpoint handler saves and restores any iterator with these (bytes) methods.
    def get_state(self) -> bytes:
        return json.dumps({"epoch": self.epoch, "position": self.position}).encode()

    def set_state(self, state: bytes | str | dict) -> None:
        if isinstance(state, (bytes, str)):
            state = json.loads(state)
        if not isinstance(state, dict) or not {"epoch", "position"} <= set(state):
            raise ValueError(
                "the checkpoint's data position was not written by config.data.source = 'device' "
                "(a streamed run's?); resume with the source the run was started with"
            )
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position < self.steps_per_epoch:
            raise ValueError(
                f"device data state {state!r}: position must lie in [0, {self.steps_per_epoch}) steps"
            )
        self.epoch, self.position = epoch, position

    def start_prefetch(self) -> None:
        """Nothing to prefetch (grain's handler calls it after a restore)."""


# ------------------------------------------------------------------------------------------ load


def read_block(read, records: range, size: int, layout: dict, threads: int) -> dict:
    """Records `records` decoded as the streaming pipeline decodes them (`read`: its
    `input_pipeline.ReadExample`, run on `threads` threads), as numpy arrays (size, ...) per
    resident field (rows past the records stay zero)."""
    from prn_jax.data import formats

    block = {name: np.zeros((size, *shape), dtype) for name, (shape, dtype) in layout.items()}

    def fill(row_and_index):
        row, index = row_and_index
        for name, value in read.map(index).items():
            if name == "pos_map":
                block[LEVELS_FIELD][row] = formats.quantize_position_map(value)
            else:
                block[name][row] = value

    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(fill, enumerate(records)))
    return block


def load_resident(config: Any, mesh: jax.sharding.Mesh, log: Callable[[str], None] = print) -> dict:
    """Loads this process's share of the configured training split onto its devices.

    Prints the `MemoryPlan` first and raises `DeviceMemoryError` when it does not fit in
    `config.data.device_memory_fraction` of the device memory (`config.data.device_memory_bytes`,
    0: the device's own figure, `device_memory_bytes`).

    Returns {field: (D, M, ...) global jax.Array sharded over mesh axis 0} (see the module
    docstring), the step's `resident` argument.
    """
    from prn_jax.data import input_pipeline

    settings = input_pipeline.DataSettings.from_config(config)
    source = input_pipeline.open_source(settings.dir, settings)
    size = int(config.image_size)
    name = f"{settings.dir}/{settings.builder}/{settings.builder_config}/{settings.split}"
    read = input_pipeline.ReadExample(source, size, settings.maps_on_device, name)
    layout = record_layout(read.map(0))
    devices = list(mesh.devices.flat)
    given = int(config.data.get("device_memory_bytes", 0))
    local = [d for d in devices if d.process_index == jax.process_index()]
    limit, where = (given, "config.data.device_memory_bytes") if given else device_memory_bytes(local[0])
    plan = memory_plan(
        len(source),
        layout,
        len(devices),
        int(config.batch_size),
        limit,
        float(config.data.get("device_memory_fraction", 0.5)),
        where,
    )
    log(plan.describe())
    check_plan(plan)
    m = plan.records_per_device
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names[0]))
    shards = {field: [] for field in layout}
    for position, device in enumerate(devices):
        if device not in local:
            continue
        records = range(position * m, min((position + 1) * m, len(source)))
        block = read_block(read, records, m, layout, settings.num_threads)
        for field, value in block.items():
            shards[field].append(jax.device_put(value[None], device))
        del block
    return {
        field: jax.make_array_from_single_device_arrays((len(devices), m, *shape), sharding, shards[field])
        for field, (shape, _) in layout.items()
    }


# ---------------------------------------------------------------------------------------- gather


def _to_words(x: jax.Array) -> jax.Array:
    """(G, ...) array -> (G, W) int32 with the same bits (for an exact integer reduce-scatter)."""
    itemsize = x.dtype.itemsize
    flat = x.reshape(x.shape[0], -1)
    if itemsize == 4:
        return jax.lax.bitcast_convert_type(flat, jnp.int32)
    per_word = 4 // itemsize
    return jax.lax.bitcast_convert_type(flat.reshape(x.shape[0], -1, per_word), jnp.int32)


def _from_words(words: jax.Array, dtype, shape: tuple[int, ...]) -> jax.Array:
    """Inverse of `_to_words`: (B, W) int32 -> (B, *shape) of `dtype`."""
    out = jax.lax.bitcast_convert_type(words, dtype)
    return out.reshape(words.shape[0], *shape)


def decode_levels(levels: jax.Array) -> jax.Array:
    """(..., S, S, 3) uint16 map levels -> float32 crop pixels, bit for bit as
    `formats.decode_position_map` (both steps are exact in float32)."""
    from prn_jax.data import formats  # scipy.io: not for the step's importers

    size = levels.shape[-2]
    step = np.float32(size / formats.LEVELS_PER_SIZE)
    return (levels.astype(jnp.float32) - formats.OFFSET_LEVEL) * step


def gather_batch(resident: dict, index: jax.Array, axis_name: str) -> dict:
    """This device's examples of the global batch (call it under pmap / shard_map over `axis_name`).

    Args:
      resident: this device's block {field: (M, ...)} (`load_resident`).
      index: (G,) int32 record indices of the global batch (the same on every device).
    Returns:
      The batch as the streaming pipeline yields it for this device, (B, ...) with B = G / D:
      'image' uint8 and either the fit fields or 'pos_map' float32 (decoded levels).
    """
    chex.assert_rank(index, 1)
    devices = jax.lax.axis_size(axis_name)
    rows = next(iter(resident.values())).shape[0]
    if devices == 1:
        picked = {name: jnp.take(array, index, axis=0) for name, array in resident.items()}
    else:
        local = index - jax.lax.axis_index(axis_name) * rows
        local = jnp.where((local >= 0) & (local < rows), local, rows)  # not here: filled with 0
        picked = {}
        for name, array in resident.items():
            taken = jnp.take(array, local, axis=0, mode="fill", fill_value=0)
            mine = jax.lax.psum_scatter(_to_words(taken), axis_name, scatter_dimension=0, tiled=True)
            picked[name] = _from_words(mine, array.dtype, array.shape[1:])
    if LEVELS_FIELD in picked:
        picked["pos_map"] = decode_levels(picked.pop(LEVELS_FIELD))
    return picked
