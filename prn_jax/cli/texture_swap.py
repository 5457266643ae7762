"""`prn-jax texture-swap SRC DST`: puts the face texture of photo SRC onto the face of photo DST
(PRNet's texture editing, whole face) and writes the result image.

  prn-jax texture-swap a.jpg b.jpg --workdir runs/default/run --model runs/default/data/synth/model \\
      --out b_with_a.png

Both faces are predicted (the largest face the detector finds, or --src-box / --dst-box as
x0,y0,x1,y1). SRC's UV texture is sampled from its photo; where SRC's face is hidden (turned
away, outside the photo) DST's own texture is kept; its colours are matched to DST's skin
(mean and spread per channel, unless --no-color-match); DST's predicted mesh is rendered with it
(z-buffer) and blended into DST with a feathered border.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from prn_jax.cli.predict import parse_box, setup_errors

HELP = "put one photo's face texture onto another photo's face"
CONFIG_FROM_CHECKPOINT = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="photo whose face texture is used")
    parser.add_argument("dst", help="photo whose face receives it")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="training run directory (checkpoints/)")
    source.add_argument("--weights", help="weights file from `prn-jax import-weights` (.npz)")
    parser.add_argument("--checkpoint", default=None, help="best, last or a step (default: last)")
    parser.add_argument("--image-size", type=int, default=256, help="network input size for --weights")
    parser.add_argument("--model", required=True, help="BFM.mat + BFM_UV.mat folder or PRNet uv-data folder")
    parser.add_argument("--src-box", type=parse_box, default=None, help="SRC face box x0,y0,x1,y1")
    parser.add_argument("--dst-box", type=parse_box, default=None, help="DST face box x0,y0,x1,y1")
    parser.add_argument("--detector", choices=("dlib", "opencv"), default=None, help="default: dlib")
    parser.add_argument("--no-color-match", action="store_true", help="keep SRC's colours as they are")
    parser.add_argument("--out", default="texture_swap.png", help="result image (PNG or JPEG by suffix)")


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> int:
    """0: written; 2: an input or the model could not be used (one line on stderr)."""
    from prn_jax.cli import check_output_file, error_text

    check_output_file(args.out, "--out")
    import numpy as np

    from prn_jax import detect, inference, predict, predict_outputs, representation, texture
    from prn_jax.geometry import model_assets

    def fail(message: str) -> int:
        print(f"prn-jax texture-swap: error: {message}", file=sys.stderr)
        return 2

    try:
        images = [predict.read_image(args.src), predict.read_image(args.dst)]
        network, variables, size, rep_name = predict.load_network(
            args.workdir, args.checkpoint, args.weights, args.image_size
        )
        assets, frontal, _, _ = model_assets.load_assets(args.model, size)
        transforms = []
        for path, image, box in ((args.src, images[0], args.src_box), (args.dst, images[1], args.dst_box)):
            if box is not None:
                transforms.append(predict.transform_from_box(box, image.shape, size, name=f"{path}: box"))
                continue
            name = args.detector or detect.DEFAULT_DETECTOR
            faces = detect.detect_faces(image, detect.make_detector(name), max_faces=1)
            if not faces:
                raise predict.InputError(f"{path}: no face found (detector {name}); give a box")
            transforms.append(detect.crop_transform(faces[0].box, size, detect.CONVENTIONS[name]))
    except detect.DetectorUnavailable as error:
        return fail(f"{error}; or give --src-box and --dst-box")
    except setup_errors() as error:
        return fail(error_text(error))
    mean_face = predict.canonical_face_points(frontal, assets)
    predict_fn = inference.make_predict_fn(
        network,
        variables,
        batch_size=2,
        rep=representation.resolve(rep_name),
        context=representation.make_context(size, frontal, assets),
    )
    src, dst = predict.predict_faces(
        [(images[0], [predict.FaceCrop(transforms[0])]), (images[1], [predict.FaceCrop(transforms[1])])],
        predict_fn,
        assets,
        mean_face,
        batch_size=2,
    )
    src_pos, dst_pos = src[0].position_map, dst[0].position_map
    height, width = images[0].shape[:2]
    src_texture = texture.uv_texture(images[0], src_pos)
    src_visible = texture.visibility_mask(src_pos, assets, height, width)
    result = texture.swap_texture(
        images[1], dst_pos, src_texture, src_visible, assets, match=not args.no_color_match
    )
    out = Path(args.out)
    fmt = "JPEG" if out.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    from PIL import Image

    predict_outputs.write_atomic(out, lambda f: Image.fromarray(np.asarray(result)).save(f, format=fmt))
    log(f"{args.src} texture on {args.dst} -> {out}")
    return 0
