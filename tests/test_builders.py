"""tfds builders prn_300w_lp and aflw2000_3d on tiny synthetic sets and the real fixtures."""

import importlib.util
import shutil
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from prn_jax import cli
from prn_jax.data import formats
from prn_jax.datasets.aflw2000_3d import Aflw20003d
from prn_jax.datasets.prn_300w_lp import Prn300wLp
from prn_jax.geometry import (
    apply_similarity,
    keypoint_uv_pixels,
    landmarks_from_position_map,
    load_face_model,
    sample_position_map,
    uv_to_pixels,
)
from prn_jax.synth import datasets, face_generator

SMALL = face_generator.ModelSpec(rows=61, cols=71, num_shape=40, num_exp=20, num_tex=40)
SIZE = 64
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """4 300W-LP samples (+ 4 flipped) and 3 AFLW2000-3D samples of the small procedural model."""
    out = tmp_path_factory.mktemp("synth")
    face = face_generator.make_procedural_face(SMALL)
    datasets.generate(face, out, num=4, seed=3, test_num=3, flip=True, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def model(synth):
    return load_face_model(synth / "model" / "BFM.mat", synth / "model" / "BFM_UV.mat")


def _records(builder):
    builder.download_and_prepare()
    source = next(iter(builder.as_data_source().values()))
    return {r["file_id"].decode(): r for r in (source[i] for i in range(len(source)))}


def test_300w_lp_records(synth, model, tmp_path):
    builder = Prn300wLp(data_dir=tmp_path, config=f"size{SIZE}", manual_dir=synth, workers=1)
    records = _records(builder)
    assert len(records) == 8 and builder.build_report.skipped == []
    assert sum(builder.build_report.images_per_folder.values()) == 8
    assert sum("_Flip/" in key for key in records) == 4
    kpt_uv = keypoint_uv_pixels(model, SIZE)
    kpt_exact = uv_to_pixels(model.uv[model.kpt_ind], SIZE)
    for file_id, record in records.items():
        mat = scipy.io.loadmat(str(synth / "300W_LP" / f"{file_id}.mat"))
        np.testing.assert_array_equal(record["pose"], mat["Pose_Para"][0].astype(np.float32))
        assert record["shape"].shape == (SMALL.num_shape,) and record["shape"].dtype == np.float32
        assert record["expression"].shape == (SMALL.num_exp,)
        assert record["image"].shape == (SIZE, SIZE, 3) and record["image"].dtype == np.uint8
        assert record["image"].mean() > 20  # the face, not a black crop
        assert record["landmarks"].shape == (68, 3) and record["landmarks"].dtype == np.float32
        assert record["crop_transform"].shape == (3, 3)
        pos = formats.decode_position_map(record["position_map"], SIZE)
        # The map's keypoint pixels are the landmarks, up to the UV interpolation between vertices
        # (coarse at 64 px on this small model); at the exact keypoint UVs they agree closely.
        landmarks = record["landmarks"]
        assert np.abs(landmarks_from_position_map(pos, kpt_uv) - landmarks).max() < 3.0
        assert np.abs(sample_position_map(pos, kpt_exact) - landmarks).max() < 1.5
        # The crop transform maps the image landmarks onto the crop landmarks.
        pts = (
            scipy.io.loadmat(
                str(
                    synth
                    / "300W_LP"
                    / "landmarks"
                    / file_id.split("/")[0]
                    / f"{file_id.split('/')[1]}_pts.mat"
                )
            )["pts_3d"]
            if "_Flip" not in file_id
            else None
        )
        if pts is not None:
            projected = apply_similarity(np.c_[pts, np.zeros(68)], record["crop_transform"])[:, :2]
            np.testing.assert_allclose(projected, landmarks[:, :2], atol=1e-2)


def test_300w_lp_offline_augmented_copies(synth, model, tmp_path):
    """size64_aug4: each fit gives its plain record plus 4 copies made by the training step's own
    augmentation from a key of (seed, file_id, copy); the stored crop transform still rebuilds
    the copy's map, and the copies are reproducible."""
    import jax

    from prn_jax import augment
    from prn_jax.geometry import build_uv_raster, fit_render_arrays, position_maps_from_fits

    records = _records(
        Prn300wLp(data_dir=tmp_path / "a", config=f"size{SIZE}_aug4", manual_dir=synth, workers=1)
    )
    plain = {k: r for k, r in records.items() if "#aug" not in k}
    assert len(plain) == 8 and len(records) == 8 * 5
    arrays = fit_render_arrays(model, build_uv_raster(model.uv, model.full_triangles, SIZE))
    tolerance = SIZE / 65536 + 2e-4
    for file_id, record in plain.items():
        source_map = formats.decode_position_map(record["position_map"], SIZE)
        copies = [records[f"{file_id}#aug{c}"] for c in range(4)]
        maps = np.stack([formats.decode_position_map(c["position_map"], SIZE) for c in copies])
        assert len({m.tobytes() for m in maps}) == 4  # four different draws
        assert all(not np.array_equal(c["image"], record["image"]) for c in copies)
        # Each copy is the documented draw applied to the plain example.
        key = jax.random.fold_in(jax.random.PRNGKey(0), zlib.crc32(file_id.encode()) & 0x7FFFFFFF)
        _, expected, marks, _ = augment.augmented_copies(
            key,
            record["image"],
            source_map,
            record["landmarks"],
            np.arange(4),
            params=augment.AugmentParams(),
        )
        redrawn = [c for c in range(4) if np.abs(maps[c] - expected[c]).max() > 3 * tolerance]
        for c in redrawn:  # out of the storable range: a later draw c + 4 a was stored
            assert np.abs(np.asarray(expected[c])).max() >= SIZE / 2 - 1  # at or beyond the range
            later = augment.augmented_copies(
                key,
                record["image"],
                source_map,
                record["landmarks"],
                c + 4 * np.arange(1, 9),
                params=augment.AugmentParams(),
            )
            match = [a for a in range(8) if np.abs(maps[c] - later[1][a]).max() < 3 * tolerance]
            assert match, c
            expected = expected.at[c].set(later[1][match[0]])
            marks = marks.at[c].set(later[2][match[0]])
        # (the builder augmented the exact float map, the test its stored copy: errors add)
        assert np.abs(maps - np.asarray(expected)).max() < 3 * tolerance  # rotation x scale <= 1.7
        np.testing.assert_allclose(np.stack([c["landmarks"] for c in copies]), marks, atol=1e-3)
        # The composed crop transform rebuilds each copy's map from the fit.
        rebuilt = np.asarray(
            position_maps_from_fits(
                arrays,
                np.stack([c["pose"] for c in copies]),
                np.stack([c["shape"] for c in copies]),
                np.stack([c["expression"] for c in copies]),
                np.stack([c["crop_transform"] for c in copies]),
                np.stack([c["image_height"] for c in copies]),
            )
        )
        assert np.abs(rebuilt - maps).max() < tolerance + 1e-3
    again = _records(
        Prn300wLp(data_dir=tmp_path / "b", config=f"size{SIZE}_aug4", manual_dir=synth, workers=1)
    )
    for key, record in records.items():
        assert record["position_map"] == again[key]["position_map"]
        np.testing.assert_array_equal(record["image"], again[key]["image"])


def test_300w_lp_noflip_config_and_parallel_workers(synth, tmp_path):
    serial = _records(
        Prn300wLp(data_dir=tmp_path / "a", config=f"size{SIZE}_noflip", manual_dir=synth, workers=1)
    )
    parallel = _records(
        Prn300wLp(
            data_dir=tmp_path / "b", config=f"size{SIZE}_noflip", manual_dir=synth, workers=2, batch_size=2
        )
    )
    assert len(serial) == 4 and not any("_Flip" in key for key in serial)
    assert serial.keys() == parallel.keys()
    for key in serial:
        assert serial[key]["position_map"] == parallel[key]["position_map"]
        np.testing.assert_array_equal(serial[key]["image"], parallel[key]["image"])


def _corrupt(root, case):
    """Breaks one file of a copied synthetic set; returns the broken file and the expected key."""
    lp = root / "300W_LP"
    mat = sorted((lp / "HELEN").glob("*.mat"))[0] if (lp / "HELEN").is_dir() else None
    mat = mat or sorted(p for p in lp.glob("*/*.mat") if "landmarks" not in str(p))[0]
    image = mat.with_suffix(".jpg")
    content = scipy.io.loadmat(str(mat))
    if case == "missing_image":
        image.unlink()
        return mat, "image"
    if case == "image_without_mat":
        mat.unlink()
        return image, ".mat"
    if case == "unreadable_image":
        image.write_bytes(image.read_bytes()[:200])
        return image, "image"
    if case == "missing_key":
        del content["Exp_Para"]
    elif case == "wrong_shape":
        content["Pose_Para"] = np.zeros((1, 6), np.float32)
    elif case == "coefficient_count":
        content["Shape_Para"] = np.zeros((SMALL.num_shape + 1, 1))
    scipy.io.savemat(str(mat), {k: v for k, v in content.items() if not k.startswith("__")})
    return mat, {"missing_key": "Exp_Para", "wrong_shape": "Pose_Para", "coefficient_count": "Shape_Para"}[
        case
    ]


@pytest.mark.parametrize(
    "case",
    [
        "missing_image",
        "image_without_mat",
        "unreadable_image",
        "missing_key",
        "wrong_shape",
        "coefficient_count",
    ],
)
def test_300w_lp_bad_input(synth, tmp_path, case):
    root = tmp_path / "raw"
    shutil.copytree(synth, root)
    path, key = _corrupt(root, case)
    common = dict(config=f"size{SIZE}_noflip", manual_dir=root, workers=1)
    with pytest.raises(formats.FormatError) as info:
        Prn300wLp(data_dir=tmp_path / "strict", **common).download_and_prepare()
    assert (info.value.path, info.value.key) == (str(path), key)
    builder = Prn300wLp(data_dir=tmp_path / "lenient", skip_invalid=True, **common)
    records = _records(builder)
    assert [(p, k) for p, k, _ in builder.build_report.skipped] == [(str(path), key)]
    assert len(records) == 3 and path.stem not in {k.split("/")[1] for k in records}


def test_aflw2000_records_with_maps(synth, model, tmp_path):
    records = _records(Aflw20003d(data_dir=tmp_path, config=f"maps{SIZE}", manual_dir=synth))
    assert sorted(records) == ["image00000", "image00001", "image00002"]
    kpt_exact = uv_to_pixels(model.uv[model.kpt_ind], SIZE)
    for file_id, record in records.items():
        mat = scipy.io.loadmat(str(synth / "AFLW2000" / f"{file_id}.mat"))
        np.testing.assert_array_equal(record["pt3d_68"], mat["pt3d_68"].T)
        assert record["image"].shape == (450, 450, 3)
        assert record["yaw_deg"] == pytest.approx(np.degrees(mat["Pose_Para"][0, 1]), abs=1e-4)
        pos = formats.decode_position_map(record["position_map"], SIZE)
        cropped = apply_similarity(record["pt3d_68"], record["crop_transform"])
        assert np.abs(sample_position_map(pos, kpt_exact)[:, :2] - cropped[:, :2]).max() < 1.5
        # PRNet's 1.6 rule: the landmark box fills 1/1.6 of the crop.
        extent = (cropped[:, :2].max(0) - cropped[:, :2].min(0)).mean()
        assert extent == pytest.approx((SIZE - 1) / 1.6, rel=0.05)


def test_aflw2000_on_real_fixtures(shared, tmp_path):
    builder = Aflw20003d(
        data_dir=tmp_path, config="images", manual_dir=shared / "fixtures" / "real" / "aflw2000_3d"
    )
    records = _records(builder)
    assert len(records) == 16
    raw = (shared / "fixtures" / "real" / "aflw2000_3d" / "image00050.jpg").read_bytes()
    record = records["image00050"]
    assert record["image"].shape == (450, 450, 3) and "position_map" not in record
    assert np.isfinite(record["crop_transform"]).all() and record["pt3d_68"].shape == (68, 3)
    assert len(raw) > 0


def test_300w_lp_real_fixture_is_read_structurally(shared, synth, tmp_path):
    """The real .mat (199 + 29 coefficients) meets the 40 + 20 test model: the named mismatch."""
    for database in formats.W300LP_DATABASES:
        (tmp_path / "raw" / "300W_LP" / database).mkdir(parents=True)
    folder = tmp_path / "raw" / "300W_LP" / "IBUG"
    for suffix in (".jpg", ".mat"):
        shutil.copy(shared / "fixtures" / "real" / "300w_lp" / f"IBUG_image_008_1_0{suffix}", folder)
    common = dict(
        config=f"size{SIZE}_noflip", manual_dir=tmp_path / "raw", model_dir=synth / "model", workers=1
    )
    with pytest.raises(formats.FormatError, match="IBUG_image_008_1_0.mat: Shape_Para: 199"):
        Prn300wLp(data_dir=tmp_path / "a", **common).download_and_prepare()
    builder = Prn300wLp(data_dir=tmp_path / "b", skip_invalid=True, **common)
    with pytest.raises(Exception):  # no valid example left: tfds refuses an empty split
        builder.download_and_prepare()
    assert builder.build_report.skipped[0][1] == "Shape_Para"
    assert builder.build_report.images_per_folder["IBUG"] == 1


def test_build_command(synth, tmp_path, capsys):
    argv = [
        "--data-dir",
        str(tmp_path / "tfds"),
        "--manual-dir",
        str(synth),
        "--model",
        str(synth / "model"),
        "--dataset",
        "both",
        "--map-size",
        str(SIZE),
        "--no-flip",
        "--workers",
        "1",
    ]
    assert cli.main(["build"] + argv) == 0
    out = capsys.readouterr().out
    assert "HELEN" in out and "4 examples" in out and "3 examples" in out
    assert "bytes/example" in out
    root = tmp_path / "raw"
    shutil.copytree(synth, root)
    path, _ = _corrupt(root, "missing_key")
    argv[1], argv[3] = str(tmp_path / "tfds2"), str(root)
    assert cli.main(["build"] + argv) == 2
    assert f"{path}: Exp_Para: missing" in capsys.readouterr().err
    assert cli.main(["build"] + argv + ["--skip-invalid"]) == 0
    assert f"skipped {path}: Exp_Para: missing" in capsys.readouterr().out


def test_builds_and_reads_without_tensorflow(synth, tmp_path):
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed here; the project environment must build without it")
    script = textwrap.dedent(f"""
      import importlib.util, sys
      assert importlib.util.find_spec('tensorflow') is None
      from prn_jax.datasets.prn_300w_lp import Prn300wLp
      from prn_jax.datasets.aflw2000_3d import Aflw20003d
      from prn_jax.data import formats
      b = Prn300wLp(data_dir={str(tmp_path)!r}, config='size{SIZE}_noflip',
                    manual_dir={str(synth)!r}, workers=1)
      b.download_and_prepare()
      record = b.as_data_source()['train'][0]
      assert formats.decode_position_map(record['position_map'], {SIZE}).shape == ({SIZE}, {SIZE}, 3)
      a = Aflw20003d(data_dir={str(tmp_path)!r}, config='maps{SIZE}', manual_dir={str(synth)!r})
      a.download_and_prepare()
      assert a.as_data_source()['test'][0]['image'].shape == (450, 450, 3)
      assert not any(m.split('.')[0] == 'tensorflow' for m in sys.modules)
      print('OK')
  """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
    assert "Downloading and preparing" not in result.stdout  # local folders: nothing downloads


def test_build_refuses_a_data_dir_built_from_another_source(synth, tmp_path, capsys):
    argv = ["--data-dir", str(tmp_path / "tfds"), "--manual-dir", str(synth), "--dataset", "prn_300w_lp"]
    argv += ["--map-size", str(SIZE), "--no-flip", "--workers", "1"]
    assert cli.main(["build"] + argv) == 0
    capsys.readouterr()
    assert cli.main(["build"] + argv) == 0  # the same source: reused, said so
    assert "reusing" in capsys.readouterr().out
    other = tmp_path / "other"
    shutil.copytree(synth, other)
    (other / "300W_LP" / "extra.txt").write_text("one more file")
    argv[3] = str(other)
    built = sorted(p.name for p in (tmp_path / "tfds").rglob("*"))
    assert cli.main(["build"] + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already built from another source" in err and "--force" in err
    assert sorted(p.name for p in (tmp_path / "tfds").rglob("*")) == built  # nothing touched
    assert cli.main(["build"] + argv + ["--force"]) == 0
    assert "--force: removing" in capsys.readouterr().out
    assert cli.main(["build"] + argv) == 0 and "reusing" in capsys.readouterr().out
