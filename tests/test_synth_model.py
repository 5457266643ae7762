"""The procedural face model: anatomy / landmark order, bases, and the BFM file round trip."""

import numpy as np
import pytest

from prn_jax.geometry import face_model as fm
from prn_jax.synth import datasets, face_generator

SMALL = face_generator.ModelSpec(rows=61, cols=71, num_shape=40, num_exp=20, num_tex=40)


@pytest.fixture(scope="module")
def face():
    return face_generator.make_procedural_face(SMALL)


def test_written_model_reads_back_with_the_real_loader(face, tmp_path):
    bfm, uv = datasets.write_model(face, tmp_path)
    loaded = fm.load_face_model(bfm, uv)
    m = face.model
    for key in (
        "mean",
        "shape_basis",
        "shape_std",
        "exp_basis",
        "exp_std",
        "triangles",
        "mouth_triangles",
        "kpt_ind",
        "uv",
        "region_labels",
        "tex_mean",
        "tex_basis",
    ):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(m, key), err_msg=key)
    assert loaded.shape_basis.shape[2] == 40 and loaded.exp_basis.shape[2] == 20
    # No timestamp in the headers: a second write is byte-identical.
    first = bfm.read_bytes(), uv.read_bytes()
    datasets.write_model(face, tmp_path)
    assert (bfm.read_bytes(), uv.read_bytes()) == first
    assert b"Created on" not in first[0][:116]


def test_keypoints_follow_the_ibug_68_layout(face):
    m = face.model
    k = m.mean[m.kpt_ind]  # model frame: x = image right in a frontal view, y up, z to camera
    jaw, brows, nose, eyes, mouth = k[:17], k[17:27], k[27:36], k[36:48], k[48:]
    assert np.all(np.diff(jaw[:, 0]) > 0)  # jaw runs image-left to right
    assert jaw[8, 1] == jaw[:, 1].min()  # 9 = chin, lowest jaw point
    assert brows[:, 1].min() > eyes[:, 1].max()  # brows above the eyes
    assert eyes[:, 1].min() > nose[4:, 1].max()  # eyes above the nostrils
    assert nose[3, 2] == k[:, 2].max()  # 31 = nose tip, nearest point
    assert np.all(np.diff(nose[:4, 1]) < 0)  # bridge runs downwards
    assert nose[4:, 1].min() > mouth[:, 1].max()  # mouth below the nose
    assert eyes[:6, 0].max() < 0 < eyes[6:, 0].min()  # 37-42 left, 43-48 right eye
    assert eyes[0, 0] < eyes[3, 0] and eyes[6, 0] < eyes[9, 0]  # outer / inner corner order
    assert mouth[0, 0] < mouth[6, 0] and mouth[3, 1] > mouth[9, 1]  # corners; upper over lower


def test_region_labels_and_uv_layout(face):
    m = face.model
    assert set(np.unique(m.region_labels)) == {0, 1, 2, 3}
    assert np.all(m.region_labels[m.kpt_ind] == fm.REGION_KEYPOINT)
    face_uv = m.uv[m.region_labels < fm.REGION_OUTSIDE]
    assert face_uv.min() > 0.02 and face_uv.max() < 0.98  # face maps to the UV interior
    assert m.uv.min() >= 0 and m.uv.max() <= 1


def test_bases_are_orthonormal_and_mirror_symmetric(face):
    m = face.model
    flat = m.shape_basis.reshape(-1, m.shape_basis.shape[2]).astype(np.float64)
    np.testing.assert_allclose(flat.T @ flat, np.eye(flat.shape[1]), atol=1e-4)
    assert np.all(m.shape_std > 0) and np.all(m.exp_std > 0) and np.all(m.tex_std > 0)
    for basis, parity in ((m.shape_basis, face.shape_parity), (m.exp_basis, face.exp_parity)):
        mirrored = basis[face.mirror] * np.array([-1, 1, 1], np.float32)[None, :, None]
        np.testing.assert_allclose(mirrored, basis * parity, atol=1e-6 * np.abs(basis).max())
    assert {-1.0, 1.0} <= set(face.shape_parity.tolist())
    mean_mirror = m.mean[face.mirror] * np.array([-1, 1, 1], np.float32)
    np.testing.assert_array_equal(mean_mirror, m.mean)


@pytest.mark.slow
def test_default_model_size():
    face = face_generator.make_procedural_face()
    m = face.model
    assert m.num_vertices >= 10000
    assert m.shape_basis.shape[2] == 199 and m.exp_basis.shape[2] == 29
    assert len(np.unique(m.kpt_ind)) == 68
    assert len(m.mouth_triangles) > 0
