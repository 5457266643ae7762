"""Tests of prn_jax.evaluation.metrics: hand-computed values, ICP recovery, real AFLW2000-3D annotations."""

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from scipy.spatial.transform import Rotation

from prn_jax.evaluation import metrics


def _shared_dir() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2] / "shared"]
    if os.environ.get("PRN_JAX_SHARED"):
        candidates.append(Path(os.environ["PRN_JAX_SHARED"]))
    return next((p for p in candidates if p.is_dir()), None)


def _aflw_mats() -> list[Path]:
    shared = _shared_dir()
    if shared is None:
        pytest.skip("../shared (or $PRN_JAX_SHARED) is absent: no real AFLW2000-3D fixtures")
    mats = sorted((shared / "fixtures/real/aflw2000_3d").glob("*.mat"))
    if not mats:
        pytest.skip(f"no .mat files in {shared / 'fixtures/real/aflw2000_3d'}")
    return mats


def _square_landmarks(n: int = 1) -> np.ndarray:
    """(n, 68, 3) landmarks whose x-y box is 40 wide and 10 high (sqrt(w*h) = 20)."""
    rng = np.random.default_rng(0)
    pts = np.zeros((n, 68, 3), np.float32)
    pts[..., 0] = rng.uniform(100, 140, (n, 68))
    pts[..., 1] = rng.uniform(50, 60, (n, 68))
    pts[..., 2] = rng.uniform(-30, 30, (n, 68))
    pts[:, 0, :2] = [100, 50]  # pin the box corners
    pts[:, 1, :2] = [140, 60]
    return pts


# ------------------------------------------------------------------------------ 68-point NME


def test_nme_perfect_prediction_is_zero():
    gt = _square_landmarks(3)
    np.testing.assert_array_equal(metrics.nme_68(gt, gt, dims=2), np.zeros(3))
    np.testing.assert_array_equal(metrics.nme_68(gt, gt, dims=3), np.zeros(3))


def test_nme_known_shift():
    gt = _square_landmarks(2)
    pred = gt + np.array([3.0, 4.0, 0.0], np.float32)  # every point off by 5 px in x-y
    np.testing.assert_allclose(metrics.nme_68(pred, gt, dims=2), [5 / 20, 5 / 20], rtol=1e-6)


def test_nme_3d_ignores_depth_offset_but_not_depth_shape():
    gt = _square_landmarks(1)
    gt[0, :, 2] = np.linspace(1.0, 10.0, 68)
    gt[0, 50, 2] = 0.0  # the z minimum lies in the second half
    offset = gt + np.array([0.0, 0.0, 100.0], np.float32)  # each z is shifted to min 0
    np.testing.assert_allclose(metrics.nme_68(offset, gt, dims=3), [0.0], atol=1e-7)
    np.testing.assert_allclose(metrics.nme_68(offset, gt, dims=2), [0.0], atol=1e-7)
    bent = gt.copy()
    bent[0, :34, 2] += 2.0  # first half 2 px nearer, minimum unchanged: mean error 1 px
    np.testing.assert_allclose(metrics.nme_68(bent, gt, dims=3), [1.0 / 20], rtol=1e-5)


def test_nme_hand_computed_two_points_off():
    gt = _square_landmarks(1)
    pred = gt.copy()
    pred[0, 10, 0] += 6.8  # one point 6.8 px off, one 13.6 px off
    pred[0, 20, 1] -= 13.6
    # mean over 68 points = (6.8 + 13.6) / 68 = 0.3 px; / sqrt(40 * 10)
    np.testing.assert_allclose(metrics.nme_68(pred, gt), [0.3 / 20], rtol=1e-5)


def test_nme_rejects_wrong_shape():
    with pytest.raises(ValueError, match="pred"):
        metrics.nme_68(np.zeros((2, 67, 3)), np.zeros((2, 68, 3)))
    with pytest.raises(ValueError, match="dims"):
        metrics.nme_68(np.zeros((2, 68, 3)), np.zeros((2, 68, 3)), dims=4)


def test_dense_nme_uses_landmark_box():
    kpts = _square_landmarks(1)
    gt = np.random.default_rng(1).uniform(0, 200, (1, 500, 3)).astype(np.float32)
    pred = gt + np.array([0.0, 2.0, 0.0], np.float32)
    np.testing.assert_allclose(metrics.dense_nme(pred, gt, kpts, dims=2), [2 / 20], rtol=1e-6)
    pred3 = gt + np.array([0.0, 0.0, 7.0], np.float32)
    np.testing.assert_allclose(metrics.dense_nme(pred3, gt, kpts, dims=3), [0.0], atol=1e-6)
    np.testing.assert_array_equal(metrics.dense_nme(gt, gt, kpts, dims=3), [0.0])


# ---------------------------------------------------------------------------- yaw buckets


def test_yaw_buckets_edges_and_clipping():
    yaw = [0.0, -30.0, 30.0001, 45.0, 60.0, -60.5, 90.0, 120.0, -179.0]
    np.testing.assert_array_equal(metrics.yaw_buckets(yaw), [0, 0, 1, 1, 1, 2, 2, 2, 2])
    with pytest.raises(ValueError, match="yaw_deg"):
        metrics.yaw_buckets([np.nan])


def test_bucket_means_hand_computed():
    errors = [0.01, 0.03, 0.04, 0.10, 0.20, 0.30]
    yaw = [5.0, -25.0, 45.0, 70.0, -85.0, 95.0]
    out = metrics.bucket_means(errors, yaw)
    assert out["counts"] == {"0-30": 2, "30-60": 1, "60-90": 3}
    assert out["0-30"] == pytest.approx(0.02)
    assert out["30-60"] == pytest.approx(0.04)
    assert out["60-90"] == pytest.approx(0.20)
    assert out["mean"] == pytest.approx((0.02 + 0.04 + 0.20) / 3)
    assert out["all"] == pytest.approx(0.68 / 6)


def test_bucket_means_empty_bucket_gives_nan_mean():
    out = metrics.bucket_means([0.01, 0.02], [10.0, 40.0])
    assert out["counts"]["60-90"] == 0
    assert np.isnan(out["60-90"]) and np.isnan(out["mean"])
    assert out["all"] == pytest.approx(0.015)


def test_balanced_subset():
    yaw = np.array([1, 2, 3, 4, 5, 40, 50, 55, 70, 80, -89, 99], float)  # 5 / 3 / 4 per bucket
    idx = metrics.balanced_subset(yaw, seed=0)
    assert len(idx) == 9 and len(set(idx.tolist())) == 9
    np.testing.assert_array_equal(np.bincount(metrics.yaw_buckets(yaw[idx])), [3, 3, 3])
    np.testing.assert_array_equal(idx, metrics.balanced_subset(yaw, seed=0))  # seeded
    assert np.all(np.diff(idx) > 0)
    two = metrics.balanced_subset(yaw, seed=1, per_bucket=2)
    np.testing.assert_array_equal(np.bincount(metrics.yaw_buckets(yaw[two])), [2, 2, 2])
    draws = {tuple(metrics.balanced_subset(yaw, seed=s)) for s in range(10)}
    assert len(draws) > 1  # the seed matters
    with pytest.raises(ValueError, match="per_bucket"):
        metrics.balanced_subset(yaw, seed=0, per_bucket=4)


# -------------------------------------------------------------------------------------- ICP


def _surface(n: int = 3000) -> np.ndarray:
    """A face-sized, asymmetric curved patch (pixels), irregularly sampled."""
    x, y = np.random.default_rng(1).uniform(-1, 1, (2, n))
    z = 0.6 * np.exp(-2 * (x**2 + y**2)) + 0.25 * x**2 * y + 0.15 * np.sin(2.5 * x + 0.7)
    return np.stack([x, y, z], 1) * 80 + [200, 220, 0]


@pytest.mark.parametrize("similarity, scale", [(False, 1.0), (True, 1.3)])
def test_icp_recovers_known_transform(similarity, scale):
    source = _surface()
    rotation = Rotation.from_euler("xyz", [10, -15, 8], degrees=True).as_matrix()
    translation = np.array([5.0, -7.0, 3.0])
    target = scale * source @ rotation.T + translation
    target = target[np.random.default_rng(2).permutation(len(target))]  # no given order
    aligned, transform = metrics.icp(source, target, iters=100, similarity=similarity)
    np.testing.assert_allclose(transform.rotation, rotation, atol=1e-4)
    np.testing.assert_allclose(transform.translation, translation, atol=1e-4)
    assert transform.scale == pytest.approx(scale, abs=1e-4)
    np.testing.assert_allclose(aligned, transform.apply(source))
    assert metrics.reconstruction_nme(source, target, 50.0, similarity=similarity) < 1e-6


def test_fit_similarity_never_reflects():
    source = _surface(200)
    mirrored = source * [-1, 1, 1]
    transform = metrics.fit_similarity(source, mirrored, similarity=False)
    assert np.linalg.det(transform.rotation) == pytest.approx(1.0)


def test_reconstruction_nme_rigid_motion_is_removed():
    gt = _surface(1500)
    rotation = Rotation.from_euler("x", 6, degrees=True).as_matrix()
    pred = gt @ rotation.T + [0.0, 0.0, 3.0]
    # iters=0 leaves only the initial centroid alignment: the tilt remains
    assert metrics.reconstruction_nme(pred, gt, 60.0, iters=0) > 0.01
    assert metrics.reconstruction_nme(pred, gt, 60.0) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="outer_interocular"):
        metrics.reconstruction_nme(pred, gt, 0.0)


def test_outer_interocular():
    kpts = np.zeros((2, 68, 3))
    kpts[:, 36] = [10, 20, 0]
    kpts[:, 45] = [13, 24, 12]
    np.testing.assert_allclose(metrics.outer_interocular(kpts), [13.0, 13.0])
    np.testing.assert_allclose(metrics.outer_interocular(kpts[0, :, :2]), 5.0)


# -------------------------------------------------------------------------------------- CED


def test_ced_curve_and_auc():
    errors = [0.01, 0.02, 0.02, 0.05]
    thresholds, fraction = metrics.ced_curve(errors, max_error=0.04, num=5)
    np.testing.assert_allclose(thresholds, [0.0, 0.01, 0.02, 0.03, 0.04])
    np.testing.assert_allclose(fraction, [0.0, 0.25, 0.75, 0.75, 0.75])
    # area: (0.03 + 0.02 + 0.02 + 0) / 4 / 0.04
    assert metrics.ced_auc(errors, max_error=0.04) == pytest.approx(0.4375)
    assert metrics.ced_auc([0.0], max_error=0.1) == pytest.approx(1.0)


# ------------------------------------------------------------------------ real AFLW2000-3D


def _load_aflw_landmarks() -> tuple[np.ndarray, np.ndarray]:
    mats = _aflw_mats()
    kpts, yaw = [], []
    for path in mats:
        mat = scipy.io.loadmat(path)
        kpts.append(mat["pt3d_68"].T)  # (3, 68) -> (68, 3), image pixels
        yaw.append(np.degrees(mat["Pose_Para"][0, 1]))
    return np.stack(kpts), np.array(yaw)


def test_real_aflw2000_perfect_and_one_pixel_shift():
    gt, yaw = _load_aflw_landmarks()
    np.testing.assert_array_equal(metrics.nme_68(gt, gt, dims=2), np.zeros(len(gt)))
    np.testing.assert_array_equal(metrics.nme_68(gt, gt, dims=3), np.zeros(len(gt)))
    shifted = gt + np.array([1.0, 0.0, 0.0], gt.dtype)
    box = gt[..., :2].astype(np.float64)
    wh = box.max(1) - box.min(1)
    expected = 1.0 / np.sqrt(wh[:, 0] * wh[:, 1])
    # float32 arithmetic: exact up to rounding
    np.testing.assert_allclose(metrics.nme_68(shifted, gt, dims=2), expected, rtol=1e-6)
    np.testing.assert_allclose(metrics.nme_68(shifted, gt, dims=3), expected, rtol=1e-6)
    counts = metrics.bucket_means(metrics.nme_68(shifted, gt), yaw)["counts"]
    assert sum(counts.values()) == len(gt)


def test_real_aflw2000_crop_predict_uncrop_roundtrip():
    """GT landmarks -> 1.6 landmark crop (256 px) -> "prediction" = GT in the crop -> uncrop."""
    from prn_jax.geometry import crop

    gt, _ = _load_aflw_landmarks()
    transform = crop.crop_from_keypoints(gt, 256, scale=crop.LANDMARK_SCALE)
    in_crop = crop.crop_vertices(gt, transform)
    assert in_crop[..., :2].min() >= 0 and in_crop[..., :2].max() <= 255  # face inside the crop
    pred = crop.uncrop(in_crop, transform)
    assert np.max(metrics.nme_68(pred, gt, dims=2)) < 1e-3
    assert np.max(metrics.nme_68(pred, gt, dims=3)) < 1e-3
