"""Building the tfds datasets prn_300w_lp and aflw2000_3d (array_record) from raw folders, with
a printed report (`prn-jax build`)."""

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from prn_jax.data import eval_data
from prn_jax.datasets.aflw2000_3d import Aflw20003d
from prn_jax.datasets.prn_300w_lp import Prn300wLp

DATASETS = ("prn_300w_lp", "aflw2000_3d")
SOURCE_FILE = "prn_jax_source.json"  # in each built dataset's folder: `source_fingerprint`


class SourceMismatchError(ValueError):
    """The data dir holds this dataset built from other source files; the message names --force."""


def source_fingerprint(manual_dir, model_dir=None) -> dict:
    """{"files", "bytes", "sha1"} of the source: every file under `manual_dir` (and `model_dir`)
    with its relative path, size and modification time (no contents read: seconds for 300W-LP).
    A root that is a file (a `--manual-dir` zip) counts as that one file; an archive is one file,
    so replacing or touching 300W-LP.zip changes the fingerprint."""
    digest, files, total = hashlib.sha1(), 0, 0
    roots = [Path(manual_dir)] + ([Path(model_dir)] if model_dir else [])
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            stat = path.stat()
            relative = path.name if path == root else path.relative_to(root)
            digest.update(f"{root.name}/{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            files, total = files + 1, total + stat.st_size
    return {"files": files, "bytes": total, "sha1": digest.hexdigest()}


def _directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_arguments(data_dir, manual_dir, model, map_size: int, workers: int) -> argparse.Namespace:
    """`prn-jax build`'s arguments for a plain build of everything under `manual_dir` (with the
    *_Flip folders, no augmented copies, nothing skipped), as the main jobs and benchmarks use."""
    return argparse.Namespace(
        data_dir=data_dir,
        manual_dir=manual_dir,
        model=model,
        skip_invalid=False,
        map_size=map_size,
        flip=True,
        augmented_copies=0,
        raw_crops=False,
        workers=workers,
        subsets=None,
    )


def build_dataset(name, args, out=None) -> dict:
    """Builds one dataset; returns {'examples', 'seconds', 'bytes', 'report', 'path'}."""
    out = out or sys.stdout
    subsets = getattr(args, "subsets", None) if name == "prn_300w_lp" else None
    common = dict(
        data_dir=str(args.data_dir),
        manual_dir=args.manual_dir,
        model_dir=args.model,
        skip_invalid=args.skip_invalid,
    )
    if name == "prn_300w_lp":
        config = f"size{args.map_size}" + ("" if args.flip else "_noflip")
        if args.augmented_copies:
            if not args.flip:
                raise ValueError(
                    "--augmented-copies: the augmented configs include the *_Flip folders; drop --no-flip"
                )
            config = f"size{args.map_size}_aug{args.augmented_copies}"
        if getattr(args, "raw_crops", False):
            if not args.flip or args.augmented_copies:
                raise ValueError("--raw-crops: the raw configs hold all 8 folders, no augmented copies")
            config = f"size{args.map_size}_raw"
        builder = Prn300wLp(config=config, workers=args.workers, subsets=subsets, **common)
    else:
        config = f"maps{args.map_size}" if args.model else "images"
        builder = Aflw20003d(config=config, **common)
    print(f"build: {name}/{config} -> {builder.data_dir}", file=out)
    marker = Path(args.manual_dir) / eval_data.SYNTHETIC_MARKER
    if marker.is_file():  # synthetic sources stay labelled as such in evaluation titles
        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(marker, Path(args.data_dir) / eval_data.SYNTHETIC_MARKER)
    fingerprint = source_fingerprint(args.manual_dir, args.model)
    if subsets:  # part of 300W-LP is another source than all of it
        fingerprint["subsets"] = sorted(subsets)
    dataset_dir = Path(builder.data_dir)
    if (dataset_dir / "dataset_info.json").is_file():
        stored_path = dataset_dir / SOURCE_FILE
        stored = json.loads(stored_path.read_text()) if stored_path.is_file() else None
        if stored != fingerprint:
            if not getattr(args, "force", False):
                was = f"{stored['files']} files" if stored else "an unrecorded source"
                raise SourceMismatchError(
                    f"{dataset_dir}: already built from another source ({was}; --manual-dir "
                    f"{args.manual_dir} has {fingerprint['files']} files); pass --force to rebuild it, "
                    f"or use another --data-dir"
                )
            print(f"  --force: removing {dataset_dir} (built from another source)", file=out)
            shutil.rmtree(dataset_dir)
        else:
            print(
                f"  reusing {dataset_dir}: already built from this source ({fingerprint['files']} files)",
                file=out,
            )
    start = time.perf_counter()
    builder.download_and_prepare()
    if not (dataset_dir / SOURCE_FILE).is_file():
        (dataset_dir / SOURCE_FILE).write_text(json.dumps(fingerprint) + "\n")
    seconds = time.perf_counter() - start
    report = builder.build_report
    examples = sum(split.num_examples for split in builder.info.splits.values())
    size = _directory_bytes(Path(builder.data_dir))
    for folder, count in report.images_per_folder.items():
        print(f"  {folder}: {count} image/.mat pairs", file=out)
    for path, key, reason in report.skipped:
        print(f"  skipped {path}: {key}: {reason}", file=out)
    print(
        f"  {examples} examples, {len(report.skipped)} skipped, {seconds:.1f} s "
        f"({report.examples / max(seconds, 1e-9):.1f} examples/s this run), "
        f"{size / max(examples, 1):,.0f} bytes/example",
        file=out,
    )
    return {
        "examples": examples,
        "seconds": seconds,
        "bytes": size,
        "report": report,
        "path": builder.data_dir,
    }
