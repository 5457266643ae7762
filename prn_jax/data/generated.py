"""Procedural training batches that need no files (smoke runs, tests, benchmarks).

Example i of a run is a UV-coloured disc (colour = (u, v, 0.5)) placed in the S x S image by a
random similarity M_i; its target position map stores, at UV pixel (v, u), M_i applied to the UV
point (x, y) plus a smooth z bump, in crop pixels. A network can only fit it by reading where and
how the disc lies in the image, so falling loss means real learning. Everything is a pure function
of (seed, example index), so a run resumed at any step sees exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def example(seed: int, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """-> image (S, S, 3) float32 in [0, 1], position map (S, S, 3) float32 in crop pixels."""
    rng = np.random.default_rng([seed, index])
    angle = rng.uniform(-np.pi / 4, np.pi / 4)
    scale = rng.uniform(0.55, 0.8) * size
    centre = size / 2 + rng.uniform(-0.1, 0.1, 2) * size
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    grid = (np.arange(size) + 0.5) / size - 0.5  # UV (and image) sample positions, centred
    # Target: UV point (u, v) in [-0.5, 0.5]^2 -> crop pixel rot @ (u, v) + centre.
    uu, vv = np.meshgrid(grid, grid)
    uv = np.stack([uu, vv], -1)
    xy = uv @ rot.T + centre
    z = scale * 0.3 * np.exp(-8 * (uu**2 + vv**2))
    pos = np.concatenate([xy, z[..., None]], -1).astype(np.float32)
    # Image: each pixel looks up its UV through the inverse similarity.
    px = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).astype(np.float64)
    uv_img = (px - centre) @ np.linalg.inv(rot).T
    inside = (np.abs(uv_img) <= 0.5).all(-1, keepdims=True)
    colour = np.concatenate([uv_img + 0.5, np.full(uv_img.shape[:2] + (1,), 0.5)], -1)
    image = np.where(inside, colour, 0.1).astype(np.float32)
    return image, pos


def batch_indices(seed: int, step: int, global_batch: int, num_examples: int) -> np.ndarray:
    """Example indices of global batch `step`: a fresh seeded permutation every epoch."""
    per_epoch = num_examples // global_batch
    epoch, offset = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return order[offset * global_batch : (offset + 1) * global_batch]


def batches(
    seed: int,
    start_step: int,
    global_batch: int,
    num_local_devices: int,
    num_examples: int,
    size: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """This process's share of the batches from `start_step` on: {'image', 'pos_map'} shaped
    (local devices, per-device batch, S, S, 3). Process p takes the p-th contiguous slice of each
    global batch, so N processes together see exactly the single-process batches."""
    local = global_batch // process_count
    step = start_step
    while True:
        idx = batch_indices(seed, step, global_batch, num_examples)[
            process_index * local : (process_index + 1) * local
        ]
        images, maps = zip(*(example(seed, int(i), size) for i in idx))
        shape = (num_local_devices, local // num_local_devices, size, size, 3)
        yield {"image": np.stack(images).reshape(shape), "pos_map": np.stack(maps).reshape(shape)}
        step += 1


def region_labels(size: int) -> np.ndarray:
    """(S, S) int32 labels for the generated maps (see `prn_jax.loss`): a centre disc as
    'eyes/nose/mouth', a border ring as 'outside', an 8x8 grid of 'keypoint' pixels, else 'face'."""
    grid = (np.arange(size) + 0.5) / size - 0.5
    uu, vv = np.meshgrid(grid, grid)
    labels = np.full((size, size), 2, np.int32)
    labels[uu**2 + vv**2 < 0.15**2] = 1
    labels[np.maximum(np.abs(uu), np.abs(vv)) > 0.45] = 3
    kpt = np.linspace(size * 0.15, size * 0.85, 8).astype(int)
    labels[np.ix_(kpt, kpt)] = 0
    return labels
