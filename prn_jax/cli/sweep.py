"""`prn-jax sweep`: train (and test-evaluate) every run of a config's `get_sweep()`.

  prn-jax sweep configs/sweeps/table3.py --workdir runs/table3
  prn-jax compare runs/table3

Each run goes in ROOT/<name from its overrides> (run.json: config and provenance; checkpoints;
metrics.jsonl; eval/ when config.test_data is set). Locally the runs train one after another in
this process, sharing compiled programs where only host fields (seed, weight ratios, ...) differ.
Rerunning skips finished runs and resumes an interrupted one; a run folder holding another
config is refused. SIGTERM/Ctrl-C stop after the current step with a checkpoint (exit 0).
`--emit slurm` writes ROOT/commands.sh and prints the `sbatch` line of an array job
(launch/slurm_sweep.sbatch); `--index I` runs run I only (what each array task does).
--config.FIELD=VALUE applies to every run.
"""

from __future__ import annotations

import argparse

HELP = "train and evaluate every run of a sweep; resumable"
TAKES_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config file or name in configs/ that defines get_sweep()")
    parser.add_argument(
        "--workdir", default=None, help="sweep root: one folder per run (default: runs/sweeps/<config name>)"
    )
    parser.add_argument("--index", type=int, default=None, help="run only run INDEX (0-based; array jobs)")
    parser.add_argument(
        "--emit",
        choices=("slurm", "commands"),
        default=None,
        help="write ROOT/commands.sh and print the sbatch line (slurm) or the commands; train nothing",
    )
    parser.add_argument("--list", action="store_true", help="list the runs and their folders; train nothing")


def _default_root(config: str) -> str:
    stem = config.split(":")[0].removesuffix(".py").replace("\\", "/").rstrip("/").split("/")[-1]
    return f"runs/sweeps/{stem}"


def run(args: argparse.Namespace) -> int:
    from prn_jax.cli import UsageError, check_output_dir
    from prn_jax.experiments import runner
    from prn_jax.experiments import sweep as sweep_lib

    runs = sweep_lib.plan(args.config, args.overrides)
    root = args.workdir or _default_root(args.config)
    if args.index is not None:
        if not 0 <= args.index < len(runs):
            raise UsageError(f"--index {args.index}: the sweep has runs 0..{len(runs) - 1}")
        runs = [runs[args.index]]
    if args.list:
        for run in runs:
            print(f"{run.index:3d}  {root}/{run.name}")
        return 0
    check_output_dir(root, "--workdir")
    if args.emit:
        emitted = runner.emit_slurm(args.config, root, runs, args.overrides)
        if args.emit == "slurm":
            print(f"wrote {emitted['commands']} ({len(runs)} runs); submit the array job with:")
            print(emitted["sbatch"])
        else:
            print(emitted["commands"].read_text(), end="")
        return 0
    print(f"sweep {args.config}: {len(runs)} runs in {root}")
    result = runner.run_local(runs, root)
    if result["stopped_by"]:
        print(f"{result['stopped_by']}: sweep stopped; run the same command again to go on")
        return 0
    print(
        f"done: {len(result['trained'])} trained, {len(result['skipped'])} already finished; "
        f"compare them with: prn-jax compare {root}"
    )
    return 0
