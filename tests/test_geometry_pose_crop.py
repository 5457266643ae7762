"""Pose convention, projection, crop box / similarity and the fused fit -> crop vertices."""

import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from prn_jax.geometry import crop, grid_model, ground_truth, pose


def _shared():
    for root in (
        Path(__file__).resolve().parents[2] / "shared",
        Path(os.environ.get("PRN_JAX_SHARED", "/nonexistent")),
    ):
        if root.is_dir():
            return root
    pytest.skip("shared fixtures (../shared or $PRN_JAX_SHARED) not available")


def test_rotation_matches_3ddfa_formula():
    pitch, yaw, roll = 0.3, -0.7, 0.2
    c, s = np.cos, np.sin
    rx = np.array([[1, 0, 0], [0, c(pitch), s(pitch)], [0, -s(pitch), c(pitch)]])
    ry = np.array([[c(yaw), 0, -s(yaw)], [0, 1, 0], [s(yaw), 0, c(yaw)]])
    rz = np.array([[c(roll), s(roll), 0], [-s(roll), c(roll), 0], [0, 0, 1]])
    np.testing.assert_allclose(pose.rotation_matrix(np.array([pitch, yaw, roll])), rx @ ry @ rz, atol=1e-12)
    batch = pose.rotation_matrix(jnp.zeros((2, 5, 3)))
    assert batch.shape == (2, 5, 3, 3)


def test_known_pose_moves_known_vertex():
    vertex = np.array([[1.0, 0.0, 0.0]])
    pose_para = np.array([0, np.pi / 2, 0, 10, 20, 30, 2.0])
    moved = pose.transform_vertices(vertex, pose_para)
    np.testing.assert_allclose(moved, [[10, 20, 32]], atol=1e-12)  # Ry(90) sends x to +z
    image = pose.to_image(moved, 450)
    np.testing.assert_allclose(image, [[10, 450 - 20 - 1, 32]], atol=1e-12)  # y flip, z kept


def test_fit_to_image_vertices_matches_formula():
    model = grid_model.make_grid_face_model(10, 10, num_shape=6, num_exp=4)
    rng = np.random.default_rng(1)
    alpha, beta = rng.normal(size=6) * 1e3, rng.normal(size=4)
    pose_para = np.array([0.1, -0.4, 0.05, 200, 190, -80, 1.3e-3])
    flat_mean = model.mean.T.reshape(-1, order="F")  # face3d interleaved 3n vector
    flat = flat_mean + model.shape_basis.reshape(-1, 6) @ alpha + model.exp_basis.reshape(-1, 4) @ beta
    vertices = flat.reshape(3, -1, order="F").T
    rot = pose.rotation_matrix(pose_para[:3])
    expected = pose_para[6] * vertices @ rot.T + pose_para[3:6]
    expected[:, 1] = 450 - expected[:, 1] - 1
    got = pose.fit_to_image_vertices(model, alpha, beta, pose_para, 450)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_crop_box_on_300w_lp_sample():
    mat = scipy.io.loadmat(_shared() / "fixtures/real/300w_lp/IBUG_image_008_1_0.mat")
    pt2d = mat["pt2d"].T  # (68, 2) image pixels
    kpt = pt2d.astype(np.int32)
    left, right, top, bottom = kpt[:, 0].min(), kpt[:, 0].max(), kpt[:, 1].min(), kpt[:, 1].max()
    center = np.array([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0])
    old_size = (right - left + bottom - top) / 2
    size = int(old_size * 1.5)
    got_center, got_size = crop.crop_center_size(crop.box_from_keypoints(pt2d), 1.5)
    np.testing.assert_allclose(got_center, center)
    assert got_size == size
    transform = crop.crop_from_keypoints(pt2d, 256, scale=1.5)
    corners = np.array(
        [
            [center[0] - size / 2, center[1] - size / 2, 0],
            [center[0] - size / 2, center[1] + size / 2, 0],
            [center[0] + size / 2, center[1] - size / 2, 0],
        ]
    )
    np.testing.assert_allclose(
        crop.apply_similarity(corners, transform)[:, :2], [[0, 0], [0, 255], [255, 0]], atol=1e-9
    )
    assert np.isclose(crop.similarity_scale(transform), 255 / size)
    inside = crop.apply_similarity(np.c_[pt2d, np.zeros(68)], transform)[:, :2]
    assert inside.min() > 0 and inside.max() < 255  # a 1.5x box contains its keypoints
    # Evaluation from landmarks (PRNet) uses float keypoints and 1.6.
    _, eval_size = crop.crop_center_size(crop.box_from_keypoints(pt2d, truncate=False), 1.6)
    raw = (pt2d.max(0) - pt2d.min(0)).sum() / 2
    assert eval_size == int(raw * 1.6)


def test_detector_box_variant():
    box = np.array([100.0, 50.0, 200.0, 170.0])
    center, size = crop.crop_center_size(box, crop.DETECTOR_SCALE, crop.DETECTOR_SHIFT_Y)
    np.testing.assert_allclose(center, [150, 110 + 0.14 * 110])
    assert size == int(110 * 1.58)
    transform = crop.crop_from_detector_box(box, 256)
    np.testing.assert_allclose(crop.similarity_scale(transform), 255 / size)


@pytest.mark.parametrize("xp", [np, jnp])
def test_crop_uncrop_round_trip_and_z(xp):
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 450, (5, 100, 3))
    transform = crop.crop_from_keypoints(points[:, :68], 256, scale=1.6)
    theta = rng.uniform(-0.7, 0.7, 5)  # an augmentation rotation composed on top
    rot = np.zeros((5, 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = (
        np.cos(theta),
        -np.sin(theta),
        np.sin(theta),
        np.cos(theta),
    )
    rot[:, 2, 2] = 1
    transform = rot @ transform
    cropped = crop.crop_vertices(xp.asarray(points), xp.asarray(transform), shift_z=False)
    rtol = 1e-12 if xp is np else 1e-6  # JAX runs in float32 here
    np.testing.assert_allclose(
        np.asarray(cropped[..., 2]), points[..., 2] * crop.similarity_scale(transform)[:, None], rtol=rtol
    )
    back = crop.uncrop(cropped, xp.asarray(transform))
    np.testing.assert_allclose(np.asarray(back), points, atol=1e-4 if xp is np else 3e-4)
    shifted = crop.crop_vertices(points, transform)
    np.testing.assert_allclose(shifted[..., 2].min(-1), 0, atol=1e-12)
    z = np.asarray(cropped[..., 2])
    np.testing.assert_allclose(
        shifted[..., 2] - z, np.broadcast_to(-z.min(-1, keepdims=True), z.shape), atol=1e-4
    )
    # Whole (B, S, S, 3) maps with per-sample transforms.
    maps = rng.uniform(0, 255, (5, 4, 4, 3))
    np.testing.assert_allclose(
        crop.uncrop(maps, transform)[:, 1, 2], crop.uncrop(maps[:, 1, 2], transform), atol=1e-9
    )


def test_fused_fit_matches_step_by_step():
    model = grid_model.make_grid_face_model(20, 20, num_shape=199, num_exp=29)
    mat_pose = np.array(
        [[-0.13, -0.77, 0.056, 183.6, 189.5, -81.7, 1.3e-3], [0.2, 0.4, -0.3, 230, 210, -110, 1.4e-3]]
    )
    rng = np.random.default_rng(3)
    alpha = rng.normal(size=(2, 199)) * model.shape_std
    beta = rng.normal(size=(2, 29)) * model.exp_std
    image = pose.fit_to_image_vertices(
        model, alpha.astype(np.float32), beta.astype(np.float32), mat_pose, 450
    )
    transform = crop.crop_from_keypoints(image[:, model.kpt_ind], 256, 1.5)
    expected = crop.crop_vertices(image, transform)
    for xp in (np, jnp):
        got, got_transform = ground_truth.fit_to_crop_vertices(
            model.mean,
            model.shape_basis,
            model.exp_basis,
            model.kpt_ind,
            xp.asarray(alpha, np.float32),
            xp.asarray(beta, np.float32),
            xp.asarray(mat_pose),
            450,
            256,
            1.5,
        )
        np.testing.assert_allclose(np.asarray(got_transform), transform, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(got), expected, atol=2e-3)
        assert np.asarray(got)[..., 2].min() == 0
