"""Synthetic 300W-LP / AFLW2000-3D: real formats, ground truth agreement, determinism, resume."""

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from prn_jax.geometry import face_model as fm
from prn_jax.geometry import pose
from prn_jax.synth import datasets, face_generator, sampling

SMALL = face_generator.ModelSpec(rows=61, cols=71, num_shape=40, num_exp=20, num_tex=40)
COEFFICIENT_KEYS = ("Shape_Para", "Exp_Para", "Tex_Para")


def _shared():
    env = os.environ.get("PRN_JAX_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return path if path.is_dir() else None


def _mats(root):
    return {k: v for k, v in scipy.io.loadmat(str(root)).items() if not k.startswith("__")}


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def face():
    return face_generator.make_procedural_face(SMALL)


@pytest.fixture(scope="module")
def dataset(face, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    datasets.generate(face, out, num=3, seed=7, test_num=3, flip=True, workers=1, progress=False)
    return out


def _expected_shapes(model, kind):
    ks, ke, kt = model.shape_std.size, model.exp_std.size, model.tex_std.size
    common = {
        "Pose_Para": ((1, 7), np.float32),
        "Shape_Para": ((ks, 1), np.float64),
        "Exp_Para": ((ke, 1), np.float64),
        "Tex_Para": ((kt, 1), np.float64),
        "Color_Para": ((1, 7), np.float32),
        "Illum_Para": ((1, 10), np.float64),
        "roi": ((1, 4), np.int16),
    }
    if kind == "300w":
        return {**common, "pt2d": ((2, 68), np.float64)}
    return {**common, "pt2d": ((2, 21), np.float64), "pt3d_68": ((3, 68), np.float32)}


def test_layout_and_formats(face, dataset):
    lp = dataset / "300W_LP"
    for db in sampling.DATABASES:
        assert (lp / db).is_dir() and (lp / f"{db}_Flip").is_dir() and (lp / "landmarks" / db).is_dir()
    train = sorted(p for db in sampling.DATABASES for p in (lp / db).glob("*.mat"))
    flips = sorted(p for db in sampling.DATABASES for p in (lp / f"{db}_Flip").glob("*.mat"))
    test = sorted((dataset / "AFLW2000").glob("image*.mat"))
    assert len(train) == len(flips) == 3 and len(test) == 3
    assert [p.name for p in test] == ["image00000.mat", "image00001.mat", "image00002.mat"]
    for kind, paths in (("300w", train + flips), ("aflw", test)):
        expected = _expected_shapes(face.model, kind)
        for path in paths:
            image = Image.open(path.with_suffix(".jpg"))
            assert image.size == (450, 450) and image.mode == "RGB"
            content = _mats(path)
            assert set(content) == set(expected), path
            for key, (shape, dtype) in expected.items():
                assert content[key].shape == shape and content[key].dtype == dtype, (path, key)
    pts = _mats(lp / "landmarks" / train[0].parent.name / f"{train[0].stem}_pts.mat")
    assert pts["pts_2d"].shape == pts["pts_3d"].shape == (68, 2)


def test_structure_matches_the_real_fixtures(face, dataset):
    shared = _shared()
    if shared is None:
        pytest.skip("../shared (real 300W-LP / AFLW2000-3D fixtures) is absent on this machine")
    real_dir = shared / "fixtures" / "real"
    pairs = [
        (real_dir / "300w_lp" / "IBUG_image_008_1_0.mat", next((dataset / "300W_LP").rglob("*_1_0.mat"))),
        (sorted((real_dir / "aflw2000_3d").glob("*.mat"))[0], dataset / "AFLW2000" / "image00000.mat"),
    ]
    for real_path, synth_path in pairs:
        real, synth = _mats(real_path), _mats(synth_path)
        assert list(real) == list(synth), synth_path  # same keys, same order
        for key in real:
            assert real[key].dtype == synth[key].dtype, key
            if key in COEFFICIENT_KEYS:  # model-sized columns
                assert synth[key].shape[1] == real[key].shape[1] == 1
            else:
                assert real[key].shape == synth[key].shape, key
        assert (
            real_path.with_suffix(".jpg").exists()
            and Image.open(real_path.with_suffix(".jpg")).size
            == Image.open(synth_path.with_suffix(".jpg")).size
        )


def test_files_agree_with_the_real_loaders(dataset):
    model = fm.load_face_model(dataset / "model" / "BFM.mat", dataset / "model" / "BFM_UV.mat")
    for path in sorted((dataset / "AFLW2000").glob("*.mat")):
        fit = _mats(path)
        vertices = pose.fit_to_image_vertices(
            model, fit["Shape_Para"][:, 0], fit["Exp_Para"][:, 0], fit["Pose_Para"][0], 450
        )
        np.testing.assert_allclose(vertices[model.kpt_ind].T, fit["pt3d_68"], atol=0.05)
    yaws = [
        abs(_mats(p)["Pose_Para"][0, 1]) / sampling.DEG for p in sorted((dataset / "AFLW2000").glob("*.mat"))
    ]
    assert sorted(int(y // 30) for y in yaws) == [0, 1, 2]  # every |yaw| bucket populated
    # A flipped sample's fit is the mirror image of its original.
    original = next((dataset / "300W_LP").rglob("*_1_1.mat"))
    flipped = dataset / "300W_LP" / f"{original.parent.name}_Flip" / original.name
    a, b = _mats(original), _mats(flipped)
    va = pose.fit_to_image_vertices(model, a["Shape_Para"][:, 0], a["Exp_Para"][:, 0], a["Pose_Para"][0], 450)
    vb = pose.fit_to_image_vertices(model, b["Shape_Para"][:, 0], b["Exp_Para"][:, 0], b["Pose_Para"][0], 450)
    face = face_generator.make_procedural_face(SMALL)
    mirrored = va[face.mirror] * np.array([-1, 1, 1]) + np.array([449, 0, 0])
    np.testing.assert_allclose(vb, mirrored, atol=0.05)
    image_a = np.asarray(Image.open(original.with_suffix(".jpg")), np.float32)
    image_b = np.asarray(Image.open(flipped.with_suffix(".jpg")), np.float32)
    assert np.abs(image_a[:, ::-1] - image_b).mean() < 3.0


def test_300wlp_pose_distribution():
    rng = np.random.default_rng(0)
    angles = (
        np.concatenate([sampling.profile_angles(rng, datasets.VIEWS_PER_SUBJECT) for _ in range(300)])
        / sampling.DEG
    )
    pitch, yaw, roll = angles.T
    assert yaw.min() < -80 and yaw.max() > 80 and np.abs(yaw).max() <= 90
    assert np.abs(pitch).max() <= 30 and np.abs(roll).max() <= 20
    counts = np.histogram(np.abs(yaw), [0, 30, 60, 90.01])[0]
    assert counts.min() > 0.2 * len(yaw)  # all |yaw| ranges well covered


def test_deterministic_across_runs_and_workers(face, dataset, tmp_path):
    datasets.generate(face, tmp_path / "b", num=3, seed=7, test_num=3, flip=True, workers=2, progress=False)
    assert _tree(dataset) == _tree(tmp_path / "b")
    datasets.generate(face, tmp_path / "c", num=1, seed=8, test_num=0, workers=1, progress=False)
    other = _tree(tmp_path / "c")
    jpg = [k for k in other if k.endswith(".jpg")]
    assert jpg and all(other[k] != _tree(dataset).get(k) for k in jpg)


def test_resume_after_interruption(face, dataset, tmp_path):
    out = tmp_path / "r"
    datasets.generate(face, out, num=3, seed=7, test_num=3, flip=True, workers=1, progress=False)
    # Interrupt sample 2: its completion marker never got written, a temp file was left behind.
    database, name = datasets.w300lp_name(7, 2)
    (out / "300W_LP" / database / f"{name}.mat").unlink()
    (out / "300W_LP" / database / f"{name}.jpg").write_bytes(b"truncated")
    stale = out / "300W_LP" / database / f".{name}.mat.partial"
    stale.write_bytes(b"half")
    summary = datasets.generate(face, out, num=3, seed=7, test_num=3, flip=True, workers=1, progress=False)
    assert summary == {"written": 1, "skipped": 5}
    assert not stale.exists()
    assert _tree(out) == _tree(dataset)
