"""`prn-jax main --real --downloads DIR` (issue 26): every input checked before any work (one line
naming the missing file), then prepare-model -> build -> train -> eval wired on the downloads
with the paper config (build, train and eval replaced by recorders here: their own tests run
them)."""

from __future__ import annotations

import shutil

import pytest

from prn_jax import cli, main_job
from prn_jax.synth import raw_model


@pytest.fixture(scope="module")
def downloads(tiny_synth_tfds, tmp_path_factory):
    """Stand-in raw model files (face3d's raw/, 3ddfa/, stn/) and the two archives."""
    folder = tmp_path_factory.mktemp("real_downloads")
    raw_model.write_raw_model(folder, num_shape=4, num_exp=3, num_tex=2)
    for name, archive in (("300W_LP", "300W-LP"), ("AFLW2000", "AFLW2000-3D")):
        shutil.make_archive(str(folder / archive), "zip", root_dir=tiny_synth_tfds["raw"], base_dir=name)
    return folder


def _without(downloads, tmp_path, name):
    copy = tmp_path / "downloads"
    shutil.copytree(downloads, copy)
    next(copy.rglob(name)).unlink()
    return copy


@pytest.mark.parametrize(
    "name", ["Model_Expression.mat", "BFM_UV.mat", "01_MorphableModel.mat", "300W-LP.zip", "AFLW2000-3D.zip"]
)
def test_a_missing_download_is_refused_in_one_line_before_any_work(downloads, tmp_path, capsys, name):
    copy = _without(downloads, tmp_path, name)
    out = tmp_path / "out"
    assert cli.main(["main", "--real", "--downloads", str(copy), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("prn-jax main: error: ") and name in err, err
    assert not out.exists()


def test_flags_are_checked(tmp_path, capsys):
    assert cli.main(["main", "--real", "--out", str(tmp_path / "o")]) == 2
    assert "--real needs --downloads" in capsys.readouterr().err
    assert cli.main(["main", "--downloads", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--downloads is read with --real only" in capsys.readouterr().err
    assert cli.main(["main", "--real", "--downloads", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "inside --downloads" in capsys.readouterr().err


def test_stages_run_on_the_downloads_with_the_paper_config(downloads, tmp_path, monkeypatch, capsys):
    calls = []

    def build_dataset(name, args, out=None):
        calls.append(("build", name, args))
        return {"path": str(tmp_path / "tfds_path" / name)}

    def train(config, workdir):
        calls.append(("train", config, workdir))

    def run_eval(workdir, checkpoints, data=None, model_dir=None, overwrite=False, **_):
        calls.append(("eval", workdir, checkpoints, data, model_dir))
        return {"paths": {"table": "t", "metrics": "m"}}

    monkeypatch.setattr(main_job.build_lib, "build_dataset", build_dataset)
    monkeypatch.setattr(main_job.loop, "train_and_evaluate", train)
    monkeypatch.setattr(main_job.eval_run, "run_eval", run_eval)
    out = tmp_path / "out"
    argv = ["main", "--real", "--downloads", str(downloads), "--out", str(out), "--workers", "1"]
    assert cli.main(argv) == 0
    model_dir = out / "data" / "model"
    assert {p.name for p in model_dir.iterdir()} >= {"BFM.mat", "BFM_UV.mat", "BFM_info.mat"}
    (b1, n1, a1), (b2, n2, a2), (t, config, workdir), (e, eval_dir, checkpoints, data, eval_model) = calls
    assert (b1, n1, b2, n2, t, e) == ("build", "prn_300w_lp", "build", "aflw2000_3d", "train", "eval")
    for args in (a1, a2):
        assert args.manual_dir == downloads and args.model == model_dir and args.map_size == 256
        assert args.flip and not args.skip_invalid and args.subsets is None
    assert config.image_size == 256 and config.width == 16 and config.num_epochs == 30  # the paper's
    assert config.data.dir == str(out / "data" / "tfds") and config.data.model_dir == str(model_dir)
    assert workdir == out / "run" and eval_dir == out / "run" and checkpoints == ["last"]
    assert data == str(tmp_path / "tfds_path" / "aflw2000_3d") and eval_model == model_dir
    capsys.readouterr()
    calls.clear()
    assert cli.main(argv) == 0  # a rerun reuses the prepared model
    assert f"up to date: {model_dir}" in capsys.readouterr().out
