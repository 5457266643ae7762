"""`prn-jax build`: prepare the tfds datasets prn_300w_lp and aflw2000_3d (array_record).

    prn-jax build --data-dir ~/tensorflow_datasets --manual-dir /data/raw --model /data/raw/model
    prn-jax build --data-dir /tmp/tfds --manual-dir /tmp/synth --dataset both --map-size 64

The manual dir holds 300W_LP/ and/or AFLW2000/ (the layout `prn-jax synth` writes); --model is
the folder with BFM.mat + BFM_UV.mat (default: <manual dir>/model for prn_300w_lp; for
aflw2000_3d ground-truth maps are made only when --model is given). Prints the images found
per folder, every skipped file with the reason (--skip-invalid), examples/s and bytes/example.
"""

import argparse
import os
import sys
from pathlib import Path

HELP = "prepare the tfds datasets (array_record)"


def run(args) -> int:
    from prn_jax.cli import UsageError, check_output_dir

    if not args.manual_dir.is_dir():
        raise UsageError(f"--manual-dir {args.manual_dir}: no such folder")
    if args.model is not None and not args.model.is_dir():
        raise UsageError(f"--model {args.model}: no such folder")
    check_output_dir(args.data_dir, "--data-dir")
    from prn_jax.data import build, formats

    if args.dataset not in (*build.DATASETS, "both"):
        raise UsageError(f"--dataset {args.dataset}: choose from {', '.join(build.DATASETS)} or both")
    names = build.DATASETS if args.dataset == "both" else (args.dataset,)
    try:
        for name in names:
            build.build_dataset(name, args)
    except formats.FormatError as error:
        print(f"prn-jax build: error: {error} (--skip-invalid skips and reports such files)", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"prn-jax build: error: {error}", file=sys.stderr)
        return 2
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, help="tfds data dir (output)")
    parser.add_argument(
        "--manual-dir", type=Path, required=True, help="folder holding 300W_LP/ and/or AFLW2000/"
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="folder with BFM.mat + BFM_UV.mat (default <manual dir>/model for "
        "prn_300w_lp; aflw2000_3d makes maps only when given)",
    )
    # Checked in `run` against `prn_jax.data.build.DATASETS` (importing it here would pull in tfds).
    parser.add_argument(
        "--dataset", default="prn_300w_lp", help="the dataset to build: prn_300w_lp, aflw2000_3d or both"
    )
    parser.add_argument(
        "--map-size", type=int, choices=(256, 128, 64), default=256, help="crop and position-map side S"
    )
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the 300W-LP *_Flip folders (122,450 samples with them)",
    )
    parser.add_argument(
        "--augmented-copies",
        type=int,
        choices=(0, 4, 10),
        default=0,
        help="prn_300w_lp: also write K seeded augmented copies of every example "
        "(config size{S}_aug{K}; the training step's augmentation, fixed)",
    )
    parser.add_argument(
        "--skip-invalid", action="store_true", help="skip bad source files and list them, instead of failing"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes making 300W-LP examples (default: all cores)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="rebuild a dataset that the data dir holds from another source (it is replaced)",
    )
