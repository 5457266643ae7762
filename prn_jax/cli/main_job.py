"""`prn-jax main`: the whole job on the embedded default, in one command.

  prn-jax main [--out runs/default] [--config cpu_default] [--num 1200] [--test-num 150]

Stages (each shows progress; a rerun reuses what exists and resumes training):
  1. synth  OUT/data/synth: procedural face model + synthetic 300W-LP (with flips) and AFLW2000-3D
  2. build  OUT/data/tfds: the prn_300w_lp and aflw2000_3d tfds datasets (array_record)
  3. train  OUT/run: checkpoints, metrics.jsonl, tensorboard/, best/ (periodic evaluation)
  4. eval   OUT/run/eval/<step>: metrics.json, table1.md (with the mean-face baseline), CED PNGs
Any config field can be overridden with --config.FIELD=VALUE, e.g.

  prn-jax main --out runs/quick --num 200 --test-num 20 --config.num_steps=300
"""

from __future__ import annotations

import argparse

HELP = "the whole job on the embedded default"
TAKES_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/default", help="output folder (data and run)")
    parser.add_argument("--config", default="cpu_default", help="config file or name in configs/")
    parser.add_argument(
        "--num", type=int, default=1200, help="synthetic 300W-LP fits (x2 with flips; 8 per subject)"
    )
    parser.add_argument("--test-num", type=int, default=150, help="synthetic AFLW2000-3D images")
    parser.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for data stages")


def run(args: argparse.Namespace) -> int:
    from prn_jax import main_job
    from prn_jax.cli import check_output_dir

    check_output_dir(args.out, "--out")
    main_job.run_main_job(
        args.out, args.config, args.overrides, args.num, args.test_num, args.seed, args.workers
    )
    return 0
