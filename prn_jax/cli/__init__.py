"""The `prn-jax` command line. Each command is a module of this package with a docstring (its
description), HELP (one line), `add_arguments(parser)` and `run(args) -> exit code`; the
commands import the library, and the library never imports them."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module; imported only when the command line is built (so `--help` of one command
# still imports every command's module).
COMMANDS = {
    "main": "prn_jax.cli.main_job",
    "synth": "prn_jax.cli.synth",
    "build": "prn_jax.cli.build",
    "train": "prn_jax.cli.train",
    "eval": "prn_jax.cli.eval",
    "show-batch": "prn_jax.cli.show_batch",
    "predict": "prn_jax.cli.predict",
    "import-weights": "prn_jax.cli.import_weights",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prn-jax", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    # Handled before parsing (each suite parses its own arguments); listed for --help.
    sub.add_parser(
        "bench",
        help="benchmarks: model (default), decoder, augment, ground-truth, input, "
        "predict; see `prn-jax bench SUITE --help`",
    )
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
    from prn_jax.checkpointing import CheckpointError
    from prn_jax.configuration import ConfigError
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
