"""The main job end to end at a tiny size: synth -> tfds -> train (validation-chosen best) ->
test evaluation once -> report."""

import json
from pathlib import Path

import pytest

from prn_jax import cli
from prn_jax.data import formats
from prn_jax.train import loop


@pytest.mark.slow
def test_main_job_tiny_end_to_end_and_rerun(tmp_path: Path, capsys, monkeypatch):
    # 48 fits = 6 synthetic subjects; with the default 5% rule subject 5 is held out (16 crops).
    argv = [
        "main",
        "--out",
        str(tmp_path),
        "--num",
        "48",
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
    # Model selection never reads the test set: AFLW2000-3D annotations are read only after training.
    training = {"now": False}
    read_annotation, train = formats.read_aflw2000_annotation, loop.train_and_evaluate

    def guarded_read(*args, **kwargs):
        assert not training["now"], "the test set was read during training"
        return read_annotation(*args, **kwargs)

    def guarded_train(*args, **kwargs):
        training["now"] = True
        try:
            return train(*args, **kwargs)
        finally:
            training["now"] = False

    monkeypatch.setattr(formats, "read_aflw2000_annotation", guarded_read)
    monkeypatch.setattr(loop, "train_and_evaluate", guarded_train)
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    run = tmp_path / "run"
    (data_folder,) = (run / "eval").iterdir()
    assert data_folder.name.startswith("synthetic-AFLW2000-")
    (report,) = data_folder.iterdir()
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [2, 4]
    validation = {r["step"]: r["val_nme2d_68"] for r in log if "val_nme2d_68" in r}
    assert sorted(validation) == [2, 4]
    best_step = min(validation, key=validation.get)
    assert report.name == f"best{best_step}+last4"
    table = (report / "table1.md").read_text()
    assert "Baseline: mean face in GT crop" in table and f"prn-jax best (step {best_step})" in table
    assert "prn-jax last (step 4)" in table
    assert "68 pts 2D, mean of buckets" in table and "68 pts 2D, all images" in table
    doc = json.loads((report / "metrics.json").read_text())
    assert doc["num_images"] == 6 and [c["name"] for c in doc["checkpoints"]] == ["best", "last"]
    assert sorted(p.name for p in report.glob("ced_*.png"))
    assert (run / "best").is_dir() and (run / "tensorboard").is_dir()
    assert (tmp_path / "data" / "synth" / "contact_sheet.png").is_file()
    assert "vs the mean face's" in out and str(run) in out

    # A rerun reuses the data and the finished run; a longer one resumes from step 4.
    assert cli.main([a.replace("num_steps=4", "num_steps=6") for a in argv]) == 0
    out = capsys.readouterr().out
    assert "0 samples written" in out and "up to date" in out
    assert f"resumed from {run.resolve() / 'checkpoints' / '4'}" in out
    assert any((data_folder / name / "table1.md").is_file() for name in (f"best{s}+last6" for s in (2, 4, 6)))
