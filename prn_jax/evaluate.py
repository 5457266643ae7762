"""Evaluation on AFLW2000-3D-like data (REFERENCE.md section 6): crop by the 1.6 rule from the
ground-truth landmarks, predict a position map, uncrop it to the original image, score it.

Example interface (decoded numpy, one dict per image; what `examples_from_folder`, a tfds data
source of the AFLW2000-3D builder and tests all give):
  "image":   (H, W, 3) uint8, the original image.
  "pt3d_68": (68, 3) float, ground-truth landmarks, original image pixels, x right, y down,
             z toward the camera (AFLW2000-3D `pt3d_68` transposed).
  "yaw_deg": float, ground-truth yaw in degrees (degrees(Pose_Para[1])).
  "file_id": optional str, shown in metrics.json.
  "position_map": optional (S, S, 3) float ground-truth map at the evaluation map size S, in
             original image pixels - or in crop pixels when "crop_transform" (3, 3) (image ->
             crop similarity) is given too; bytes = `formats.encode_position_map` (tfds records).
             Needed for the dense and reconstruction metrics.
  "shape_para", "exp_para", "pose_para": optional fit (`Shape_Para`, `Exp_Para`, `Pose_Para`
             flattened); `with_fit_maps` turns them into "position_map" given the face model.

The evaluation crop is PRNet's rule on AFLW2000-3D (box of the float landmarks, side
int(1.6 * (w + h) / 2)); a record's own "crop_transform" is only used to uncrop its GT map.

A predictor is `predict_fn(crops) -> maps`: crops (B, S, S, 3) float32 in [0, 1] (RGB, crop of
the original image), maps (B, S, S, 3) float32 position maps in crop pixels.

Baseline ("learned nothing"): the morphable model's mean face, frontal (no rotation), placed
in the crop exactly as the ground-truth crop rule places a face: its own 68 keypoints give the
box, the 1.6 rule gives the crop. The map is the same for every image, so after uncropping the
face sits in each image's ground-truth crop box with only scale and translation from that box.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

from prn_jax import cli, formats, metrics, report
from prn_jax import model as model_lib
from prn_jax.geometry import crop, mesh_io, uv_assets as uv_assets_lib, uv_raster
from prn_jax.geometry import face_model as fm

# Metric keys, in prn_jax.report.METRIC_COLUMNS order.
LANDMARK_METRICS = ("nme2d_68", "nme3d_68")
DENSE_METRICS = ("nme2d_dense", "nme3d_dense")
RECONSTRUCTION_METRIC = "reconstruction"
ALL_METRICS = LANDMARK_METRICS + DENSE_METRICS + (RECONSTRUCTION_METRIC,)
CED_TITLES = {
    "nme2d_68": "68 points, 2D",
    "nme3d_68": "68 points, 3D",
    "nme2d_dense": "dense, 2D",
    "nme3d_dense": "dense, 3D",
}
RECONSTRUCTION_POINTS = 4000   # dense points (same UV pixels in prediction and GT) fed to ICP
BASELINE_FACE_PX = 200.0       # mean face keypoint box size before cropping (avoids int() effects)
BASELINE_NAME = "Baseline: mean face in GT crop"


PredictFn = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------ prediction


def predict_maps(model, variables, crops) -> jax.Array:
    """Network forward in inference mode.

    Args:
      model: the Flax module (`model.build_model(config)`, no axis name).
      variables: {"params": ..., "batch_stats": ...}.
      crops: (B, S, S, 3) float in [0, 1], RGB crops.

    Returns:
      (B, S, S, 3) float32 position maps in crop pixels (sigmoid output * 1.1 * S).
    """
    return _forward(model, variables, jnp.asarray(crops, jnp.float32))


@functools.partial(jax.jit, static_argnums=0)
def _forward(model, variables, crops):
    out = model.apply(variables, crops, train=False)
    return out * model_lib.position_scale(crops.shape[1])


def make_predict_fn(model, variables, batch_size: int) -> PredictFn:
    """A `predict_fn` that pads every call to `batch_size` so the network compiles once."""

    def predict(crops: np.ndarray) -> np.ndarray:
        n = len(crops)
        if n > batch_size:
            raise ValueError(f"crops: batch of {n} > batch_size {batch_size}")
        padded = np.zeros((batch_size,) + crops.shape[1:], np.float32)
        padded[:n] = crops
        return np.asarray(predict_maps(model, variables, padded))[:n]

    return predict


def constant_predictor(crop_map: np.ndarray) -> PredictFn:
    """A `predict_fn` that returns the same (S, S, 3) crop-pixel map for every crop."""
    crop_map = np.asarray(crop_map, np.float32)

    def predict(crops: np.ndarray) -> np.ndarray:
        return np.broadcast_to(crop_map, (len(crops),) + crop_map.shape).copy()

    return predict


# ------------------------------------------------------------------------------ cropping


def crop_transforms(pt3d_68: np.ndarray, size: int, scale: float = crop.LANDMARK_SCALE) -> np.ndarray:
    """(B, 68, >=2) GT landmarks (image pixels) -> (B, 3, 3) float64 image -> crop similarities.

    PRNet's landmark rule on AFLW2000-3D: tight box of the landmarks (not truncated to int),
    side int((w + h) / 2 * 1.6), centred on the box.
    """
    return crop.crop_from_keypoints(np.asarray(pt3d_68, np.float64), size, scale=scale, truncate=False)


def crop_image(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 image -> (S, S, 3) float32 crop in [0, 1], with exactly the resampling the
    training builder used (`formats.crop_image`: bilinear, black outside)."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image: expected (H, W, C), got {image.shape}")
    return formats.crop_image(image, transform, size).astype(np.float32) / 255.0


# ------------------------------------------------------------------------------ ground truth


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
        raise ValueError(f"{name}: position_map has shape {pos.shape}; the evaluated model's maps are "
                         f"({size}, {size}, 3) (UV layouts must match)")
    if "crop_transform" in example:
        pos = crop.uncrop(pos, np.asarray(example["crop_transform"], np.float32))
    return pos


def with_fit_maps(examples: Iterable[Mapping], model: fm.FaceModel, raster: uv_raster.UVRaster
                  ) -> Iterator[dict]:
    """Adds "position_map" (image pixels, z of the fit up to a shift) from each example's
    shape_para / exp_para / pose_para (face3d chain, `ground_truth.fit_to_position_maps`)."""
    from prn_jax.geometry import ground_truth

    matrix = uv_raster.raster_matrix(raster, model.num_vertices)
    for example in examples:
        if "position_map" in example or "shape_para" not in example:
            yield dict(example)
            continue
        maps, transform = ground_truth.fit_to_position_maps(
            model, raster, np.reshape(example["shape_para"], (1, -1)),
            np.reshape(example["exp_para"], (1, -1)), np.reshape(example["pose_para"], (1, 7)),
            image_height=np.shape(example["image"])[0], matrix=matrix)
        out = dict(example)
        out["position_map"] = np.asarray(crop.uncrop(maps[0], transform[0]), np.float32)
        yield out


# ------------------------------------------------------------------------------ evaluation


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
    crop_scale: float = crop.LANDMARK_SCALE,
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
      crop_scale: box enlargement of the crop (1.6: PRNet on landmarks).
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
        transforms = crop_transforms(gt, size, crop_scale)
        crops = np.stack([crop_image(ex["image"], t, size) for ex, t in zip(batch, transforms)])
        pred_crop = np.asarray(predict_fn(crops), np.float64)
        if pred_crop.shape != (len(batch), size, size, 3):
            raise ValueError(f"predict_fn returned {pred_crop.shape}, expected {(len(batch), size, size, 3)}")
        pred = crop.uncrop(pred_crop, transforms)
        pred_kpt = mesh_io.landmarks_from_position_map(pred, kpt_uv)
        errors["nme2d_68"] += np.asarray(metrics.nme_68(pred_kpt, gt, dims=2), np.float64).tolist()
        errors["nme3d_68"] += np.asarray(metrics.nme_68(pred_kpt, gt, dims=3), np.float64).tolist()
        pred_dense = mesh_io.vertices_from_position_map(pred, face_indices)
        for i, (ex, name) in enumerate(zip(batch, names)):
            gt_map = gt_image_map(ex, size, name)
            if gt_map is None:
                for key in DENSE_METRICS + (RECONSTRUCTION_METRIC,):
                    errors[key].append(math.nan)
                continue
            gt_dense = mesh_io.vertices_from_position_map(gt_map.astype(np.float64), face_indices)
            for key, dims in zip(DENSE_METRICS, (2, 3)):
                errors[key].append(float(metrics.dense_nme(pred_dense[i:i + 1], gt_dense[None],
                                                           gt[i:i + 1], dims=dims)[0]))
            if reconstruction_points == 0:
                errors[RECONSTRUCTION_METRIC].append(math.nan)
                continue
            errors[RECONSTRUCTION_METRIC].append(reconstruction_error(
                pred_dense[i, subset], gt_dense[subset], float(metrics.outer_interocular(gt[i])),
                similarity=icp_similarity))
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


# ------------------------------------------------------------------------------ baseline


def _to_image_frame(points: np.ndarray, kpts: np.ndarray) -> np.ndarray:
    """Flip y and/or z of a frontal face (P, 3) so that y points down (eyes above the mouth) and z
    toward the camera (nose tip nearer than the jaw corners); landmarks kpts (68, 3) decide."""
    sign = np.ones(3)
    if kpts[36:48, 1].mean() > kpts[48:68, 1].mean():
        sign[1] = -1.0
    if kpts[30, 2] < kpts[[0, 16], 2].mean():
        sign[2] = -1.0
    return points * sign


def mean_face_crop_map(frontal_map: np.ndarray, assets: uv_assets_lib.UVAssets,
                       crop_scale: float = crop.LANDMARK_SCALE) -> np.ndarray:
    """The baseline map: a frontal face placed in the crop by the ground-truth crop rule.

    Args:
      frontal_map: (S, S, 3) position map of a frontal mean face, any units; y up or down and z
        toward or away from the camera are detected from the landmarks and normalised.
      assets: UV assets at S.
      crop_scale: the evaluation crop rule's box enlargement.

    Returns:
      (S, S, 3) float32 crop pixels (min z 0 over the face mask, zeros outside it).
    """
    size = assets.size
    frontal = np.asarray(frontal_map, np.float64).reshape(-1, 3)
    kpts = mesh_io.landmarks_from_position_map(np.asarray(frontal_map, np.float64), assets.kpt_uv)
    frontal = _to_image_frame(frontal, kpts)
    kpts = _to_image_frame(kpts, kpts)
    box = crop.box_from_keypoints(kpts, truncate=False)
    frontal *= BASELINE_FACE_PX / ((box[2] - box[0] + box[3] - box[1]) / 2)
    kpts *= BASELINE_FACE_PX / ((box[2] - box[0] + box[3] - box[1]) / 2)
    transform = crop_transforms(kpts[None], size, crop_scale)[0]
    face = frontal[assets.face_indices]
    cropped = crop.crop_vertices(face, transform)
    out = np.zeros((size * size, 3), np.float32)
    out[assets.face_indices] = cropped
    return out.reshape(size, size, 3)


def frontal_map_from_model(model: fm.FaceModel, raster: uv_raster.UVRaster) -> np.ndarray:
    """(S, S, 3) the model's mean shape (model frame, y up) rendered into UV space."""
    return uv_raster.render_position_maps(model.mean.astype(np.float64), raster)


def frontal_map_from_prnet_uv_data(folder, assets: uv_assets_lib.UVAssets) -> np.ndarray:
    """(S, S, 3) PRNet's `canonical_vertices.npy` (frontal mean face at the face-mask pixels)."""
    path = Path(folder) / "canonical_vertices.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (PRNet uv-data folder; needed for the baseline)")
    vertices = np.load(path)
    if vertices.shape != (len(assets.face_indices), 3):
        raise ValueError(f"{path}: shape {vertices.shape}, expected ({len(assets.face_indices)}, 3)")
    out = np.zeros((assets.size * assets.size, 3))
    out[assets.face_indices] = vertices
    return out.reshape(assets.size, assets.size, 3)


# ------------------------------------------------------------------------------ data sources


def read_aflw_sample(image_path, mat_path) -> dict:
    """One AFLW2000-3D sample (`NAME.jpg` + `NAME.mat`, read by `prn_jax.formats`, whose
    FormatError names the file and key) as an example dict (module docstring), with the fit."""
    annotation = formats.read_aflw2000_annotation(mat_path)
    _, pixels = formats.read_rgb_image(image_path)
    fit = annotation.fit
    return {"image": pixels, "pt3d_68": annotation.pt3d_68, "yaw_deg": fit.yaw_degrees,
            "file_id": Path(image_path).stem, "pose_para": fit.pose, "shape_para": fit.shape_para,
            "exp_para": fit.exp_para}


def examples_from_folder(folder, limit: int | None = None) -> Iterator[dict]:
    """Example dicts of an AFLW2000-3D folder (`NAME.jpg` + `NAME.mat` pairs), sorted by name.

    Raises the first `formats.FormatError` when an image or `.mat` has no partner.
    """
    folder = Path(folder)
    pairs, problems = formats.pair_images_with_mats(folder)
    if problems:
        raise problems[0]
    if not pairs:
        raise FileNotFoundError(f"{folder}: no NAME.jpg + NAME.mat pairs (AFLW2000-3D layout)")
    for image_path, mat_path in pairs[:limit]:
        yield read_aflw_sample(image_path, mat_path)


def examples_from_tfds(directory) -> Sequence[dict]:
    """A prepared tfds dataset directory (with dataset_info.json) -> random-access examples."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(directory))
    split = "test" if "test" in builder.info.splits else next(iter(builder.info.splits))
    source = builder.as_data_source(split=split)

    class _Decoded(Sequence):
        def __len__(self):
            return len(source)

        def __getitem__(self, i):
            ex = dict(source[i])
            if isinstance(ex.get("file_id"), bytes):
                ex["file_id"] = ex["file_id"].decode()
            return ex

    return _Decoded()


def load_assets(model_dir, size: int):
    """UV assets at `size` and the baseline's frontal map from a model folder.

    `model_dir` holds either BFM.mat + BFM_UV.mat (face3d layout) or PRNet's uv-data files
    (uv_face_mask.png, ..., canonical_vertices.npy; 256 x 256 only).

    Returns:
      (assets, frontal map (S, S, 3), FaceModel and UVRaster or (None, None)).
    """
    model_dir = Path(model_dir)
    if (model_dir / "BFM.mat").is_file():
        model = fm.load_face_model(model_dir / "BFM.mat", model_dir / "BFM_UV.mat")
        raster = uv_raster.build_uv_raster(model.uv, model.full_triangles, size)
        assets = uv_assets_lib.uv_assets_from_model(model, raster)
        return assets, frontal_map_from_model(model, raster), model, raster
    if (model_dir / "uv_face_mask.png").is_file():
        assets = uv_assets_lib.load_prnet_uv_data(model_dir)
        if assets.size != size:
            raise ValueError(f"{model_dir}: PRNet uv-data is {assets.size}x{assets.size} but the model's "
                             f"maps are {size}x{size}; pass a BFM.mat + BFM_UV.mat folder instead")
        return assets, frontal_map_from_prnet_uv_data(model_dir, assets), None, None
    raise FileNotFoundError(f"{model_dir}: neither BFM.mat + BFM_UV.mat nor PRNet uv-data "
                            f"(uv_face_mask.png) found")


# ------------------------------------------------------------------------------ run directory


def restore_variables(workdir, checkpoint_step: int | None = None):
    """(config, step, {"params", "batch_stats"}) of a training run's checkpoint (latest default)."""
    import ml_collections

    from prn_jax import train
    from prn_jax.checkpointing import CheckpointError, Checkpointer

    workdir = Path(workdir)
    if not (workdir / "checkpoints").is_dir():
        raise CheckpointError(f"{workdir}: no checkpoints/ folder (not a prn-jax run directory)")
    probe = Checkpointer(workdir, ml_collections.ConfigDict({"keep_checkpoints": 1}))
    step = probe.latest_step() if checkpoint_step is None else checkpoint_step
    if step is None:
        raise CheckpointError(f"{probe.directory}: no checkpoint")
    if step not in probe.all_steps():
        raise CheckpointError(f"{probe.directory}: no checkpoint at step {step} "
                              f"(have {probe.all_steps()})")
    config = ml_collections.ConfigDict(probe.read_meta(step)["config"])
    probe.close()
    config.num_devices = 1  # evaluation restores onto one device whatever the run used
    trainer = train.Trainer(config)
    ckpt = Checkpointer(workdir, config)
    state = jax.device_get(ckpt.restore(step, trainer.abstract_state()))
    ckpt.close()
    return config, step, {"params": state.params, "batch_stats": state.batch_stats}


def _jsonable(value):
    """NaN/inf -> None, numpy -> Python, recursively (metrics.json has no bare NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_outputs(out_dir, rows: Mapping[str, Mapping], results: Mapping[str, Mapping],
                  info: Mapping, indices: np.ndarray | None = None) -> dict:
    """metrics.json, table1.md and ced_*.png (one per metric of CED_TITLES that has data).

    Args:
      rows: {method name: `summarise` row}; results: {method name: `evaluate` result}.
      info: provenance written into metrics.json (checkpoint, data, options).
      indices: the evaluated subset (balanced) or None for all images.

    Returns:
      {"metrics": path, "table": path, "ced": [paths]}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_image = {}
    for name, result in results.items():
        sel = np.arange(len(result["yaw_deg"])) if indices is None else indices
        per_image[name] = {"file_id": [result["file_ids"][i] for i in sel],
                           "yaw_deg": result["yaw_deg"][sel],
                           **{k: v[sel] for k, v in result["errors"].items()}}
    doc = {**info, "results": rows, "published": report.PRNET_PUBLISHED, "per_image": per_image}
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(_jsonable(doc), indent=1, allow_nan=False) + "\n")
    table_path = out_dir / "table1.md"
    header = [f"# AFLW2000-3D evaluation: {info.get('title', '')}".rstrip(), ""]
    table_path.write_text("\n".join(header) + "\n" + report.table1_markdown(rows))
    ced_paths = []
    for key, title in CED_TITLES.items():
        curves = {}
        for name, entry in per_image.items():
            values = np.asarray(entry.get(key, []), np.float64)
            values = values[np.isfinite(values)]
            if values.size:
                curves[name] = values
        if curves:
            ced_paths.append(report.plot_ced(curves, out_dir / f"ced_{key}.png", f"AFLW2000-3D, {title}"))
    return {"metrics": metrics_path, "table": table_path, "ced": ced_paths}


def _find_model_dir(data: Path) -> Path | None:
    for candidate in (data / "model", data.parent / "model"):
        if (candidate / "BFM.mat").is_file():
            return candidate
    return None


def load_examples(data: Path, limit: int | None) -> list[dict]:
    """AFLW2000-3D examples from a prepared tfds dir, an AFLW2000 folder or a synth root."""
    if (data / "dataset_info.json").is_file():
        source = examples_from_tfds(data)
        return [source[i] for i in range(len(source) if limit is None else min(limit, len(source)))]
    if (data / "AFLW2000").is_dir() and not any(data.glob("*.mat")):
        data = data / "AFLW2000"
    return list(examples_from_folder(data, limit))


def run_eval(workdir, checkpoint_step: int | None = None, data=None, out_dir=None, model_dir=None,
             balanced: bool = False, batch_size: int = 16, limit: int | None = None,
             seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Evaluate a run's checkpoint and the mean-face baseline; write the three outputs.

    Args:
      workdir: training run directory (checkpoints/).
      checkpoint_step: step to evaluate (default: latest).
      data: AFLW2000-3D folder (NAME.jpg + NAME.mat; or a synth root holding AFLW2000/), or a
        prepared tfds dataset directory.
      out_dir: where outputs go (default: WORKDIR/eval/<step>).
      model_dir: BFM.mat + BFM_UV.mat folder or PRNet uv-data folder (default: DATA/model or
        DATA/../model when it exists). A morphable model also gives GT maps from the fits.
      balanced: summarise on `metrics.balanced_subset(yaw, seed)` instead of all images.
      limit: evaluate only the first `limit` images.

    Returns:
      {"rows": {method: row}, "paths": write_outputs(...) result, "step": step}.
    """
    if data is None:
        raise ValueError("data: an AFLW2000-3D folder or tfds dataset directory is required")
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: no such data folder")
    config, step, variables = restore_variables(workdir, checkpoint_step)
    size = int(config.image_size)
    model_dir = Path(model_dir) if model_dir else _find_model_dir(data)
    if model_dir is None:
        raise FileNotFoundError(f"{data}: no model folder found; pass --model (BFM.mat + BFM_UV.mat "
                                f"or PRNet uv-data) for the keypoint UV pixels and face mask")
    assets, frontal, face, raster = load_assets(model_dir, size)
    log(f"evaluating {workdir} step {step} on {data} (maps {size}x{size}, assets from {model_dir})")
    examples = load_examples(data, limit)
    if face is not None:
        examples = list(with_fit_maps(examples, face, raster))
    network = model_lib.build_model(config)
    method = f"prn-jax step {step}"
    predictors = {method: make_predict_fn(network, variables, batch_size),
                  BASELINE_NAME: constant_predictor(mean_face_crop_map(frontal, assets))}
    results = {name: evaluate(examples, fn, assets, batch_size=batch_size, seed=seed)
               for name, fn in predictors.items()}
    yaw = results[method]["yaw_deg"]
    indices = metrics.balanced_subset(yaw, seed) if balanced else None
    rows = {name: summarise(r, indices) for name, r in results.items()}
    info = {"title": f"{Path(workdir).name} step {step}" + (" (balanced subset)" if balanced else ""),
            "workdir": str(Path(workdir).resolve()), "checkpoint_step": int(step), "data": str(data),
            "model_dir": str(model_dir), "image_size": size, "num_images": len(yaw),
            "subset": {"balanced": balanced, "seed": seed,
                       "indices": None if indices is None else indices.tolist()},
            "crop": f"GT 68-point box, scale {crop.LANDMARK_SCALE}",
            "reconstruction": f"rigid ICP on {RECONSTRUCTION_POINTS} seeded face-mask points (same UV "
                              f"pixels in both), symmetric mean NN distance / outer interocular "
                              f"(3D GT landmarks)",
            "baseline": "model mean face, frontal, placed by the GT crop box (scale+translation)"}
    out_dir = Path(out_dir) if out_dir else Path(workdir) / "eval" / str(step)
    paths = write_outputs(out_dir, rows, results, info, indices)
    log(f"wrote {paths['metrics']}, {paths['table']}, {len(paths['ced'])} CED plots")
    return {"rows": rows, "paths": paths, "step": step}


# ------------------------------------------------------------------------------ training hook


def make_periodic_evaluator(config, examples: Sequence[Mapping], assets: uv_assets_lib.UVAssets,
                            batch_size: int = 16) -> Callable[[object], dict]:
    """A cheap evaluator for the training loop: crops are cut once, the forward is jitted once.

    Args:
      config: the run config (image_size, width, dtype, decoder_impl).
      examples: a small held-out list of example dicts.
      assets: UV assets at config.image_size.

    Returns:
      evaluate_state(state) -> {"eval_nme2d_68": mean over images, "eval_nme3d_68": ...,
      "eval_nme2d_68_bucket_mean": mean of bucket means (only when every bucket has images),
      and the dense means when the examples have GT maps}; plain floats, never NaN.
    """
    size = int(config.image_size)
    if assets.size != size:
        raise ValueError(f"assets: size {assets.size} != config.image_size {size}")
    examples = list(examples)
    network = model_lib.build_model(config)

    def evaluate_state(state) -> dict:
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        result = evaluate(examples, make_predict_fn(network, variables, batch_size), assets,
                          batch_size=batch_size, reconstruction_points=0)
        row = summarise(result)
        out = {}
        for key in LANDMARK_METRICS + DENSE_METRICS:
            if key in row:
                out[f"eval_{key}"] = row[key]["all"]
                if math.isfinite(row[key]["mean"]):
                    out[f"eval_{key}_bucket_mean"] = row[key]["mean"]
        return out

    return evaluate_state


# ------------------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="training run directory")
    parser.add_argument("--checkpoint", type=int, default=None, help="step to evaluate (default: latest)")
    parser.add_argument("--data", required=True,
                        help="AFLW2000-3D folder (NAME.jpg + NAME.mat) or prepared tfds dataset directory")
    parser.add_argument("--model", default=None,
                        help="BFM.mat + BFM_UV.mat folder or PRNet uv-data folder "
                             "(default: DATA/model or DATA/../model)")
    parser.add_argument("--out", default=None, help="output folder (default: WORKDIR/eval/STEP)")
    parser.add_argument("--balanced", action="store_true",
                        help="report on a seeded subset with equally many images per |yaw| bucket")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the balanced subset and ICP subsample")


def run(args: argparse.Namespace) -> int:
    from prn_jax.checkpointing import CheckpointError

    try:
        run_eval(args.workdir, args.checkpoint, args.data, args.out, args.model, balanced=args.balanced,
                 batch_size=args.batch_size, limit=args.limit, seed=args.seed)
    except (CheckpointError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"prn-jax eval: error: {e}", file=sys.stderr)
        return 2
    return 0


def register(subparsers) -> None:
    cli.add_command(subparsers, "eval", __doc__.split("\n\n")[0], add_arguments, run,
                    help="evaluate a checkpoint on AFLW2000-3D (metrics.json, Table-1 markdown, "
                         "CED plots)")


def main(argv=None) -> int:
    return cli.run_command("eval", argv)


if __name__ == "__main__":
    raise SystemExit(main())
