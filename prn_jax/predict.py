"""`prn-jax predict`: images -> position map, 68 landmarks, coloured dense mesh, head pose, overlay.

  prn-jax predict photo.jpg --workdir runs/default --model data/model --box 120,80,330,310 --out out/
  prn-jax predict a.jpg b.jpg --weights prnet_official.npz --model PRNet/Data/uv-data \\
      --landmarks a_pts.txt b_pts.txt --out out/
  prn-jax predict face.jpg --workdir runs/default --model data/model --auto-box

Per image NAME it writes to --out:
  NAME_posmap.npy  (S, S, 3) float32 position map in original image pixels (x right, y down,
                   z toward the camera, z up to a shift).
  NAME_kpt.txt     (68, 3) landmarks, same frame.
  NAME.obj         dense mesh (face-mask pixels of the map, grid triangulation), per-vertex
                   colours sampled from the image, in [0, 1].
  NAME_pose.json   head pose: yaw, pitch, roll in degrees, rotation matrix and scale.
  NAME_overlay.png the image with the landmarks and the head's axes drawn on it.

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

import argparse
import dataclasses
import io
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageDraw

from prn_jax import cli, metrics
from prn_jax.geometry import crop, mesh_io, uv_assets as uv_assets_lib

PredictFn = Callable[[np.ndarray], np.ndarray]  # (B, S, S, 3) [0, 1] crops -> (B, S, S, 3) crop-pixel maps
NOSE_TIP = 30  # landmark index the pose axes start from
AXIS_COLOURS = ((230, 40, 40), (40, 200, 40), (40, 90, 255))  # head x (subject's left), y (up), z (forward)
AUTO_BOX_WARNING = ("--auto-box: no face detector is bundled; using the centred square of each image. "
                    "This is only right for images that are already roughly face crops; pass --box or "
                    "--landmarks otherwise")


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
        raise ValueError(f"vertices {vertices.shape} and mean_face_points {mean_face_points.shape} "
                         f"must both be (P, 3)")
    camera = vertices * np.array([1.0, -1.0, 1.0])  # image frame (y down) -> camera frame (y up)
    fit = metrics.fit_similarity(mean_face_points, camera, similarity=True)
    pitch, yaw, roll = np.degrees(angles_from_rotation(fit.rotation))
    return HeadPose(float(yaw), float(pitch), float(roll), fit.rotation, float(fit.scale))


def pose_from_position_map(pos: np.ndarray, assets: uv_assets_lib.UVAssets,
                           mean_face_points: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) degrees of a (S, S, 3) image-frame position map (module docstring).

    Args:
      pos: (S, S, 3) image pixels, x right, y down, z toward the camera (any z shift).
      assets: UV assets at S (face-mask pixels).
      mean_face_points: (P, 3) `canonical_face_points`.
    """
    pose = fit_head_pose(mesh_io.vertices_from_position_map(np.asarray(pos), assets.face_indices),
                         mean_face_points)
    return pose.yaw, pose.pitch, pose.roll


# ------------------------------------------------------------------------------ crops


def _check_in_image(box: np.ndarray, image_shape, name: str) -> None:
    height, width = image_shape[:2]
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        raise InputError(f"{name}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is empty (need x0 < x1, y0 < y1)")
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise InputError(f"{name}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {width}x{height} image")


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
    return np.asarray(crop.crop_from_keypoints(landmarks, size, scale=crop.LANDMARK_SCALE, truncate=False),
                      np.float64)


def centre_transform(image_shape, size: int) -> np.ndarray:
    """(3, 3) crop transform of the image's centred square (side min(H, W)): `--auto-box`."""
    height, width = image_shape[:2]
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    return np.asarray(crop.crop_similarity(centre, np.float64(min(height, width)), size), np.float64)


# ------------------------------------------------------------------------------ core


def predict_image(image: np.ndarray, transform: np.ndarray, predict_fn: PredictFn,
                  assets: uv_assets_lib.UVAssets, mean_face_points: np.ndarray) -> Prediction:
    """Crop -> network -> uncrop -> landmarks and head pose for one image.

    Args:
      image: (H, W, 3) uint8 RGB.
      transform: (3, 3) image -> crop similarity (`transform_from_box` etc.).
      predict_fn: (1, S, S, 3) float32 crops in [0, 1] -> (1, S, S, 3) crop-pixel maps.
      assets: UV assets at S. mean_face_points: (P, 3) `canonical_face_points`.
    """
    from prn_jax.evaluate import crop_image

    size = assets.size
    crops = crop_image(image, transform, size)[None]
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
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 255, 255), outline=(0, 0, 0))
    origin = xy[NOSE_TIP]
    for axis, colour in zip(pose.rotation.T, AXIS_COLOURS):  # columns of R: head axes in the camera frame
        tip = origin + 0.5 * face_px * np.array([axis[0], -axis[1]])  # camera y up -> image y down
        draw.line((*origin, *tip), fill=colour, width=max(1, int(round(radius))))
    return np.asarray(canvas)


def pose_document(pose: HeadPose) -> dict:
    return {"yaw_deg": pose.yaw, "pitch_deg": pose.pitch, "roll_deg": pose.roll,
            "rotation": np.asarray(pose.rotation).tolist(), "scale": pose.scale,
            "convention": "3DDFA: R = Rx(pitch) Ry(yaw) Rz(roll), camera = scale * R @ mean_face + t, "
                          "camera = image frame with y up; yaw > 0 face turned toward the image's left, "
                          "pitch > 0 head tilted up, roll > 0 head rotated clockwise in the image"}


def write_prediction(out_dir, name: str, image: np.ndarray, prediction: Prediction,
                     assets: uv_assets_lib.UVAssets) -> list[Path]:
    """Writes the five files of the module docstring; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}_posmap.npy", out_dir / f"{name}_kpt.txt", out_dir / f"{name}.obj",
             out_dir / f"{name}_pose.json", out_dir / f"{name}_overlay.png"]
    np.save(paths[0], prediction.position_map)
    np.savetxt(paths[1], prediction.landmarks, fmt="%.3f")
    mesh_io.write_position_map_obj(paths[2], prediction.position_map, assets, image)
    paths[3].write_text(json.dumps(pose_document(prediction.pose), indent=1) + "\n")
    Image.fromarray(overlay_image(image, prediction.landmarks, prediction.pose)).save(paths[4])
    return paths


# ------------------------------------------------------------------------------ inputs


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any image file Pillow reads (grey and RGBA are converted)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file missing")
    try:
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as error:  # PIL raises several types for corrupt files
        raise InputError(f"{path}: cannot decode image ({type(error).__name__})") from error


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


def parse_box(text: str) -> tuple[float, float, float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"box {text!r}: expected x0,y0,x1,y1 (four numbers)")
    return values


def _per_image(values: Sequence, count: int, option: str) -> list:
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


# ------------------------------------------------------------------------------ command line


def load_network(workdir=None, checkpoint: int | None = None, weights=None, image_size: int = 256):
    """(network, variables, S) from a training run or a weights file (`tf_import.save_weights`)."""
    from prn_jax import evaluate, model as model_lib, tf_import

    if weights is not None:
        width, variables = tf_import.load_weights(weights, image_size)
        return model_lib.ResFCN256(width=width), variables, image_size
    config, _, variables = evaluate.restore_variables(workdir, checkpoint)
    return model_lib.build_model(config), variables, int(config.image_size)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="training run directory (checkpoints/)")
    source.add_argument("--weights", help="weights file from `prn-jax import-weights` (.npz)")
    parser.add_argument("--checkpoint", type=int, default=None, help="run step to use (default: latest)")
    parser.add_argument("--image-size", type=int, default=256,
                        help="network input size for --weights (default: 256, the released model)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--box", type=parse_box, action="append",
                       help="face box x0,y0,x1,y1 in image pixels; once for all images or once per image")
    where.add_argument("--landmarks", nargs="+",
                       help="68-point files (68x2 or 68x3, .txt or .npy): one for all images or one per image")
    where.add_argument("--auto-box", action="store_true",
                       help="centred square of each image (no face detector is bundled)")
    parser.add_argument("--model", required=True,
                        help="BFM.mat + BFM_UV.mat folder or PRNet uv-data folder (keypoint pixels, "
                             "face mask, mean face for the pose)")
    parser.add_argument("--out", default="predictions", help="output folder (default: ./predictions)")


def _fail(message: str) -> None:
    print(f"prn-jax predict: error: {message}", file=sys.stderr)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> int:
    """0: every image done; 1: some images failed (the rest were written); 2: nothing could run."""
    from prn_jax import evaluate
    from prn_jax.checkpointing import CheckpointError
    from prn_jax.tf_import import WeightImportError

    images = list(args.images)
    try:
        boxes = _per_image(args.box, len(images), "--box") if args.box else None
        landmark_files = _per_image(args.landmarks, len(images), "--landmarks") if args.landmarks else None
        network, variables, size = load_network(args.workdir, args.checkpoint, args.weights, args.image_size)
        assets, frontal, _, _ = evaluate.load_assets(args.model, size)
    except (InputError, CheckpointError, WeightImportError, FileNotFoundError, KeyError, ValueError) as error:
        _fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
        return 2
    if args.auto_box:
        print(f"prn-jax predict: warning: {AUTO_BOX_WARNING}", file=sys.stderr)
    mean_face = canonical_face_points(frontal, assets)
    predict_fn = evaluate.make_predict_fn(network, variables, batch_size=1)
    out_dir = Path(args.out)
    failures = 0
    for i, (path, name) in enumerate(zip(images, output_names(images))):
        try:
            image = read_image(path)
            if boxes is not None:
                transform = transform_from_box(boxes[i], image.shape, size, name=f"{path}: --box")
            elif landmark_files is not None:
                transform = transform_from_landmarks(read_landmarks(landmark_files[i]), image.shape, size,
                                                     name=f"{path}: {landmark_files[i]}")
            else:
                transform = centre_transform(image.shape, size)
            prediction = predict_image(image, transform, predict_fn, assets, mean_face)
            write_prediction(out_dir, name, image, prediction, assets)
        except InputError as error:
            failures += 1
            _fail(str(error))
            continue
        pose = prediction.pose
        log(f"{path}: yaw {pose.yaw:+.1f}  pitch {pose.pitch:+.1f}  roll {pose.roll:+.1f} deg -> "
            f"{out_dir / name}{{_posmap.npy,_kpt.txt,.obj,_pose.json,_overlay.png}}")
    done = len(images) - failures
    log(f"{done}/{len(images)} images predicted into {out_dir}" + (f"; {failures} failed" if failures else ""))
    return 1 if failures else 0


def register(subparsers) -> None:
    cli.add_command(subparsers, "predict", __doc__.split("\n\n")[0], add_arguments, run,
                    help="position map, landmarks, mesh, head pose and overlay for images (from "
                         "a run or imported weights)")


def main(argv=None) -> int:
    return cli.run_command("predict", argv)


# ------------------------------------------------------------------------------ benchmark


def _bench_assets(size: int, model_dir):
    from prn_jax import evaluate
    from prn_jax.geometry import grid_model, uv_raster

    if model_dir:
        return evaluate.load_assets(model_dir, size)[0]
    face = grid_model.make_grid_face_model(rows=128, cols=128, num_shape=4, num_exp=2)
    return uv_assets_lib.uv_assets_from_model(face, uv_raster.build_uv_raster(face.uv, face.full_triangles, size))


def predict_benchmark(argv: Sequence[str] | None = None) -> int:
    """`prn-jax bench predict`: per-image end-to-end latency at batch 1, median after warm-up.

    Stages: decode (JPEG file -> RGB), crop (box rule + bilinear resample), forward (jitted network,
    blocked), uncrop (map -> image pixels), landmarks (68 points + dense face vertices). Random
    weights of the configured network (timing does not depend on their values).
    """
    import jax

    from prn_jax import configuration, evaluate, model as model_lib

    parser = argparse.ArgumentParser(prog="prn-jax bench predict", description=predict_benchmark.__doc__)
    parser.add_argument("--config", default="paper")
    parser.add_argument("--model", default=None, help="asset folder (default: a procedural grid model)")
    parser.add_argument("--image-px", type=int, default=450, help="side of the test JPEG (300W-LP: 450)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args, overrides = parser.parse_known_args(argv)
    config = configuration.load_config(args.config, [o.removeprefix("--config.") for o in overrides])
    size = int(config.image_size)
    network = model_lib.build_model(config)
    variables = model_lib.init_variables(network, jax.random.key(0), size)
    predict_fn = evaluate.make_predict_fn(network, variables, batch_size=1)
    assets = _bench_assets(size, args.model)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (args.image_px, args.image_px, 3), dtype=np.uint8)
    box = np.array([0.25, 0.2, 0.75, 0.8]) * args.image_px
    stages = ("decode", "crop", "forward", "uncrop", "landmarks")
    times = {s: [] for s in stages}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jpg"
        Image.fromarray(pixels).save(path, quality=95)
        for i in range(args.warmup + args.repeats):
            t = [time.perf_counter()]
            image = read_image(path)
            t.append(time.perf_counter())
            transform = transform_from_box(box, image.shape, size)
            crops = evaluate.crop_image(image, transform, size)[None]
            t.append(time.perf_counter())
            crop_map = predict_fn(crops)  # returns numpy: blocked
            t.append(time.perf_counter())
            pos = crop.uncrop(np.asarray(crop_map[0], np.float32), transform)
            t.append(time.perf_counter())
            mesh_io.landmarks_from_position_map(pos, assets.kpt_uv)
            mesh_io.vertices_from_position_map(pos, assets.face_indices)
            t.append(time.perf_counter())
            if i >= args.warmup:
                for stage, t0, t1 in zip(stages, t[:-1], t[1:]):
                    times[stage].append(t1 - t0)
    totals = [sum(parts) for parts in zip(*times.values())]
    print(f"predict end to end, batch 1, {jax.default_backend()} ({jax.devices()[0].device_kind}), "
          f"config {args.config} (S={size}, width {config.width}, {config.dtype}, {config.decoder_impl}), "
          f"{args.image_px}x{args.image_px} JPEG, median of {args.repeats} after {args.warmup} warm-up")
    for stage in stages:
        print(f"  {stage:<10} {1e3 * statistics.median(times[stage]):9.2f} ms")
    total = statistics.median(totals)
    print(f"  {'total':<10} {1e3 * total:9.2f} ms  ({1 / total:.1f} images/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
