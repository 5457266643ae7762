"""Augmented training examples as the train step sees them, drawn as a PNG grid with the 68
landmarks read from the augmented maps (`prn-jax show-batch`)."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import numpy as np
from PIL import Image, ImageDraw

from prn_jax import augment
from prn_jax.data import input_pipeline

TILE = 256
DOT_RADIUS = 2


def model_dir_candidates(data_dir: Path, extra=()) -> list[Path]:
    """Where the morphable model of a tfds data dir usually is, in the order searched: DATA/model
    and DATA/../model (`eval_data.find_model_dir`, what `prn-jax eval` uses), DATA/../synth/model
    (`prn-jax main`'s OUT/data/tfds beside OUT/data/synth), DATA/downloads/manual/model, then
    `extra` (e.g. the config's data.model_dir)."""
    data_dir = Path(data_dir)
    return [
        data_dir / "model",
        data_dir.parent / "model",
        data_dir.parent / "synth" / "model",
        data_dir / "downloads" / "manual" / "model",
        *(Path(p) for p in extra),
    ]


def default_model_dir(data_dir: Path, extra=()) -> Path:
    """The first folder of `model_dir_candidates` holding BFM.mat + BFM_UV.mat.

    FileNotFoundError naming every folder tried and --model when there is none.
    """
    candidates = model_dir_candidates(data_dir, extra)
    for folder in candidates:
        if (folder / "BFM.mat").is_file() and (folder / "BFM_UV.mat").is_file():
            return folder
    tried = list(dict.fromkeys(map(str, candidates)))
    raise FileNotFoundError("no BFM.mat + BFM_UV.mat in " + ", ".join(tried) + "; pass --model DIR")


def train_keys(seed: int, global_batch: int, count: int):
    """(count,) PRNG keys of the first `count` examples of a run (`augment.train_example_key`)."""
    n = np.arange(count)
    return jax.vmap(augment.train_example_key, in_axes=(None, 0, 0))(
        seed, n // global_batch, n % global_batch
    )


def augmented_examples(config, data_dir, num: int, params):
    """First `num` training examples, augmented.

    Returns:
        images (num, S, S, 3) float32 in [0, 1]; position maps (num, S, S, 3) float32, crop px.
    """
    config = config.copy_and_resolve_references()
    config.data.maps_on_device = False  # the grid needs the stored maps
    loader = input_pipeline.make_train_loader(config, data_dir, num_local_devices=1)
    images, maps = [], []
    while sum(len(x) for x in images) < num:
        batch = next(loader)
        images.append(batch["image"][0])
        maps.append(batch["pos_map"][0])
    images = np.concatenate(images)[:num].astype(np.float32) / 255.0
    maps = np.concatenate(maps)[:num]
    keys = train_keys(int(config.seed), int(config.batch_size), num)
    apply = jax.jit(jax.vmap(augment.augment_example, in_axes=(0, 0, 0, None)), static_argnums=3)
    images, maps = apply(keys, images, maps, params)
    return np.asarray(images), np.asarray(maps)


def draw_grid(images: np.ndarray, landmarks: np.ndarray, tile: int = TILE) -> Image.Image:
    """(N, S, S, 3) float [0, 1] images and (N, 68, >=2) crop-pixel landmarks -> RGB grid.

    Each image is scaled to tile x tile (bilinear); a landmark at crop pixel (x, y) (pixel
    centres at integers) is drawn at tile pixel ((x + 0.5) t / S - 0.5, (y + 0.5) t / S - 0.5).
    """
    count, size = images.shape[0], images.shape[1]
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    sheet = Image.new("RGB", (cols * tile, rows * tile))
    scale = tile / size
    for n in range(count):
        pixels = (np.clip(images[n], 0, 1) * 255).round().astype(np.uint8)
        view = Image.fromarray(pixels).resize((tile, tile), Image.BILINEAR)
        draw = ImageDraw.Draw(view)
        for x, y in (landmarks[n, :, :2] + 0.5) * scale - 0.5:
            draw.ellipse((x - DOT_RADIUS, y - DOT_RADIUS, x + DOT_RADIUS, y + DOT_RADIUS), fill=(0, 255, 0))
        sheet.paste(view, ((n % cols) * tile, (n // cols) * tile))
    return sheet
