"""Tests of prn_jax.evaluation.report: CED PNG and the Table-1 markdown."""

import numpy as np
from PIL import Image

from prn_jax.evaluation import metrics, report


def test_plot_ced_writes_valid_png(tmp_path):
    rng = np.random.default_rng(0)
    curves = {"prn-jax": rng.uniform(0.01, 0.06, 50), "mean-face baseline": np.full(50, 0.08)}
    path = report.plot_ced(curves, tmp_path / "sub" / "ced_68_2d.png", "68 points, 2D")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size == (600, 450)


def _row(errors, yaw):
    return {
        "nme2d_68": metrics.bucket_means(errors, yaw),
        "nme3d_dense": metrics.bucket_means(np.asarray(errors) * 2, yaw),
    }


def test_table1_markdown_has_method_and_published_rows():
    yaw = [10.0, 45.0, 75.0, -20.0]
    results = {
        "prn-jax (ours)": _row([0.01, 0.02, 0.03, 0.03], yaw),
        "mean face (baseline)": _row([0.1, 0.1, 0.1, 0.1], [10.0, 10.0, 40.0, 40.0]),
    }
    text = report.table1_markdown(results, report.PRNET_PUBLISHED)
    lines = text.splitlines()
    header = lines[0]
    for col in (
        "68 pts 2D 0-30",
        "30-60",
        "60-90",
        "68 pts 2D Mean",
        "Dense 3D Mean",
        "68 pts 3D Mean",
        "Dense 2D Mean",
    ):
        assert col in header
    assert "Reconstruction" not in header  # no row has it
    ncols = header.count("|")
    table = [line for line in lines if line.startswith("|")]
    assert all(line.count("|") == ncols for line in table)
    ours = next(line for line in table if line.startswith("| prn-jax (ours) |"))
    # buckets 0.02 / 0.02 / 0.03, mean of means 0.023333, dense 3D doubled
    assert "| 4 | 2.00 | 2.00 | 3.00 | 2.33 |" in ours
    assert ours.rstrip().endswith("| 4.67 |")
    baseline = next(line for line in table if line.startswith("| mean face (baseline) |"))
    assert "| 10.00 | 10.00 | – | – |" in baseline  # empty 60-90 bucket: no mean either
    published = next(line for line in table if line.startswith(f"| {report.PUBLISHED_LABEL} |"))
    assert "| 2000 | 2.75 | 3.51 | 4.61 | 3.62 |" in published
    reimpl = next(line for line in table if line.startswith(f"| {report.REIMPLEMENTER_LABEL} |"))
    assert "| – | – | – | 3.24 | 4.80 | 3.80 | 5.20 |" in reimpl
    assert "published" in text.split("\n\n", 1)[1]  # the note explains the published rows
