"""FaceModel container and the face3d BFM.mat / BFM_UV.mat reader and writer."""

import dataclasses

import numpy as np
import pytest
import scipy.io

from prn_jax.geometry import face_model, grid_model


def _write_minimal_bfm(path, n=4, **overrides):
    struct = {
        "shapeMU": np.arange(3 * n, dtype=np.float64)[:, None],
        "shapePC": np.arange(3 * n * 2, dtype=np.float64).reshape(3 * n, 2),
        "shapeEV": np.ones((2, 1)),
        "expMU": np.full((3 * n, 1), 0.5),
        "expPC": np.ones((3 * n, 1)),
        "expEV": np.ones((1, 1)),
        "tri": np.array([[1, 2, 3], [2, 3, 4]], float).T,
        "tri_mouth": np.array([[1, 3, 4]], float).T,
        "kpt_ind": (np.arange(68) % n + 1)[None, :].astype(float),
    }
    struct.update(overrides)
    struct = {k: v for k, v in struct.items() if v is not None}
    scipy.io.savemat(path, {"model": struct})


def _write_uv(path, n=4):
    scipy.io.savemat(path, {"UV": np.linspace(0, 1, 2 * n).reshape(n, 2)})


def test_loader_follows_face3d_conventions(tmp_path):
    _write_minimal_bfm(tmp_path / "BFM.mat")
    _write_uv(tmp_path / "BFM_UV.mat")
    model = face_model.load_face_model(tmp_path / "BFM.mat", tmp_path / "BFM_UV.mat")
    # Fortran (3, n) reshape: vertex i is rows 3i, 3i+1, 3i+2; expMU folded into the mean.
    np.testing.assert_array_equal(model.mean[1], [3.5, 4.5, 5.5])
    np.testing.assert_array_equal(model.shape_basis[2, 1], [14, 15])  # row 3*2+1 = 7
    np.testing.assert_array_equal(model.triangles, [[0, 1, 2], [1, 2, 3]])
    np.testing.assert_array_equal(model.mouth_triangles, [[0, 2, 3]])
    assert model.full_triangles.shape == (3, 3)
    assert model.kpt_ind.dtype == np.int32 and model.kpt_ind[0] == 0 and model.kpt_ind.max() == 3
    assert model.mean.dtype == np.float32 and model.shape_basis.shape == (4, 3, 2)


@pytest.mark.parametrize(
    "override, key",
    [
        ({"kpt_ind": np.full((1, 68), 5.0)}, "kpt_ind"),
        ({"tri": np.array([[0, 1, 2]], float).T}, "tri"),
        ({"shapePC": np.ones((11, 2))}, "shapePC"),
        ({"expEV": np.ones((3, 1))}, "expEV"),
        ({"tri_mouth": None}, "tri_mouth"),
    ],
)
def test_loader_errors_name_file_and_key(tmp_path, override, key):
    bfm = tmp_path / "bad_BFM.mat"
    _write_minimal_bfm(bfm, **override)
    _write_uv(tmp_path / "BFM_UV.mat")
    with pytest.raises(ValueError) as error:
        face_model.load_face_model(bfm, tmp_path / "BFM_UV.mat")
    assert "bad_BFM.mat" in str(error.value) and key in str(error.value)


def test_uv_file_errors_name_file_and_key(tmp_path):
    _write_minimal_bfm(tmp_path / "BFM.mat")
    scipy.io.savemat(tmp_path / "bad_UV.mat", {"UV": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"bad_UV\.mat.*'UV'"):
        face_model.load_face_model(tmp_path / "BFM.mat", tmp_path / "bad_UV.mat")
    scipy.io.savemat(tmp_path / "bad_UV.mat", {"uv": np.zeros((4, 2))})
    with pytest.raises(ValueError, match=r"bad_UV\.mat.*'UV'"):
        face_model.load_face_model(tmp_path / "BFM.mat", tmp_path / "bad_UV.mat")


def test_save_load_round_trip(tmp_path):
    model = grid_model.make_grid_face_model(12, 10, num_shape=7, num_exp=5, with_texture=True)
    face_model.save_face_model(model, tmp_path / "BFM.mat", tmp_path / "BFM_UV.mat")
    loaded = face_model.load_face_model(tmp_path / "BFM.mat", tmp_path / "BFM_UV.mat")
    for field in dataclasses.fields(face_model.FaceModel):
        np.testing.assert_array_equal(
            getattr(loaded, field.name), getattr(model, field.name), err_msg=field.name
        )


def test_container_validates():
    model = grid_model.make_grid_face_model(8, 8, num_shape=3, num_exp=2)
    with pytest.raises(ValueError, match="uv"):
        dataclasses.replace(model, uv=model.uv * 2)
    with pytest.raises(ValueError, match="region_labels"):
        dataclasses.replace(model, region_labels=np.full(64, 7, np.int32))
