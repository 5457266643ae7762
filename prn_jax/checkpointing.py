"""Orbax checkpoints of the train state, with the run's provenance beside every step.

Layout: WORKDIR/checkpoints/<step>/{state, meta} where `meta` (JSON) holds the config, seed,
package versions and git revision. A work directory that holds a checkpoint from an incompatible
config, or an unreadable one, raises `CheckpointError` naming it; it is never overwritten.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging

# Config fields that change the shapes or meaning of the saved state, with the value meant by a
# config saved before the field existed.
STATE_FIELDS = {"image_size": None, "width": None, "flat_optimizer_state": False}
PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "chex",
    "ml-collections",
    "tensorflow-datasets",
    "grain",
)


class CheckpointError(RuntimeError):
    """A checkpoint directory is corrupt or belongs to an incompatible run."""


def git_revision() -> str:
    repo = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("+dirty" if dirty else "")) if rev else "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_metadata(config) -> dict[str, Any]:
    """Provenance written beside each checkpoint."""
    return {
        "config": json.loads(config.to_json()),
        "seed": int(config.seed),
        "packages": package_versions(),
        "git_revision": git_revision(),
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "written_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _save_replicated_arrays_whole() -> None:
    """Make Orbax write each replicated jax.Array from one device (process 0's replica).

    Orbax's default on CPU and TPU ("replica-parallel" saving) slices every replicated array into
    one piece per device, with one compiled slice program per distinct shape: saving the tiny
    config's 4-device train state took 10.4 s the first time and 2.5 s after, against 1.8 s and
    1.2 s written whole (BUILD_NOTES, issue 9). It speeds up writing replicated shards from many
    hosts at once; the train state here is small and written by process 0 anyway. Idempotent;
    changes Orbax's global type-handler registry for jax.Array (the same setting as Orbax's GPU
    default).
    """
    global _replicated_arrays_whole
    if _replicated_arrays_whole:
        return
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax warns that it overrides its default
    try:
        ocp.type_handlers.register_type_handler(
            jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True
        )
    finally:
        absl_logging.set_verbosity(verbosity)
    _replicated_arrays_whole = True


_replicated_arrays_whole = False


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager` for one work directory."""

    def __init__(self, workdir: str | Path, config, keep: int | None = None, subdir: str = "checkpoints"):
        _save_replicated_arrays_whole()
        self.directory = Path(workdir).resolve() / subdir
        self.config = config
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(f"{self.directory} exists and is not a directory")
        try:
            self.manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=keep or config.keep_checkpoints, create=True, enable_async_checkpointing=False
                ),
            )
        except Exception as e:  # noqa: BLE001 - orbax raises many types; name the directory
            raise CheckpointError(f"cannot open checkpoint directory {self.directory}: {e}") from e

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state, data_iterator=None, force: bool = False) -> None:
        """Save the train state, the run metadata and (if given) the grain iterator's position."""
        items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(run_metadata(self.config)))
        if data_iterator is not None:
            from prn_jax.data import input_pipeline

            items["data"] = input_pipeline.checkpoint_args_save(data_iterator)
        self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        self.manager.wait_until_finished()

    def read_meta(self, step: int) -> dict:
        path = self.directory / str(step)
        try:
            meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(self._corrupt_message(step, "meta", e)) from e
        if not isinstance(meta, dict) or "config" not in meta:
            raise CheckpointError(f"checkpoint {path} has no run metadata; not written by prn-jax?")
        return meta

    def restore(self, step: int, abstract_state, data_iterator=None):
        """Restore `step` into the structure of `abstract_state` after checking compatibility;
        a given grain iterator is moved to the saved position."""
        path = self.directory / str(step)
        saved = self.read_meta(step)["config"]
        for field, old_default in STATE_FIELDS.items():
            was, now = saved.get(field, old_default), self.config.get(field, old_default)
            if was != now:
                raise CheckpointError(
                    f"checkpoint {path} was written with {field}={was!r} but the config has "
                    f"{field}={now!r}; resume it with --config.{field}={was!r}, or use another "
                    f"--workdir (nothing was overwritten)"
                )
        items = dict(state=ocp.args.StandardRestore(abstract_state))
        if data_iterator is not None:
            from prn_jax.data import input_pipeline

            items["data"] = input_pipeline.checkpoint_args_restore(data_iterator)
        try:
            return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(self._corrupt_message(step, "state", e)) from e

    def _corrupt_message(self, step: int, part: str, error: Exception) -> str:
        """One line: the checkpoint, the first line of the error (not TensorStore's dump) and the
        way out (the previous step), saying that nothing was deleted."""
        path = self.directory / str(step)
        first = (str(error).strip().splitlines() or [""])[0]
        detail = f"{type(error).__name__}: {first[:200]}" if first else type(error).__name__
        earlier = [s for s in self.all_steps() if s < step]
        if earlier:
            way_out = (
                f"use --checkpoint {earlier[-1]}, the previous one (eval, predict), or move {path} "
                f"aside and rerun to resume from it (train)"
            )
        else:
            way_out = f"no earlier checkpoint in {self.directory}; move {path} aside to start over"
        return (
            f"checkpoint {path} is corrupt or unreadable ({part}: {detail}); {way_out}; nothing was deleted"
        )

    def close(self) -> None:
        self.manager.close()
