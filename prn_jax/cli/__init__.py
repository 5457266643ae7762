"""prn-jax: PRNet (Feng et al., ECCV 2018, "Joint 3D Face Reconstruction and Dense Alignment with
Position Map Regression Network") in JAX/Flax: synthetic or real 300W-LP / AFLW2000-3D data, tfds
datasets, training, AFLW2000-3D evaluation and prediction on photos.

Each command is a module of this package with a docstring (its description, with examples), HELP
(one line), `add_arguments(parser)` and `run(args) -> exit code`; the commands import the library
(JAX and the rest) inside `run`, so building the parser, `--help` and argument errors stay fast,
and the library never imports them. A command whose module sets TAKES_CONFIG = True reads
`args.overrides` (the `--config.FIELD=VALUE` arguments); the others refuse them."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import textwrap
from pathlib import Path

# name -> module; imported only when the command line is built (so `--help` of one command
# still imports every command's module: they import nothing heavy at import time).
COMMANDS = {
    "main": "prn_jax.cli.main_job",
    "synth": "prn_jax.cli.synth",
    "prepare-model": "prn_jax.cli.prepare_model",
    "build": "prn_jax.cli.build",
    "train": "prn_jax.cli.train",
    "eval": "prn_jax.cli.eval",
    "sweep": "prn_jax.cli.sweep",
    "compare": "prn_jax.cli.compare",
    "show-batch": "prn_jax.cli.show_batch",
    "predict": "prn_jax.cli.predict",
    "import-weights": "prn_jax.cli.import_weights",
    "texture-swap": "prn_jax.cli.texture_swap",
}

MORE_HELP = (
    "`prn-jax COMMAND --help` describes a command: its options with their defaults, and examples. "
    "`prn-jax bench SUITE --help` describes a benchmark suite."
)
EPILOG = """examples:
  prn-jax main --out runs/default          # synthetic data, tfds build, training and evaluation
  prn-jax train --config cpu_default --workdir runs/mine --config.num_steps=500
  prn-jax predict photo.jpg --workdir runs/default/run --model runs/default/data/synth/model --auto-box"""

# Library errors whose message is a complete one-line answer: (module, class name). Looked up in
# sys.modules when raised, so that catching them imports nothing (a module that was never imported
# cannot have raised its error).
_USER_ERRORS = (
    ("prn_jax.configuration", "ConfigError"),
    ("prn_jax.checkpointing", "CheckpointError"),
    ("prn_jax.distributed", "DistributedError"),
    ("prn_jax.plugins", "PluginError"),
)
_HELP_FLAGS = ("-h", "--help", "--version")


class UsageError(Exception):
    """A command's arguments cannot work (an unwritable output, a missing input folder, ...): `main`
    prints the message as one line `prn-jax CMD: error: MESSAGE` and exits with 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (examples keep their layout) and every option's default, as
    `argparse.ArgumentDefaultsHelpFormatter` but not for options whose default is None or False or
    whose help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or action.default is None
            or action.default is False  # store_true flags (0 is a default worth showing)
            or action.default is argparse.SUPPRESS
            or "default" in text.lower()
        ):
            return text
        return f"{text} (default: %(default)s)"


class _CommandListFormatter(argparse.RawDescriptionHelpFormatter):
    """The top-level help: description and epilog as written, and each command's help beside its
    name (argparse measures the command names without their extra indent, so the longest one,
    import-weights, would otherwise get its help on a line of its own)."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and hasattr(self, "_action_max_length"):
            self._action_max_length += self._indent_increment


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prn-jax",
        description=__doc__.split("\n\n")[0] + "\n\n" + textwrap.fill(MORE_HELP, 96),
        epilog=EPILOG,
        formatter_class=_CommandListFormatter,
    )
    parser.add_argument("--version", action="version", version=f"prn-jax {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(
            name, help=module.HELP, description=module.__doc__, formatter_class=HelpFormatter
        )
        module.add_arguments(command)
        command.set_defaults(
            func=module.run,
            takes_config=getattr(module, "TAKES_CONFIG", False),
            config_from_checkpoint=getattr(module, "CONFIG_FROM_CHECKPOINT", False),
        )
    # Handled before parsing (each suite parses its own arguments); listed for --help.
    from prn_jax import bench  # light: the suites are imported when run

    sub.add_parser("bench", help=f"benchmarks ({', '.join(list(bench.SUITES)[:2])}, ...): bench SUITE --help")
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


def error_text(error: BaseException) -> str:
    """One line for an error: `STRERROR: FILENAME` for an OSError from the system (with the second
    file of a rename or link), else the message's first line (the class name when it is empty)."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.strerror}: {os.fsdecode(error.filename)}"
        if error.filename2 is not None:
            text += f" -> {os.fsdecode(error.filename2)}"
        return text
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _is_user_error(error: BaseException) -> bool:
    for module_name, class_name in _USER_ERRORS:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and isinstance(error, cls):
            return True
    return False


def _refuse_overrides(args: argparse.Namespace) -> str | None:
    """The one-line refusal when `--config.*` was given to a command that takes no config."""
    if not args.overrides or args.takes_config:
        return None
    given = " ".join(args.overrides)
    if args.config_from_checkpoint:
        return (
            f"{given}: `{args.command}` takes no --config.* overrides: the run's config comes from its "
            f"checkpoint (or weights file)"
        )
    return f"{given}: `{args.command}` takes no config, so no --config.* overrides"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from prn_jax import bench

        return bench.main(argv[1:])
    logging.getLogger("absl").addFilter(_drop_opencv_notice)  # once: the same filter is not re-added
    overrides, rest = split_overrides(argv)
    args = build_parser().parse_args(rest)
    args.overrides = overrides
    refusal = _refuse_overrides(args)
    if refusal:
        print(f"prn-jax {args.command}: error: {refusal}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:  # training itself stops on SIGINT with a checkpoint (train.preemption)
        print(f"prn-jax {args.command}: interrupted (nothing was saved by this step)", file=sys.stderr)
        return 130
    except (UsageError, OSError) as e:
        print(f"prn-jax {args.command}: error: {error_text(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if not _is_user_error(e):
            raise
        print(f"prn-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


def _folder_problem(path: Path) -> str | None:
    """Why `path` cannot be used (or created) as a writable folder, or None."""
    if path.exists() and not path.is_dir():
        return f"{path} exists and is not a folder"
    existing = path
    while not existing.exists():  # a relative path ends at "." and an absolute one at "/"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def check_output_dir(path, flag: str) -> Path:
    """UsageError naming `flag` and `path` unless `path` is a writable folder or can be created as
    one (its nearest existing parent is a writable folder). Creates nothing; returns a Path."""
    path = Path(path)
    problem = "exists and is not a folder" if path.exists() and not path.is_dir() else _folder_problem(path)
    if problem:
        raise UsageError(f"{flag} {path}: {problem}")
    return path


def check_output_file(path, flag: str) -> Path:
    """UsageError naming `flag` and `path` unless `path` can be written as a file: not a folder,
    writable if it exists, and its folder writable or creatable. Creates nothing; returns a Path."""
    path = Path(path)
    if path.is_dir():
        problem = "is a folder; give a file name"
    elif path.exists() and not os.access(path, os.W_OK):
        problem = "is not writable"
    else:
        problem = _folder_problem(path.parent)
    if problem:
        raise UsageError(f"{flag} {path}: {problem}")
    return path


def asks_only_for_help(argv: list[str]) -> bool:
    """True when argparse will only print help, usage or the version for `argv` (no arguments, or
    -h/--help/--version before a `--`): such a run needs no tuned process settings."""
    head = argv[: argv.index("--")] if "--" in argv else argv
    return not argv or any(arg in _HELP_FLAGS for arg in head)


def entry() -> int:
    """The `prn-jax` console script: the tuned CPU process settings (`cpu_runtime`, which may
    re-execute the process once), then `main`. A run that only prints help skips the settings."""
    if "jax" not in sys.modules and not asks_only_for_help(sys.argv[1:]):
        from prn_jax import cpu_runtime

        cpu_runtime.apply_or_reexec(sys.argv[1:])
    return main()


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("prn-jax")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"
