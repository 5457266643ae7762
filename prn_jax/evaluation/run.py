"""`run_eval`: evaluate a run's checkpoint and the mean-face baseline on AFLW2000-3D-like data
and write metrics.json, table1.md and the CED plots."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prn_jax import inference
from prn_jax import model as model_lib
from prn_jax.data import eval_data
from prn_jax.evaluation import baseline, metrics, protocol, report
from prn_jax.geometry import crop, model_assets


def run_eval(
    workdir,
    checkpoint_step: int | None = None,
    data=None,
    out_dir=None,
    model_dir=None,
    balanced: bool = False,
    batch_size: int = 16,
    limit: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """Evaluate a run's checkpoint and the mean-face baseline; write the three outputs.

    Args:
      workdir: training run directory (checkpoints/).
      checkpoint_step: step to evaluate (default: latest).
      data: AFLW2000-3D folder (NAME.jpg + NAME.mat; or a synth root holding AFLW2000/), or a
        prepared tfds dataset directory.
      out_dir: where outputs go (default: WORKDIR/eval/<step>).
      model_dir: BFM.mat + BFM_UV.mat folder or PRNet uv-data folder (default: DATA/model or
        DATA/../model when it exists). A morphable model also gives GT maps from the fits.
      balanced: summarise on `metrics.balanced_subset(yaw, seed)` instead of all images.
      limit: evaluate only the first `limit` images.

    Returns:
      {"rows": {method: row}, "paths": write_outputs(...) result, "step": step}.
    """
    if data is None:
        raise ValueError("data: an AFLW2000-3D folder or tfds dataset directory is required")
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: no such data folder")
    config, step, variables = inference.restore_variables(workdir, checkpoint_step)
    size = int(config.image_size)
    model_dir = Path(model_dir) if model_dir else eval_data.find_model_dir(data)
    if model_dir is None:
        raise FileNotFoundError(
            f"{data}: no model folder found; pass --model (BFM.mat + BFM_UV.mat "
            f"or PRNet uv-data) for the keypoint UV pixels and face mask"
        )
    assets, frontal, face, raster = model_assets.load_assets(model_dir, size)
    log(f"evaluating {workdir} step {step} on {data} (maps {size}x{size}, assets from {model_dir})")
    examples = eval_data.load_examples(data, limit)
    if face is not None:
        examples = list(eval_data.with_fit_maps(examples, face, raster))
    network = model_lib.build_model(config)
    method = f"prn-jax step {step}"
    predictors = {
        method: inference.make_predict_fn(network, variables, batch_size),
        baseline.BASELINE_NAME: baseline.constant_predictor(baseline.mean_face_crop_map(frontal, assets)),
    }
    results = {
        name: protocol.evaluate(examples, fn, assets, batch_size=batch_size, seed=seed)
        for name, fn in predictors.items()
    }
    yaw = results[method]["yaw_deg"]
    indices = metrics.balanced_subset(yaw, seed) if balanced else None
    rows = {name: protocol.summarise(r, indices) for name, r in results.items()}
    info = {
        "title": f"{Path(workdir).name} step {step}" + (" (balanced subset)" if balanced else ""),
        "workdir": str(Path(workdir).resolve()),
        "checkpoint_step": int(step),
        "data": str(data),
        "model_dir": str(model_dir),
        "image_size": size,
        "num_images": len(yaw),
        "subset": {
            "balanced": balanced,
            "seed": seed,
            "indices": None if indices is None else indices.tolist(),
        },
        "crop": f"GT 68-point box, scale {crop.LANDMARK_SCALE}",
        "reconstruction": f"rigid ICP on {protocol.RECONSTRUCTION_POINTS} seeded face-mask points (same UV "
        f"pixels in both), symmetric mean NN distance / outer interocular "
        f"(3D GT landmarks)",
        "baseline": "model mean face, frontal, placed by the GT crop box (scale+translation)",
    }
    out_dir = Path(out_dir) if out_dir else Path(workdir) / "eval" / str(step)
    paths = report.write_outputs(out_dir, rows, results, info, indices)
    log(f"wrote {paths['metrics']}, {paths['table']}, {len(paths['ced'])} CED plots")
    return {"rows": rows, "paths": paths, "step": step}
