"""`prn-jax predict`: photos, folders, globs or videos -> per face: 68 landmarks, dense mesh, depth,
UV texture, frontalised mesh, head pose, and an overlay.

  prn-jax predict photo.jpg --workdir runs/default/run --model runs/default/data/synth/model
  prn-jax predict photos/ 'more/*.png' --workdir runs/default/run --model runs/default/data/synth/model \\
      --outputs all --max-faces 3 --out out/
  prn-jax predict clip.mp4 --workdir runs/default/run --model runs/default/data/synth/model --out out/
  prn-jax predict a.jpg --weights prnet_official.npz --model PRNet/Data/uv-data --box 120,80,330,310

Faces: found by a face detector (`--detector`, default dlib's HOG detector; it is an optional
install: pip install 'prn-jax[detect]'), largest first, at most --max-faces; or one face from
--box (PRNet's rule: side 1.58 x the box, centre moved down by 0.14 x its size), --landmarks (a
68-point file: side 1.6 x its box) or --auto-box (the centred square: only for face crops).
An image where no face is found is reported on one line and the rest go on.

Per input NAME, folder OUT/NAME/ holds overlay.png (every face's box, contours and head axes) and,
for face K (0 = largest), faceK_<file> for each name given to --outputs (default
kpt,pose,obj,overlay; `all` for every one):
  kpt       faceK_kpt.txt       (68, 3) landmarks, image pixels (x right, y down, z toward camera)
  posmap    faceK_posmap.npy    (S, S, 3) float32 position map, same frame
  vertices  faceK_vertices.npy  (P, 3) float32 dense vertices (face-mask pixels), same frame
  obj       faceK_mesh.obj      coloured dense mesh, y up (y' = H - 1 - y, upright in 3D viewers;
                                --obj-frame image keeps the image frame)
  frontal   faceK_frontal.obj   the mesh with the head pose removed (y up, pixels)
  depth     faceK_depth.npy/.png  (H, W) depth image (float32, NaN off the face; uint8 view)
  texture   faceK_texture.png, faceK_texture_mask.png  (S, S) UV texture from the photo and where
                                the face is seen (normals toward the camera, in front in the z-buffer)
  pose      faceK_pose.json     yaw, pitch, roll (degrees), rotation, scale, translation
OUT/summary.csv: one row per face (file, face, box, score, yaw, pitch, roll, milliseconds) and per
failed input (its error). A video (.mp4, .avi, ...) gives OUT/NAME/landmarks.csv (per frame and
face: 68 x, y and the pose) and OUT/NAME/overlay.mp4 (needs pip install 'prn-jax[video]').
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

HELP = "landmarks, mesh, depth, texture, head pose and overlay for photos, folders and videos"
CONFIG_FROM_CHECKPOINT = True
SUMMARY_FIELDS = (
    "file",
    "face",
    "x0",
    "y0",
    "x1",
    "y1",
    "score",
    "yaw_deg",
    "pitch_deg",
    "roll_deg",
    "read_ms",
    "detect_ms",
    "network_ms",
    "output_ms",
    "status",
)


def parse_box(text: str) -> tuple[float, float, float, float]:
    """`--box x0,y0,x1,y1` -> four finite floats (argparse type: a bad box is a usage error)."""
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"box {text!r}: expected x0,y0,x1,y1 (four numbers)")
    return values


def _outputs(text: str) -> tuple[str, ...]:
    from prn_jax import predict_outputs

    try:
        return predict_outputs.parse_outputs(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return value


def setup_errors() -> tuple[type[Exception], ...]:
    """What reading the inputs, the checkpoint or weights and the face model raises on bad input:
    one line on stderr, exit 2 (`predict`, `texture-swap`). A function: the library loads lazily."""
    from prn_jax import predict
    from prn_jax.checkpointing import CheckpointError
    from prn_jax.model.tf_weights import WeightImportError

    return (predict.InputError, CheckpointError, WeightImportError, FileNotFoundError, KeyError, ValueError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image or video files, folders, or glob patterns")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="training run directory (checkpoints/)")
    source.add_argument("--weights", help="weights file from `prn-jax import-weights` (.npz)")
    parser.add_argument(
        "--checkpoint", default=None, help="best (chosen on validation), last or a step (default: last)"
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=256,
        help="network input size for --weights (default: 256, the released model)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--box",
        type=parse_box,
        action="append",
        help="face box x0,y0,x1,y1 in image pixels; once for all images or once per image",
    )
    where.add_argument(
        "--landmarks",
        nargs="+",
        help="68-point files (68x2 or 68x3, .txt or .npy): one for all images or one per image",
    )
    where.add_argument(
        "--auto-box", action="store_true", help="centred square of each image (face crops only)"
    )
    where.add_argument(
        "--detector",
        choices=("dlib", "opencv"),
        default=None,
        help="face detector when no box is given (default: dlib; docs/predict.md compares them)",
    )
    parser.add_argument("--max-faces", type=_positive, default=None, help="at most this many faces per image")
    parser.add_argument(
        "--model",
        required=True,
        help="BFM.mat + BFM_UV.mat folder or PRNet uv-data folder (keypoint pixels, "
        "face mask, mean face for the pose)",
    )
    parser.add_argument("--out", default="predictions", help="output folder (default: ./predictions)")
    parser.add_argument(
        "--outputs",
        type=_outputs,
        default=None,
        help="comma-separated: kpt,posmap,vertices,obj,frontal,depth,texture,pose,overlay or all "
        "(default: kpt,pose,obj,overlay)",
    )
    parser.add_argument(
        "--obj-frame",
        choices=("y-up", "image"),
        default="y-up",
        help="the .obj's frame: y-up (upright in 3D viewers) or image (x right, y down, as the .npy)",
    )
    parser.add_argument("--batch-size", type=_positive, default=8, help="crops per network call")
    parser.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="progress bar on stderr (auto: when stderr is a terminal)",
    )


def _fail(message: str) -> None:
    print(f"prn-jax predict: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"prn-jax predict: warning: {message}", file=sys.stderr)


class Predictor:
    """What every input shares: network, assets, box source; `faces(image, index)` and `write`."""

    def __init__(self, args, size, assets, mean_face, predict_fn, detector, convention):
        self.args, self.size, self.assets, self.mean_face = args, size, assets, mean_face
        self.predict_fn, self.detector, self.convention = predict_fn, detector, convention

    def face_crops(self, image, index: int, path) -> list:
        import numpy as np

        from prn_jax import detect, predict

        args, size = self.args, self.size
        if args.box:
            box = args.box[index]
            transform = predict.transform_from_box(box, image.shape, size, name=f"{path}: --box")
            return [predict.FaceCrop(transform, np.asarray(box, np.float64))]
        if args.landmarks:
            points = predict.read_landmarks(args.landmarks[index])
            name = f"{path}: {args.landmarks[index]}"
            return [predict.FaceCrop(predict.transform_from_landmarks(points, image.shape, size, name=name))]
        if args.auto_box:
            return [predict.FaceCrop(predict.centre_transform(image.shape, size))]
        faces = detect.detect_faces(image, self.detector, args.max_faces)
        if not faces:
            raise predict.InputError(
                f"{path}: no face found (detector {args.detector or detect.DEFAULT_DETECTOR})"
            )
        return predict.detected_crops(image, faces, size, self.convention)


def _summary_row(path, face: int | str, prediction=None, times=(), status="ok") -> dict:
    row = dict.fromkeys(SUMMARY_FIELDS, "")
    row.update(file=str(path), face=face, status=status)
    if prediction is not None:
        row.update(zip(("x0", "y0", "x1", "y1"), (f"{v:.1f}" for v in prediction.box)))
        row["score"] = "" if math.isnan(prediction.score) else f"{prediction.score:.3f}"
        pose = prediction.pose
        row.update(yaw_deg=f"{pose.yaw:.2f}", pitch_deg=f"{pose.pitch:.2f}", roll_deg=f"{pose.roll:.2f}")
    row.update(zip(("read_ms", "detect_ms", "network_ms", "output_ms"), (f"{1e3 * t:.1f}" for t in times)))
    return row


def _write_csv(path: Path, fields, rows) -> None:
    import csv
    import io

    from prn_jax import predict_outputs

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    predict_outputs.save_text(path, buffer.getvalue())


def _predict_images(state: Predictor, items, out_dir: Path, outputs, log, summary, progress) -> int:
    """Images in chunks of --batch-size: read + boxes, one batched network pass, outputs."""
    from prn_jax import predict, predict_outputs

    args = state.args
    failures = 0
    for start in range(0, len(items), args.batch_size):
        chunk = items[start : start + args.batch_size]
        ready = []
        for index, path, name in chunk:
            t0 = time.perf_counter()
            try:
                image = predict.read_image(path)
                t1 = time.perf_counter()
                crops = state.face_crops(image, index, path)
            except predict.InputError as error:
                failures += 1
                _fail(str(error))
                summary.append(_summary_row(path, "", status=str(error)))
                progress.update(1)
                continue
            ready.append((path, name, image, crops, (t1 - t0, time.perf_counter() - t1)))
        t0 = time.perf_counter()
        predictions = predict.predict_faces(
            [(image, crops) for _, _, image, crops, _ in ready],
            state.predict_fn,
            state.assets,
            state.mean_face,
            args.batch_size,
        )
        network_s = (time.perf_counter() - t0) / max(sum(len(r[3]) for r in ready), 1)
        for (path, name, image, _, (read_s, detect_s)), faces in zip(ready, predictions):
            t0 = time.perf_counter()
            folder = out_dir / name
            for k, prediction in enumerate(faces):
                predict_outputs.write_face(
                    folder,
                    f"face{k}_",
                    image,
                    prediction,
                    state.assets,
                    state.mean_face,
                    outputs,
                    obj_y_up=args.obj_frame == "y-up",
                )
            if "overlay" in outputs:
                drawn = [{"landmarks": p.landmarks, "rotation": p.pose.rotation, "box": p.box} for p in faces]
                predict_outputs.save_png(folder / "overlay.png", predict_outputs.draw_faces(image, drawn))
            output_s = (time.perf_counter() - t0) / max(len(faces), 1)
            for k, prediction in enumerate(faces):
                times = (read_s, detect_s, network_s, output_s)
                summary.append(_summary_row(path, k, prediction, times))
                pose = prediction.pose
                log(
                    f"{path}: face {k}: yaw {pose.yaw:+.1f}  pitch {pose.pitch:+.1f}  "
                    f"roll {pose.roll:+.1f} deg -> {folder}/"
                )
            progress.update(1)
    return failures


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> int:
    """0: every input done; 1: some inputs failed or had no face (the rest were written);
    2: nothing could run."""
    from prn_jax.cli import check_output_dir, error_text

    check_output_dir(args.out, "--out")
    from prn_jax import detect, inference, predict, predict_outputs, representation
    from prn_jax.geometry import model_assets

    outputs = args.outputs or predict_outputs.DEFAULT_OUTPUTS
    use_detector = not (args.box or args.landmarks or args.auto_box)
    try:
        files = predict.expand_inputs(args.images)
        videos = [p for p in files if predict.is_video(p)]
        images = [p for p in files if not predict.is_video(p)]
        if args.box:
            args.box = predict.per_image(args.box, len(images), "--box")
        if args.landmarks:
            args.landmarks = predict.per_image(args.landmarks, len(images), "--landmarks")
        detector = convention = None
        if use_detector or videos:
            name = args.detector or detect.DEFAULT_DETECTOR
            detector, convention = detect.make_detector(name), detect.CONVENTIONS[name]
        network, variables, size, rep_name = predict.load_network(
            args.workdir, args.checkpoint, args.weights, args.image_size
        )
        assets, frontal, _, _ = model_assets.load_assets(args.model, size)
    except detect.DetectorUnavailable as error:
        _fail(f"{error}; or give --box, --landmarks or --auto-box")
        return 2
    except setup_errors() as error:
        _fail(error_text(error))
        return 2
    if args.auto_box:
        _warn(predict.AUTO_BOX_WARNING)
    mean_face = predict.canonical_face_points(frontal, assets)
    predict_fn = inference.make_predict_fn(
        network,
        variables,
        batch_size=args.batch_size,
        rep=representation.resolve(rep_name),
        context=representation.make_context(size, frontal, assets),
    )
    state = Predictor(args, size, assets, mean_face, predict_fn, detector, convention)
    out_dir = Path(args.out)
    names = predict.output_names(files)
    name_of = dict(zip(files, names))
    summary: list[dict] = []
    show = args.progress == "on" or (args.progress == "auto" and sys.stderr.isatty())
    from tqdm import tqdm

    with tqdm(total=len(files), unit="input", disable=not show, file=sys.stderr) as progress:
        failures = _predict_images(
            state,
            [(i, p, name_of[p]) for i, p in enumerate(images)],
            out_dir,
            outputs,
            log,
            summary,
            progress,
        )
        for path in videos:
            from prn_jax import predict_video

            try:
                frames = predict_video.predict_video(
                    path, out_dir / name_of[path], state, overlay="overlay" in outputs
                )
                summary.append(_summary_row(path, "", status=f"video: {frames} frames"))
                log(f"{path}: {frames} frames -> {out_dir / name_of[path]}/")
            except (predict.InputError, detect.DetectorUnavailable) as error:
                failures += 1
                _fail(str(error))
                summary.append(_summary_row(path, "", status=str(error)))
            progress.update(1)
    order = {str(p): i for i, p in enumerate(files)}
    summary.sort(key=lambda row: order.get(row["file"], 0))  # input order (stable: faces stay in order)
    _write_csv(out_dir / "summary.csv", SUMMARY_FIELDS, summary)
    done = len(files) - failures
    log(
        f"{done}/{len(files)} inputs predicted into {out_dir} (summary.csv)"
        + (f"; {failures} failed" if failures else "")
    )
    return 1 if failures else 0
