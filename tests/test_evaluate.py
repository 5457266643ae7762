"""Evaluation pipeline: crop -> predict -> uncrop on arrays, real AFLW2000-3D fixtures and a tiny
synthetic run directory (metrics.json, Table-1 markdown, CED plots)."""

import hashlib
import json
import math
import types

import numpy as np
import pytest

from prn_jax import cli, inference
from prn_jax.data import eval_data
from prn_jax.evaluation import baseline, periodic, protocol, report
from prn_jax.evaluation import run as eval_run
from prn_jax.geometry import crop, mesh_io, model_assets
from prn_jax.geometry import uv_assets as uv_assets_lib
from prn_jax.train import loop

S = 64


def _grid_assets(size=S):
    """Hand-made UV assets: face mask = a centred square, 68 distinct keypoint pixels inside it."""
    labels = np.full((size, size), 3, np.int32)
    labels[8:-8, 8:-8] = 2
    rows, cols = np.divmod(np.arange(68) * 7 % 36 + 36 * (np.arange(68) // 36), 12)
    kpt_uv = np.stack([14 + cols * 3, 14 + rows * 3], -1).astype(np.int32)
    assert len({tuple(p) for p in kpt_uv}) == 68
    labels[kpt_uv[:, 1], kpt_uv[:, 0]] = 0
    return uv_assets_lib.UVAssets(
        size=size,
        region_labels=labels,
        kpt_uv=kpt_uv,
        face_indices=np.flatnonzero(labels.ravel() != 3).astype(np.int32),
        triangles=np.zeros((0, 3), np.int32),
    )


def _array_examples(assets, count=3, height=120, seed=0):
    """Images, landmarks and GT maps (image pixels) whose keypoint pixels hold the landmarks."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        centre = rng.uniform(50, 70, 2)
        gt_map = np.zeros((assets.size, assets.size, 3), np.float32)
        uu, vv = np.meshgrid(np.linspace(-1, 1, assets.size), np.linspace(-1, 1, assets.size))
        gt_map[..., 0] = centre[0] + 30 * uu + rng.normal(0, 1, uu.shape)
        gt_map[..., 1] = centre[1] + 35 * vv + rng.normal(0, 1, uu.shape)
        gt_map[..., 2] = 20 * np.exp(-(uu**2 + vv**2)) + rng.normal(0, 1, uu.shape)
        pt3d = mesh_io.landmarks_from_position_map(gt_map, assets.kpt_uv)
        image = rng.integers(0, 256, (height, height, 3), dtype=np.uint8)
        out.append(
            {
                "image": image,
                "pt3d_68": pt3d,
                "yaw_deg": (10.0, 45.0, -80.0)[i % 3],
                "file_id": f"img{i}",
                "position_map": gt_map,
            }
        )
    return out


def _oracle(examples, assets, shift=(0.0, 0.0, 0.0)):
    """A predictor that recognises each crop (by its bytes) and returns that image's GT map in
    crop pixels plus `shift` (crop pixels): a perfect network through the full pipeline."""
    table = {}
    for ex in examples:
        transform = protocol.crop_transforms(ex["pt3d_68"][None], assets.size)[0]
        key = hashlib.sha1(inference.crop_image(ex["image"], transform, assets.size).tobytes()).digest()
        table[key] = crop.apply_similarity(np.asarray(ex["position_map"], np.float64), transform) + shift

    def predict(crops):
        return np.stack([table[hashlib.sha1(c.tobytes()).digest()] for c in crops])

    return predict


def test_crop_image_identity_and_shift():
    image = np.random.default_rng(1).integers(0, 256, (S, S, 3), dtype=np.uint8)
    np.testing.assert_allclose(inference.crop_image(image, np.eye(3), S), image / 255.0, atol=1e-6)
    shift = np.array([[1, 0, -2.0], [0, 1, -3.0], [0, 0, 1]])  # crop (x, y) = image (x + 2, y + 3)
    np.testing.assert_allclose(
        inference.crop_image(image, shift, S)[:-3, :-2], image[3:, 2:] / 255.0, atol=1e-6
    )


def test_perfect_predictor_scores_zero():
    assets = _grid_assets()
    examples = _array_examples(assets)
    result = protocol.evaluate(examples, _oracle(examples, assets), assets, batch_size=2)
    assert result["file_ids"] == ["img0", "img1", "img2"]
    for key in protocol.ALL_METRICS:
        np.testing.assert_allclose(result["errors"][key], 0.0, atol=1e-5, err_msg=key)
    row = protocol.summarise(result)
    assert row["n"] == 3 and row["nme2d_68"]["counts"] == {"0-30": 1, "30-60": 1, "60-90": 1}
    assert row["nme2d_68"]["ced_auc"] == pytest.approx(1.0, abs=1e-4)


def test_known_shift_gives_known_nme():
    assets = _grid_assets()
    examples = _array_examples(assets)
    d = 1.5  # crop pixels along x
    result = protocol.evaluate(examples, _oracle(examples, assets, (d, 0.0, 0.0)), assets)
    for i, ex in enumerate(examples):
        k = crop.similarity_scale(protocol.crop_transforms(ex["pt3d_68"][None], S))[0]
        wh = ex["pt3d_68"][:, :2].max(0) - ex["pt3d_68"][:, :2].min(0)
        expected = d / k / math.sqrt(wh[0] * wh[1])
        assert result["errors"]["nme2d_68"][i] == pytest.approx(expected, rel=1e-4)
        assert result["errors"]["nme3d_68"][i] == pytest.approx(expected, rel=1e-4)
        assert result["errors"]["nme2d_dense"][i] == pytest.approx(expected, rel=1e-4)
    # A rigid shift is undone by ICP: reconstruction error stays 0.
    np.testing.assert_allclose(result["errors"]["reconstruction"], 0.0, atol=1e-4)


def test_collapsed_prediction_has_a_reconstruction_error():
    assets = _grid_assets()
    examples = _array_examples(assets, count=1)
    collapsed = baseline.constant_predictor(np.full((S, S, 3), 30.0, np.float32))
    result = protocol.evaluate(examples, collapsed, assets)
    assert result["errors"]["reconstruction"][0] > 0.1


def test_examples_without_gt_maps_have_landmark_metrics_only():
    assets = _grid_assets()
    examples = _array_examples(assets)
    predict = _oracle(examples, assets)
    bare = [{k: v for k, v in ex.items() if k != "position_map"} for ex in examples]
    result = protocol.evaluate(bare, predict, assets)
    assert set(result["errors"]) == set(protocol.LANDMARK_METRICS)
    with pytest.raises(KeyError, match="img0: missing key 'pt3d_68'"):
        protocol.evaluate(
            [{"image": examples[0]["image"], "yaw_deg": 0.0, "file_id": "img0"}], predict, assets
        )


def test_baseline_map_is_a_frontal_face_in_the_crop_box():
    assets = _grid_assets()
    uu, vv = np.meshgrid(np.linspace(-1, 1, S), np.linspace(-1, 1, S))
    # A y-up frontal "face": keypoints with larger v (mouth, later indices) have smaller y.
    frontal = np.stack([80 * uu, -90 * vv, 30 * np.exp(-(uu**2 + vv**2))], -1)
    mean_face = baseline.mean_face_crop_map(frontal, assets)
    kpts = mesh_io.landmarks_from_position_map(mean_face, assets.kpt_uv)
    box = crop.box_from_keypoints(kpts, truncate=False)
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    np.testing.assert_allclose(centre, ((S - 1) / 2, (S - 1) / 2), atol=0.3)
    size = (box[2] - box[0] + box[3] - box[1]) / 2
    assert size == pytest.approx((S - 1) / crop.LANDMARK_SCALE, rel=0.02)
    assert kpts[36:48, 1].mean() < kpts[48:68, 1].mean()  # y flipped to point down
    assert mean_face[..., 2][assets.face_mask].min() == pytest.approx(0.0, abs=1e-5)


def test_json_has_no_bare_nan(tmp_path):
    assets = _grid_assets()
    examples = _array_examples(assets, count=2)  # bucket 60-90 empty: "mean" is NaN
    result = protocol.evaluate(examples, _oracle(examples, assets), assets)
    rows = {"oracle": protocol.summarise(result)}
    paths = report.write_outputs(tmp_path, rows, {"oracle": result}, {"title": "t"})
    doc = json.loads(paths["metrics"].read_text(), parse_constant=lambda c: pytest.fail(c))
    assert doc["results"]["oracle"]["nme2d_68"]["mean"] is None
    assert len(paths["ced"]) == 5 and all(p.stat().st_size > 0 for p in paths["ced"])  # with ICP


def test_real_aflw_fixtures_roundtrip_below_1e3(shared):
    folder = shared / "fixtures" / "real" / "aflw2000_3d"
    uv_dir = shared / "fixtures" / "real" / "prnet_uv_data"
    assets, frontal, _, _ = model_assets.load_assets(uv_dir, 256)
    examples = list(eval_data.examples_from_folder(folder, limit=6))
    assert examples[0]["file_id"] == "image00050" and examples[0]["image"].shape == (450, 450, 3)
    for ex in examples:  # "prediction" = GT landmarks at the keypoint pixels, nothing else
        gt_map = np.zeros((256, 256, 3), np.float32)
        gt_map[assets.kpt_uv[:, 1], assets.kpt_uv[:, 0]] = ex["pt3d_68"]
        ex["position_map"] = gt_map
    result = protocol.evaluate(examples, _oracle(examples, assets), assets, batch_size=4)
    assert np.max(result["errors"]["nme2d_68"]) < 1e-3
    assert np.max(result["errors"]["nme3d_68"]) < 1e-3
    mean_face = protocol.evaluate(
        [{k: v for k, v in ex.items() if k != "position_map"} for ex in examples],
        baseline.constant_predictor(baseline.mean_face_crop_map(frontal, assets)),
        assets,
    )
    # A frontal mean face in the right box: clearly wrong, but the right order of magnitude.
    assert 0.01 < np.mean(mean_face["errors"]["nme2d_68"]) < 0.25


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory, tiny_run):
    """A one-step tiny run (64x64 maps) and 3 synthetic AFLW2000-3D images with the small model."""
    from prn_jax import configuration
    from prn_jax.synth import datasets, face_generator

    root = tmp_path_factory.mktemp("eval")
    face = face_generator.make_procedural_face(
        face_generator.ModelSpec(rows=61, cols=71, num_shape=40, num_exp=20, num_tex=40)
    )
    datasets.generate(face, root / "synth", num=0, seed=3, test_num=3, workers=1, progress=False)
    config = configuration.load_config("tiny", [*tiny_run, "num_steps=1"])
    loop.train_and_evaluate(config, root / "run", log=lambda s: None)
    return root


@pytest.mark.slow
def test_eval_cli_writes_all_outputs(synthetic_run):
    out = synthetic_run / "out"
    rc = cli.main(
        ["eval"]
        + [
            "--workdir",
            str(synthetic_run / "run"),
            "--data",
            str(synthetic_run / "synth"),
            "--out",
            str(out),
            "--batch-size",
            "2",
        ]
    )
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert doc["checkpoints"] == [
        {"method": "prn-jax last (step 1)", "name": "last", "folder": "checkpoints", "step": 1}
    ]
    assert doc["num_images"] == 3 and doc["data_kind"] == "synthetic" and len(doc["data_fingerprint"]) == 12
    assert doc["git_revision"] and doc["ground_truth_check"]["passed"]
    assert doc["ground_truth_check"]["median_nme2d_68"] < 0.02
    method = "prn-jax last (step 1)"
    assert set(doc["results"]) == {method, baseline.BASELINE_NAME}
    for name in doc["results"]:
        for key in protocol.ALL_METRICS:
            assert doc["results"][name][key]["mean"] > 0, (name, key)
    table = (out / "table1.md").read_text()
    assert f"| {baseline.BASELINE_NAME} |" in table and "PRNet (published, real AFLW2000-3D)" in table
    assert table.startswith("# Evaluation: run, synthetic AFLW2000 (")
    assert sorted(p.name for p in out.glob("ced_*.png")) == [
        "ced_nme2d_68.png",
        "ced_nme2d_dense.png",
        "ced_nme3d_68.png",
        "ced_nme3d_dense.png",
        "ced_reconstruction.png",
    ]
    assert (
        cli.main(
            ["eval"]
            + [
                "--workdir",
                str(synthetic_run / "run"),
                "--data",
                str(synthetic_run / "synth"),
                "--checkpoint",
                "7",
            ]
        )
        == 2
    )


@pytest.mark.slow
def test_synthetic_gt_maps_and_periodic_evaluator(synthetic_run):
    assets, _, face, raster = model_assets.load_assets(synthetic_run / "synth" / "model", S)
    examples = list(
        eval_data.with_fit_maps(
            eval_data.examples_from_folder(synthetic_run / "synth" / "AFLW2000"), face, raster
        )
    )
    result = protocol.evaluate(examples, _oracle(examples, assets), assets)
    np.testing.assert_allclose(result["errors"]["nme2d_dense"], 0.0, atol=1e-5)
    np.testing.assert_allclose(result["errors"]["reconstruction"], 0.0, atol=1e-5)
    # The fit's map at the keypoint pixels is within UV rounding of the pt3d_68 vertices.
    assert np.max(result["errors"]["nme2d_68"]) < 0.02

    config, _, variables = inference.restore_variables(synthetic_run / "run")
    state = types.SimpleNamespace(**variables)
    evaluator = periodic.make_periodic_evaluator(
        config, examples, assets, batch_size=2, crop_scale=crop.LANDMARK_SCALE, prefix="test"
    )
    scores = evaluator(state)
    assert {"test_nme2d_68", "test_nme3d_68", "test_nme2d_dense", "test_nme2d_68_bucket_mean"} <= set(scores)
    assert all(math.isfinite(v) and v > 0 for v in scores.values())


@pytest.mark.slow
def test_tfds_records_give_the_same_ground_truth(synthetic_run):
    builder_module = pytest.importorskip("prn_jax.datasets.aflw2000_3d.aflw2000_3d_dataset_builder")
    synth = synthetic_run / "synth"
    builder = builder_module.Aflw20003d(
        data_dir=str(synthetic_run / "tfds"),
        config="maps64",
        manual_dir=str(synth),
        model_dir=str(synth / "model"),
    )
    builder.download_and_prepare()
    assets, _, face, raster = model_assets.load_assets(synth / "model", S)
    from_fits = {
        ex["file_id"]: ex
        for ex in eval_data.with_fit_maps(eval_data.examples_from_folder(synth / "AFLW2000"), face, raster)
    }
    records = eval_data.examples_from_tfds(builder.data_dir)
    assert len(records) == 3
    for i in range(len(records)):
        ex = records[i]
        tfds_map = protocol.gt_image_map(ex, S, ex["file_id"])[assets.face_mask]
        fit_map = from_fits[ex["file_id"]]["position_map"][assets.face_mask]
        np.testing.assert_allclose(tfds_map[:, :2], fit_map[:, :2], atol=0.05)
    out = eval_run.run_eval(
        synthetic_run / "run",
        data=builder.data_dir,
        model_dir=synth / "model",
        out_dir=synthetic_run / "out_tfds",
        batch_size=2,
        log=lambda s: None,
    )
    assert out["rows"][baseline.BASELINE_NAME]["nme2d_dense"]["counts"]["0-30"] == 1


@pytest.mark.slow
def test_outputs_are_named_by_data_and_never_overwritten(synthetic_run, capsys):
    run = synthetic_run / "run"
    argv = ["eval", "--workdir", str(run), "--data", str(synthetic_run / "synth"), "--batch-size", "2"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    (first,) = [p for p in (run / "eval").iterdir() if p.name.startswith("synthetic-")]
    out = first / "last1"
    table = (out / "table1.md").read_text()
    doc = json.loads((out / "metrics.json").read_text())
    assert first.name == f"synthetic-{doc['data_name']}-{doc['data_fingerprint']}"
    # The console prints the table's all-images numbers.
    all_row = next(
        line
        for line in table.splitlines()
        if line.startswith("| prn-jax last (step 1) | 3 |") and line.count("|") == 9
    )
    two_d = doc["results"]["prn-jax last (step 1)"]["nme2d_68"]["all"]
    assert f"{100 * two_d:.2f}" in all_row and f"68 pts 2D {100 * two_d:.2f}" in printed
    # A second evaluation into the same folder is refused, and changes nothing.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert cli.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert cli.main([*argv, "--overwrite"]) == 0
    # Another dataset (a subset of the images) gets its own folder.
    other = synthetic_run / "other"
    other.mkdir()
    for path in sorted((synthetic_run / "synth" / "AFLW2000").iterdir())[:4]:
        (other / path.name).write_bytes(path.read_bytes())
    assert (
        cli.main(
            [
                "eval",
                "--workdir",
                str(run),
                "--data",
                str(other),
                "--model",
                str(synthetic_run / "synth" / "model"),
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    folders = sorted(p.name for p in (run / "eval").iterdir())
    assert len(folders) == 2 and first.name in folders
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".md"} == {
        "table1.md": (out / "table1.md").read_bytes()
    }


def test_checkpoints_by_name(tmp_path):
    for folder, steps in (("checkpoints", (2000, 2250)), ("best", (1750,))):
        for step in steps:
            (tmp_path / "run" / folder / str(step)).mkdir(parents=True)
    run = tmp_path / "run"
    assert inference.resolve_checkpoint(run) == (run, "checkpoints", 2250)
    assert inference.resolve_checkpoint(run, "last") == (run, "checkpoints", 2250)
    assert inference.resolve_checkpoint(run, "best") == (run, "best", 1750)
    assert inference.resolve_checkpoint(run, "1750") == (run, "best", 1750)
    assert inference.resolve_checkpoint(run, 2000) == (run, "checkpoints", 2000)
    assert inference.resolve_checkpoint(run / "best") == (run, "best", 1750)
    with pytest.raises(
        inference.CheckpointError,
        match=r"no checkpoint at step 7; have checkpoints/ \[2000, 2250\], best/ \[1750\]",
    ):
        inference.resolve_checkpoint(run, "7")
    with pytest.raises(inference.CheckpointError, match="expected best, last or a step"):
        inference.resolve_checkpoint(run, "latest")
    (tmp_path / "plain" / "checkpoints" / "5").mkdir(parents=True)
    with pytest.raises(inference.CheckpointError, match="no periodic validation"):
        inference.resolve_checkpoint(tmp_path / "plain", "best")


@pytest.mark.slow
def test_dense_columns_need_ground_truth_that_matches_the_landmarks(synthetic_run, shared):
    """The real AFLW2000-3D fits pushed through the procedural model give maps whose landmarks
    miss pt3d_68 by far more than the tolerance: no dense or reconstruction numbers then."""
    from prn_jax.synth import datasets, face_generator

    real = shared / "fixtures" / "real" / "aflw2000_3d"
    model = synthetic_run / "full_model"  # the embedded default's model: 199 shape, 29 expression
    if not (model / "BFM.mat").is_file():
        datasets.write_model(face_generator.make_procedural_face(), model)
    with pytest.raises(ValueError, match="coefficients but the face model has 40"):
        list(
            eval_data.with_fit_maps(
                eval_data.examples_from_folder(real),
                *model_assets.load_assets(synthetic_run / "synth" / "model", S)[2:],
            )
        )
    assets, _, face, raster = model_assets.load_assets(model, S)
    examples = list(eval_data.with_fit_maps(eval_data.examples_from_folder(real), face, raster))
    errors = protocol.ground_truth_landmark_errors(examples, assets)
    assert len(errors) == 16 and np.median(errors) > 5 * protocol.GT_LANDMARK_TOLERANCE
    lines = []
    out = eval_run.run_eval(synthetic_run / "run", data=real, model_dir=model, batch_size=4, log=lines.append)
    assert {"nme2d_68", "nme3d_68", "nme2d_68_diag"} == set(out["rows"][baseline.BASELINE_NAME]) - {"n"}
    doc = json.loads(out["paths"]["metrics"].read_text())
    assert doc["data_kind"] == "real" and not doc["ground_truth_check"]["passed"]
    assert "another face model" in doc["ground_truth_check"]["reason"]
    assert sum("another face model" in line for line in lines) == 1
    all_images = out["paths"]["table"].read_text().split("## Mean over all images")[1].split("NME in %")[0]
    assert "68 pts 2D, all images" in all_images and "Dense" not in all_images and "ICP" not in all_images


@pytest.mark.slow
def test_best_folder_as_workdir_evaluates_the_best_checkpoint(synthetic_run, tmp_path):
    """`--workdir RUN/best` names the kept best checkpoint (here a copy of the run's step 1)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(synthetic_run / "run" / "checkpoints", run / "checkpoints")
    shutil.copytree(synthetic_run / "run" / "checkpoints", run / "best")
    out = eval_run.run_eval(
        run / "best", data=synthetic_run / "synth", batch_size=2, limit=1, log=lambda s: None
    )
    assert out["steps"] == {"prn-jax best (step 1)": 1} and out["out_dir"].name == "best1"
    assert out["out_dir"].parent.parent == run / "eval"
