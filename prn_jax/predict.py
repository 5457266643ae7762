"""Prediction on photos: face boxes (a detector, a given box, landmarks or the centred square),
crops batched through the network, uncrop, 68 landmarks, dense mesh, head pose
(`prn-jax predict`; the files it writes: `prn_jax.predict_outputs`).

Crop: a detector box (`prn_jax.detect`: each detector's own measured box convention) or `--box`
(PRNet's rule for a detector box: side 1.58 x the box, centre moved down by 0.14 x its size),
`--landmarks` a 68-point file (tight box, side 1.6 x), `--auto-box` the centred square of the image
(only right for images that are already roughly face crops).

Head pose (`pose_from_position_map`): the dense predicted vertices are fitted by a similarity
(Umeyama) to the morphable model's mean face, and the rotation is read in the 3DDFA convention of
`geometry.pose.rotation_matrix`, R = Rx(pitch) Ry(yaw) Rz(roll), camera = s R V + t with the mean
face V in the model frame (x to the image's right, y up, z toward the camera) and the camera frame
the image frame with y flipped up. Signs, as seen in the image:
  yaw > 0:   the face turns toward the image's left (the subject's right);
  pitch > 0: the head tilts up (chin up, nose moves up);
  roll > 0:  the head rotates clockwise in the image.
These are the signs of 300W-LP / AFLW2000-3D `Pose_Para` (pitch, yaw, roll).
"""

from __future__ import annotations

import dataclasses
import glob
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from prn_jax import inference
from prn_jax import model as model_lib
from prn_jax.data import formats
from prn_jax.evaluation import metrics
from prn_jax.geometry import crop, mesh_io
from prn_jax.geometry import uv_assets as uv_assets_lib
from prn_jax.inference import PredictFn
from prn_jax.model import tf_weights

NOSE_TIP = 30  # landmark index the pose axes start from
AUTO_BOX_WARNING = (
    "--auto-box: using the centred square of each image. This is only right for images that are "
    "already roughly face crops; without --auto-box a face detector finds the faces"
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class InputError(ValueError):
    """One input (image, box, landmark file) is unusable; the one-line message names it."""


class HeadPose(NamedTuple):
    """Head pose of one face (module docstring for the convention).

    yaw, pitch, roll: degrees. rotation: (3, 3) R with camera = scale * R @ model + translation.
    scale: model units -> image pixels. translation: (3,) camera-frame pixels (y up).
    """

    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray
    scale: float
    translation: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Everything `predict_image` derives from one image.

    position_map: (S, S, 3) float32, original image pixels (x right, y down, z toward camera).
    landmarks: (68, 3) float32, same frame.
    transform: (3, 3) float64, image -> crop similarity that was used.
    pose: HeadPose.
    box: (4,) float64 x0, y0, x1, y1 of the face (detector box, --box, or the landmarks' box).
    score: the detector's score (nan without a detector).
    """

    position_map: np.ndarray
    landmarks: np.ndarray
    transform: np.ndarray
    pose: HeadPose
    box: np.ndarray | None = None
    score: float = float("nan")


# ------------------------------------------------------------------------------ pose


def angles_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Inverse of `geometry.pose.rotation_matrix`: (3, 3) R = Rx(pitch) Ry(yaw) Rz(roll) ->
    (3,) float64 (pitch, yaw, roll) radians, yaw in [-pi/2, pi/2].

    From R[0] = (cos yaw cos roll, cos yaw sin roll, -sin yaw), R[1, 2] = sin pitch cos yaw,
    R[2, 2] = cos pitch cos yaw. At |yaw| = 90 degrees (gimbal lock) roll is set to 0.
    """
    r = np.asarray(rotation, np.float64)
    cos_yaw = math.hypot(r[0, 0], r[0, 1])
    yaw = math.atan2(-r[0, 2], cos_yaw)
    if cos_yaw > 1e-6:
        return np.array([math.atan2(r[1, 2], r[2, 2]), yaw, math.atan2(r[0, 1], r[0, 0])])
    # roll = 0: R[1] = (sin pitch sin yaw, cos pitch, 0), R[2] = (cos pitch sin yaw, -sin pitch, 0).
    return np.array([math.atan2(-r[2, 1], r[1, 1]), yaw, 0.0])


def canonical_face_points(frontal_map: np.ndarray, assets: uv_assets_lib.UVAssets) -> np.ndarray:
    """The mean face at the face-mask pixels, in the model frame (x right, y up, z toward camera).

    Args:
      frontal_map: (S, S, 3) frontal mean face (`evaluate.load_assets`'s second value: the model's
        mean shape, or PRNet's canonical_vertices); y up or down and z toward or away from the
        camera are detected from the landmarks (eyes above the mouth, nose tip nearer than the
        jaw corners) and normalised.
      assets: UV assets at S.

    Returns:
      (P, 3) float64, rows in `assets.face_indices` order.
    """
    frontal = np.asarray(frontal_map, np.float64)
    kpts = mesh_io.landmarks_from_position_map(frontal, assets.kpt_uv)
    sign = np.ones(3)
    if kpts[36:48, 1].mean() < kpts[48:68, 1].mean():
        sign[1] = -1.0
    if kpts[NOSE_TIP, 2] < kpts[[0, 16], 2].mean():
        sign[2] = -1.0
    return mesh_io.vertices_from_position_map(frontal, assets.face_indices) * sign


def fit_head_pose(vertices: np.ndarray, mean_face_points: np.ndarray) -> HeadPose:
    """Similarity fit of image-frame vertices (P, 3) to the mean face (P, 3, model frame)."""
    vertices = np.asarray(vertices, np.float64)
    mean_face_points = np.asarray(mean_face_points, np.float64)
    if vertices.shape != mean_face_points.shape or vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(
            f"vertices {vertices.shape} and mean_face_points {mean_face_points.shape} must both be (P, 3)"
        )
    camera = vertices * np.array([1.0, -1.0, 1.0])  # image frame (y down) -> camera frame (y up)
    fit = metrics.fit_similarity(mean_face_points, camera, similarity=True)
    pitch, yaw, roll = np.degrees(angles_from_rotation(fit.rotation))
    return HeadPose(float(yaw), float(pitch), float(roll), fit.rotation, float(fit.scale), fit.translation)


def pose_from_position_map(
    pos: np.ndarray, assets: uv_assets_lib.UVAssets, mean_face_points: np.ndarray
) -> tuple[float, float, float]:
    """(yaw, pitch, roll) degrees of a (S, S, 3) image-frame position map (module docstring).

    Args:
      pos: (S, S, 3) image pixels, x right, y down, z toward the camera (any z shift).
      assets: UV assets at S (face-mask pixels).
      mean_face_points: (P, 3) `canonical_face_points`.
    """
    pose = fit_head_pose(
        mesh_io.vertices_from_position_map(np.asarray(pos), assets.face_indices), mean_face_points
    )
    return pose.yaw, pose.pitch, pose.roll


# ------------------------------------------------------------------------------ crops


def _check_in_image(box: np.ndarray, image_shape, name: str) -> None:
    height, width = image_shape[:2]
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        raise InputError(f"{name}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is empty (need x0 < x1, y0 < y1)")
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise InputError(
            f"{name}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {width}x{height} image"
        )


def transform_from_box(box, image_shape, size: int, name: str = "box") -> np.ndarray:
    """(3, 3) crop transform from a face-detector box (x0, y0, x1, y1) image pixels (PRNet's rule).

    InputError when the box is empty or does not overlap the image.
    """
    box = np.asarray(box, np.float64)
    _check_in_image(box, image_shape, name)
    return np.asarray(crop.crop_from_detector_box(box, size), np.float64)


def transform_from_landmarks(landmarks, image_shape, size: int, name: str = "landmarks") -> np.ndarray:
    """(3, 3) crop transform from (68, >=2) landmarks in image pixels (side 1.6 x their box)."""
    landmarks = np.asarray(landmarks, np.float64)
    _check_in_image(np.asarray(crop.box_from_keypoints(landmarks, truncate=False)), image_shape, name)
    return np.asarray(
        crop.crop_from_keypoints(landmarks, size, scale=crop.LANDMARK_SCALE, truncate=False), np.float64
    )


def centre_transform(image_shape, size: int) -> np.ndarray:
    """(3, 3) crop transform of the image's centred square (side min(H, W)): `--auto-box`."""
    height, width = image_shape[:2]
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    return np.asarray(crop.crop_similarity(centre, np.float64(min(height, width)), size), np.float64)


# ------------------------------------------------------------------------------ core


def run_network(crops: np.ndarray, predict_fn: PredictFn, batch_size: int) -> np.ndarray:
    """(N, S, S, 3) crops in [0, 1] -> (N, S, S, 3) float32 crop-pixel maps, `batch_size` at a
    time (`predict_fn` pads a short batch, so one compiled program serves every call)."""
    crops = np.asarray(crops, np.float32)
    parts = [
        np.asarray(predict_fn(crops[i : i + batch_size]), np.float32)
        for i in range(0, len(crops), batch_size)
    ]
    maps = np.concatenate(parts) if parts else np.zeros((0,) + crops.shape[1:], np.float32)
    if maps.shape != crops.shape:
        raise ValueError(f"predict_fn returned {maps.shape}, expected {crops.shape}")
    return maps


def finish_prediction(
    crop_map: np.ndarray,
    transform: np.ndarray,
    assets: uv_assets_lib.UVAssets,
    mean_face_points: np.ndarray,
    box=None,
    score: float = float("nan"),
) -> Prediction:
    """One (S, S, 3) crop-pixel map -> uncropped map, landmarks and head pose (image frame)."""
    transform = np.asarray(transform, np.float64)
    pos = crop.uncrop(np.asarray(crop_map, np.float32), transform)  # float32: ~1e-4 px at 1000 px
    landmarks = mesh_io.landmarks_from_position_map(pos, assets.kpt_uv)
    pose = fit_head_pose(mesh_io.vertices_from_position_map(pos, assets.face_indices), mean_face_points)
    if box is None:
        box = np.asarray(crop.box_from_keypoints(np.asarray(landmarks, np.float64), truncate=False))
    return Prediction(pos, landmarks, transform, pose, np.asarray(box, np.float64), float(score))


def predict_image(
    image: np.ndarray,
    transform: np.ndarray,
    predict_fn: PredictFn,
    assets: uv_assets_lib.UVAssets,
    mean_face_points: np.ndarray,
) -> Prediction:
    """Crop -> network -> uncrop -> landmarks and head pose for one face of one image.

    Args:
      image: (H, W, 3) uint8 RGB.
      transform: (3, 3) image -> crop similarity (`transform_from_box` etc.).
      predict_fn: (B, S, S, 3) float32 crops in [0, 1] -> (B, S, S, 3) crop-pixel maps.
      assets: UV assets at S. mean_face_points: (P, 3) `canonical_face_points`.
    """
    crops = inference.crop_image(image, transform, assets.size)[None]
    return finish_prediction(run_network(crops, predict_fn, 1)[0], transform, assets, mean_face_points)


@dataclasses.dataclass(frozen=True)
class FaceCrop:
    """One face to predict: transform (3, 3) image -> crop; box (4,) or None; detector score."""

    transform: np.ndarray
    box: np.ndarray | None = None
    score: float = float("nan")


def detected_crops(image: np.ndarray, faces, size: int, convention) -> list[FaceCrop]:
    """`detect.Face`s of an image -> FaceCrops by the detector's box convention."""
    from prn_jax import detect

    return [FaceCrop(detect.crop_transform(f.box, size, convention), f.box, f.score) for f in faces]


def predict_faces(
    items: Sequence[tuple[np.ndarray, Sequence[FaceCrop]]],
    predict_fn: PredictFn,
    assets: uv_assets_lib.UVAssets,
    mean_face_points: np.ndarray,
    batch_size: int,
) -> list[list[Prediction]]:
    """Every face of several images through the network in batches of `batch_size`.

    Args:
      items: (image (H, W, 3) uint8, its FaceCrops) per image.
    Returns:
      per image, its Predictions in the order of its FaceCrops.
    """
    size = assets.size
    crops = [inference.crop_image(image, f.transform, size) for image, faces in items for f in faces]
    maps = run_network(
        np.stack(crops) if crops else np.zeros((0, size, size, 3), np.float32), predict_fn, batch_size
    )
    out, k = [], 0
    for _, faces in items:
        out.append(
            [
                finish_prediction(maps[k + j], f.transform, assets, mean_face_points, f.box, f.score)
                for j, f in enumerate(faces)
            ]
        )
        k += len(faces)
    return out


# ------------------------------------------------------------------------------ inputs


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (`formats.load_rgb_image`, shared with evaluation: 16-bit,
    grey, palette, RGBA and CMYK images are converted; smaller than `formats.MIN_IMAGE_SIDE` pixels
    is refused). InputError naming the file when it is missing, undecodable or too small."""
    try:
        return formats.load_rgb_image(path)
    except formats.FormatError as error:
        raise InputError(str(error)) from error


def read_landmarks(path) -> np.ndarray:
    """(68, 2) or (68, 3) landmarks from a .npy or whitespace text file -> (68, >=2) float64."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: landmark file missing")
    try:
        points = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=2)
    except Exception as error:
        raise InputError(f"{path}: cannot read landmarks ({type(error).__name__})") from error
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[0] != 68 or points.shape[1] not in (2, 3):
        raise InputError(f"{path}: landmarks have shape {points.shape}, expected (68, 2) or (68, 3)")
    if not np.isfinite(points).all():
        raise InputError(f"{path}: landmarks contain NaN or inf")
    return points


def expand_inputs(patterns: Sequence[str]) -> list[Path]:
    """Input arguments -> files, in order: a folder gives its image and video files (sorted, not
    recursive), a pattern with *, ? or [ its sorted glob matches; duplicates are dropped.
    InputError naming an argument that matches nothing."""
    files: list[Path] = []
    for text in patterns:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            if not found:
                raise InputError(f"{text}: folder holds no image or video files")
        elif any(c in text for c in "*?[") and not path.exists():
            found = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
            if not found:
                raise InputError(f"{text}: pattern matches no file")
        else:
            found = [path]
        files.extend(found)
    return list(dict.fromkeys(files))


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def per_image(values: Sequence, count: int, option: str) -> list:
    if len(values) == 1:
        return list(values) * count
    if len(values) != count:
        raise InputError(f"{option}: {len(values)} given for {count} images (give one, or one per image)")
    return list(values)


def output_names(images: Sequence) -> list[str]:
    """File stems (one output folder each), made unique with _2, _3 ... when two inputs share one."""
    names, seen = [], {}
    for path in images:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def load_network(workdir=None, checkpoint: int | str | None = None, weights=None, image_size: int = 256):
    """(network, variables, S, representation name) from a training run or a weights file
    (`tf_weights.save_weights`: the paper's representation)."""
    if weights is not None:
        width, variables = tf_weights.load_weights(weights, image_size)
        return model_lib.ResFCN256(width=width), variables, image_size, "position"
    config, _, variables = inference.restore_variables(workdir, checkpoint)
    rep = config.get("representation", "position")
    return model_lib.build_model(config), variables, int(config.image_size), rep
