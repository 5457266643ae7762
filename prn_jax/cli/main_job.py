"""`prn-jax main`: the whole job on the embedded default, in one command.

  prn-jax main [--out runs/default] [--config cpu_default] [--num 1200] [--test-num 150]

Stages (each shows progress; a rerun reuses what exists and resumes training):
  1. synth  OUT/data/synth: procedural face model + synthetic 300W-LP (with flips) and AFLW2000-3D
  2. build  OUT/data/tfds: the prn_300w_lp and aflw2000_3d tfds datasets (array_record)
  3. train  OUT/run: checkpoints, metrics.jsonl, tensorboard/, best/ (periodic evaluation)
  4. eval   OUT/run/eval/<step>: metrics.json, table1.md (with the mean-face baseline), CED PNGs
Any config field can be overridden with --config.FIELD=VALUE, e.g.

  prn-jax main --out runs/quick --num 200 --test-num 20 --config.num_steps=300

On real data (--real): the same stages on your downloads with configs/paper.py, stage 1 being
`prepare-model` (OUT/data/model: BFM.mat etc. from the raw model files) instead of synthesis.
DIR holds 01_MorphableModel.mat, model_info.mat, Model_Expression.mat, Model_tri_mouth.mat,
BFM_UV.mat (any subfolders), and 300W-LP.zip + AFLW2000-3D.zip (or their unpacked 300W_LP/ and
AFLW2000/ folders). Every file is checked first: a missing one is named in one line.

  prn-jax main --real --downloads ~/downloads --out runs/real
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "the whole job on the embedded default (or, with --real, on your downloads)"
TAKES_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default=None,
        help="output folder, data and run (default: runs/default; with --real runs/real)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="config file or name in configs/ (default: cpu_default; with --real paper)",
    )
    parser.add_argument(
        "--real", action="store_true", help="run on the downloads in --downloads instead of synthetic data"
    )
    parser.add_argument(
        "--downloads",
        type=Path,
        default=None,
        help="with --real: folder of the raw model files, 300W-LP.zip and AFLW2000-3D.zip",
    )
    parser.add_argument(
        "--num", type=int, default=1200, help="synthetic 300W-LP fits (x2 with flips; 8 per subject)"
    )
    parser.add_argument("--test-num", type=int, default=150, help="synthetic AFLW2000-3D images")
    parser.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for data stages")


def run(args: argparse.Namespace) -> int:
    from prn_jax.cli import UsageError, check_output_dir

    if args.real:
        if args.downloads is None:
            raise UsageError("--real needs --downloads DIR (the folder of your downloads)")
        if not args.downloads.is_dir():
            raise UsageError(f"--downloads {args.downloads}: no such folder")
    elif args.downloads is not None:
        raise UsageError("--downloads is read with --real only")
    args.out = args.out or ("runs/real" if args.real else "runs/default")
    args.config = args.config or ("paper" if args.real else "cpu_default")
    check_output_dir(args.out, "--out")
    if args.real and Path(args.out).resolve().is_relative_to(args.downloads.resolve()):
        raise UsageError(
            f"--out {args.out}: inside --downloads {args.downloads}, whose every file `build` fingerprints; "
            f"put the output elsewhere"
        )
    from prn_jax import main_job

    if args.real:
        from prn_jax.data import formats
        from prn_jax.geometry import model_preparation

        try:  # a missing or bad input file: one line naming it
            main_job.run_real_job(args.out, args.downloads, args.config, args.overrides, args.workers)
        except (formats.FormatError, model_preparation.RawModelError) as error:
            raise UsageError(str(error)) from error
        return 0
    main_job.run_main_job(
        args.out, args.config, args.overrides, args.num, args.test_num, args.seed, args.workers
    )
    return 0
