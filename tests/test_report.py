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
        assert image.size == (600, 494)  # 450 + the two legend rows below the axes


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
    buckets_part, all_part = text.split("## Mean over all images")
    table = [line for line in buckets_part.splitlines() if line.startswith("|")]
    header = table[0]
    for col in (
        "68 pts 2D 0-30",
        "68 pts 2D 30-60",
        "68 pts 2D 60-90",
        "68 pts 2D, mean of buckets",
        "Dense 3D, mean of buckets",
        "68 pts 3D, mean of buckets",
        "Dense 2D, mean of buckets",
    ):
        assert col in header
    assert "Reconstruction" not in text.split("NME in %")[0]  # no row has it
    ncols = header.count("|")
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
    # All images: plain means (ours 0.0225, baseline 0.1), labelled; published rows only above.
    rows = [line for line in all_part.splitlines() if line.startswith("|")]
    assert "68 pts 2D, all images" in rows[0] and "Dense 3D, all images" in rows[0]
    assert rows[2].startswith("| prn-jax (ours) | 4 | 2.25 |") and rows[2].rstrip().endswith("| 4.50 |")
    assert rows[3].startswith("| mean face (baseline) | 4 | 10.00 |")
    assert len(rows) == 4 and "published" in text.split("NME in %")[1]


def test_ced_range_fits_the_errors_and_the_legend_sits_outside(tmp_path):
    errors = {"a": np.linspace(0.0, 0.04, 101), "b": np.linspace(0.0, 0.4, 101)}
    path = report.plot_ced(errors, tmp_path / "ced.png", "t")
    with Image.open(path) as image:
        assert image.size == (600, 494)  # taller by the legend's rows below the axes
    fig_range = report.ced_x_limit(errors)
    assert fig_range == np.percentile(errors["b"], 95)
