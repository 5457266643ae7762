"""Running a planned sweep: locally, one run after another in this process, or as commands for a
cluster (a SLURM array over `launch/slurm_sweep.sbatch`).

Local runs share compiled programs (`train.trainer.HOST_FIELDS`: seeds and weight ratios compile
once). The sweep is resumable: a finished run (run.json status finished, and its test
evaluation written when `config.test_data` is set) is skipped, an interrupted one resumes from its
checkpoint, and a run folder whose run.json holds another config is refused. SIGTERM or SIGINT
stops the sweep after the current step of the current run, with a checkpoint; rerunning the same
command goes on from there.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from prn_jax import configuration
from prn_jax.evaluation import run as eval_run
from prn_jax.experiments import sweep as sweep_lib
from prn_jax.train import loop, preemption

SWEEP_RUN_FILE = "sweep_run.json"  # per run: its name, overrides and test evaluation


def _changed_fields(old: dict, new: dict) -> list[str]:
    """`field: old -> new` for every dotted field whose value differs."""
    old, new = sweep_lib.flatten(old), sweep_lib.flatten(new)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old | new) if old.get(k) != new.get(k)]


def check_run_folder(run: sweep_lib.PlannedRun, run_dir: Path) -> dict | None:
    """The run's run.json (None when new); raises ConfigError when it holds another config."""
    record = loop.read_run_record(run_dir)
    if record is None:
        if run_dir.exists() and any(run_dir.iterdir()) and (run_dir / "checkpoints").exists():
            raise configuration.ConfigError(f"{run_dir}: holds checkpoints but no run.json; move it away")
        return None
    changed = _changed_fields(record["config"], sweep_lib.config_json(run.config))
    if changed:
        raise configuration.ConfigError(
            f"{run_dir}: run {run.name!r} exists with another config ({'; '.join(changed[:3])}); "
            f"use another --workdir or move the folder away"
        )
    return record


def _tested(run_dir: Path) -> bool:
    path = run_dir / SWEEP_RUN_FILE
    return path.is_file() and bool(json.loads(path.read_text()).get("test_eval"))


def _write_sweep_run(run: sweep_lib.PlannedRun, run_dir: Path, test_eval: str | None) -> None:
    doc = {"name": run.name, "index": run.index, "overrides": run.overrides, "test_eval": test_eval}
    tmp = run_dir / f".{SWEEP_RUN_FILE}.partial"
    tmp.write_text(json.dumps(doc, indent=1, default=repr) + "\n")
    tmp.replace(run_dir / SWEEP_RUN_FILE)


def run_local(
    runs: Sequence[sweep_lib.PlannedRun], root: str | Path, log: Callable[[str], None] = print
) -> dict:
    """Train (and test-evaluate) the runs one after another in ROOT/<name>.

    Returns {"trained": [names], "skipped": [names], "stopped_by": signal name or "",
    "seconds": {name: wall seconds}}.
    """
    root = Path(root)
    records = [check_run_folder(run, root / run.name) for run in runs]  # refuse before training
    out = {"trained": [], "skipped": [], "stopped_by": "", "seconds": {}}
    with preemption.StopSignal() as stop:
        for i, (run, record) in enumerate(zip(runs, records)):
            run_dir = root / run.name
            test_data = run.config.get("test_data", "")
            finished = record is not None and record["status"] == "finished"
            if finished and (not test_data or _tested(run_dir)):
                log(f"[{i + 1}/{len(runs)}] {run.name}: finished, skipped")
                out["skipped"].append(run.name)
                continue
            if stop.received is not None:
                out["stopped_by"] = stop.name
                break
            log(f"[{i + 1}/{len(runs)}] {run.name}")
            t0 = time.perf_counter()
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_sweep_run(run, run_dir, None)
            result = loop.train_and_evaluate(run.config, run_dir, log=lambda m: log(f"  {m}"))
            if result["stopped_by"]:
                out["stopped_by"] = result["stopped_by"]
                break
            test_eval = None
            if test_data:
                checkpoint = "best" if run.config.eval_every_steps else "last"
                evaluated = eval_run.run_eval(
                    run_dir, [checkpoint], data=test_data, overwrite=True, log=lambda m: log(f"  {m}")
                )
                test_eval = str(evaluated["paths"]["metrics"])
            _write_sweep_run(run, run_dir, test_eval)
            out["trained"].append(run.name)
            out["seconds"][run.name] = round(time.perf_counter() - t0, 2)
    return out


def _override_args(overrides) -> str:
    """The command-line overrides for every run, as ` --config.FIELD=VALUE ...` ("" when none)."""
    return "".join(" " + shlex.quote(f"--config.{o.removeprefix('--config.')}") for o in overrides)


def commands(
    config_name: str, root: str | Path, runs: Sequence[sweep_lib.PlannedRun], overrides
) -> list[str]:
    """One `prn-jax sweep ... --index I` command per run (each trains and evaluates that run)."""
    return [
        f"prn-jax sweep {shlex.quote(config_name)} --workdir {shlex.quote(str(root))} --index {run.index}"
        + _override_args(overrides)
        for run in runs
    ]


def emit_slurm(config_name: str, root: str | Path, runs: Sequence[sweep_lib.PlannedRun], overrides) -> dict:
    """Write ROOT/commands.sh (one command per run) and return the `sbatch` line of the array
    job over launch/slurm_sweep.sbatch; {"commands": path, "sbatch": str}."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lines = commands(config_name, root, runs, overrides)
    path = root / "commands.sh"
    path.write_text(
        "#!/bin/sh\n# One line per run of the sweep; each resumes or skips as needed.\n"
        + "\n".join(lines)
        + "\n"
    )
    sbatch = (
        f"sbatch --array=0-{len(runs) - 1} launch/slurm_sweep.sbatch {shlex.quote(config_name)} "
        f"--workdir {shlex.quote(str(root))}" + _override_args(overrides)
    )
    return {"commands": path, "sbatch": sbatch}
