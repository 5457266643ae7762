"""The AFLW2000-3D evaluation protocol (docs/evaluation.md): crop by the 1.6 rule from the
ground-truth landmarks, predict a position map, uncrop it to the original image, score it.

Examples are dicts of decoded numpy arrays, one per image ("image", "pt3d_68", "yaw_deg",
optional "file_id", "position_map", "crop_transform"): the interface of `prn_jax.data.eval_data`,
whose docstring gives shapes and frames.

The evaluation crop is PRNet's rule on AFLW2000-3D (box of the float landmarks, side
int(1.6 * (w + h) / 2)); a record's own "crop_transform" is only used to uncrop its GT map.

A predictor is `predict_fn(crops) -> maps`: crops (B, S, S, 3) float32 in [0, 1] (RGB, crop of
the original image), maps (B, S, S, 3) float32 position maps in crop pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
from scipy.spatial import cKDTree

from prn_jax.data import formats
from prn_jax.evaluation import metrics
from prn_jax.geometry import crop, mesh_io
from prn_jax.geometry import uv_assets as uv_assets_lib
from prn_jax.inference import PredictFn, crop_image

# Metric keys, in prn_jax.evaluation.report.METRIC_COLUMNS order.
LANDMARK_METRICS = ("nme2d_68", "nme3d_68", "nme2d_68_diag")  # _diag: box-diagonal normaliser
DENSE_METRICS = ("nme2d_dense", "nme3d_dense")
RECONSTRUCTION_METRIC = "reconstruction"
ALL_METRICS = LANDMARK_METRICS + DENSE_METRICS + (RECONSTRUCTION_METRIC,)
RECONSTRUCTION_POINTS = 4000  # dense points (same UV pixels in prediction and GT) fed to ICP
# Largest median 2D NME between ground-truth maps' landmarks and pt3d_68 for which dense and
# reconstruction errors are reported (`ground_truth_landmark_errors`; BUILD_NOTES, "Evaluation",
# has the values measured on synthetic and real data).
GT_LANDMARK_TOLERANCE = 0.03


def crop_transforms(pt3d_68: np.ndarray, size: int, scale: float = crop.LANDMARK_SCALE) -> np.ndarray:
    """(B, 68, >=2) GT landmarks (image pixels) -> (B, 3, 3) float64 image -> crop similarities.

    PRNet's landmark rule on AFLW2000-3D: tight box of the landmarks (not truncated to int),
    side int((w + h) / 2 * 1.6), centred on the box.
    """
    return crop.crop_from_keypoints(np.asarray(pt3d_68, np.float64), size, scale=scale, truncate=False)


def _check_example(example: Mapping, index: int) -> str:
    name = str(example.get("file_id", f"example {index}"))
    for key in ("image", "pt3d_68", "yaw_deg"):
        if key not in example:
            raise KeyError(f"{name}: missing key {key!r}")
    if np.shape(example["pt3d_68"]) != (metrics.NUM_LANDMARKS, 3):
        raise ValueError(f"{name}: pt3d_68 has shape {np.shape(example['pt3d_68'])}, expected (68, 3)")
    return name


def gt_image_map(example: Mapping, size: int, name: str) -> np.ndarray | None:
    """The example's GT position map in original image pixels, or None when it has none."""
    if "position_map" not in example:
        return None
    pos = example["position_map"]
    if isinstance(pos, bytes):  # tfds record: `formats.encode_position_map` bytes
        pos = formats.decode_position_map(pos, size)
    pos = np.asarray(pos, np.float32)
    if pos.shape != (size, size, 3):
        raise ValueError(
            f"{name}: position_map has shape {pos.shape}; the evaluated model's maps are "
            f"({size}, {size}, 3) (UV layouts must match)"
        )
    if "crop_transform" in example:
        pos = crop.uncrop(pos, np.asarray(example["crop_transform"], np.float32))
    return pos


def ground_truth_landmark_errors(examples: Iterable[Mapping], assets: uv_assets_lib.UVAssets) -> np.ndarray:
    """(M,) 2D NME between each ground-truth map's 68 landmarks (read at the keypoint UV pixels)
    and the annotated pt3d_68, over the M examples that have a map. A map rendered from fits
    through the face model they were fitted with lands close (GT_LANDMARK_TOLERANCE); fits pushed
    through another model land far off, and their dense and reconstruction "ground truth" is then
    wrong."""
    errors = []
    for i, ex in enumerate(examples):
        name = _check_example(ex, i)
        gt_map = gt_image_map(ex, assets.size, name)
        if gt_map is None:
            continue
        kpts = mesh_io.landmarks_from_position_map(gt_map.astype(np.float64), np.asarray(assets.kpt_uv))
        gt = np.asarray(ex["pt3d_68"], np.float64)
        errors.append(float(metrics.nme_68(kpts[None], gt[None], dims=2)[0]))
    return np.asarray(errors, np.float64)


def _subsample(face_indices: np.ndarray, count: int, seed: int) -> np.ndarray:
    if count >= len(face_indices):
        return np.arange(len(face_indices))
    return np.sort(np.random.default_rng(seed).choice(len(face_indices), count, replace=False))


def _batches(examples: Iterable[Mapping], batch_size: int) -> Iterator[list]:
    batch = []
    for example in examples:
        batch.append(example)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate(
    examples: Iterable[Mapping],
    predict_fn: PredictFn,
    assets: uv_assets_lib.UVAssets,
    batch_size: int = 16,
    crop_scale: float | None = crop.LANDMARK_SCALE,
    reconstruction_points: int | None = RECONSTRUCTION_POINTS,
    icp_similarity: bool = False,
    seed: int = 0,
) -> dict:
    """Crop -> predict -> uncrop -> per-image errors.

    Args:
      examples: iterable of example dicts (module docstring).
      predict_fn: crops (B, S, S, 3) float32 [0, 1] -> (B, S, S, 3) crop-pixel maps.
      assets: UV assets at S (keypoint pixels, face-mask indices).
      batch_size: images per `predict_fn` call.
      crop_scale: box enlargement of the crop (1.6: PRNet on landmarks); None: the images are
        already crops at the map size S (a validation split's records) and are used as they are.
      reconstruction_points: dense points per image fed to ICP (the same seeded UV-pixel subset
        of prediction and GT, for speed); None: all face-mask points; 0: no reconstruction error.
      icp_similarity: similarity (scale too) instead of rigid ICP.
      seed: seed of the reconstruction subsample.

    Returns:
      {"file_ids": [N str], "yaw_deg": (N,) float64,
       "errors": {metric: (N,) float64 ratios, NaN where the image has no GT map}}
      with metric in ALL_METRICS; dense and reconstruction only when some image has a GT map.
    """
    size = assets.size
    kpt_uv = np.asarray(assets.kpt_uv)
    face_indices = np.asarray(assets.face_indices)
    subset = _subsample(face_indices, reconstruction_points or len(face_indices), seed)
    file_ids, yaws = [], []
    errors = {k: [] for k in ALL_METRICS}
    count = 0
    for batch in _batches(examples, batch_size):
        names = [_check_example(ex, count + i) for i, ex in enumerate(batch)]
        count += len(batch)
        gt = np.stack([np.asarray(ex["pt3d_68"], np.float64) for ex in batch])
        if crop_scale is None:
            transforms = np.broadcast_to(np.eye(3), (len(batch), 3, 3))
        else:
            transforms = crop_transforms(gt, size, crop_scale)
        crops = np.stack([crop_image(ex["image"], t, size) for ex, t in zip(batch, transforms)])
        pred_crop = np.asarray(predict_fn(crops), np.float64)
        if pred_crop.shape != (len(batch), size, size, 3):
            raise ValueError(f"predict_fn returned {pred_crop.shape}, expected {(len(batch), size, size, 3)}")
        pred = crop.uncrop(pred_crop, transforms)
        pred_kpt = mesh_io.landmarks_from_position_map(pred, kpt_uv)
        errors["nme2d_68"] += np.asarray(metrics.nme_68(pred_kpt, gt, dims=2), np.float64).tolist()
        errors["nme3d_68"] += np.asarray(metrics.nme_68(pred_kpt, gt, dims=3), np.float64).tolist()
        errors["nme2d_68_diag"] += np.asarray(
            metrics.nme_68(pred_kpt, gt, dims=2, normaliser="diagonal"), np.float64
        ).tolist()
        pred_dense = mesh_io.vertices_from_position_map(pred, face_indices)
        for i, (ex, name) in enumerate(zip(batch, names)):
            gt_map = gt_image_map(ex, size, name)
            if gt_map is None:
                for key in DENSE_METRICS + (RECONSTRUCTION_METRIC,):
                    errors[key].append(math.nan)
                continue
            gt_dense = mesh_io.vertices_from_position_map(gt_map.astype(np.float64), face_indices)
            for key, dims in zip(DENSE_METRICS, (2, 3)):
                errors[key].append(
                    float(
                        metrics.dense_nme(pred_dense[i : i + 1], gt_dense[None], gt[i : i + 1], dims=dims)[0]
                    )
                )
            if reconstruction_points == 0:
                errors[RECONSTRUCTION_METRIC].append(math.nan)
                continue
            errors[RECONSTRUCTION_METRIC].append(
                reconstruction_error(
                    pred_dense[i, subset],
                    gt_dense[subset],
                    float(metrics.outer_interocular(gt[i])),
                    similarity=icp_similarity,
                )
            )
        file_ids += names
        yaws += [float(ex["yaw_deg"]) for ex in batch]
    if count == 0:
        raise ValueError("examples: empty")
    out = {k: np.asarray(v, np.float64) for k, v in errors.items()}
    out = {k: v for k, v in out.items() if k in LANDMARK_METRICS or np.isfinite(v).any()}
    return {"file_ids": file_ids, "yaw_deg": np.asarray(yaws, np.float64), "errors": out}


def reconstruction_error(pred_pts, gt_pts, interocular: float, similarity: bool = False) -> float:
    """Symmetric reconstruction error of one image: `metrics.icp` aligns the prediction to the
    GT, then the mean nearest-neighbour distance pred -> GT and GT -> pred, averaged, divided by
    the outer interocular distance.

    The paper's error is one-directional (pred -> GT, `metrics.reconstruction_nme`); that lets a
    collapsed prediction (all points on one spot, as an untrained network gives) score 0, so
    both directions are averaged here.

    Args:
      pred_pts: (P, 3), gt_pts: (Q, 3) float, same units; interocular: normaliser, same units.
    """
    if not interocular > 0:
        raise ValueError(f"interocular: expected > 0, got {interocular}")
    gt_pts = np.asarray(gt_pts, np.float64)
    aligned, _ = metrics.icp(pred_pts, gt_pts, similarity=similarity)
    to_gt, _ = cKDTree(gt_pts).query(aligned)
    to_pred, _ = cKDTree(aligned).query(gt_pts)
    return float((np.mean(to_gt) + np.mean(to_pred)) / 2 / interocular)


def summarise(result: Mapping, indices: np.ndarray | None = None, ced_max_error: float = 0.1) -> dict:
    """Table-1 row of an `evaluate` result: {metric: metrics.bucket_means(...) + "ced_auc"}.

    Images without a value for a metric (no GT map) are left out of that metric. `indices`
    selects a subset (e.g. `metrics.balanced_subset`). Adds "n": number of images.
    """
    yaw = result["yaw_deg"]
    if indices is None:
        indices = np.arange(len(yaw))
    row: dict = {"n": int(len(indices))}
    for key, values in result["errors"].items():
        values = values[indices]
        keep = np.isfinite(values)
        if not keep.any():
            continue
        row[key] = metrics.bucket_means(values[keep], yaw[indices][keep])
        row[key]["ced_auc"] = metrics.ced_auc(values[keep], ced_max_error)
    return row
