"""`prn-jax show-batch`: a PNG grid of augmented training examples, as the train step sees them.

    prn-jax show-batch --data ~/tensorflow_datasets [--config tiny] [--num 16] [--out batch.png]
                       [--config.FIELD=VALUE ...]

Examples come from the training input pipeline (`input_pipeline.make_train_loader`, one
process, the config's batch size and seed) and are augmented on the device with the train
step's keys: example j of step s uses fold_in(fold_in(PRNGKey(seed), s), j). So the grid shows
the first `--num` examples of a run with that config and seed. Augmentation ranges come from
`config.augment`; it is switched on even where the config has it off (`--no-augment`: raw).

Green dots: the 68 landmarks read from the AUGMENTED position map at the keypoint UV pixels
(`geometry.keypoint_uv_pixels`, which needs the morphable model: `--model DIR` with BFM.mat +
BFM_UV.mat, default the first of DATA/../model, DATA/downloads/manual/model that exists). Where
the dots sit on the face's eyes, nose, mouth and outline, image and target moved together.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from prn_jax import cli

TILE = 256
DOT_RADIUS = 2


def default_model_dir(data_dir: Path) -> Path:
    """The first folder holding BFM.mat + BFM_UV.mat among the usual places near `data_dir`."""
    candidates = [data_dir.parent / "model", data_dir / "downloads" / "manual" / "model"]
    for folder in candidates:
        if (folder / "BFM.mat").is_file() and (folder / "BFM_UV.mat").is_file():
            return folder
    raise FileNotFoundError("no BFM.mat + BFM_UV.mat in " + ", ".join(map(str, candidates))
                            + "; pass --model DIR")


def train_keys(seed: int, global_batch: int, count: int):
    """(count,) PRNG keys of the first `count` examples of a run: example j of step s gets
    fold_in(fold_in(PRNGKey(seed), s), j), as `train.augment_per_device`."""
    import jax

    base = jax.random.PRNGKey(seed)
    return jax.numpy.stack([jax.random.fold_in(jax.random.fold_in(base, n // global_batch),
                                               n % global_batch) for n in range(count)])


def augmented_examples(config, data_dir, num: int, params):
    """First `num` training examples, augmented.

    Returns:
        images (num, S, S, 3) float32 in [0, 1]; position maps (num, S, S, 3) float32, crop px.
    """
    import jax

    from prn_jax import augment, input_pipeline

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
    apply = jax.jit(jax.vmap(augment.augment_example, in_axes=(0, 0, 0, None)),
                    static_argnums=3)
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
            draw.ellipse((x - DOT_RADIUS, y - DOT_RADIUS, x + DOT_RADIUS, y + DOT_RADIUS),
                         fill=(0, 255, 0))
        sheet.paste(view, ((n % cols) * tile, (n // cols) * tile))
    return sheet


def run(args) -> int:
    from prn_jax import augment, configuration, geometry

    config = configuration.load_config(args.config, args.overrides)
    if args.seed is not None:
        config.seed = args.seed
    params = augment.AugmentParams.from_config(config) if "augment" in config else \
        augment.AugmentParams()
    params = dataclasses.replace(params, enabled=args.augment)
    data_dir = Path(args.data)
    model_dir = Path(args.model) if args.model else default_model_dir(data_dir)
    model = geometry.load_face_model(model_dir / "BFM.mat", model_dir / "BFM_UV.mat")
    images, maps = augmented_examples(config, data_dir, args.num, params)
    kpt_uv = geometry.keypoint_uv_pixels(model, maps.shape[1])
    landmarks = geometry.landmarks_from_position_map(maps, kpt_uv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_grid(images, landmarks).save(out)
    print(f"show-batch: {args.num} {'augmented' if args.augment else 'raw'} examples "
          f"(seed {config.seed}) -> {out}")
    return 0


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="tfds data dir holding prn_300w_lp")
    parser.add_argument("--config", default="tiny", help="config file or name (default: tiny)")
    parser.add_argument("--num", type=int, default=16, help="examples to show (default: 16)")
    parser.add_argument("--out", default="batch.png", help="PNG to write (default: batch.png)")
    parser.add_argument("--seed", type=int, default=None, help="default: config.seed")
    parser.add_argument("--model", default=None,
                        help="folder with BFM.mat + BFM_UV.mat (default: DATA/../model or "
                             "DATA/downloads/manual/model)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="apply the config's augmentation (default: yes)")


def register(subparsers) -> None:
    cli.add_command(subparsers, "show-batch", __doc__, add_arguments, run,
                    help="PNG grid of augmented training examples")


def main(argv=None) -> int:
    return cli.run_command("show-batch", argv)


if __name__ == "__main__":
    raise SystemExit(main())
