"""`prn-jax prepare-model` (issue 26): face3d's generate.m without MATLAB, checked against a
BFM.mat assembled here by hand from stand-in raw files (prn_jax/synth/raw_model.py) by the rule
of docs/model_preparation.md; the output loads in the geometry core and renders position maps."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from prn_jax import cli
from prn_jax.geometry import face_model, model_preparation, uv_raster
from prn_jax.synth import raw_model

ROWS = COLS = 105  # 11,025 kept vertices: generate.m's hard-coded numbers reach 10,916


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(downloads folder, output folder) after one `prn-jax prepare-model` run."""
    root = tmp_path_factory.mktemp("prepare_model")
    raw_model.write_raw_model(root / "downloads", rows=ROWS, cols=COLS, num_shape=12, num_tex=10, seed=1)
    assert (
        cli.main(["prepare-model", "--downloads", str(root / "downloads"), "--out", str(root / "model")]) == 0
    )
    return root / "downloads", root / "model"


def _raw(downloads, name):
    return scipy.io.loadmat(str(next(downloads.rglob(name))), mat_dtype=True)


def _by_hand(downloads):
    """BFM.mat's fields and BFM_UV.mat's UV, written out step by step from the documented rule."""
    basel = _raw(downloads, "01_MorphableModel.mat")
    info = _raw(downloads, "model_info.mat")
    exp = _raw(downloads, "Model_Expression.mat")
    mouth = _raw(downloads, "Model_tri_mouth.mat")["tri_mouth"]
    uv_full = _raw(downloads, "BFM_UV.mat")["UV"]
    keep = [int(i) for i in info["trimIndex"][:, 0]]
    rows = []
    for i in keep:  # vertex i (1-based) keeps rows 3i-2, 3i-1, 3i (1-based)
        rows += [3 * i - 3, 3 * i - 2, 3 * i - 1]
    uv = uv_full[[i - 1 for i in keep]].copy()
    uv[10032 - 1] = (uv[10033 - 1] + uv[10158 - 1]) / 2
    uv[10155 - 1] = (uv[10534 - 1] + uv[10157 - 1] + uv[10661 - 1]) / 3
    uv[10280 - 1] = (uv[10916 - 1] + uv[10286 - 1]) / 2
    added = [[6420, 6542, 6664], [6420, 6294, 6167], [6167, 6297, 6420], [6167, 6297, 6296]]
    added += [[6167, 6296, 6295], [6167, 6295, 6039], [6168, 6295, 6039]]
    model = {
        "shapeMU": basel["shapeMU"][rows],
        "shapePC": basel["shapePC"][rows],
        "shapeEV": basel["shapeEV"],
        "texMU": basel["texMU"][rows],
        "texPC": basel["texPC"][rows],
        "texEV": basel["texEV"],
        "tri": info["tri"],
        "kpt_ind": info["keypoints"],
        "expMU": exp["mu_exp"],
        "expPC": exp["w_exp"],
        "expEV": exp["sigma_exp"],
        "tri_mouth": np.concatenate([mouth, np.array(added, np.float64).T], axis=1),  # 107 + 7
    }
    return model, uv


def test_output_equals_the_hand_assembled_model(prepared):
    downloads, out = prepared
    expected, expected_uv = _by_hand(downloads)
    struct = scipy.io.loadmat(str(out / "BFM.mat"), mat_dtype=True)["model"][0, 0]
    assert list(struct.dtype.names) == list(expected)  # generate.m's field order
    for key, want in expected.items():
        got = struct[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    assert struct["shapePC"].dtype == np.float32 and struct["tri"].dtype == np.float64  # MATLAB classes
    assert struct["tri_mouth"].shape == (3, 114)
    uv = scipy.io.loadmat(str(out / "BFM_UV.mat"))["UV"]
    assert uv.shape == (ROWS * COLS, 2) and uv.dtype == np.float64
    np.testing.assert_array_equal(uv, expected_uv)
    info = scipy.io.loadmat(str(out / "BFM_info.mat"), mat_dtype=True)["model_info"][0, 0]
    raw_info = _raw(downloads, "model_info.mat")
    keep = raw_info["trimIndex"][:, 0].astype(int) - 1
    np.testing.assert_array_equal(info["segbin"], raw_info["segbin"][keep].T)  # model_info's, not Basel's
    np.testing.assert_array_equal(info["uv_coords"], expected_uv)
    np.testing.assert_array_equal(info["tri_mouth"], expected["tri_mouth"])
    np.testing.assert_array_equal(info["segbin_tri"], raw_info["segbin_tri"].T)


def test_output_loads_in_the_geometry_core_and_renders_a_position_map(prepared):
    _, out = prepared
    model = face_model.load_face_model(out / "BFM.mat", out / "BFM_UV.mat")
    assert model.num_vertices == ROWS * COLS and model.shape_basis.shape == (ROWS * COLS, 3, 12)
    assert model.exp_basis.shape[2] == 29 and model.mouth_triangles.shape == (114, 3)
    # shapeMU + expMU of the kept vertices is the stand-in's grid: a wrong trim order or a
    # non-interleaved one moves or swaps x, y, z
    np.testing.assert_allclose(model.mean, raw_model.grid_mean(ROWS, COLS), rtol=1e-6, atol=1e-2)
    size = 64
    raster = uv_raster.build_uv_raster(model.uv, model.full_triangles, size)
    pos = uv_raster.render_position_maps(model.mean.astype(np.float64)[None], raster)[0]
    covered = np.zeros(size * size, bool)
    covered[raster.pixel_index] = True
    assert covered.mean() > 0.95  # the grid's UV square
    # x = 1000 col of the grid, the column being u * (COLS - 1): linear in the UV pixel column
    col_of_pixel = np.tile(np.arange(size), size) * (COLS - 1) / (size - 1)
    close = np.abs(pos.reshape(-1, 3)[covered, 0] - 1000 * col_of_pixel[covered]) < 0.1  # float32 model
    assert close.mean() > 0.98  # all but the pixels of the repaired vertices' triangles


def test_trim_index_arithmetic_never_wraps_in_uint16():
    # MATLAB stores integer-valued doubles as uint16: 3 * 30000 wraps there, not here
    rows = model_preparation.interleaved_rows(np.array([[1], [30000]], np.uint16))
    np.testing.assert_array_equal(rows, [0, 1, 2, 89997, 89998, 89999])


def test_mouth_columns_dropped_are_those_numbered_like_the_bad_vertices():
    tri = np.arange(3 * 10290, dtype=np.float64).reshape(3, -1) + 1
    out = model_preparation.mouth_triangles(tri)
    assert out.shape == (3, 10290 - 3 + 7)
    kept = out[0, :-7]
    assert not np.isin(tri[0, [10031, 10154, 10279]], kept).any()
    out_107 = model_preparation.mouth_triangles(tri[:, :107])
    np.testing.assert_array_equal(out_107[:, :107], tri[:, :107])  # generate.m removes none of 107


def _copy_downloads(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "name, variable, content",
    [
        ("Model_Expression.mat", "w_exp", None),  # variable missing
        ("model_info.mat", "trimIndex", "row"),  # a row gives generate.m a non-interleaved order
        ("model_info.mat", "keypoints", "out_of_range"),
        ("01_MorphableModel.mat", "shapePC", "short"),
        ("BFM_UV.mat", "UV", "short"),
    ],
)
def test_a_bad_variable_is_one_line_naming_file_and_variable(
    prepared, tmp_path, capsys, name, variable, content
):
    downloads = _copy_downloads(prepared[0], tmp_path / "downloads")
    path = next(downloads.rglob(name))
    data = {k: v for k, v in scipy.io.loadmat(str(path), mat_dtype=True).items() if not k.startswith("__")}
    if content is None:
        del data[variable]
    elif content == "row":
        data[variable] = data[variable].T
    elif content == "out_of_range":
        data[variable] = data[variable] + 1e6
    else:
        data[variable] = data[variable][:-3]
    scipy.io.savemat(str(path), data)
    assert cli.main(["prepare-model", "--downloads", str(downloads), "--out", str(tmp_path / "m")]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"{path}: {variable}:" in line, line
    assert not (tmp_path / "m" / "BFM.mat").exists()


def test_a_missing_file_is_one_line_naming_it(prepared, tmp_path, capsys):
    downloads = _copy_downloads(prepared[0], tmp_path / "downloads")
    next(downloads.rglob("Model_tri_mouth.mat")).unlink()
    assert cli.main(["prepare-model", "--downloads", str(downloads), "--out", str(tmp_path / "m")]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "Model_tri_mouth.mat: file: missing" in line, line


def test_output_folder_inside_the_downloads_is_not_read_back(prepared, tmp_path):
    downloads = _copy_downloads(prepared[0], tmp_path / "downloads")
    (downloads / "model").mkdir()
    (downloads / "model" / "BFM_UV.mat").write_bytes(b"an earlier output")
    found = model_preparation.find_raw_files(downloads, exclude=downloads / "model")
    assert found["uv"] == downloads / "stn" / "BFM_UV.mat"
    with pytest.raises(model_preparation.RawModelError, match="found twice"):
        model_preparation.find_raw_files(downloads)
