"""Host input pipeline: grain over the prn_300w_lp tfds array_record files -> per-device batches.

    loader = make_train_loader(config, process_index=jax.process_index(),
                               process_count=jax.process_count(),
                               num_local_devices=jax.local_device_count(), seed=config.seed)
    batch = next(loader)   # {'image': (D, B, S, S, 3) uint8, 'pos_map': (D, B, S, S, 3) float32}

Order. Epoch e visits the records in the permutation `np.random.default_rng([seed, e])
.permutation(N)` (the same rule as `generated.batch_indices`); its first E * G entries
(E = N // G steps per epoch, G = config.batch_size global examples per step) make the E global
batches, the last N - E * G are dropped (a different few each epoch). Process p of P reads only
the p-th contiguous slice of G / P examples of every global batch, so the processes are disjoint,
together cover each epoch, and P processes see exactly the batches one process would. Epochs
repeat forever; the loader never ends.

Decoding (JPEG by tfds via Pillow, the position map by `formats.decode_position_map`) runs in
grain's read threads (`config.data.num_threads` batches at a time) and, with
`config.data.worker_count` > 0, in that many worker processes; the batches are the same
whatever the numbers of threads and workers. Images stay uint8 (a quarter of float32 on the
host-device link); the train step converts them.

Ground truth on the device (`config.data.maps_on_device`): the stored maps are neither decoded
nor sent; instead each example carries its fit ('pose' (7,), 'shape' (ks,), 'expression' (ke,)
float32), 'crop_transform' ((3, 3) float32, image pixels -> crop pixels) and 'image_height' (()
float32), about 1 KB; the train step renders the maps (`geometry.position_maps_from_fits`).

Raw crops (`builder_config = "size{S}_raw"`): the records hold the crops' pixels, so with
`maps_on_device` nothing is decoded. Device-resident training (`config.data.source = "device"`,
`device_data`) loads the records once through `ReadExample` and gathers the batches of the same
order (`epoch_permutation`) on the devices.

Resumption: the loader is a `grain.DatasetIterator`; `get_state()` / `set_state()` give and take
a JSON-able position, and `checkpoint_args_save` / `checkpoint_args_restore` wrap it for an Orbax
`Composite`, so a restored run continues with exactly the next batch.

    prn-jax bench input --data DIR [--config tiny] [--modes stored,fits,raw] [--config.F=V]
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any

import grain
import numpy as np

from prn_jax.data import formats

PARAM_FIELDS = ("pose", "shape", "expression", "crop_transform", "image_height")


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """The `config.data` fields this module reads (defaults and comments: configs/paper.py)."""

    dir: str
    builder: str
    builder_config: str
    split: str
    num_threads: int
    worker_count: int
    prefetch_batches: int
    maps_on_device: bool

    @classmethod
    def from_config(cls, config: Any) -> DataSettings:
        data = config["data"] if "data" in config else {}
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data]
        if missing:
            raise ValueError(f"config.data lacks {', '.join(missing)} (configs/paper.py sets them all)")
        values = {f.name: data[f.name] for f in dataclasses.fields(cls)}
        if not values["builder_config"]:
            values["builder_config"] = f"size{config['image_size']}"
        for key, least in (("num_threads", 1), ("worker_count", 0), ("prefetch_batches", 1)):
            if not isinstance(values[key], int) or values[key] < least:
                raise ValueError(f"config.data.{key} = {values[key]!r}: must be an int >= {least}")
        return cls(**values)


# ------------------------------------------------------------------------------------------ order


def epoch_permutation(seed: int, epoch: int, num_records: int) -> np.ndarray:
    """(N,) int64 record indices in the order epoch `epoch` visits them."""
    return np.random.default_rng([seed, epoch]).permutation(num_records)


class ProcessOrder:
    """Infinite sequence: position j of one process's example stream -> record index.

    Position j is example k = j mod L of the process's slice of global step s = j // L
    (L = G / P examples per process and step); step s is batch s mod E of epoch s // E.
    """

    def __init__(
        self, num_records: int, global_batch: int, process_index: int, process_count: int, seed: int
    ):
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        if global_batch % process_count:
            raise ValueError(
                f"config.batch_size = {global_batch}: not a multiple of the {process_count} processes"
            )
        if num_records < global_batch:
            raise ValueError(
                f"{num_records} records are fewer than one global batch (config.batch_size = {global_batch})"
            )
        self.num_records, self.global_batch, self.seed = num_records, global_batch, seed
        self.process_index = process_index
        self.local_batch = global_batch // process_count
        self.steps_per_epoch = num_records // global_batch
        self._permutations: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, position: int) -> int:
        step, k = divmod(int(position), self.local_batch)
        epoch, batch = divmod(step, self.steps_per_epoch)
        offset = batch * self.global_batch + self.process_index * self.local_batch + k
        return int(self._permutation(epoch)[offset])

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:  # read threads may straddle two epochs: keep two
            for old in [e for e in list(self._permutations) if e < epoch - 1]:
                self._permutations.pop(old, None)
            self._permutations[epoch] = epoch_permutation(self.seed, epoch, self.num_records)
        return self._permutations[epoch]


# --------------------------------------------------------------------------------------- records


def open_source(data_dir: str | Path, settings: DataSettings):
    """The tfds array_record data source (random access, no TensorFlow) of the configured split.

    Raises FileNotFoundError naming the directory and dataset when it has not been built.
    """
    import tensorflow_datasets as tfds

    name = f"{settings.builder}/{settings.builder_config}"
    try:
        return tfds.data_source(name, data_dir=str(data_dir) or None, split=settings.split)
    except Exception as e:  # noqa: BLE001 - tfds raises several types for a missing dataset
        raise FileNotFoundError(
            f"{data_dir}: tfds dataset {name!r} split {settings.split!r} not readable "
            f"(build it with `prn-jax build --data-dir {data_dir}`): {e}"
        ) from e


def num_examples(data_dir: str | Path | None, config: Any) -> int:
    """Records in the configured split (steps per epoch = this // config.batch_size)."""
    settings = DataSettings.from_config(config)
    return len(open_source(data_dir if data_dir is not None else settings.dir, settings))


class ReadExample(grain.transforms.Map):
    """Record index -> one training example (dict of numpy arrays), decoding included.

    Output: 'image' (S, S, 3) uint8; and 'pos_map' (S, S, 3) float32 crop pixels, or with
    `maps_on_device` the `PARAM_FIELDS` as stored (float32).
    """

    def __init__(self, source, image_size: int, maps_on_device: bool, name: str):
        self.source, self.size, self.maps_on_device, self.name = (source, image_size, maps_on_device, name)

    def map(self, index: int) -> dict[str, np.ndarray]:
        record = self.source[index]
        image = np.asarray(record["image"])
        if image.shape != (self.size, self.size, 3) or image.dtype != np.uint8:
            raise formats.FormatError(
                f"{self.name}[{index}]",
                "image",
                f"{image.dtype}{image.shape}, config.image_size needs uint8({self.size}, {self.size}, 3)",
            )
        out = {"image": image}
        if self.maps_on_device:
            out.update({k: np.asarray(record[k], np.float32) for k in PARAM_FIELDS})
        else:
            out["pos_map"] = formats.decode_position_map(record["position_map"], self.size)
        return out


def split_devices(batch: dict[str, np.ndarray], num_devices: int) -> dict[str, np.ndarray]:
    """(L, ...) arrays -> (num_devices, L / num_devices, ...): device d gets examples d*B..."""
    return {k: v.reshape((num_devices, v.shape[0] // num_devices) + v.shape[1:]) for k, v in batch.items()}


# ---------------------------------------------------------------------------------------- loader


def make_train_loader(
    config: Any,
    data_dir: str | Path | None = None,
    *,
    process_index: int = 0,
    process_count: int = 1,
    num_local_devices: int = 1,
    seed: int | None = None,
) -> grain.DatasetIterator:
    """This process's endless iterator of training batches (see the module docstring).

    Args:
        config: experiment config; reads image_size, batch_size (global), seed, `config.data`.
        data_dir: tfds data dir; default `config.data.dir`.
        process_index, process_count: this process among all (jax.process_index / _count).
        num_local_devices: devices this process feeds (the leading batch axis).
        seed: the order's seed; default `config.seed`.

    Returns:
        grain.DatasetIterator of dicts of numpy arrays shaped (num_local_devices,
        batch_size / process_count / num_local_devices, ...); see `ReadExample` for the fields.
    """
    settings = DataSettings.from_config(config)
    data_dir = settings.dir if data_dir is None else data_dir
    seed = int(config["seed"] if seed is None else seed)
    source = open_source(data_dir, settings)
    order = ProcessOrder(len(source), int(config["batch_size"]), process_index, process_count, seed)
    if order.local_batch % num_local_devices:
        raise ValueError(
            f"config.batch_size = {config['batch_size']}: the {order.local_batch} "
            f"examples per process do not split over {num_local_devices} devices"
        )
    name = f"{data_dir}/{settings.builder}/{settings.builder_config}/{settings.split}"
    read = ReadExample(source, int(config["image_size"]), settings.maps_on_device, name)
    # Batches are formed before the read threads / worker processes split the work (each
    # batch is read and decoded by one of them), so the batches do not depend on their number.
    dataset = (
        grain.MapDataset.source(order)
        .map(read)
        .batch(order.local_batch, drop_remainder=True)
        .map(functools.partial(split_devices, num_devices=num_local_devices))
        .to_iter_dataset(
            grain.ReadOptions(
                num_threads=settings.num_threads,
                prefetch_buffer_size=max(settings.num_threads, settings.prefetch_batches),
            )
        )
    )
    if settings.worker_count > 0:
        _mark_absl_flags_parsed()
        dataset = dataset.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=settings.worker_count, per_worker_buffer_size=settings.prefetch_batches
            )
        )
    return iter(dataset)


def _mark_absl_flags_parsed() -> None:
    """grain's worker processes read absl flags, which only `absl.app.run` parses; outside it
    (the prn-jax CLI, tests) their defaults are what we want."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def checkpoint_args_save(iterator: grain.DatasetIterator):
    """Orbax args that save the loader's position (the 'data' item of a `Composite`)."""
    return grain.checkpoint.CheckpointSave(iterator)


def checkpoint_args_restore(iterator: grain.DatasetIterator):
    """Orbax args that restore a freshly made loader to the saved position, in place."""
    return grain.checkpoint.CheckpointRestore(iterator)
