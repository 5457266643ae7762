"""Building the tfds datasets prn_300w_lp and aflw2000_3d (array_record) from raw folders, with
a printed report (`prn-jax build`)."""

import shutil
import sys
import time
from pathlib import Path

from prn_jax.data import eval_data
from prn_jax.datasets.aflw2000_3d import Aflw20003d
from prn_jax.datasets.prn_300w_lp import Prn300wLp

DATASETS = ("prn_300w_lp", "aflw2000_3d")


def _directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_dataset(name, args, out=None) -> dict:
    """Builds one dataset; returns {'examples', 'seconds', 'bytes', 'report', 'path'}."""
    out = out or sys.stdout
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
        builder = Prn300wLp(config=config, workers=args.workers, **common)
    else:
        config = f"maps{args.map_size}" if args.model else "images"
        builder = Aflw20003d(config=config, **common)
    print(f"build: {name}/{config} -> {builder.data_dir}", file=out)
    marker = Path(args.manual_dir) / eval_data.SYNTHETIC_MARKER
    if marker.is_file():  # synthetic sources stay labelled as such in evaluation titles
        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(marker, Path(args.data_dir) / eval_data.SYNTHETIC_MARKER)
    start = time.perf_counter()
    builder.download_and_prepare()
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
