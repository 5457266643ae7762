"""`prn-jax predict`: images -> position map, 68 landmarks, coloured dense mesh, head pose, overlay.

  prn-jax predict photo.jpg --workdir runs/default/run --model runs/default/data/synth/model \\
      --box 120,80,330,310 --out out/
  prn-jax predict a.jpg b.jpg --weights prnet_official.npz --model PRNet/Data/uv-data \\
      --landmarks a_pts.txt b_pts.txt --out out/
  prn-jax predict face.jpg --workdir runs/default/run --model runs/default/data/synth/model --auto-box

Per image NAME it writes to --out:
  NAME_posmap.npy  (S, S, 3) float32 position map in original image pixels (x right, y down,
                   z toward the camera, z up to a shift).
  NAME_kpt.txt     (68, 3) landmarks, same frame.
  NAME.obj         dense mesh (face-mask pixels of the map, grid triangulation), per-vertex
                   colours sampled from the image, in [0, 1]; y up (y' = H - 1 - y, as
                   PRNet's demo writes it: upright in y-up viewers), or the image frame
                   with --obj-frame image.
  NAME_pose.json   head pose: yaw, pitch, roll in degrees, rotation matrix and scale.
  NAME_overlay.png the image with the landmarks and the head's axes drawn on it.

Crop: `--box` is a face-detector box (PRNet's rule: side 1.58 x the box, centre moved down by
0.14 x its size), `--landmarks` a 68-point file (tight box, side 1.6 x), `--auto-box` the centred
square of the image (no face detector is bundled: only right for images that are already roughly
face crops). One box or landmark file serves every image, or give one per image, in order.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

HELP = "landmarks, mesh, head pose and overlay for photos"
CONFIG_FROM_CHECKPOINT = True


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
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
    where = parser.add_mutually_exclusive_group(required=True)
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
        "--auto-box", action="store_true", help="centred square of each image (no face detector is bundled)"
    )
    parser.add_argument(
        "--model",
        required=True,
        help="BFM.mat + BFM_UV.mat folder or PRNet uv-data folder (keypoint pixels, "
        "face mask, mean face for the pose)",
    )
    parser.add_argument("--out", default="predictions", help="output folder (default: ./predictions)")
    parser.add_argument(
        "--obj-frame",
        choices=("y-up", "image"),
        default="y-up",
        help="the .obj's frame: y-up (upright in 3D viewers) or image (x right, y down, as the .npy)",
    )


def _fail(message: str) -> None:
    print(f"prn-jax predict: error: {message}", file=sys.stderr)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> int:
    """0: every image done; 1: some images failed (the rest were written); 2: nothing could run."""
    from prn_jax.cli import check_output_dir, error_text

    check_output_dir(args.out, "--out")
    from prn_jax import inference, predict, representation
    from prn_jax.checkpointing import CheckpointError
    from prn_jax.geometry import model_assets
    from prn_jax.model.tf_weights import WeightImportError

    images = list(args.images)
    try:
        boxes = predict.per_image(args.box, len(images), "--box") if args.box else None
        landmark_files = (
            predict.per_image(args.landmarks, len(images), "--landmarks") if args.landmarks else None
        )
        network, variables, size, rep_name = predict.load_network(
            args.workdir, args.checkpoint, args.weights, args.image_size
        )
        assets, frontal, _, _ = model_assets.load_assets(args.model, size)
    except (
        predict.InputError,
        CheckpointError,
        WeightImportError,
        FileNotFoundError,
        KeyError,
        ValueError,
    ) as error:
        _fail(error_text(error))
        return 2
    if args.auto_box:
        print(f"prn-jax predict: warning: {predict.AUTO_BOX_WARNING}", file=sys.stderr)
    mean_face = predict.canonical_face_points(frontal, assets)
    predict_fn = inference.make_predict_fn(
        network,
        variables,
        batch_size=1,
        rep=representation.resolve(rep_name),
        context=representation.make_context(size, frontal, assets),
    )
    out_dir = Path(args.out)
    failures = 0
    for i, (path, name) in enumerate(zip(images, predict.output_names(images))):
        try:
            image = predict.read_image(path)
            if boxes is not None:
                transform = predict.transform_from_box(boxes[i], image.shape, size, name=f"{path}: --box")
            elif landmark_files is not None:
                transform = predict.transform_from_landmarks(
                    predict.read_landmarks(landmark_files[i]),
                    image.shape,
                    size,
                    name=f"{path}: {landmark_files[i]}",
                )
            else:
                transform = predict.centre_transform(image.shape, size)
            prediction = predict.predict_image(image, transform, predict_fn, assets, mean_face)
            predict.write_prediction(
                out_dir, name, image, prediction, assets, obj_y_up=args.obj_frame == "y-up"
            )
        except predict.InputError as error:
            failures += 1
            _fail(str(error))
            continue
        pose = prediction.pose
        log(
            f"{path}: yaw {pose.yaw:+.1f}  pitch {pose.pitch:+.1f}  roll {pose.roll:+.1f} deg -> "
            f"{out_dir / name}{{_posmap.npy,_kpt.txt,.obj,_pose.json,_overlay.png}}"
        )
    done = len(images) - failures
    log(
        f"{done}/{len(images)} images predicted into {out_dir}" + (f"; {failures} failed" if failures else "")
    )
    return 1 if failures else 0
