"""`prn-jax predict`: head pose from a position map (known synthetic poses), every output file for a
tiny run, and per-image errors that leave the rest of a batch processed."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prn_jax import cli, predict
from prn_jax.geometry import (
    crop,
    face_model,
    grid_model,
    ground_truth,
    model_assets,
    pose,
    uv_assets,
    uv_raster,
)
from prn_jax.model import tf_weights
from prn_jax.train import loop

S = 64


@pytest.fixture(scope="module")
def small_face():
    """A small grid morphable model, its UV assets at S and the mean face in the model frame."""
    face = grid_model.make_grid_face_model(rows=48, cols=48, num_shape=5, num_exp=3)
    raster = uv_raster.build_uv_raster(face.uv, face.full_triangles, S)
    assets = uv_assets.uv_assets_from_model(face, raster)
    mean = predict.canonical_face_points(model_assets.frontal_map_from_model(face, raster), assets)
    return face, raster, assets, mean


def _image_map(face, raster, angles_deg, shape=None):
    """(S, S, 3) ground-truth position map in image pixels of the model at a 3DDFA pose."""
    shape = np.zeros((1, face.shape_basis.shape[-1])) if shape is None else shape[None]
    pose_para = np.array([*np.radians(angles_deg), 210.0, 230.0, 5.0, 1.2e-3])
    maps, transforms = ground_truth.fit_to_position_maps(
        face, raster, shape, np.zeros((1, face.exp_basis.shape[-1])), pose_para[None], image_height=450
    )
    return crop.uncrop(maps[0].astype(np.float64), transforms[0])


@pytest.mark.parametrize("pitch_yaw_roll", [(0, 0, 0), (12, -35, 8), (-20, 60, -15), (5, 80, 25)])
def test_pose_of_synthetic_map_is_recovered_within_a_degree(small_face, pitch_yaw_roll):
    face, raster, assets, mean = small_face
    yaw, pitch, roll = predict.pose_from_position_map(_image_map(face, raster, pitch_yaw_roll), assets, mean)
    np.testing.assert_allclose((pitch, yaw, roll), pitch_yaw_roll, atol=1.0)


def test_pose_with_identity_shape_is_close(small_face):
    face, raster, assets, mean = small_face
    shape = 0.3 * face.shape_std * np.random.default_rng(1).normal(size=face.shape_std.shape)
    yaw, pitch, roll = predict.pose_from_position_map(
        _image_map(face, raster, (10, 30, -5), shape), assets, mean
    )
    np.testing.assert_allclose((pitch, yaw, roll), (10, 30, -5), atol=2.0)


def test_documented_signs(small_face):
    """yaw > 0: nose toward the image's left; pitch > 0: nose up; roll > 0: clockwise in the image."""
    face, raster, assets, _ = small_face

    def kpts(angles):
        pos = _image_map(face, raster, angles)
        return pos[assets.kpt_uv[:, 1], assets.kpt_uv[:, 0]]

    def nose_offset(angles):
        k = kpts(angles)
        return k[predict.NOSE_TIP, :2] - k[[0, 16], :2].mean(0)

    assert nose_offset((0, 30, 0))[0] < nose_offset((0, 0, 0))[0] - 5  # x decreases: image left
    assert nose_offset((30, 0, 0))[1] < nose_offset((0, 0, 0))[1] - 5  # y decreases: up
    eyes = kpts((0, 0, 30))
    # clockwise on screen (y down): the subject's left eye (image right, 42-47) moves down.
    assert eyes[42:48, 1].mean() > eyes[36:42, 1].mean() + 5


def test_angles_from_rotation_inverts_rotation_matrix():
    rng = np.random.default_rng(0)
    angles = np.stack(
        [rng.uniform(-np.pi, np.pi, 50), rng.uniform(-1.5, 1.5, 50), rng.uniform(-np.pi, np.pi, 50)], -1
    )
    for a in angles:
        np.testing.assert_allclose(predict.angles_from_rotation(pose.rotation_matrix(a)), a, atol=1e-9)
    locked = pose.rotation_matrix(np.array([0.4, np.pi / 2, 0.0]))
    np.testing.assert_allclose(pose.rotation_matrix(predict.angles_from_rotation(locked)), locked, atol=1e-9)


def test_crop_rules():
    box = predict.transform_from_box((100, 100, 200, 220), (450, 450, 3), 256)
    np.testing.assert_allclose(box, crop.crop_from_detector_box(np.array([100.0, 100, 200, 220]), 256))
    centre = predict.centre_transform((300, 400, 3), 64)
    corners = crop.uncrop(np.array([[0.0, 0, 0], [63, 63, 0]]), centre)
    np.testing.assert_allclose(corners[:, :2], [[49.5, -0.5], [349.5, 299.5]], atol=1e-9)  # symmetric square
    for bad in ((500, 10, 600, 90), (10, 10, 5, 90)):
        with pytest.raises(predict.InputError, match="box"):
            predict.transform_from_box(bad, (450, 450, 3), 256)


# ------------------------------------------------------------------------------ command line


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_face, tiny_run):
    """A one-step tiny run (64x64 maps), a BFM.mat model folder and two synthetic images."""
    from prn_jax import configuration

    root = tmp_path_factory.mktemp("predict")
    config = configuration.load_config("tiny", [*tiny_run, "num_steps=1"])
    loop.train_and_evaluate(config, root / "run", log=lambda s: None)
    face = small_face[0]
    (root / "model").mkdir()
    face_model.save_face_model(face, root / "model" / "BFM.mat", root / "model" / "BFM_UV.mat")
    rng = np.random.default_rng(0)
    for name, size in (("a.jpg", (120, 100)), ("b.png", (90, 90))):
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(root / name)
    return root


FACE_FILES = ("face0_posmap.npy", "face0_kpt.txt", "face0_mesh.obj", "face0_pose.json")
ALL_FILES = FACE_FILES + (
    "face0_vertices.npy",
    "face0_frontal.obj",
    "face0_depth.npy",
    "face0_depth.png",
    "face0_texture.png",
    "face0_texture_mask.png",
    "overlay.png",
)
REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "aflw2000_3d"


def _read_obj(path):
    lines = path.read_text().splitlines()
    vertices = [ln.split()[1:] for ln in lines if ln.startswith("v ")]
    faces = [ln.split()[1:] for ln in lines if ln.startswith("f ")]
    return np.asarray(vertices, np.float64), np.asarray(faces, np.int64)


@pytest.mark.slow
def test_predict_writes_every_output(run_dir, small_face, capsys):
    assets = small_face[2]
    out = run_dir / "out"
    common = ["--workdir", str(run_dir / "run"), "--model", str(run_dir / "model"), "--out", str(out)]
    rc = cli.main(
        ["predict", str(run_dir / "a.jpg"), str(run_dir / "b.png"), *common, "--box", "20,20,80,90"]
        + ["--outputs", "all", "--batch-size", "3"]
    )
    assert rc == 0, capsys.readouterr().err
    for name in ("a", "b"):
        folder = out / name
        assert sorted(p.name for p in folder.iterdir()) == sorted(ALL_FILES)
        image = np.asarray(Image.open(next(run_dir.glob(f"{name}.*"))))
        pos = np.load(folder / "face0_posmap.npy")
        assert pos.shape == (S, S, 3) and pos.dtype == np.float32 and np.isfinite(pos).all()
        kpt = np.loadtxt(folder / "face0_kpt.txt")
        np.testing.assert_allclose(kpt, pos[assets.kpt_uv[:, 1], assets.kpt_uv[:, 0]], atol=1e-3)
        vertices = np.load(folder / "face0_vertices.npy")
        np.testing.assert_array_equal(vertices, pos.reshape(-1, 3)[assets.face_indices])
        for obj in ("face0_mesh.obj", "face0_frontal.obj"):
            v, faces = _read_obj(folder / obj)
            assert v.shape == (len(assets.face_indices), 6)  # x y z r g b
            assert len(faces) == len(assets.triangles) and faces.min() == 1 and faces.max() <= len(v)
            assert 0 <= v[:, 3:].min() and v[:, 3:].max() <= 1
        mesh, _ = _read_obj(folder / "face0_mesh.obj")
        np.testing.assert_allclose(mesh[:, 1], image.shape[0] - 1 - vertices[:, 1], atol=1e-4)  # y up
        depth = np.load(folder / "face0_depth.npy")
        assert depth.shape == image.shape[:2] and depth.dtype == np.float32
        depth_png = np.asarray(Image.open(folder / "face0_depth.png"))
        assert depth_png.shape == image.shape[:2] and (depth_png > 0).sum() == np.isfinite(depth).sum()
        tex = np.asarray(Image.open(folder / "face0_texture.png"))
        mask = np.asarray(Image.open(folder / "face0_texture_mask.png"))
        assert tex.shape == (S, S, 3) and mask.shape == (S, S) and set(np.unique(mask)) <= {0, 255}
        assert not mask[~assets.face_mask].any()
        doc = json.loads((folder / "face0_pose.json").read_text())
        assert all(np.isfinite(doc[k]) for k in ("yaw_deg", "pitch_deg", "roll_deg"))
        assert np.asarray(doc["rotation"]).shape == (3, 3) and len(doc["translation"]) == 3
        overlay = np.asarray(Image.open(folder / "overlay.png"))
        assert overlay.shape == image.shape and (overlay != image).any()
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["file"].endswith(n), r["face"], r["status"]) for r, n in zip(rows, ("a.jpg", "b.png"))] == [
        (True, "0", "ok"),
        (True, "0", "ok"),
    ]
    assert [float(rows[0][k]) for k in ("x0", "y0", "x1", "y1")] == [20, 20, 80, 90]
    assert all(float(rows[0][k]) >= 0 for k in ("read_ms", "network_ms", "output_ms"))


@pytest.mark.slow
def test_bad_inputs_fail_alone_with_named_errors(run_dir, capsys):
    (run_dir / "broken.jpg").write_bytes(b"not an image")
    np.savetxt(run_dir / "short.txt", np.zeros((67, 2)))
    np.savetxt(run_dir / "good.txt", np.random.default_rng(0).uniform(30, 70, (68, 2)))
    out = run_dir / "out_bad"
    common = ["--workdir", str(run_dir / "run"), "--model", str(run_dir / "model"), "--out", str(out)]
    images = [str(run_dir / n) for n in ("broken.jpg", "a.jpg", "b.png")]
    capsys.readouterr()
    rc = cli.main(
        ["predict"]
        + images
        + common
        + ["--box", "0,0,50,50", "--box", "20,20,80,90", "--box", "200,200,300,300"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 2
    assert "broken.jpg" in err[0] and "cannot decode" in err[0]
    assert "b.png" in err[1] and "outside the 90x90 image" in err[1]
    assert (out / "a" / "face0_pose.json").is_file() and not (out / "b").exists()

    rc = cli.main(
        ["predict"]
        + images[1:]
        + common
        + ["--landmarks", str(run_dir / "good.txt"), str(run_dir / "short.txt")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "short.txt" in err[0] and "(67, 2)" in err[0]

    rc = cli.main(["predict"] + images[1:2] + common + ["--auto-box"])
    assert rc == 0 and "only right for images that are already roughly face crops" in capsys.readouterr().err
    rc = cli.main(["predict", str(run_dir / "nothing*.jpg"), *common, "--auto-box"])
    assert rc == 2 and "nothing*.jpg: pattern matches no file" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason="real AFLW2000-3D fixtures (../shared/fixtures/real) absent")
def test_detector_path_finds_faces_and_reports_photos_without_one(run_dir, capsys):
    pytest.importorskip("dlib")
    folder = run_dir / "photos"
    folder.mkdir()
    for name in ("image00050.jpg", "image02545.jpg"):
        (folder / name).write_bytes((REAL / name).read_bytes())
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(folder / "wall.png")
    # Two faces in one photo: the real face and a half-size copy.
    real = np.asarray(Image.open(REAL / "image00050.jpg"))
    double = np.full((450, 700, 3), 235, np.uint8)
    double[:, :450] = real
    double[100:325, 460:685] = np.asarray(Image.fromarray(real).resize((225, 225)))
    Image.fromarray(double).save(folder / "two.png")
    out = run_dir / "out_detect"
    common = ["--workdir", str(run_dir / "run"), "--model", str(run_dir / "model"), "--out", str(out)]
    capsys.readouterr()
    rc = cli.main(["predict", str(folder), *common])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "wall.png: no face found (detector dlib)" in err[0]
    assert (out / "image00050" / "face0_kpt.txt").is_file() and (out / "image02545" / "overlay.png").is_file()
    assert (out / "two" / "face1_kpt.txt").is_file() and not (out / "two" / "face2_kpt.txt").exists()
    rows = [r for r in csv.DictReader((out / "summary.csv").open()) if "two.png" in r["file"]]
    widths = [float(r["x1"]) - float(r["x0"]) for r in rows]
    assert len(rows) == 2 and widths[0] > 1.6 * widths[1]  # largest first
    assert float(rows[1]["x0"]) > 450  # the copy
    rc = cli.main(
        ["predict", str(folder / "two.png"), *common, "--max-faces", "1", "--out", str(out / "one")]
    )
    assert rc == 0 and not (out / "one" / "two" / "face1_kpt.txt").exists()


@pytest.mark.slow
def test_video_gives_landmark_csv_and_overlay_video(run_dir, capsys):
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg")
    rng = np.random.default_rng(0)
    frames = np.stack([np.roll(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), i, 1) for i in range(5)])
    iio.imwrite(run_dir / "clip.mp4", frames, plugin="FFMPEG", fps=5)
    out = run_dir / "out_video"
    common = ["--workdir", str(run_dir / "run"), "--model", str(run_dir / "model"), "--out", str(out)]
    rc = cli.main(["predict", str(run_dir / "clip.mp4"), *common, "--auto-box", "--batch-size", "2"])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.reader((out / "clip" / "landmarks.csv").open()))
    assert len(rows) == 6 and len(rows[0]) == 10 + 136 and rows[0][:2] == ["frame", "face"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4"]
    assert all(np.isfinite(np.asarray(r[7:], float)).all() for r in rows[1:])
    video = iio.imread(out / "clip" / "overlay.mp4", plugin="FFMPEG")
    assert video.shape == (5, 64, 80, 3)
    (run_dir / "bad.mp4").write_bytes(b"not a video")
    capsys.readouterr()
    rc = cli.main(["predict", str(run_dir / "bad.mp4"), *common, "--auto-box"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if ": error: " in line]
    assert rc == 1 and len(err) == 1 and "bad.mp4: cannot read video" in err[0]


@pytest.mark.slow
def test_texture_swap_command(run_dir, capsys):
    out = run_dir / "swap.png"
    common = ["--workdir", str(run_dir / "run"), "--model", str(run_dir / "model")]
    rc = cli.main(
        ["texture-swap", str(run_dir / "a.jpg"), str(run_dir / "b.png"), *common]
        + ["--src-box", "20,20,80,90", "--dst-box", "10,10,80,80", "--out", str(out)]
    )
    assert rc == 0, capsys.readouterr().err
    result = np.asarray(Image.open(out))
    assert result.shape == np.asarray(Image.open(run_dir / "b.png")).shape and result.dtype == np.uint8
    rc = cli.main(["texture-swap", str(run_dir / "a.jpg"), str(run_dir / "missing.png"), *common])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "missing.png" in err[0]


def test_weights_file_source_and_incompatible_weights(tmp_path, small_face, capsys):
    face_model.save_face_model(small_face[0], tmp_path / "BFM.mat", tmp_path / "BFM_UV.mat")
    rng = np.random.default_rng(0)
    variables = tf_weights.variables_from_tf_arrays(
        {
            name: rng.uniform(0.5, 1.0, shape).astype(np.float32)
            for name, shape in tf_weights.expected_tf_shapes(width=2, image_size=S).items()
        },
        width=2,
        image_size=S,
    )
    Image.fromarray(np.full((64, 80, 3), 90, np.uint8)).save(tmp_path / "x.png")
    common = ["--image-size", "64", "--model", str(tmp_path), "--auto-box", "--out", str(tmp_path / "o")]
    good = tf_weights.save_weights(tmp_path / "good.npz", variables)
    assert cli.main(["predict"] + [str(tmp_path / "x.png"), "--weights", str(good)] + common) == 0
    assert all((tmp_path / "o" / "x" / name).is_file() for name in FACE_FILES[1:] + ("overlay.png",))

    arrays = tf_weights.tf_arrays_from_variables(variables)
    arrays["resfcn256/resBlock_3/Conv_1/weights"] = np.zeros((4, 4, 2, 2), np.float32)
    np.savez(tmp_path / "w.npz", **arrays)
    capsys.readouterr()
    rc = cli.main(["predict"] + [str(tmp_path / "x.png"), "--weights", str(tmp_path / "w.npz")] + common)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "w.npz" in err[0] and "resBlock_3/Conv_1/weights" in err[0] and "(4, 4, 2, 2)" in err[0]
    rc = cli.main(
        ["predict"]
        + [str(tmp_path / "x.png"), "--workdir", str(tmp_path), "--model", str(tmp_path), "--auto-box"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not a prn-jax run directory" in err[0]


@pytest.mark.slow
def test_bench_predict_reports_every_stage(capsys):
    from prn_jax import bench

    assert (
        bench.main(["predict", "--config", "tiny", "--repeats", "2", "--warmup", "1", "--image-px", "96"])
        == 0
    )
    out = capsys.readouterr().out
    for stage in ("decode", "detect", "crop", "forward", "pose", "outputs", "total"):
        assert f"  {stage} " in out, out
    assert "x the forward" in out
