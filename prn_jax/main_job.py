"""The main job: synthetic data, tfds build, training and evaluation on the embedded default,
in one call (`run_main_job`; the stages and outputs: `prn-jax main --help`, prn_jax/cli/main_job.py);
and the same stages on the user's downloads (`run_real_job`: model preparation instead of
synthesis, the paper config)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import jax

from prn_jax import configuration
from prn_jax.data import build as build_lib
from prn_jax.datasets.aflw2000_3d import Aflw20003d
from prn_jax.datasets.prn_300w_lp import Prn300wLp
from prn_jax.evaluation import baseline
from prn_jax.evaluation import run as eval_run
from prn_jax.geometry import model_preparation
from prn_jax.synth import contact_sheet, datasets, face_generator
from prn_jax.train import loop


def _stage(name: str) -> float:
    print(f"\n=== {name} ===", flush=True)
    return time.perf_counter()


def _done(t0: float) -> None:
    print(f"    ({time.perf_counter() - t0:.0f} s)", flush=True)


def synthesize(synth_dir: Path, num: int, test_num: int, seed: int, workers: int) -> None:
    face = face_generator.make_procedural_face()
    summary = datasets.generate(face, synth_dir, num, seed, test_num=test_num, flip=True, workers=workers)
    print(f"    {summary['written']} samples written, {summary['skipped']} already there")
    sheet = synth_dir / "contact_sheet.png"
    if not sheet.exists():
        pairs = contact_sheet.dataset_pairs(synth_dir / "300W_LP", 9) + contact_sheet.dataset_pairs(
            synth_dir / "AFLW2000", 3
        )
        contact_sheet.contact_sheet(face.model, pairs, sheet)
    print(f"    contact sheet: {sheet}")


def build(synth_dir: Path, tfds_dir: Path, size: int, workers: int, source: dict) -> None:
    """Build both datasets unless they were built from exactly this synthetic source."""
    stamp = tfds_dir / "built_from.json"
    if stamp.exists() and json.loads(stamp.read_text()) == source:
        print(f"    up to date: {tfds_dir}")
        return
    if tfds_dir.exists():
        shutil.rmtree(tfds_dir)  # built from other synthetic data: rebuild, never mix
    args = build_lib.build_arguments(tfds_dir, synth_dir, synth_dir / "model", size, workers)
    for name in ("prn_300w_lp", "aflw2000_3d"):
        build_lib.build_dataset(name, args)
    stamp.write_text(json.dumps(source))


def builder_versions() -> list[str]:
    """The two builders' versions: a new version (new record fields) means a rebuild."""
    return [str(Prn300wLp.VERSION), str(Aflw20003d.VERSION)]


def _train_then_test(config, run_dir: Path, test_data, model_dir, test_name: str) -> dict:
    """Stages 3 and 4 of both main jobs: train (resuming), then evaluate the test set once with
    the validation-chosen checkpoint and the last one beside it. This job's own evaluation folder
    is replaced on a rerun (recomputed from the same checkpoints). Returns `run_eval`'s result."""
    t0 = _stage(f"3/4 training -> {run_dir}")
    loop.train_and_evaluate(config, run_dir)
    _done(t0)

    t0 = _stage(f"4/4 evaluation on {test_name} (test set, once)")
    checkpoints = ["best", "last"] if (run_dir / "best").is_dir() else ["last"]
    result = eval_run.run_eval(run_dir, checkpoints, data=test_data, model_dir=model_dir, overwrite=True)
    _done(t0)
    return result


def run_main_job(
    out,
    config_name: str = "cpu_default",
    overrides=(),
    num: int = 1200,
    test_num: int = 150,
    seed: int = 0,
    workers: int = 2,
) -> dict:
    """synth -> build -> train -> eval into OUT (module docstring); returns the evaluation's
    `run_eval` result."""
    out = Path(out)
    synth_dir, tfds_dir, run_dir = out / "data" / "synth", out / "data" / "tfds", out / "run"
    config = configuration.load_config(
        config_name,
        [
            f"data.dir='{tfds_dir}'",
            f"data.model_dir='{synth_dir / 'model'}'",
            *overrides,
        ],
    )
    configuration.validate_config(config, jax.local_device_count())  # fail before any data work
    start = time.perf_counter()

    t0 = _stage(f"1/4 synthetic data -> {synth_dir}")
    synthesize(synth_dir, num, test_num, seed, workers)
    _done(t0)

    t0 = _stage(f"2/4 tfds datasets -> {tfds_dir}")
    build(
        synth_dir,
        tfds_dir,
        config.image_size,
        workers,
        {
            "num": num,
            "test_num": test_num,
            "seed": seed,
            "size": config.image_size,
            "versions": builder_versions(),
        },
    )
    _done(t0)

    result = _train_then_test(
        config, run_dir, synth_dir / "AFLW2000", synth_dir / "model", "the synthetic AFLW2000-3D"
    )
    outputs = result["paths"]

    print(f"\n=== done in {time.perf_counter() - start:.0f} s ===")
    summary = learning_summary(result["rows"])
    if summary:
        print(summary)
    print(f"run directory:   {run_dir}  (checkpoints/, best/, metrics.jsonl, tensorboard/)")
    print(f"report:          {outputs['table']}")
    print(f"metrics:         {outputs['metrics']}")
    for path in outputs["ced"]:
        print(f"CED plot:        {path}")
    print(f"data:            {synth_dir} (contact_sheet.png), {tfds_dir}")
    return result


def learning_summary(rows: dict) -> str:
    """Lines comparing each network row's 68-point 2D NME (all images) with the mean-face
    baseline's, and naming the columns where the network does not beat the baseline."""
    base = rows[baseline.BASELINE_NAME]
    lines = []
    for name, row in rows.items():
        if name == baseline.BASELINE_NAME:
            continue
        n, b = row["nme2d_68"]["all"], base["nme2d_68"]["all"]
        lines.append(
            f"{name}: 68-point 2D NME (all images) {100 * n:.2f}% vs the mean face's {100 * b:.2f}% "
            f"(ratio {n / b:.2f}; the default run should reach <= 0.5)"
        )
        worse = [
            f"{key} ({part})"
            for key, entry in row.items()
            if isinstance(entry, dict) and key in base
            for part in ("all", "mean")
            if entry[part] >= base[key][part]
        ]
        if worse:
            lines.append(f"  not better than the mean face: {', '.join(worse)}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ real data


def check_real_downloads(downloads, exclude=None) -> dict:
    """Everything the real job reads, found before any work: {'model_files': role -> path (the
    raw model files, `model_preparation.find_raw_files`), 'w300lp': the 300W_LP root (folder or
    in 300W-LP.zip, all eight databases present), 'aflw2000': the AFLW2000 folder (or in
    AFLW2000-3D.zip)}; nothing under `exclude` (the job's output folder) is taken for a download.
    Raises a one-line error naming the first missing file or folder
    (`model_preparation.RawModelError` or `formats.FormatError`)."""
    from prn_jax.datasets.aflw2000_3d import aflw2000_3d_dataset_builder as aflw
    from prn_jax.datasets.prn_300w_lp import prn_300w_lp_dataset_builder as w300lp

    downloads = Path(downloads)
    model_files = model_preparation.find_raw_files(downloads, exclude=exclude)
    root = w300lp.source_root(downloads)
    w300lp.list_sources(root, include_flip=True)  # names missing databases
    return {"model_files": model_files, "w300lp": root, "aflw2000": aflw.source_folder(downloads)}


def prepare_model(downloads: Path, model_dir: Path) -> None:
    """`prn-jax prepare-model` unless MODEL_DIR was prepared from exactly these raw files."""
    stamp = model_dir / "prepared_from.json"
    inputs = model_preparation.find_raw_files(downloads, exclude=model_dir)
    source = {role: _file_stamp(path) for role, path in inputs.items()}
    if stamp.exists() and json.loads(stamp.read_text()) == source and (model_dir / "BFM.mat").is_file():
        print(f"    up to date: {model_dir}")
        return
    result = model_preparation.prepare_model(downloads, model_dir)
    print(
        f"    {result['vertices']} vertices, {result['triangles']} + {result['mouth_triangles']} "
        f"triangles -> {', '.join(str(p) for p in result['outputs'].values())}"
    )
    stamp.write_text(json.dumps(source))


def _file_stamp(path: Path) -> list:
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def build_real(downloads: Path, model_dir: Path, tfds_dir: Path, size: int, workers: int) -> dict:
    """Both tfds datasets from the downloads (archives read in place); `build_dataset` reuses
    what was built from the same source and refuses another. Returns {name: its result}."""
    args = build_lib.build_arguments(tfds_dir, downloads, model_dir, size, workers)
    return {name: build_lib.build_dataset(name, args) for name in ("prn_300w_lp", "aflw2000_3d")}


def run_real_job(out, downloads, config_name: str = "paper", overrides=(), workers: int = 2) -> dict:
    """prepare-model -> build -> train -> eval on the user's downloads into OUT: OUT/data/model,
    OUT/data/tfds, OUT/run (and OUT/run/eval/.../table1.md). Every input is checked first
    (`check_real_downloads`); a rerun reuses the model and datasets and resumes training.
    Returns the evaluation's `run_eval` result."""
    out, downloads = Path(out), Path(downloads)
    model_dir, tfds_dir, run_dir = out / "data" / "model", out / "data" / "tfds", out / "run"
    config = configuration.load_config(
        config_name, [f"data.dir='{tfds_dir}'", f"data.model_dir='{model_dir}'", *overrides]
    )
    configuration.validate_config(config, jax.local_device_count())
    check_real_downloads(downloads, exclude=out)  # one line naming a missing file, before any work
    start = time.perf_counter()

    t0 = _stage(f"1/4 morphable model -> {model_dir}")
    prepare_model(downloads, model_dir)
    _done(t0)

    t0 = _stage(f"2/4 tfds datasets -> {tfds_dir}")
    built = build_real(downloads, model_dir, tfds_dir, config.image_size, workers)
    _done(t0)

    result = _train_then_test(config, run_dir, built["aflw2000_3d"]["path"], model_dir, "AFLW2000-3D")
    print(f"\n=== done in {time.perf_counter() - start:.0f} s ===")
    print(f"run directory:   {run_dir}")
    print(f"report:          {result['paths']['table']}")
    print(f"metrics:         {result['paths']['metrics']}")
    return result
