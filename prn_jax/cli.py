"""The `prn-jax` command line: thin wrappers; everything testable lives in the library modules."""

from __future__ import annotations

import argparse
import importlib
import sys


# Commands defined next to the code they drive; each module has `register(subparsers)`.
COMMAND_MODULES = ("prn_jax.main_job", "prn_jax.synth.cli", "prn_jax.build", "prn_jax.evaluate",
                   "prn_jax.show_batch", "prn_jax.predict", "prn_jax.tf_import")


def add_command(subparsers, name: str, description: str, add_arguments, run, *, help: str) -> None:
    """Registers `prn-jax NAME`: `add_arguments(parser)` defines its arguments, `run(args)` runs it
    (with `args.overrides`, the --config.FIELD=VALUE arguments, set by `main`)."""
    parser = subparsers.add_parser(name, help=help, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)


def run_command(name: str, argv: list[str] | None = None) -> int:
    """`prn-jax NAME ARGV...` (ARGV default: sys.argv[1:]): a module's standalone entry point."""
    return main([name, *(sys.argv[1:] if argv is None else argv)])


def _train(args) -> int:
    from prn_jax import configuration, distributed, train

    # Multi-process launches join JAX's distributed runtime before any JAX work.
    distributed.initialize_from_env_or_args(args.coordinator, args.num_processes, args.process_id,
                                            args.distributed_timeout)
    config = configuration.load_config(args.config, args.overrides)
    result = train.train_and_evaluate(config, args.workdir)
    print(f"done: checkpoints and metrics.jsonl in {args.workdir}; last metrics {result['last_metrics']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prn-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (or resume) a run",
                       epilog="Override any config field with --config.FIELD=VALUE.")
    p.add_argument("--config", default="paper", help="config file or name in configs/ (default: paper)")
    p.add_argument("--workdir", required=True, help="run directory (checkpoints, logs); resumed if present")
    g = p.add_argument_group("multi-process (default: auto-detected from JAX_COORDINATOR_ADDRESS/"
                             "JAX_NUM_PROCESSES/JAX_PROCESS_ID, SLURM, Cloud TPU, Kubernetes)")
    g.add_argument("--coordinator", help="HOST:PORT of process 0's coordinator service")
    g.add_argument("--num-processes", type=int, help="number of processes in the run")
    g.add_argument("--process-id", type=int, help="this process's index, 0..num-processes-1")
    g.add_argument("--distributed-timeout", type=int, default=300,
                   help="seconds to wait for all processes to join (default: 300)")
    p.set_defaults(func=_train)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    # Handled before parsing (its own parsers take the remaining arguments); listed for --help.
    sub.add_parser("bench", help="benchmarks: model (default), decoder, augment, ground-truth; "
                                 "see `prn-jax bench --help`")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from prn_jax import bench

        return bench.main(argv[1:])
    # --config.FIELD=VALUE overrides are collected here, whatever the subcommand.
    overrides = [a for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    args = build_parser().parse_args(rest)
    args.overrides = overrides
    from prn_jax.configuration import ConfigError
    from prn_jax.checkpointing import CheckpointError
    from prn_jax.distributed import DistributedError

    try:
        return args.func(args)
    except (ConfigError, CheckpointError, DistributedError) as e:
        print(f"prn-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


def entry() -> int:
    """The `prn-jax` console script: the tuned CPU process settings (`cpu_runtime`), then `main`."""
    if "jax" not in sys.modules:
        from prn_jax import cpu_runtime

        cpu_runtime.apply_or_reexec(sys.argv[1:])
    return main()


if __name__ == "__main__":
    sys.exit(entry())
