"""Evaluation metrics of the AFLW2000-3D protocols (docs/evaluation.md).

All errors are returned as ratios (0.0362, not 3.62 %); `prn_jax.evaluation.report` shows them in percent.

Frames: point arrays are in the original image frame, pixels, x right, y down, z toward the
camera (the frame of AFLW2000-3D's `pt3d_68`), unless a docstring says otherwise. Predictions
reach this frame by uncropping the network output (crop -> predict -> uncrop).

Landmark and dense NMEs are jit-compiled JAX functions (they run on whatever device holds the
arrays); yaw bucketing, subset selection, CED curves and ICP are NumPy/SciPy host code.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

NUM_LANDMARKS = 68
# 0-based indices of the outer eye corners in the 68-point (iBUG/Multi-PIE) markup.
OUTER_EYE_CORNERS = (36, 45)
# Upper edges (degrees of |yaw|) of the three buckets; each bucket is (previous edge, edge].
YAW_BUCKET_EDGES = (30.0, 60.0)
BUCKET_NAMES = ("0-30", "30-60", "60-90")


def _check_points(name: str, x, ndim: int, num_points: int | None, min_coords: int) -> None:
    shape = np.shape(x)
    if len(shape) != ndim or (num_points is not None and shape[-2] != num_points) or shape[-1] < min_coords:
        want = f"{'(N, ' if ndim == 3 else '('}{num_points or 'P'}, >={min_coords})"
        raise ValueError(f"{name}: expected shape {want}, got {shape}")


def _check_dims(dims: int) -> None:
    if dims not in (2, 3):
        raise ValueError(f"dims: expected 2 or 3, got {dims!r}")


NORMALISERS = ("box", "diagonal")


def _box_size(kpts_2d: jax.Array, normaliser: str = "box") -> jax.Array:
    """(N, K, >=2) points -> (N,): sqrt(w * h) of their axis-aligned box ("box", PRNet's and
    3DDFA's normaliser) or its diagonal sqrt(w^2 + h^2) ("diagonal", used by some papers)."""
    xy = kpts_2d[..., :2]
    wh = jnp.max(xy, axis=-2) - jnp.min(xy, axis=-2)
    if normaliser == "diagonal":
        return jnp.sqrt(wh[..., 0] ** 2 + wh[..., 1] ** 2)
    return jnp.sqrt(wh[..., 0] * wh[..., 1])


def _mean_point_error(pred: jax.Array, gt: jax.Array, dims: int) -> jax.Array:
    """Mean per-point L2 distance of (N, P, >=dims) arrays -> (N,).

    For dims=3 the z of prediction and ground truth are each shifted so that their minimum over
    the P points of a sample is 0: absolute depth is not observable from one image.
    """
    pred = pred[..., :dims]
    gt = gt[..., :dims]
    if dims == 3:
        pred = pred.at[..., 2].add(-jnp.min(pred[..., 2], axis=-1, keepdims=True))
        gt = gt.at[..., 2].add(-jnp.min(gt[..., 2], axis=-1, keepdims=True))
    return jnp.mean(jnp.linalg.norm(pred - gt, axis=-1), axis=-1)


@functools.partial(jax.jit, static_argnames=("dims", "normaliser"))
def _nme(pred, gt, gt_kpts, dims, normaliser="box"):
    return _mean_point_error(pred, gt, dims) / _box_size(gt_kpts, normaliser)


def nme_68(pred, gt, dims: int = 2, normaliser: str = "box") -> jax.Array:
    """68-point normalised mean error, per sample.

    Args:
      pred: (N, 68, >=dims) float, predicted landmarks, original image pixels.
      gt: (N, 68, >=dims) float, ground-truth landmarks (AFLW2000-3D `pt3d_68` transposed).
      dims: 2 (x, y) or 3 (x, y, z with each sample's pred z and gt z shifted to min 0).
      normaliser: "box" (sqrt(w * h) of the GT 68-point x-y box) or "diagonal" (its diagonal).

    Returns:
      (N,) float32: mean per-point L2 error / the normaliser.
    """
    _check_dims(dims)
    _check_points("pred", pred, 3, NUM_LANDMARKS, dims)
    _check_points("gt", gt, 3, NUM_LANDMARKS, dims)
    if normaliser not in NORMALISERS:
        raise ValueError(f"normaliser: expected one of {NORMALISERS}, got {normaliser!r}")
    return _nme(pred, gt, gt, dims, normaliser)


def dense_nme(pred_pts, gt_pts, gt_kpts_2d, dims: int = 2) -> jax.Array:
    """Dense alignment normalised mean error over the face-mask points, per sample.

    Args:
      pred_pts: (N, P, >=dims) float, predicted dense points (position-map pixels under the
        face mask, uncropped), original image pixels.
      gt_pts: (N, P, >=dims) float, ground-truth points in the same order.
      gt_kpts_2d: (N, 68, >=2) float, ground-truth landmarks; their x-y box normalises, as in
        `nme_68`.
      dims: 2 or 3 (z of each sample shifted to min 0 over its P points, pred and gt apart).

    Returns:
      (N,) float32 ratios.
    """
    _check_dims(dims)
    _check_points("pred_pts", pred_pts, 3, None, dims)
    _check_points("gt_pts", gt_pts, 3, None, dims)
    _check_points("gt_kpts_2d", gt_kpts_2d, 3, NUM_LANDMARKS, 2)
    if np.shape(pred_pts)[:2] != np.shape(gt_pts)[:2]:
        raise ValueError(
            f"pred_pts, gt_pts: (N, P) differ: {np.shape(pred_pts)[:2]} vs {np.shape(gt_pts)[:2]}"
        )
    return _nme(pred_pts, gt_pts, gt_kpts_2d, dims)


# ----------------------------------------------------------------------------- yaw buckets


def yaw_buckets(yaw_deg) -> np.ndarray:
    """Bucket index of each sample by |yaw| in degrees.

    0: |yaw| in [0, 30]; 1: (30, 60]; 2: (60, 90]. An edge value belongs to the lower bucket
    (30.0 -> 0, 60.0 -> 1). |yaw| > 90 (AFLW2000-3D has a few) goes to bucket 2.

    Args:
      yaw_deg: (N,) float, yaw in degrees (AFLW2000-3D: degrees(Pose_Para[0, 1])).

    Returns:
      (N,) int64 in {0, 1, 2}.
    """
    yaw = np.abs(np.asarray(yaw_deg, dtype=np.float64))
    if yaw.ndim != 1:
        raise ValueError(f"yaw_deg: expected shape (N,), got {yaw.shape}")
    if not np.all(np.isfinite(yaw)):
        raise ValueError("yaw_deg: contains NaN or inf")
    return np.searchsorted(np.asarray(YAW_BUCKET_EDGES), yaw, side="left").astype(np.int64)


def bucket_means(errors, yaw_deg) -> dict:
    """Per-|yaw|-bucket mean errors and their mean (the paper's "Mean" column).

    Args:
      errors: (N,) float, per-sample errors (ratios).
      yaw_deg: (N,) float, yaw in degrees.

    Returns:
      {"0-30": m0, "30-60": m1, "60-90": m2, "mean": (m0 + m1 + m2) / 3, "all": plain mean over
      all N samples, "counts": {"0-30": n0, "30-60": n1, "60-90": n2}} with Python floats/ints.
      An empty bucket has mean NaN, and then "mean" is NaN too: a mean over fewer buckets would
      not be comparable with published numbers.
    """
    errors = np.asarray(errors, dtype=np.float64)
    buckets = yaw_buckets(yaw_deg)
    if errors.shape != buckets.shape:
        raise ValueError(f"errors, yaw_deg: shapes differ: {errors.shape} vs {buckets.shape}")
    out: dict = {"counts": {}}
    means = []
    for b, name in enumerate(BUCKET_NAMES):
        sel = errors[buckets == b]
        m = float(np.mean(sel)) if sel.size else float("nan")
        out[name] = m
        out["counts"][name] = int(sel.size)
        means.append(m)
    out["mean"] = float(np.mean(means))
    out["all"] = float(np.mean(errors)) if errors.size else float("nan")
    return out


def balanced_subset(yaw_deg, seed: int, per_bucket: int | None = None) -> np.ndarray:
    """Indices of a subset with equally many samples in each |yaw| bucket.

    Args:
      yaw_deg: (N,) float, yaw in degrees.
      seed: seed of the numpy Generator that draws the samples (same seed -> same subset).
      per_bucket: samples drawn from each bucket, without replacement; default: the size of the
        smallest bucket.

    Returns:
      (3 * per_bucket,) int64 indices into yaw_deg, sorted ascending.
    """
    buckets = yaw_buckets(yaw_deg)
    members = [np.flatnonzero(buckets == b) for b in range(len(BUCKET_NAMES))]
    smallest = min(len(m) for m in members)
    if per_bucket is None:
        per_bucket = smallest
    if not 0 <= per_bucket <= smallest:
        counts = {n: len(m) for n, m in zip(BUCKET_NAMES, members)}
        raise ValueError(f"per_bucket: {per_bucket} not in [0, {smallest}]; bucket sizes {counts}")
    rng = np.random.default_rng(seed)
    picked = [rng.choice(m, size=per_bucket, replace=False) for m in members]
    return np.sort(np.concatenate(picked)).astype(np.int64)


# ------------------------------------------------------------------------------------- ICP


class SimilarityTransform(NamedTuple):
    """x -> scale * x @ rotation.T + translation, for row-vector points (P, 3)."""

    scale: float
    rotation: np.ndarray  # (3, 3) float64, proper rotation (det +1)
    translation: np.ndarray  # (3,) float64

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation


def fit_similarity(source: np.ndarray, target: np.ndarray, similarity: bool) -> SimilarityTransform:
    """Least-squares transform of corresponding points source[i] -> target[i] (Kabsch/Umeyama).

    Args:
      source, target: (P, 3) float, corresponding rows.
      similarity: also fit a uniform scale (Umeyama 1991); otherwise scale is 1 (Kabsch).
    """
    mu_s, mu_t = source.mean(0), target.mean(0)
    s0, t0 = source - mu_s, target - mu_t
    u, sv, vt = np.linalg.svd(t0.T @ s0 / len(source))
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u) * np.linalg.det(vt))  # -1 would be a reflection: flip back
    rotation = (u * d) @ vt
    scale = float(np.sum(sv * d) / np.mean(np.sum(s0**2, axis=1))) if similarity else 1.0
    return SimilarityTransform(scale, rotation, mu_t - scale * rotation @ mu_s)


def _rms_radius(points: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((points - points.mean(0)) ** 2, axis=1))))


def icp(
    source,
    target,
    iters: int = 50,
    similarity: bool = False,
    tol: float = 1e-10,
) -> tuple[np.ndarray, SimilarityTransform]:
    """Iterative closest point: align point cloud `source` to point cloud `target`.

    Starts from the centroid alignment (plus the RMS-radius scale ratio if `similarity`), then
    alternates nearest-neighbour correspondences (scipy cKDTree on target) and a least-squares
    transform of the original source onto its current neighbours. Stops after `iters`
    iterations or when the mean neighbour distance changes by less than `tol` (same units as
    the points).

    Args:
      source: (P, 3) float, e.g. predicted vertices.
      target: (Q, 3) float, e.g. ground-truth vertices, same frame and units.
      iters: maximum number of iterations.
      similarity: fit a uniform scale too (Umeyama) instead of a rigid transform.
      tol: convergence threshold on the change of the mean neighbour distance.

    Returns:
      (aligned source (P, 3) float64, the transform that maps source to it).
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    _check_points("source", source, 2, None, 3)
    _check_points("target", target, 2, None, 3)
    tree = cKDTree(target)
    mu_s, mu_t = source.mean(0), target.mean(0)
    scale = 1.0
    if similarity:
        scale = float(_rms_radius(target) / _rms_radius(source))
    transform = SimilarityTransform(scale, np.eye(3), mu_t - scale * mu_s)
    aligned = transform.apply(source)
    previous = np.inf
    for _ in range(iters):
        dist, nearest = tree.query(aligned)
        transform = fit_similarity(source, target[nearest], similarity)
        aligned = transform.apply(source)
        current = float(np.mean(dist))
        if abs(previous - current) < tol:
            break
        previous = current
    return aligned, transform


def outer_interocular(kpts) -> np.ndarray:
    """Distance between the outer eye corners (68-point indices 36 and 45, 0-based).

    Args:
      kpts: (..., 68, D) float landmarks; all D coordinates are used (pass [..., :2] for 2D).

    Returns:
      (...) float64 distances, same units as kpts.
    """
    kpts = np.asarray(kpts, dtype=np.float64)
    if kpts.ndim < 2 or kpts.shape[-2] != NUM_LANDMARKS:
        raise ValueError(f"kpts: expected shape (..., 68, D), got {kpts.shape}")
    a, b = OUTER_EYE_CORNERS
    return np.linalg.norm(kpts[..., a, :] - kpts[..., b, :], axis=-1)


def reconstruction_nme(
    pred_pts,
    gt_pts,
    outer_interocular: float,
    iters: int = 50,
    similarity: bool = False,
) -> float:
    """3D reconstruction error of one sample: ICP, then mean nearest-neighbour distance.

    The prediction is aligned to the ground truth by `icp`; the error is the mean distance from
    each aligned predicted point to its nearest ground-truth point, divided by the outer
    interocular distance (PRNet's Florence protocol).

    Args:
      pred_pts: (P, 3) float, predicted vertices.
      gt_pts: (Q, 3) float, ground-truth vertices, same units.
      outer_interocular: float, normaliser in the same units (see `outer_interocular`).
      iters, similarity: passed to `icp`.

    Returns:
      float ratio.
    """
    if not outer_interocular > 0:
        raise ValueError(f"outer_interocular: expected > 0, got {outer_interocular}")
    aligned, _ = icp(pred_pts, gt_pts, iters=iters, similarity=similarity)
    dist, _ = cKDTree(np.asarray(gt_pts, dtype=np.float64)).query(aligned)
    return float(np.mean(dist) / outer_interocular)


# ------------------------------------------------------------------------------------- CED


def ced_curve(errors, max_error: float = 0.1, num: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution.

    Args:
      errors: (N,) float, per-sample errors (ratios).
      max_error: largest threshold.
      num: number of thresholds, evenly spaced on [0, max_error].

    Returns:
      (thresholds (num,) float64, fraction of samples with error <= threshold (num,) float64).
    """
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim != 1 or errors.size == 0:
        raise ValueError(f"errors: expected a non-empty (N,) array, got shape {errors.shape}")
    thresholds = np.linspace(0.0, max_error, num)
    fraction = np.searchsorted(np.sort(errors), thresholds, side="right") / errors.size
    return thresholds, fraction


def ced_auc(errors, max_error: float = 0.1) -> float:
    """Area under the CED curve on [0, max_error], divided by max_error (1 = all errors 0).

    Exact: each sample contributes max(0, max_error - error) to the area.
    """
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim != 1 or errors.size == 0:
        raise ValueError(f"errors: expected a non-empty (N,) array, got shape {errors.shape}")
    return float(np.mean(np.clip(max_error - errors, 0.0, None)) / max_error)
