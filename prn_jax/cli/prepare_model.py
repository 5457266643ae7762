"""`prn-jax prepare-model`: face3d's BFM.mat, BFM_UV.mat and BFM_info.mat from the raw downloads,
without MATLAB (the steps of face3d's examples/Data/BFM/generate.m; docs/model_preparation.md).

  prn-jax prepare-model --downloads ~/downloads --out data/model

--downloads is searched (subfolders too) for 01_MorphableModel.mat (Basel Face Model 2009),
model_info.mat, Model_Expression.mat and Model_tri_mouth.mat (3DDFA / HPEN) and BFM_UV.mat
(3DMMasSTN); OUT then serves as `--model` of build, eval and predict. A missing file or variable
is named in one line.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "face3d's BFM.mat from the raw model downloads (no MATLAB)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--downloads", type=Path, required=True, help="folder holding the raw model files (searched)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder: BFM.mat, BFM_UV.mat, BFM_info.mat"
    )


def run(args: argparse.Namespace) -> int:
    from prn_jax.cli import UsageError, check_output_dir

    if not args.downloads.is_dir():
        raise UsageError(f"--downloads {args.downloads}: no such folder")
    check_output_dir(args.out, "--out")
    from prn_jax.geometry import model_preparation

    start = time.perf_counter()
    try:
        result = model_preparation.prepare_model(args.downloads, args.out)
    except model_preparation.RawModelError as error:
        raise UsageError(str(error)) from error
    for role, path in result["inputs"].items():
        print(f"  read {path}")
    print(
        f"  {result['vertices']} vertices, {result['triangles']} triangles + "
        f"{result['mouth_triangles']} mouth triangles ({time.perf_counter() - start:.1f} s)"
    )
    for path in result["outputs"].values():
        print(f"  wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
