"""`prn-jax build`: prepare the tfds datasets prn_300w_lp and aflw2000_3d (array_record).

    prn-jax build --data-dir ~/tensorflow_datasets --manual-dir /data/raw --model /data/raw/model
    prn-jax build --data-dir /tmp/tfds --manual-dir /tmp/synth --dataset both --map-size 64

The manual dir holds 300W_LP/ and/or AFLW2000/ (the layout `prn-jax synth` writes), or the
downloads 300W-LP.zip and/or AFLW2000-3D.zip, which are read in place (nothing is unpacked; an
unpacked folder is preferred when both are there); --model is the folder with BFM.mat +
BFM_UV.mat (default: <manual dir>/model for prn_300w_lp; for aflw2000_3d ground-truth maps are
made only when --model is given; `prn-jax prepare-model` makes it). Prints the images found per
folder, every skipped file with the reason (--skip-invalid), examples/s and bytes/example.

  prn-jax build --data-dir data/tfds --manual-dir ~/downloads --model data/model --dataset both
  prn-jax build --data-dir /tmp/tfds --manual-dir ~/downloads --model data/model --subsets AFW,IBUG
"""

import argparse
import os
import sys
from pathlib import Path

HELP = "prepare the tfds datasets (array_record)"


def run(args) -> int:
    from prn_jax.cli import UsageError, check_output_dir

    if not args.manual_dir.is_dir() and not (args.manual_dir.suffix == ".zip" and args.manual_dir.is_file()):
        raise UsageError(f"--manual-dir {args.manual_dir}: no such folder (or .zip archive)")
    if args.model is not None and not args.model.is_dir():
        raise UsageError(f"--model {args.model}: no such folder")
    check_output_dir(args.data_dir, "--data-dir")
    from prn_jax.data import build, formats

    if args.dataset not in (*build.DATASETS, "both"):
        raise UsageError(f"--dataset {args.dataset}: choose from {', '.join(build.DATASETS)} or both")
    names = build.DATASETS if args.dataset == "both" else (args.dataset,)
    if args.subsets is not None:
        args.subsets = [name.strip() for name in args.subsets.split(",") if name.strip()]
        unknown = [name for name in args.subsets if name not in formats.W300LP_DATABASES]
        if unknown or not args.subsets:
            known = ",".join(formats.W300LP_DATABASES)
            raise UsageError(f"--subsets {','.join(unknown) or '(empty)'}: choose from {known}")
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
        "--manual-dir",
        type=Path,
        required=True,
        help="folder holding 300W_LP/ and/or AFLW2000/ (or 300W-LP.zip and/or AFLW2000-3D.zip)",
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
        "--raw-crops",
        action="store_true",
        help="prn_300w_lp: store the crops as raw uint8 pixels (config size{S}_raw: nothing to "
        "decode when reading; 3 S^2 bytes a crop instead of ~20 KB of JPEG at 256)",
    )
    parser.add_argument(
        "--subsets",
        default=None,
        help="prn_300w_lp: build from these 300W-LP databases only, comma-separated, e.g. AFW,HELEN "
        "(with their _Flip folders unless --no-flip; default: all of AFW, HELEN, IBUG, LFPW, and a "
        "missing one is an error)",
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip bad source files and list them, instead of failing (a missing 300W-LP folder is "
        "never skipped: see --subsets)",
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
