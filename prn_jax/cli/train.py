"""`prn-jax train`: train (or resume) a run.

  prn-jax train --config cpu_default --workdir runs/mine --config.num_steps=500

Override any config field with --config.FIELD=VALUE.
"""

from __future__ import annotations

import argparse

HELP = "train (or resume) a run"
TAKES_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="paper", help="config file or name in configs/")
    parser.add_argument(
        "--workdir", required=True, help="run directory (checkpoints, logs); resumed if present"
    )
    g = parser.add_argument_group(
        "multi-process (default: auto-detected from JAX_COORDINATOR_ADDRESS/"
        "JAX_NUM_PROCESSES/JAX_PROCESS_ID, SLURM, Cloud TPU, Kubernetes)"
    )
    g.add_argument("--coordinator", help="HOST:PORT of process 0's coordinator service")
    g.add_argument("--num-processes", type=int, help="number of processes in the run")
    g.add_argument("--process-id", type=int, help="this process's index, 0..num-processes-1")
    g.add_argument(
        "--distributed-timeout",
        type=int,
        default=300,
        help="seconds to wait for all processes to join",
    )


def run(args: argparse.Namespace) -> int:
    from prn_jax import configuration, distributed
    from prn_jax.cli import check_output_dir
    from prn_jax.train import loop

    # Multi-process launches join JAX's distributed runtime before any JAX work.
    distributed.initialize_from_env_or_args(
        args.coordinator, args.num_processes, args.process_id, args.distributed_timeout
    )
    config = configuration.load_config(args.config, args.overrides)
    check_output_dir(args.workdir, "--workdir")
    result = loop.train_and_evaluate(config, args.workdir)
    if result["stopped_by"]:
        print(
            f"stopped by {result['stopped_by']} at step {result['step']}; checkpoint saved in {args.workdir}"
        )
    elif result["last_metrics"]:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in result["last_metrics"].items())
        print(f"done: checkpoints and metrics.jsonl in {args.workdir}; last: {metrics}")
    else:
        print(f"done: {args.workdir} had already finished; nothing was trained")
    return 0
