"""Sweeps: the declaration helpers, run naming and planning, refusal of a changed config, the
SLURM emission, and (slow) a tiny sweep stopped by SIGTERM midway, rerun and compared."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from prn_jax import configuration, inference
from prn_jax.experiments import compare, runner
from prn_jax.experiments import sweep as sweep_lib
from prn_jax.train import loop

SWEEP_FILE = """
from prn_jax.configs import tiny
from prn_jax.experiments import sweep


def get_config():
    c = tiny.get_config()
    c.num_steps = {steps}
    c.num_devices = 1
    c.width = 2
    c.checkpoint_every_steps = 16
    return c


def get_sweep():
    # Two variants that train identically (only how often they log differs), so the interrupted
    # run of the second variant can be checked bitwise against the first variant's same seed.
    return sweep.product(sweep.axis("log_every_steps", [8, 4]), sweep.seeds(2))
"""


def _write_sweep(tmp_path: Path, steps: int = 16) -> Path:
    path = tmp_path / "tiny_sweep.py"
    path.write_text(SWEEP_FILE.format(steps=steps))
    return path


def test_product_zip_seeds_and_names():
    runs = sweep_lib.product(
        sweep_lib.axis("loss", ["weighted_l2", "l1"]),
        sweep_lib.axis("weight_ratios", [(16.0, 4.0, 3.0, 0.0)]),
        sweep_lib.seeds(2, start=5),
    )
    assert runs == [
        {"loss": "weighted_l2", "weight_ratios": (16.0, 4.0, 3.0, 0.0), "seed": 5},
        {"loss": "weighted_l2", "weight_ratios": (16.0, 4.0, 3.0, 0.0), "seed": 6},
        {"loss": "l1", "weight_ratios": (16.0, 4.0, 3.0, 0.0), "seed": 5},
        {"loss": "l1", "weight_ratios": (16.0, 4.0, 3.0, 0.0), "seed": 6},
    ]
    assert sweep_lib.zipit(sweep_lib.axis("a", [1, 2]), sweep_lib.axis("b", ["x", "y"])) == [
        {"a": 1, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    with pytest.raises(ValueError, match="different lengths"):
        sweep_lib.zipit(sweep_lib.axis("a", [1, 2]), sweep_lib.axis("b", [1]))
    assert sweep_lib.run_name(runs[2]) == "loss=l1,weight_ratios=16-4-3-0,seed=5"
    assert sweep_lib.run_name({"loss": "my/losses.py:fn", "learning_rate": 0.0005}) == (
        "loss=my_losses.py_fn,learning_rate=0.0005"
    )


def test_plan_applies_overrides_and_refuses_bad_sweeps(tmp_path):
    path = _write_sweep(tmp_path)
    runs = sweep_lib.plan(str(path), ["num_steps=24"])
    assert [r.name for r in runs] == [
        "log_every_steps=8,seed=0",
        "log_every_steps=8,seed=1",
        "log_every_steps=4,seed=0",
        "log_every_steps=4,seed=1",
    ]
    assert [(r.config.log_every_steps, r.config.seed, r.config.num_steps) for r in runs] == [
        (8, 0, 24),
        (8, 1, 24),
        (4, 0, 24),
        (4, 1, 24),
    ]
    with pytest.raises(configuration.ConfigError, match="defines no get_sweep"):
        sweep_lib.plan("tiny")
    bad = tmp_path / "bad.py"
    bad.write_text(
        SWEEP_FILE.format(steps=16).replace('"log_every_steps", [8, 4]', '"log_every_steps", ["x"]')
    )
    with pytest.raises(configuration.ConfigError, match="log_every_steps"):
        sweep_lib.plan(str(bad))


def test_a_changed_config_under_an_existing_run_name_is_refused(tmp_path):
    run = sweep_lib.plan(str(_write_sweep(tmp_path)))[0]
    run_dir = tmp_path / "root" / run.name
    run_dir.mkdir(parents=True)
    loop.write_run_record(run_dir, run.config, 16, 16, "finished")
    assert runner.check_run_folder(run, run_dir)["status"] == "finished"
    changed = sweep_lib.plan(str(_write_sweep(tmp_path)), ["learning_rate=0.5"])[0]
    with pytest.raises(configuration.ConfigError, match=r"another config \(learning_rate: 0.001 -> 0.5\)"):
        runner.check_run_folder(changed, run_dir)
    # The whole sweep refuses before training anything.
    with pytest.raises(configuration.ConfigError, match="another config"):
        runner.run_local([changed], tmp_path / "root")


def test_emit_slurm_writes_one_command_per_run(tmp_path, capsys):
    from prn_jax import cli

    path = _write_sweep(tmp_path)
    root = tmp_path / "root"
    assert (
        cli.main(["sweep", str(path), "--workdir", str(root), "--emit", "slurm", "--config.num_steps=8"]) == 0
    )
    out = capsys.readouterr().out
    assert f"sbatch --array=0-3 launch/slurm_sweep.sbatch {path} --workdir {root} --config.num_steps=8" in out
    lines = [ln for ln in (root / "commands.sh").read_text().splitlines() if ln.startswith("prn-jax")]
    assert lines == [
        f"prn-jax sweep {path} --workdir {root} --index {i} --config.num_steps=8" for i in range(4)
    ]
    assert not any(p.is_dir() for p in root.iterdir())  # nothing trained
    assert Path("launch/slurm_sweep.sbatch").is_file()


def _sweep_command(path: Path, root: Path, data: dict) -> list[str]:
    return [
        sys.executable,
        "-m",
        "prn_jax.cli",
        "sweep",
        str(path),
        "--workdir",
        str(root),
        "--config.data.source=tfds",
        f"--config.data.dir={data['tfds']}",
        f"--config.data.model_dir={data['model']}",
        f"--config.test_data={data['aflw']}",
    ]


@pytest.mark.slow
def test_a_tiny_sweep_stopped_midway_resumes_exactly_and_compares(tmp_path, tiny_synth_tfds):
    """2 variants x 2 seeds of 96 steps on the tiny synthetic tfds set, each test-evaluated. A
    SIGTERM during the third run stops the sweep with a checkpoint at the step reached (exit 0);
    the rerun skips the two finished runs, resumes the third from that step and trains the fourth.
    The resumed run ends bitwise equal to its uninterrupted twin (same seed, other log period), and
    `compare` aggregates what the runs' files hold."""
    steps = 96
    path = _write_sweep(tmp_path, steps)
    root = tmp_path / "sweep"
    command = _sweep_command(path, root, tiny_synth_tfds)
    runs = sweep_lib.plan(str(path))
    third = root / runs[2].name
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        logged = loop.read_log(third) if (third / "metrics.jsonl").exists() else []
        if any(r["step"] >= 4 for r in logged):
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "SIGTERM: sweep stopped" in out and "Traceback" not in out
    stopped = loop.read_run_record(third)
    assert stopped["status"] == "stopped" and 4 <= stopped["step"] < steps
    assert (third / "checkpoints" / str(stopped["step"])).is_dir()
    assert not (root / runs[3].name).exists()
    first_files = {p: p.stat().st_mtime_ns for p in (root / runs[0].name).rglob("*") if p.is_file()}

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("finished, skipped") == 2
    assert f"resumed from {third.resolve() / 'checkpoints' / str(stopped['step'])}" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (root / runs[0].name).rglob("*") if p.is_file()} == first_files
    for run in runs:
        record = loop.read_run_record(root / run.name)
        assert (record["status"], record["step"], record["config"]["seed"]) == (
            "finished",
            steps,
            run.config.seed,
        )
    resumed = inference.restore_variables(third, "last")[2]
    twin = inference.restore_variables(root / runs[0].name, "last")[2]
    for a, b in zip(_leaves(resumed), _leaves(twin)):
        np.testing.assert_array_equal(a, b)

    third_run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert third_run.stdout.count("finished, skipped") == 4 and "done: 0 trained" in third_run.stdout

    result = compare.compare([root], tmp_path / "cmp")
    assert [v["label"] for v in result["variants"]] == ["log_every_steps=8", "log_every_steps=4"]
    for variant, names in zip(
        result["variants"], ([runs[0].name, runs[1].name], [runs[2].name, runs[3].name])
    ):
        assert variant["n"] == 2
        tests = [_test_nme(root / n) for n in names]
        assert variant["metrics"]["test_nme2d_68"]["mean"] == pytest.approx(np.mean(tests), rel=1e-9)
        assert variant["metrics"]["test_nme2d_68"]["std"] == pytest.approx(np.std(tests, ddof=1), rel=1e-9)
        losses = [[r for r in loop.read_log(root / n) if "loss" in r][-1]["loss"] for n in names]
        assert variant["metrics"]["final_loss"]["mean"] == pytest.approx(np.mean(losses), rel=1e-9)
    assert Path(result["table"]).read_text().count("±") >= 4


def _test_nme(run_dir: Path) -> float:
    path = json.loads((run_dir / runner.SWEEP_RUN_FILE).read_text())["test_eval"]
    results = json.loads(Path(path).read_text())["results"]
    (method,) = [m for m in results if m.startswith("prn-jax")]
    return results[method]["nme2d_68"]["mean"]


def _leaves(variables) -> list[np.ndarray]:
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(variables)]


def test_sweep_cli_refuses_an_index_out_of_range(tmp_path, capsys):
    from prn_jax import cli

    assert cli.main(["sweep", str(_write_sweep(tmp_path)), "--workdir", str(tmp_path), "--index", "9"]) == 2
    err = capsys.readouterr().err
    assert err == "prn-jax sweep: error: --index 9: the sweep has runs 0..3\n"
    assert os.listdir(tmp_path) == ["tiny_sweep.py"]
