"""Human-readable evaluation outputs: CED plots (PNG) and a markdown table laid out like Table 1
of PRNet (Feng et al. 2018).

Errors come in as ratios (as `prn_jax.evaluation.metrics` returns them) and are shown in percent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prn_jax.evaluation import metrics

# Metric keys of a result row, in table order, with their column headings. A row is
# {metric key: bucket dict as returned by metrics.bucket_means (or at least {"mean": ratio})},
# optionally with "n": number of images.
CED_TITLES = {
    "nme2d_68": "68 points, 2D",
    "nme3d_68": "68 points, 3D",
    "nme2d_dense": "dense, 2D",
    "nme3d_dense": "dense, 3D",
    "reconstruction": "reconstruction (ICP)",
}
METRIC_COLUMNS = {
    "nme2d_68": "68 pts 2D",
    "nme2d_68_diag": "68 pts 2D, box-diagonal normaliser",
    "nme3d_68": "68 pts 3D",
    "nme2d_dense": "Dense 2D",
    "nme3d_dense": "Dense 3D",
    "reconstruction": "Reconstruction (ICP)",
}
# Columns of the paper's layout (mean of the yaw-bucket means); the diagonal normaliser is only
# in the all-images part.
BUCKET_METRICS = ("nme2d_68", "nme3d_68", "nme2d_dense", "nme3d_dense", "reconstruction")

PUBLISHED_LABEL = "PRNet (published, real AFLW2000-3D)"
REIMPLEMENTER_LABEL = "PRNet official model (re-implementer's measurement, real AFLW2000-3D)"

# Reference rows, ratios. Paper Table 1 (68 points, 2D) per |yaw| bucket and mean of bucket
# means. The re-implementer's measurement of the released model gives one number per metric;
# whether it averages all images or the bucket means is not stated, so it sits in "Mean".
PRNET_PUBLISHED: dict[str, dict] = {
    PUBLISHED_LABEL: {
        "n": 2000,
        "nme2d_68": {"0-30": 0.0275, "30-60": 0.0351, "60-90": 0.0461, "mean": 0.0362},
    },
    REIMPLEMENTER_LABEL: {
        "n": 2000,
        "nme2d_68": {"mean": 0.0324},
        "nme3d_68": {"mean": 0.048},
        "nme2d_dense": {"mean": 0.038},
        "nme3d_dense": {"mean": 0.052},
    },
}


def _percent(value) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{100.0 * value:.2f}"


def _count(row: Mapping) -> str:
    if "n" in row:
        return str(row["n"])
    counts = row.get("nme2d_68", {}).get("counts")
    return str(sum(counts.values())) if counts else "–"


def _metric_table(header: list[str], rows: Mapping[str, Mapping], cells) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in rows.items():
        lines.append("| " + " | ".join([name, _count(row), *cells(row)]) + " |")
    return lines


def table1_markdown(
    results: Mapping[str, Mapping], published: Mapping[str, Mapping] = PRNET_PUBLISHED
) -> str:
    """Markdown: the paper's Table-1 layout (mean of the |yaw|-bucket means), then the means over
    all images (what the console prints), each labelled. Missing values show "–".

    Part 1 rows: methods, then the published reference rows; columns N, 68-point 2D NME per
    |yaw| bucket (0-30, 30-60, 60-90), then the mean of the bucket means of every metric of
    BUCKET_METRICS that any row has. Part 2 rows: methods; columns N and the all-images mean of
    every metric of METRIC_COLUMNS that any method has (incl. the box-diagonal normaliser).

    Args:
      results: {method name: row}, a row being {metric key: metrics.bucket_means(...) dict,
        "n": optional image count}; values are ratios.
      published: reference rows in the same layout (default: PRNET_PUBLISHED).

    Returns:
      The markdown text (tables plus explanatory notes), ending in a newline.
    """
    rows = {**results, **published}
    extra = [k for k in BUCKET_METRICS if k != "nme2d_68" and any(k in r for r in rows.values())]
    first = METRIC_COLUMNS["nme2d_68"]
    header = ["Method", "N", *(f"{first} {b}" for b in metrics.BUCKET_NAMES)]
    header += [f"{METRIC_COLUMNS[k]}, mean of buckets" for k in ("nme2d_68", *extra)]

    def bucket_cells(row):
        two_d = row.get("nme2d_68", {})
        return [_percent(two_d.get(b)) for b in (*metrics.BUCKET_NAMES, "mean")] + [
            _percent(row.get(k, {}).get("mean")) for k in extra
        ]

    all_keys = [k for k in METRIC_COLUMNS if any(k in r for r in results.values())]
    all_header = ["Method", "N", *(f"{METRIC_COLUMNS[k]}, all images" for k in all_keys)]
    lines = ["## Mean of the |yaw|-bucket means (the paper's Table 1)", ""]
    lines += _metric_table(header, rows, bucket_cells)
    lines += ["", "## Mean over all images", ""]
    lines += _metric_table(
        all_header, results, lambda row: [_percent(row.get(k, {}).get("all")) for k in all_keys]
    )
    notes = [
        "",
        "NME in %. 68 pts: mean per-point error / sqrt(w*h) of the ground-truth 68-point box "
        "(box-diagonal normaliser: / sqrt(w^2+h^2) of the same box, as some papers report); 3D adds "
        "z after shifting each z to min 0. Buckets by |yaw| in degrees; mean of buckets = mean of "
        "the three bucket means (– when a bucket is empty); all images = plain mean over the N images.",
        "Rows labelled as published were measured on the real AFLW2000-3D (2,000 images), not on "
        "the data of the other rows; they are for reference only. The re-implementer's row does not "
        "say how it averages; it is shown under mean of buckets.",
    ]
    if "reconstruction" in extra:
        notes.append(
            "Reconstruction: mean nearest-neighbour distance after ICP / outer interocular "
            "distance (prn-jax rows: average of both directions, prediction -> ground truth and "
            "back; see prn_jax.evaluation.protocol.reconstruction_error)."
        )
    return "\n".join(lines + notes) + "\n"


def ced_x_limit(curves: Mapping[str, Sequence[float] | np.ndarray]) -> float:
    """The CED x range (ratio): the 95th percentile of the curve that reaches it last."""
    return max(max(float(np.percentile(np.asarray(e, np.float64), 95)) for e in curves.values()), 1e-4)


def plot_ced(
    curves: Mapping[str, Sequence[float] | np.ndarray],
    path: str | Path,
    title: str,
    max_error: float | None = None,
    num: int = 201,
) -> Path:
    """Write a PNG of cumulative error distribution curves, one line per method.

    Args:
      curves: {method name: (N,) per-sample errors, ratios}.
      path: output .png path (parent directories are created).
      title: figure title, e.g. "AFLW2000-3D, 68 points, 2D".
      max_error: x-axis limit, ratio (0.1 = 10 %); default: the 95th percentile of the curve
        that reaches it last, so the range fits the errors.
      num: thresholds per curve.

    Returns:
      The path written.
    """
    if not curves:
        raise ValueError("curves: no methods to plot")
    if max_error is None:
        max_error = ced_x_limit(curves)
    fig = Figure(figsize=(6, 4.5 + 0.22 * len(curves)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, errors in curves.items():
        errors = np.asarray(errors, dtype=np.float64)
        thresholds, fraction = metrics.ced_curve(errors, max_error=max_error, num=num)
        label = f"{name} (mean NME {100.0 * errors.mean():.2f}%)"
        ax.plot(100.0 * thresholds, 100.0 * fraction, label=label)
    ax.set_xlim(0.0, 100.0 * max_error)
    ax.set_ylim(0.0, 100.0)
    ax.set_xlabel("NME (%)")
    ax.set_ylabel("Images with NME <= x (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    # Below the axes, so that no curve is hidden.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize="small", frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _jsonable(value):
    """NaN/inf -> None, numpy -> Python, recursively (metrics.json has no bare NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_outputs(
    out_dir,
    rows: Mapping[str, Mapping],
    results: Mapping[str, Mapping],
    info: Mapping,
    indices: np.ndarray | None = None,
) -> dict:
    """metrics.json, table1.md and ced_*.png (one per metric of CED_TITLES that has data).

    Args:
      rows: {method name: `summarise` row}; results: {method name: `evaluate` result}.
      info: provenance written into metrics.json (checkpoint, data, options).
      indices: the evaluated subset (balanced) or None for all images.

    Returns:
      {"metrics": path, "table": path, "ced": [paths]}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_image = {}
    for name, result in results.items():
        sel = np.arange(len(result["yaw_deg"])) if indices is None else indices
        per_image[name] = {
            "file_id": [result["file_ids"][i] for i in sel],
            "yaw_deg": result["yaw_deg"][sel],
            **{k: v[sel] for k, v in result["errors"].items()},
        }
    doc = {**info, "results": rows, "published": PRNET_PUBLISHED, "per_image": per_image}
    metrics_path = _write_atomic(
        out_dir / "metrics.json", json.dumps(_jsonable(doc), indent=1, allow_nan=False) + "\n"
    )
    header = [f"# Evaluation: {info.get('title', '')}".rstrip(), ""]
    table_path = _write_atomic(out_dir / "table1.md", "\n".join(header) + "\n" + table1_markdown(rows))
    ced_paths = []
    for key, title in CED_TITLES.items():
        curves = {}
        for name, entry in per_image.items():
            values = np.asarray(entry.get(key, []), np.float64)
            values = values[np.isfinite(values)]
            if values.size:
                curves[name] = values
        if curves:
            data = f"{info.get('data_kind', '')} {info.get('data_name', '')}".strip() or "AFLW2000-3D"
            ced_paths.append(plot_ced(curves, out_dir / f"ced_{key}.png", f"{data}, {title}"))
    return {"metrics": metrics_path, "table": table_path, "ced": ced_paths}


def _write_atomic(path: Path, text: str) -> Path:
    """Write `text` to a hidden temporary file beside `path`, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    tmp.replace(path)
    return path
