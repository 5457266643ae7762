"""The training data switch: procedural batches ("generated"), the prn_300w_lp tfds dataset
streamed from the host ("tfds", through `input_pipeline`) or loaded once into device memory
("device", `device_data`: the step gathers its batch there, from the same order), and the UV
geometry the step needs (region labels for the weight map; the model and raster when maps are
rendered on the device).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np

from prn_jax import configuration, representation
from prn_jax.data import device_data, generated, input_pipeline
from prn_jax.geometry import ground_truth, model_assets

SOURCES = ("generated", "tfds", "device")
FILE_SOURCES = ("tfds", "device")  # read the prn_300w_lp tfds dataset


def build_command(config) -> str:
    """The command that makes the tfds dataset and model files a tfds config needs."""
    return (
        f"prn-jax build --data-dir DATA_DIR --manual-dir FOLDER_HOLDING_300W_LP --model BFM_FOLDER "
        f"--dataset both --map-size {config.image_size}` (or `prn-jax main` for the synthetic default), "
        f"then --config.data.dir=DATA_DIR --config.data.model_dir=BFM_FOLDER"
    )


def check_locations(config) -> None:
    """Refuse, in one line naming the field and the command that makes it, a tfds config whose
    dataset or model files are missing, before anything is built or compiled."""
    if config.data.source not in FILE_SOURCES:
        return
    data_dir, model_dir = Path(config.data.dir or "."), Path(config.data.model_dir or ".")
    builder_config = config.data.builder_config or f"size{config.image_size}"
    if not config.data.dir or not (data_dir / config.data.builder / builder_config).is_dir():
        where = (
            "''"
            if not config.data.dir
            else f"{config.data.dir!r} has no {config.data.builder}/{builder_config}"
        )
        raise configuration.ConfigError(
            f"config.data.dir = {where}: this config trains on the {config.data.builder} tfds dataset; "
            f"make it with `{build_command(config)}"
        )
    if not config.data.model_dir or not (
        (model_dir / "BFM.mat").is_file() or (model_dir / "uv_face_mask.png").is_file()
    ):
        where = (
            "''"
            if not config.data.model_dir
            else f"{config.data.model_dir!r} holds neither BFM.mat nor PRNet uv-data"
        )
        raise configuration.ConfigError(
            f"config.data.model_dir = {where}: the weight map needs the face model's UV assets "
            f"(BFM.mat + BFM_UV.mat, or PRNet's uv-data); see `{build_command(config)}"
        )


def describe(config) -> str:
    """One line: where the training data comes from and how much of it there is."""
    if config.data.source == "generated":
        return (
            f"procedural arrays (config.data.source = 'generated'), {config.data.num_train_examples} examples"
        )
    where = "loaded into device memory" if config.data.source == "device" else "streamed"
    return (
        f"{config.data.builder}/{config.data.builder_config or f'size{config.image_size}'} "
        f"{config.data.split} split in {config.data.dir}, {config.data.num_train_examples} examples, "
        f"{where}; face model {config.data.model_dir}"
    )


def prepare_data_config(config) -> None:
    """Check the data source, its fields and locations, and fill in what the data determines
    (tfds, device: the dataset's size sets steps per epoch)."""
    if config.data.source not in SOURCES:
        raise configuration.ConfigError(
            f"config.data.source = {config.data.source!r}: must be one of {', '.join(map(repr, SOURCES))}"
        )
    if config.data.source == "device":
        fraction = config.data.get("device_memory_fraction", 0.5)
        if not (isinstance(fraction, float) and 0 < fraction <= 1):
            raise configuration.ConfigError(
                f"config.data.device_memory_fraction = {fraction!r}: must be a float in (0, 1]"
            )
        memory = config.data.get("device_memory_bytes", 0)
        if not (isinstance(memory, int) and memory >= 0):
            raise configuration.ConfigError(
                f"config.data.device_memory_bytes = {memory!r}: must be an int >= 0 (0: ask the device)"
            )
    check_locations(config)
    if config.data.source in FILE_SOURCES:
        config.data.num_train_examples = input_pipeline.num_examples(config.data.dir, config)


def make_data_iterator(config, num_local_devices: int):
    """The checkpointable iterator of a tfds run (grain) or a device run (`device_data.DeviceOrder`:
    record indices); None for generated data, whose batches are a pure function of the step."""
    if config.data.source == "device":
        return device_data.DeviceOrder(
            config.data.num_train_examples, config.batch_size, num_local_devices, config.seed
        )
    if config.data.source != "tfds":
        return None
    return input_pipeline.make_train_loader(
        config,
        config.data.dir,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_local_devices=num_local_devices,
        seed=config.seed,
    )


def make_resident(config, mesh, log=print) -> dict | None:
    """The device-resident training set of a device run (`device_data.load_resident`: prints the
    memory plan, refuses when it does not fit), else None."""
    if config.data.source != "device":
        return None
    try:
        return device_data.load_resident(config, mesh, log)
    except device_data.DeviceMemoryError as e:
        raise configuration.ConfigError(str(e)) from None


def make_batches(config, start_step: int, num_local_devices: int) -> Iterator[dict]:
    """This process's share of the generated batches from `start_step` on: (local devices,
    per-device batch, ...)."""
    return generated.batches(
        config.seed,
        start_step,
        config.batch_size,
        num_local_devices,
        config.data.num_train_examples,
        config.image_size,
        jax.process_index(),
        jax.process_count(),
    )


def region_labels(config) -> np.ndarray:
    """(S, S) UV region labels of the training maps (see `prn_jax.loss`)."""
    return training_geometry(config)[0]


def training_geometry(
    config,
) -> tuple[np.ndarray, ground_truth.FitRenderArrays | None, representation.Context]:
    """(S, S) UV region labels; the numpy `FitRenderArrays` when the maps are rendered on the
    device (`config.data.maps_on_device`, which needs BFM.mat + BFM_UV.mat), else None; and the
    target representation's context (the mean face's map; zeros for generated data)."""
    on_device = bool(config.data.get("maps_on_device", False))
    size = config.image_size
    if config.data.source == "generated":
        if on_device:
            raise configuration.ConfigError(
                "config.data.maps_on_device = True needs "
                "config.data.source = 'tfds' or 'device' (generated data has no fits)"
            )
        return generated.region_labels(size), None, representation.make_context(size)
    if not config.data.model_dir:
        raise configuration.ConfigError(
            "config.data.model_dir = '': a tfds run needs the face model "
            "(BFM.mat + BFM_UV.mat or PRNet uv-data) for the weight map"
        )
    assets, frontal, model, raster = model_assets.load_assets(config.data.model_dir, size)
    context = representation.make_context(size, frontal, assets)
    if not on_device:
        return assets.region_labels, None, context
    if model is None:
        raise configuration.ConfigError(
            f"config.data.maps_on_device = True: {config.data.model_dir} holds PRNet uv-data, which "
            f"has no morphable model; point config.data.model_dir at BFM.mat + BFM_UV.mat"
        )
    return assets.region_labels, ground_truth.fit_render_arrays(model, raster), context
