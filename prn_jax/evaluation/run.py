"""`run_eval`: evaluate a run's checkpoints and the mean-face baseline on AFLW2000-3D-like data
and write metrics.json, table1.md and the CED plots into a folder named after the data.

Nothing is overwritten: the default output folder is WORKDIR/eval/<kind>-<data name>-<data
fingerprint>/<checkpoints> (kind: synthetic or real), and an existing one is refused unless
`overwrite` is set. Dense and reconstruction errors are reported only when the ground-truth maps'
68 landmarks agree with the annotated ones (`protocol.GT_LANDMARK_TOLERANCE`).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tqdm

from prn_jax import checkpointing, inference, representation
from prn_jax.data import eval_data
from prn_jax.evaluation import baseline, metrics, protocol, report
from prn_jax.geometry import crop, model_assets


class OutputExistsError(FileExistsError):
    """The output folder holds an earlier evaluation; the message names it and `--overwrite`."""


def _checkpoint_label(name: str | int, step: int) -> str:
    return f"step {step}" if str(name) == str(step) else f"{name} (step {step})"


def _ground_truth_check(examples: list[dict], assets, log: Callable[[str], None]) -> tuple[list[dict], dict]:
    """Drop the examples' GT maps (so no dense or reconstruction column) when their landmarks
    miss the annotations; returns the examples and what was measured."""
    errors = protocol.ground_truth_landmark_errors(examples, assets)
    if errors.size == 0:
        return examples, {"maps": 0}
    median = float(np.median(errors))
    check = {
        "maps": int(errors.size),
        "median_nme2d_68": median,
        "max_nme2d_68": float(errors.max()),
        "tolerance": protocol.GT_LANDMARK_TOLERANCE,
        "passed": median <= protocol.GT_LANDMARK_TOLERANCE,
    }
    if not check["passed"]:
        check["reason"] = (
            f"the ground-truth maps' 68 landmarks miss the annotated pt3d_68 by {100 * median:.1f}% "
            f"(median 2D NME; tolerance {100 * protocol.GT_LANDMARK_TOLERANCE:.0f}%): these fits belong "
            f"to another face model, so dense and reconstruction errors are left out; pass the "
            f"model the fits were made with (--model)"
        )
        log(f"warning: {check['reason']}")
        examples = [
            {k: v for k, v in ex.items() if k not in ("position_map", "crop_transform")} for ex in examples
        ]
    return examples, check


def summary_lines(rows: dict) -> list[str]:
    """The console summary: for each method the all-images means of every metric it has, in
    percent, as in the table's "all images" part."""
    lines = []
    for name, row in rows.items():
        parts = [
            f"{report.METRIC_COLUMNS[k]} {100 * row[k]['all']:.2f}"
            for k in report.METRIC_COLUMNS
            if k in row and math.isfinite(row[k]["all"])
        ]
        lines.append(f"{name}: " + ", ".join(parts))
    return lines


def run_eval(
    workdir,
    checkpoints: Sequence[int | str] | int | str | None = None,
    data=None,
    out_dir=None,
    model_dir=None,
    balanced: bool = False,
    batch_size: int = 16,
    limit: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> dict:
    """Evaluate a run's checkpoints and the mean-face baseline; write the three outputs.

    Args:
      workdir: training run directory (checkpoints/, best/), or its best/ folder.
      checkpoints: one or several of "last" (default), "best" (chosen on validation) and step
        numbers (`inference.resolve_checkpoint`); each gives a row.
      data: AFLW2000-3D folder (NAME.jpg + NAME.mat; or a synth root holding AFLW2000/), or a
        prepared tfds dataset directory.
      out_dir: where outputs go (default: WORKDIR/eval/<kind>-<data name>-<fingerprint>/<ckpts>).
      model_dir: BFM.mat + BFM_UV.mat folder or PRNet uv-data folder (default: DATA/model or
        DATA/../model when it exists). A morphable model also gives GT maps from the fits.
      balanced: summarise on `metrics.balanced_subset(yaw, seed)` instead of all images.
      limit: evaluate only the first `limit` images.
      overwrite: replace an existing output folder instead of refusing.
      progress: a progress bar (stderr) per evaluated method.

    Returns:
      {"rows": {method: row}, "paths": write_outputs(...) result, "steps": {method: step},
       "out_dir": Path}.
    """
    if data is None:
        raise ValueError("data: an AFLW2000-3D folder or tfds dataset directory is required")
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: no such data folder")
    data = eval_data.resolve(data)
    if checkpoints is None or isinstance(checkpoints, (int, str)):
        checkpoints = [checkpoints]
    resolved = []
    for name in checkpoints:  # None: the default of `resolve_checkpoint` (best for a best/ folder)
        run_dir, folder, step = inference.resolve_checkpoint(workdir, name)
        if name is None:
            name = "best" if folder == "best" else "last"
        resolved.append((name, run_dir, folder, step))
    described = eval_data.describe(data)
    folder_name = "+".join(
        f"{name}{step}" if str(name) != str(step) else f"step{step}" for name, _, _, step in resolved
    )
    out_dir = (
        Path(out_dir)
        if out_dir
        else (
            resolved[0][1]
            / "eval"
            / f"{described['kind']}-{described['name']}-{described['fingerprint']}"
            / folder_name
        )
    )
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out_dir}: holds an earlier evaluation; pass --overwrite to replace it")
        shutil.rmtree(out_dir)

    model_dir = Path(model_dir) if model_dir else eval_data.find_model_dir(data)
    if model_dir is None:
        raise FileNotFoundError(
            f"{data}: no model folder found; pass --model (BFM.mat + BFM_UV.mat "
            f"or PRNet uv-data) for the keypoint UV pixels and face mask"
        )
    restored, steps = {}, {}
    for name, run_dir, _, step in resolved:
        config, step, variables = inference.restore_variables(run_dir, name)
        method = f"prn-jax {_checkpoint_label(name, step)}"
        restored[method], steps[method] = (config, variables), int(step)
    sizes = {int(config.image_size) for config, _ in restored.values()}
    if len(sizes) > 1:
        raise ValueError(f"checkpoints {checkpoints}: different map sizes; evaluate them apart")
    size = sizes.pop()
    assets, frontal, face, raster = model_assets.load_assets(model_dir, size)
    # One context for every checkpoint; its mean-face map is also the baseline's prediction.
    context = representation.make_context(size, frontal, assets)
    predictors = {
        method: inference.run_predict_fn(config, variables, batch_size, context)
        for method, (config, variables) in restored.items()
    }
    title_data = f"{described['kind']} {described['name']} ({described['fingerprint']})"
    log(f"evaluating {workdir}: {', '.join(steps)} on {title_data}")
    log(f"  maps {size}x{size}, UV assets from {model_dir}")
    examples = eval_data.load_examples(data, limit)
    if face is not None:
        examples = list(eval_data.with_fit_maps(examples, face, raster))
    examples, gt_check = _ground_truth_check(examples, assets, log)
    predictors[baseline.BASELINE_NAME] = baseline.constant_predictor(np.asarray(context.mean_map))
    results = {
        name: protocol.evaluate(
            tqdm.tqdm(examples, desc=name[:40], unit="img", disable=not progress, leave=False),
            fn,
            assets,
            batch_size=batch_size,
            seed=seed,
        )
        for name, fn in predictors.items()
    }
    yaw = results[baseline.BASELINE_NAME]["yaw_deg"]
    indices = metrics.balanced_subset(yaw, seed) if balanced else None
    rows = {name: protocol.summarise(r, indices) for name, r in results.items()}
    info = {
        "title": f"{Path(workdir).name}, {title_data}" + (" (balanced subset)" if balanced else ""),
        "data": str(data),
        "data_name": described["name"],
        "data_kind": described["kind"],
        "data_fingerprint": described["fingerprint"],
        "workdir": str(Path(workdir).resolve()),
        "checkpoints": [
            {"method": method, "name": str(name), "folder": folder, "step": step}
            for method, (name, _, folder, step) in zip(steps, resolved)
        ],
        "git_revision": checkpointing.git_revision(),
        "model_dir": str(model_dir),
        "image_size": size,
        "num_images": len(yaw),
        "subset": {
            "balanced": balanced,
            "seed": seed,
            "indices": None if indices is None else indices.tolist(),
        },
        "ground_truth_check": gt_check,
        "crop": f"GT 68-point box, scale {crop.LANDMARK_SCALE}",
        "reconstruction": f"rigid ICP on {protocol.RECONSTRUCTION_POINTS} seeded face-mask points (same UV "
        f"pixels in both), symmetric mean NN distance / outer interocular "
        f"(3D GT landmarks)",
        "baseline": "model mean face, frontal, placed by the GT crop box (scale+translation)",
    }
    paths = report.write_outputs(out_dir, rows, results, info, indices)
    for line in summary_lines(rows):
        log(line)
    log(f"wrote {paths['metrics']}, {paths['table']}, {len(paths['ced'])} CED plots")
    return {"rows": rows, "paths": paths, "steps": steps, "out_dir": out_dir}
