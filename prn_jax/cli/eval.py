"""`prn-jax eval`: evaluate a checkpoint on AFLW2000-3D (metrics.json, Table-1 markdown, CED plots).

  prn-jax eval --workdir runs/default/run --data runs/default/data/synth
  prn-jax eval --workdir runs/paper --checkpoint best --checkpoint last --data /data/AFLW2000 \\
      --model /data/BFM --out runs/paper/eval/real --balanced

The network's config is the one saved with the checkpoint (no --config.* overrides). Nothing is
overwritten: an output folder holding an earlier evaluation is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "evaluate checkpoints on AFLW2000-3D: Table 1, CED plots"
CONFIG_FROM_CHECKPOINT = True


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
    parser.add_argument("--batch-size", type=int, default=16, help="images per network call")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the balanced subset and ICP subsample")


def _check_output(args: argparse.Namespace) -> None:
    """Before any work: --out (or, for the default folder under WORKDIR/eval, the run directory)
    must be writable, and --data must exist."""
    from prn_jax.cli import UsageError, check_output_dir

    if not Path(args.data).exists():
        raise UsageError(f"--data {args.data}: no such file or folder")
    if args.out is not None:
        check_output_dir(args.out, "--out")
        return
    workdir = Path(args.workdir)
    if workdir.is_dir():  # else run_eval names the missing run
        # The default folder is WORKDIR/eval/..., or RUN/eval/... for WORKDIR = RUN/best (as
        # `inference.resolve_checkpoint` reads it).
        best = workdir.name == "best" and (workdir.parent / "checkpoints").is_dir()
        check_output_dir((workdir.parent if best else workdir) / "eval", "default output folder (no --out)")


def run(args: argparse.Namespace) -> int:
    _check_output(args)
    from prn_jax.checkpointing import CheckpointError
    from prn_jax.cli import error_text
    from prn_jax.evaluation import run as run_lib

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
            progress=True,
        )
    except (CheckpointError, FileNotFoundError, FileExistsError, KeyError, ValueError) as e:
        print(f"prn-jax eval: error: {error_text(e)}", file=sys.stderr)
        return 2
    return 0
