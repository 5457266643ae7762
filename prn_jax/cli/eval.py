"""`prn-jax eval`: evaluate a checkpoint on AFLW2000-3D (metrics.json, Table-1 markdown, CED plots)."""

from __future__ import annotations

import argparse
import sys

from prn_jax.checkpointing import CheckpointError
from prn_jax.evaluation import run as run_lib

HELP = "evaluate a checkpoint on AFLW2000-3D (metrics.json, Table-1 markdown, CED plots)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="training run directory")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        help="best (chosen on validation), last or a step; repeat for several rows (default: last)",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="AFLW2000-3D folder (NAME.jpg + NAME.mat) or prepared tfds dataset directory",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="BFM.mat + BFM_UV.mat folder or PRNet uv-data folder (default: DATA/model or DATA/../model)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: WORKDIR/eval/<synthetic|real>-<data name>-<fingerprint>/<checkpoints>)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument(
        "--balanced",
        action="store_true",
        help="report on a seeded subset with equally many images per |yaw| bucket",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the balanced subset and ICP subsample")


def run(args: argparse.Namespace) -> int:
    try:
        run_lib.run_eval(
            args.workdir,
            args.checkpoint,
            args.data,
            args.out,
            args.model,
            balanced=args.balanced,
            batch_size=args.batch_size,
            limit=args.limit,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except (CheckpointError, FileNotFoundError, FileExistsError, KeyError, ValueError) as e:
        print(f"prn-jax eval: error: {e}", file=sys.stderr)
        return 2
    return 0
