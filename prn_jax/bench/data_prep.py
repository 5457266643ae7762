"""Benchmark: the real-data recipe's preparation stages, timed and sized, scaled to 300W-LP.

    prn-jax bench data-prep --train 200 --test 50 --workers 2 --out /tmp/data_prep

Measures, on files in the real formats:
  1. prepare-model on stand-in raw downloads of the real dimensions (53,490 -> 53,215 vertices,
     199 / 29 / 199 components; `prn_jax.synth.raw_model`): seconds and bytes, not scaled;
  2. build prn_300w_lp (size{S}, with flips) and aflw2000_3d (maps{S}) from 300W-LP.zip and
     AFLW2000-3D.zip holding synthetic sets (450 x 450 JPEG + .mat, `prn_jax.synth`) made with a
     procedural model of about the BFM's size (211 x 253 = 53,383 vertices): seconds, CPU
     seconds (this process and its workers) and bytes per example, scaled to 122,450 and 2,000.
Prints a markdown table (measured and extrapolated columns) and, with --json, writes the figures.
Training and evaluation are not run here: their per-step / per-image costs come from
`prn-jax bench model --config paper` and `prn-jax bench predict`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

W300LP_IMAGES, AFLW_IMAGES = 122_450, 2_000
MODEL_GRID = (211, 253)  # procedural model rows x cols: 53,383 vertices (BFM: 53,215)
RAW_GRID = (145, 367)  # stand-in raw model: 53,215 kept vertices, as 3DDFA's trimIndex


def _parse(argv):
    parser = argparse.ArgumentParser(prog="prn-jax bench data-prep", description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=200, help="synthetic 300W-LP fits (x2 with flips)")
    parser.add_argument("--test", type=int, default=50, help="synthetic AFLW2000-3D images")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="build worker processes")
    parser.add_argument("--map-size", type=int, default=256, choices=(64, 128, 256))
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children, user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _bytes(path: Path) -> int:
    return (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )


def _timed(fn):
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = fn()
    return result, time.perf_counter() - wall, _cpu_seconds() - cpu


def measure(work: Path, train: int, test: int, workers: int, size: int) -> dict:
    """The figures of the module docstring, from files written under `work`."""
    from prn_jax.data import build as build_lib
    from prn_jax.geometry import model_preparation
    from prn_jax.synth import datasets, face_generator, raw_model

    figures = {"cores": os.cpu_count(), "workers": workers, "map_size": size}
    rows, cols = RAW_GRID
    raw_model.write_raw_model(work / "downloads", rows=rows, cols=cols, extra=275)
    raw_bytes = _bytes(work / "downloads")
    _, wall, cpu = _timed(lambda: model_preparation.prepare_model(work / "downloads", work / "model"))
    figures["prepare_model"] = {
        "seconds": wall,
        "cpu_seconds": cpu,
        "input_bytes": raw_bytes,
        "output_bytes": _bytes(work / "model"),
    }
    print(
        f"prepare-model: {wall:.1f} s, {figures['prepare_model']['output_bytes']:,} bytes written", flush=True
    )

    spec = face_generator.ModelSpec(rows=MODEL_GRID[0], cols=MODEL_GRID[1])
    face = face_generator.make_procedural_face(spec)
    synth = work / "synth"
    datasets.generate(face, synth, train, seed=0, test_num=test, flip=True, workers=workers, progress=False)
    sources = work / "sources"
    sources.mkdir()
    for folder, archive in (("300W_LP", "300W-LP"), ("AFLW2000", "AFLW2000-3D")):
        shutil.make_archive(str(sources / archive), "zip", root_dir=synth, base_dir=folder)
    args = build_lib.build_arguments(work / "tfds", sources, synth / "model", size, workers)
    for name, archive, full in (
        ("prn_300w_lp", "300W-LP.zip", W300LP_IMAGES),
        ("aflw2000_3d", "AFLW2000-3D.zip", AFLW_IMAGES),
    ):
        result, wall, cpu = _timed(lambda name=name: build_lib.build_dataset(name, args))
        n = result["examples"]
        figures[name] = {
            "examples": n,
            "seconds": wall,
            "cpu_seconds": cpu,
            "source_bytes": _bytes(sources / archive),
            "record_bytes": result["bytes"],
            "scaled_examples": full,
            "scaled_seconds": wall / n * full,
            "scaled_cpu_seconds": cpu / n * full,
            "scaled_source_bytes": _bytes(sources / archive) / n * full,
            "scaled_record_bytes": result["bytes"] / n * full,
        }
    return figures


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def table(f: dict) -> str:
    """The figures as the README's markdown table (measured, then scaled)."""
    pm, tr, te = f["prepare_model"], f["prn_300w_lp"], f["aflw2000_3d"]
    lines = [
        f"{f['cores']} cores, {f['workers']} build workers, maps {f['map_size']}",
        "",
        "| stage | measured | time at full size | disk at full size |",
        "|---|---|---|---|",
        f"| prepare-model | real dimensions: {pm['seconds']:.1f} s ({pm['cpu_seconds']:.1f} CPU s) | "
        f"{pm['seconds']:.0f} s | {_gb(pm['output_bytes'])} written |",
    ]
    for name, d in (("build prn_300w_lp", tr), ("build aflw2000_3d", te)):
        lines.append(
            f"| {name} | {d['examples']} examples: {d['seconds']:.1f} s, {d['cpu_seconds']:.1f} CPU s, "
            f"{d['record_bytes'] / d['examples']:,.0f} B/example | "
            f"*{_duration(d['scaled_seconds'])}* ({d['scaled_examples']:,}; "
            f"*{_duration(d['scaled_cpu_seconds'] / 8)} on 8 cores*) | *{_gb(d['scaled_record_bytes'])}* |"
        )
    lines.append("")
    lines.append("*italic*: extrapolated linearly from the measured examples (8 cores: CPU seconds / 8).")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parse(argv or [])
    work = args.out or Path(tempfile.mkdtemp(prefix="prn_jax_data_prep_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        figures = measure(work, args.train, args.test, args.workers, args.map_size)
    finally:
        if not args.keep and args.out is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0
