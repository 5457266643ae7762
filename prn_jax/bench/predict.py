"""`prn-jax bench predict`: per-image end-to-end inference latency at batch 1."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from prn_jax import configuration, detect, inference, predict_outputs
from prn_jax import model as model_lib
from prn_jax import predict as predict_lib
from prn_jax.geometry import grid_model, model_assets, uv_raster
from prn_jax.geometry import uv_assets as uv_assets_lib
from prn_jax.predict import read_image, transform_from_box

_GRID = dict(rows=128, cols=128, num_shape=4, num_exp=2)


def _bench_assets(size: int, model_dir):
    if model_dir:
        return model_assets.load_assets(model_dir, size)[0]
    face = grid_model.make_grid_face_model(**_GRID)
    return uv_assets_lib.uv_assets_from_model(
        face, uv_raster.build_uv_raster(face.uv, face.full_triangles, size)
    )


def _bench_frontal(size: int, model_dir, assets):
    """(S, S, 3) frontal mean-face map for the pose fit."""
    if model_dir:
        return model_assets.load_assets(model_dir, size)[1]
    face = grid_model.make_grid_face_model(**_GRID)
    return model_assets.frontal_map_from_model(
        face, uv_raster.build_uv_raster(face.uv, face.full_triangles, size)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`prn-jax bench predict`: per-image end-to-end latency at batch 1, median after warm-up.

    Stages: decode (JPEG file -> RGB), detect (the face detector over the whole image; skipped
    when its package is missing), crop (box rule + bilinear resample), forward (jitted network,
    blocked), pose (uncrop, 68 landmarks, dense vertices, head-pose fit), outputs (the default
    files: landmarks, pose, coloured .obj, overlay). Random weights of the configured network
    (timing does not depend on their values). --image times a real photo instead of noise.
    """
    parser = argparse.ArgumentParser(prog="prn-jax bench predict", description=main.__doc__)
    parser.add_argument("--config", default="paper")
    parser.add_argument("--model", default=None, help="asset folder (default: a procedural grid model)")
    parser.add_argument("--image-px", type=int, default=450, help="side of the test JPEG (300W-LP: 450)")
    parser.add_argument("--image", default=None, help="a photo to time instead of a random JPEG")
    parser.add_argument("--detector", default="dlib", help="dlib, opencv or none")
    parser.add_argument("--outputs", default="kpt,pose,obj,overlay", help="as `predict --outputs`")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args, overrides = parser.parse_known_args(argv)
    config = configuration.load_config(args.config, [o.removeprefix("--config.") for o in overrides])
    size = int(config.image_size)
    network = model_lib.build_model(config)
    variables = model_lib.init_variables(network, jax.random.key(0), size)
    predict_fn = inference.make_predict_fn(network, variables, batch_size=1)
    assets = _bench_assets(size, args.model)
    mean_face = predict_lib.canonical_face_points(_bench_frontal(size, args.model, assets), assets)
    outputs = predict_outputs.parse_outputs(args.outputs)
    detector = None
    if args.detector != "none":
        try:
            detector = detect.make_detector(args.detector)
        except detect.DetectorUnavailable as error:
            print(f"detect stage skipped: {error}")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (args.image_px, args.image_px, 3), dtype=np.uint8)
    box = np.array([0.25, 0.2, 0.75, 0.8]) * args.image_px
    stages = ("decode", "detect", "crop", "forward", "pose", "outputs")
    times = {s: [] for s in stages}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.image) if args.image else Path(tmp) / "bench.jpg"
        if not args.image:
            Image.fromarray(pixels).save(path, quality=95)
        for i in range(args.warmup + args.repeats):
            t = [time.perf_counter()]
            image = read_image(path)
            t.append(time.perf_counter())
            faces = detect.detect_faces(image, detector, max_faces=1) if detector is not None else []
            t.append(time.perf_counter())
            if faces:
                transform = detect.crop_transform(faces[0].box, size, detect.CONVENTIONS[args.detector])
            else:
                transform = transform_from_box(
                    box * np.array(image.shape[1::-1] * 2) / args.image_px, image.shape, size
                )
            crops = inference.crop_image(image, transform, size)[None]
            t.append(time.perf_counter())
            crop_map = predict_fn(crops)  # returns numpy: blocked
            t.append(time.perf_counter())
            prediction = predict_lib.finish_prediction(crop_map[0], transform, assets, mean_face)
            t.append(time.perf_counter())
            folder = Path(tmp) / "out"
            predict_outputs.write_face(folder, "face0_", image, prediction, assets, mean_face, outputs)
            if "overlay" in outputs:
                drawn = [
                    {
                        "landmarks": prediction.landmarks,
                        "rotation": prediction.pose.rotation,
                        "box": prediction.box,
                    }
                ]
                predict_outputs.save_png(folder / "overlay.png", predict_outputs.draw_faces(image, drawn))
            t.append(time.perf_counter())
            if i >= args.warmup:
                for stage, t0, t1 in zip(stages, t[:-1], t[1:]):
                    times[stage].append(t1 - t0)
    totals = [sum(parts) for parts in zip(*times.values())]
    source = args.image or f"{args.image_px}x{args.image_px} random JPEG"
    print(
        f"predict end to end, batch 1, {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"config {args.config} (S={size}, width {config.width}, {config.dtype}, {config.decoder_impl}), "
        f"{source}, detector {args.detector if detector else 'none'}, outputs {','.join(outputs)}, "
        f"median of {args.repeats} after {args.warmup} warm-up"
    )
    forward = statistics.median(times["forward"])
    for stage in stages:
        print(f"  {stage:<10} {1e3 * statistics.median(times[stage]):9.2f} ms")
    total = statistics.median(totals)
    print(
        f"  {'total':<10} {1e3 * total:9.2f} ms  ({1 / total:.1f} images/s; "
        f"{total / forward:.2f}x the forward)"
    )
    return 0
