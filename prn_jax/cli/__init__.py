"""The `prn-jax` command line. Each command is a module of this package with a docstring (its
description), HELP (one line), `add_arguments(parser)` and `run(args) -> exit code`; the
commands import the library, and the library never imports them."""

from __future__ import annotations

import argparse
import importlib
import logging
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
    parser.add_argument("--version", action="version", version=f"prn-jax {_version()}")
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


def _drop_opencv_notice(record: logging.LogRecord) -> bool:
    """tfds decodes JPEGs with PIL when OpenCV is missing and says so on every run; PIL is what
    this project installs, so that warning is noise (real warnings pass)."""
    return "OpenCV is not installed" not in record.getMessage()


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """(config overrides as FIELD=VALUE, the other arguments): `--config.FIELD=VALUE` and, as absl
    users type it, `--config.FIELD VALUE`, whatever the subcommand."""
    overrides, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config.") and "=" not in arg and i + 1 < len(argv):
            overrides.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        (overrides if arg.startswith("--config.") else rest).append(arg)
        i += 1
    return overrides, rest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from prn_jax import bench

        return bench.main(argv[1:])
    logging.getLogger("absl").addFilter(_drop_opencv_notice)  # once: the same filter is not re-added
    overrides, rest = split_overrides(argv)
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


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("prn-jax")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"
