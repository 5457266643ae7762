"""`prn-jax synth`: write the procedural model and synthetic 300W-LP / AFLW2000-3D sets.

  prn-jax synth --out data/synth --num 10000 --test-num 2000 --seed 0 --flip --contact-sheet
writes OUT/model/{BFM,BFM_UV}.mat, OUT/300W_LP/..., OUT/AFLW2000/... (see `datasets`) and,
with --contact-sheet, OUT/contact_sheet.png. Rerunning resumes; equal seeds give equal bytes.

  prn-jax synth --out /tmp/synth --num 8 --test-num 2 --grid-rows 41 --grid-cols 51   # seconds
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

HELP = "write the procedural model and synthetic sets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--num", type=int, default=1000, help="300W-LP training images")
    parser.add_argument("--test-num", type=int, default=0, help="AFLW2000-3D test images")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (the model is fixed)")
    parser.add_argument("--flip", action="store_true", help="also write the *_Flip mirrors")
    parser.add_argument(
        "--contact-sheet",
        action="store_true",
        help="write OUT/contact_sheet.png (images, landmarks, position maps)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    # The full model's resolution is `face_generator.ModelSpec`'s (not imported here: it pulls in JAX).
    parser.add_argument(
        "--grid-rows",
        type=int,
        default=None,
        help="model resolution: vertex rows (default: the full model's, ModelSpec.rows; smaller = "
        "faster, for tests)",
    )
    parser.add_argument(
        "--grid-cols",
        type=int,
        default=None,
        help="model resolution: vertex columns, odd (default: the full model's, ModelSpec.cols)",
    )


def run(args: argparse.Namespace) -> int:
    from prn_jax.cli import UsageError, check_output_dir

    for key, minimum in (("num", 0), ("test_num", 0), ("workers", 1)):
        if getattr(args, key) < minimum:
            raise UsageError(f"--{key.replace('_', '-')} {getattr(args, key)}: must be >= {minimum}")
    check_output_dir(args.out, "--out")
    from prn_jax.synth import contact_sheet, datasets, face_generator

    resolution = {k: v for k, v in (("rows", args.grid_rows), ("cols", args.grid_cols)) if v is not None}
    try:
        face = face_generator.make_procedural_face(
            dataclasses.replace(face_generator.ModelSpec(), **resolution)
        )
    except ValueError as error:  # e.g. an even number of columns
        if not resolution:
            raise
        given = " ".join(f"--grid-{k} {v}" for k, v in resolution.items())
        raise UsageError(f"{given}: {error}") from error
    summary = datasets.generate(
        face, args.out, args.num, args.seed, test_num=args.test_num, flip=args.flip, workers=args.workers
    )
    print(
        f"synth: {summary['written']} samples written, {summary['skipped']} already complete, in {args.out}"
    )
    if args.contact_sheet:
        pairs = contact_sheet.dataset_pairs(args.out / "300W_LP", 9) + contact_sheet.dataset_pairs(
            args.out / "AFLW2000", 3
        )
        path = contact_sheet.contact_sheet(face.model, pairs, args.out / "contact_sheet.png")
        print(f"synth: contact sheet {path}")
    return 0
