"""SIGTERM and SIGINT stop `prn-jax train` after the current step with a checkpoint at the step
reached (exit 0, one line, no traceback); rerunning resumes to a result bitwise equal to an
uninterrupted run. (The sweep's own stop and resume: test_sweep.)"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from prn_jax import inference
from prn_jax.train import loop

STEPS = 64


def _train(workdir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "prn_jax.cli",
        "train",
        "--config",
        "tiny",
        "--workdir",
        str(workdir),
        f"--config.num_steps={STEPS}",
        "--config.width=2",
        "--config.num_devices=1",
        "--config.checkpoint_every_steps=16",
        "--config.log_every_steps=4",
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(_train(workdir), check=True, capture_output=True, timeout=600)
    return workdir


def _leaves(workdir: Path) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(inference.restore_variables(workdir, "last")[2])]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_reached_step_and_resume_is_exact(sig, tmp_path, uninterrupted):
    workdir = tmp_path / "run"
    proc = subprocess.Popen(_train(workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if (workdir / "metrics.jsonl").exists() and any(r["step"] >= 20 for r in loop.read_log(workdir)):
            proc.send_signal(sig)
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    record = loop.read_run_record(workdir)
    reached = record["step"]
    assert record["status"] == "stopped" and 20 <= reached < STEPS
    assert f"stopped by {sig.name} at step {reached}; checkpoint saved in {workdir}" in out
    assert (workdir / "checkpoints" / str(reached)).is_dir()  # beyond the periodic one at 16
    resumed = subprocess.run(_train(workdir), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {workdir.resolve() / 'checkpoints' / str(reached)}" in resumed.stdout
    assert loop.read_run_record(workdir)["status"] == "finished"
    for a, b in zip(_leaves(workdir), _leaves(uninterrupted)):
        np.testing.assert_array_equal(a, b)
    steps = [r["step"] for r in loop.read_log(workdir) if "loss" in r]
    assert steps == [r["step"] for r in loop.read_log(uninterrupted) if "loss" in r]  # no gap, no repeat


def test_a_second_signal_stops_at_once():
    """The first SIGTERM only sets the flag; a second one (say, during the save) ends the process
    at once with 128 + 15 and one line."""
    script = (
        "import os, signal, time\n"
        "from prn_jax.train import preemption\n"
        "with preemption.StopSignal() as stop:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(0.2)\n"
        "    assert stop.should_stop() and stop.name == 'SIGTERM'\n"
        "    print('first signal noted', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "print('not reached')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 128 + signal.SIGINT, out.stderr
    assert out.stdout == "first signal noted\n"
    assert "second SIGINT: stopping now, without saving" in out.stderr and "Traceback" not in out.stderr
