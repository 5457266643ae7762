"""The main job end to end at a tiny size: synth -> tfds -> train -> eval -> report."""

import json
from pathlib import Path

import pytest

from prn_jax import cli


@pytest.mark.slow
def test_main_job_tiny_end_to_end_and_rerun(tmp_path: Path, capsys):
    argv = [
        "main",
        "--out",
        str(tmp_path),
        "--num",
        "8",
        "--test-num",
        "6",
        "--workers",
        "1",
        "--config.num_steps=4",
        "--config.log_every_steps=2",
        "--config.checkpoint_every_steps=2",
        "--config.eval_every_steps=2",
        "--config.eval_limit=4",
        "--config.width=2",
        "--config.batch_size=4",
        "--config.num_devices=1",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    run = tmp_path / "run"
    table = (run / "eval" / "4" / "table1.md").read_text()
    assert "Baseline: mean face in GT crop" in table and "prn-jax step 4" in table
    assert "68 pts 2D Mean" in table
    doc = json.loads((run / "eval" / "4" / "metrics.json").read_text())
    assert doc["num_images"] == 6
    assert sorted(p.name for p in (run / "eval" / "4").glob("ced_*.png"))
    assert (run / "best").is_dir() and (run / "tensorboard").is_dir()
    assert (tmp_path / "data" / "synth" / "contact_sheet.png").is_file()
    assert "mean-face baseline" in out and str(run) in out
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [2, 4]
    assert [r["step"] for r in log if "eval_nme2d_68" in r] == [2, 4]

    # A rerun reuses the data and the finished run; a longer one resumes from step 4.
    assert cli.main([a.replace("num_steps=4", "num_steps=6") for a in argv]) == 0
    out = capsys.readouterr().out
    assert "0 samples written" in out and "up to date" in out
    assert f"resumed from {run.resolve() / 'checkpoints' / '4'}" in out
    assert (run / "eval" / "6" / "table1.md").is_file()
