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

from prn_jax.data import build, formats

HELP = "prepare the tfds datasets (array_record)"


def run(args) -> int:
    names = build.DATASETS if args.dataset == "both" else (args.dataset,)
    try:
        for name in names:
            build.build_dataset(name, args)
    except formats.FormatError as error:
        print(
            f"prn-jax build: error: {error}\n  (--skip-invalid skips and reports such files)", file=sys.stderr
        )
        return 2
    except ValueError as error:
        print(f"prn-jax build: error: {error}", file=sys.stderr)
        return 2
    return 0


def add_arguments(parser) -> None:
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
    parser.add_argument("--dataset", choices=build.DATASETS + ("both",), default="prn_300w_lp")
    parser.add_argument(
        "--map-size", type=int, choices=(256, 128, 64), default=256, help="crop and position-map side S"
    )
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the 300W-LP *_Flip folders (default: yes, 122,450 samples)",
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
