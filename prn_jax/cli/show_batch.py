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
from pathlib import Path

from prn_jax import augment, configuration, geometry
from prn_jax.data import show_batch

HELP = "PNG grid of augmented training examples"


def run(args) -> int:
    config = configuration.load_config(args.config, args.overrides)
    if args.seed is not None:
        config.seed = args.seed
    params = augment.AugmentParams.from_config(config) if "augment" in config else augment.AugmentParams()
    params = dataclasses.replace(params, enabled=args.augment)
    data_dir = Path(args.data)
    model_dir = Path(args.model) if args.model else show_batch.default_model_dir(data_dir)
    model = geometry.load_face_model(model_dir / "BFM.mat", model_dir / "BFM_UV.mat")
    images, maps = show_batch.augmented_examples(config, data_dir, args.num, params)
    kpt_uv = geometry.keypoint_uv_pixels(model, maps.shape[1])
    landmarks = geometry.landmarks_from_position_map(maps, kpt_uv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    show_batch.draw_grid(images, landmarks).save(out)
    print(
        f"show-batch: {args.num} {'augmented' if args.augment else 'raw'} examples "
        f"(seed {config.seed}) -> {out}"
    )
    return 0


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="tfds data dir holding prn_300w_lp")
    parser.add_argument("--config", default="tiny", help="config file or name (default: tiny)")
    parser.add_argument("--num", type=int, default=16, help="examples to show (default: 16)")
    parser.add_argument("--out", default="batch.png", help="PNG to write (default: batch.png)")
    parser.add_argument("--seed", type=int, default=None, help="default: config.seed")
    parser.add_argument(
        "--model",
        default=None,
        help="folder with BFM.mat + BFM_UV.mat (default: DATA/../model or DATA/downloads/manual/model)",
    )
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="apply the config's augmentation (default: yes)",
    )
