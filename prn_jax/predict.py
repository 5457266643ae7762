"""Prediction on photos: crop, network, uncrop, 68 landmarks, dense mesh, head pose, overlay
(`prn-jax predict`).

Crop: `--box` is a face-detector box (PRNet's rule: side 1.58 x the box, centre moved down by
0.14 x its size), `--landmarks` a 68-point file (tight box, side 1.6 x), `--auto-box` the centred
square of the image (no face detector is bundled: only right for images that are already roughly
face crops). One box or landmark file serves every image, or give one per image, in order.

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
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from prn_jax import inference
from prn_jax import model as model_lib
from prn_jax.data import formats
from prn_jax.evaluation import metrics
from prn_jax.geometry import crop, mesh_io
from prn_jax.geometry import uv_assets as uv_assets_lib
from prn_jax.inference import PredictFn
from prn_jax.model import tf_weights

NOSE_TIP = 30  # landmark index the pose axes start from
AXIS_COLOURS = ((230, 40, 40), (40, 200, 40), (40, 90, 255))  # head x (subject's left), y (up), z (forward)
AUTO_BOX_WARNING = (
    "--auto-box: no face detector is bundled; using the centred square of each image. "
    "This is only right for images that are already roughly face crops; pass --box or "
    "--landmarks otherwise"
)


class InputError(ValueError):
    """One input (image, box, landmark file) is unusable; the one-line message names it."""


class HeadPose(NamedTuple):
    """Head pose of one face (module docstring for the convention).

    yaw, pitch, roll: degrees. rotation: (3, 3) R with camera = scale * R @ model + t.
    scale: model units -> image pixels.
    """

    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray
    scale: float


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Everything `predict_image` derives from one image.

    position_map: (S, S, 3) float32, original image pixels (x right, y down, z toward camera).
    landmarks: (68, 3) float32, same frame.
    transform: (3, 3) float64, image -> crop similarity that was used.
    pose: HeadPose.
    """

    position_map: np.ndarray
    landmarks: np.ndarray
    transform: np.ndarray
    pose: HeadPose


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
    return HeadPose(float(yaw), float(pitch), float(roll), fit.rotation, float(fit.scale))


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


def predict_image(
    image: np.ndarray,
    transform: np.ndarray,
    predict_fn: PredictFn,
    assets: uv_assets_lib.UVAssets,
    mean_face_points: np.ndarray,
) -> Prediction:
    """Crop -> network -> uncrop -> landmarks and head pose for one image.

    Args:
      image: (H, W, 3) uint8 RGB.
      transform: (3, 3) image -> crop similarity (`transform_from_box` etc.).
      predict_fn: (1, S, S, 3) float32 crops in [0, 1] -> (1, S, S, 3) crop-pixel maps.
      assets: UV assets at S. mean_face_points: (P, 3) `canonical_face_points`.
    """
    size = assets.size
    crops = inference.crop_image(image, transform, size)[None]
    crop_map = np.asarray(predict_fn(crops), np.float32)
    if crop_map.shape != (1, size, size, 3):
        raise ValueError(f"predict_fn returned {crop_map.shape}, expected {(1, size, size, 3)}")
    pos = crop.uncrop(crop_map[0], np.asarray(transform, np.float64))  # float32 map: ~1e-4 px at 1000 px
    landmarks = mesh_io.landmarks_from_position_map(pos, assets.kpt_uv)
    pose = fit_head_pose(mesh_io.vertices_from_position_map(pos, assets.face_indices), mean_face_points)
    return Prediction(pos, landmarks, np.asarray(transform, np.float64), pose)


def overlay_image(image: np.ndarray, landmarks: np.ndarray, pose: HeadPose) -> np.ndarray:
    """(H, W, 3) uint8: the image with the 68 landmarks (dots) and the head's x, y, z axes drawn
    from the nose tip (red: toward the subject's left, green: up, blue: forward out of the face),
    each half the landmark box's mean side long."""
    canvas = Image.fromarray(np.asarray(image, np.uint8))
    draw = ImageDraw.Draw(canvas)
    xy = np.asarray(landmarks, np.float64)[:, :2]
    face_px = max(float(np.mean(xy.max(0) - xy.min(0))), 1.0)
    radius = max(1.0, face_px / 80)
    for x, y in xy:
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius), fill=(255, 255, 255), outline=(0, 0, 0)
        )
    origin = xy[NOSE_TIP]
    for axis, colour in zip(pose.rotation.T, AXIS_COLOURS):  # columns of R: head axes in the camera frame
        tip = origin + 0.5 * face_px * np.array([axis[0], -axis[1]])  # camera y up -> image y down
        draw.line((*origin, *tip), fill=colour, width=max(1, int(round(radius))))
    return np.asarray(canvas)


def pose_document(pose: HeadPose) -> dict:
    return {
        "yaw_deg": pose.yaw,
        "pitch_deg": pose.pitch,
        "roll_deg": pose.roll,
        "rotation": np.asarray(pose.rotation).tolist(),
        "scale": pose.scale,
        "convention": "3DDFA: R = Rx(pitch) Ry(yaw) Rz(roll), camera = scale * R @ mean_face + t, "
        "camera = image frame with y up; yaw > 0 face turned toward the image's left, "
        "pitch > 0 head tilted up, roll > 0 head rotated clockwise in the image",
    }


def write_prediction(
    out_dir,
    name: str,
    image: np.ndarray,
    prediction: Prediction,
    assets: uv_assets_lib.UVAssets,
    obj_y_up: bool = True,
) -> list[Path]:
    """Writes the five files of the module docstring; returns their paths. The `.obj` is y-up
    (y' = H - 1 - y, PRNet's demo convention) unless `obj_y_up` is False (image frame)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        out_dir / f"{name}_posmap.npy",
        out_dir / f"{name}_kpt.txt",
        out_dir / f"{name}.obj",
        out_dir / f"{name}_pose.json",
        out_dir / f"{name}_overlay.png",
    ]
    np.save(paths[0], prediction.position_map)
    np.savetxt(paths[1], prediction.landmarks, fmt="%.3f")
    height = image.shape[0] if obj_y_up else None
    mesh_io.write_position_map_obj(paths[2], prediction.position_map, assets, image, y_up_height=height)
    paths[3].write_text(json.dumps(pose_document(prediction.pose), indent=1) + "\n")
    Image.fromarray(overlay_image(image, prediction.landmarks, prediction.pose)).save(paths[4])
    return paths


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


def per_image(values: Sequence, count: int, option: str) -> list:
    if len(values) == 1:
        return list(values) * count
    if len(values) != count:
        raise InputError(f"{option}: {len(values)} given for {count} images (give one, or one per image)")
    return list(values)


def output_names(images: Sequence) -> list[str]:
    """File stems, made unique with _2, _3 ... when two inputs share one."""
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
