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
BFM_UV.mat; by default the first that exists of DATA/model, DATA/../model (as `prn-jax eval`
finds it), DATA/../synth/model (the `prn-jax main` layout: OUT/data/tfds beside OUT/data/synth),
DATA/downloads/manual/model and the config's data.model_dir). Where the dots sit on the face's
eyes, nose, mouth and outline, image and target moved together.

  prn-jax show-batch --data runs/default/data/tfds --config cpu_default --out batch.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "PNG grid of augmented training examples"
TAKES_CONFIG = True


def run(args) -> int:
    import dataclasses

    from prn_jax import augment, configuration, geometry
    from prn_jax.cli import UsageError, check_output_file
    from prn_jax.data import show_batch

    config = configuration.load_config(args.config, args.overrides)
    if args.num < 1:
        raise UsageError(f"--num {args.num}: must be >= 1")
    data_dir = Path(args.data)
    if not data_dir.is_dir():
        raise UsageError(f"--data {data_dir}: no such folder (a tfds data dir holding prn_300w_lp)")
    out = check_output_file(args.out, "--out")
    if args.model:
        model_dir = Path(args.model)
        if not ((model_dir / "BFM.mat").is_file() and (model_dir / "BFM_UV.mat").is_file()):
            raise UsageError(f"--model {model_dir}: no BFM.mat + BFM_UV.mat there")
    else:
        configured = config.data.get("model_dir") if "data" in config else None
        try:
            model_dir = show_batch.default_model_dir(data_dir, [configured] if configured else [])
        except FileNotFoundError as error:
            raise UsageError(f"--data {data_dir}: {error}") from error
    if args.seed is not None:
        config.seed = args.seed
    params = augment.AugmentParams.from_config(config) if "augment" in config else augment.AugmentParams()
    params = dataclasses.replace(params, enabled=args.augment)
    model = geometry.load_face_model(model_dir / "BFM.mat", model_dir / "BFM_UV.mat")
    images, maps = show_batch.augmented_examples(config, data_dir, args.num, params)
    kpt_uv = geometry.keypoint_uv_pixels(model, maps.shape[1])
    landmarks = geometry.landmarks_from_position_map(maps, kpt_uv)
    out.parent.mkdir(parents=True, exist_ok=True)
    show_batch.draw_grid(images, landmarks).save(out)
    print(
        f"show-batch: {args.num} {'augmented' if args.augment else 'raw'} examples "
        f"(seed {config.seed}, model {model_dir}) -> {out}"
    )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="tfds data dir holding prn_300w_lp")
    parser.add_argument("--config", default="tiny", help="config file or name")
    parser.add_argument("--num", type=int, default=16, help="examples to show")
    parser.add_argument("--out", default="batch.png", help="PNG to write")
    parser.add_argument("--seed", type=int, default=None, help="default: config.seed")
    parser.add_argument(
        "--model",
        default=None,
        help="folder with BFM.mat + BFM_UV.mat (default: searched near DATA, see above)",
    )
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="apply the config's augmentation",
    )
