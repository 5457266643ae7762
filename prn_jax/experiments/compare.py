"""Compare finished training runs: group them into variants (same config but the seed), aggregate
the seeds of each variant (mean, sample std, n) and write a Markdown table, a CSV, learning curves
and overlaid CED plots.

A run folder RUN holds run.json ({"config", "seed", "total_steps", "status", "step", ...}),
metrics.jsonl (training lines with "loss", validation lines with "val_nme2d_68") and, after
`prn-jax eval`, RUN/eval/<kind>-<data name>-<fingerprint>/<checkpoints>/metrics.json
(`prn_jax.evaluation.report.write_outputs`). A sweep root is a folder whose subfolders are runs.

Errors are ratios throughout (0.079 = 7.9 %); the Markdown table shows them in percent.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prn_jax.evaluation import report
from prn_jax.experiments.sweep import flatten

MISSING = "—"
SINGLE_VARIANT_LABEL = "all runs"
BEST_METRIC = "val_nme2d_68"  # the validation number the trainer keeps its best checkpoint on
# Preferred checkpoints of a test evaluation, in order; otherwise the one with the highest step.
CHECKPOINT_PREFERENCE = ("best", "last")

# Aggregated quantities: (key, table heading, shown in percent). Test keys are "test_<metric>"
# (mean of the |yaw|-bucket means, the paper's layout) and "test_nme2d_68_all" (all images).
TRAIN_COLUMNS = (
    ("final_loss", "final loss", False),
    (BEST_METRIC, f"val {report.METRIC_COLUMNS['nme2d_68']} (best)", True),
)
TEST_COLUMNS = (
    *((f"test_{k}", report.METRIC_COLUMNS[k], True) for k in report.BUCKET_METRICS),
    ("test_nme2d_68_all", f"{report.METRIC_COLUMNS['nme2d_68']}, all images", True),
)
COLUMNS = TRAIN_COLUMNS + TEST_COLUMNS


class CompareError(ValueError):
    """Runs that cannot be compared; the one-line message names the run folder (or path)."""


@dataclass
class Evaluation:
    """One checkpoint's row of a run's test evaluation (one metrics.json may hold several)."""

    path: Path  # the metrics.json
    data: dict  # kind, name, fingerprint, num_images, balanced
    checkpoint: dict  # name, step, method
    row: dict  # results[method]
    per_image: dict  # per_image[method]
    baseline: tuple[str, dict, dict] | None  # (method, row, per-image) of the reference method

    @property
    def data_key(self) -> tuple:
        d = self.data
        return (d["fingerprint"], d["num_images"], d["balanced"])


@dataclass
class Run:
    path: Path
    config: dict
    seed: int | None
    loss: tuple[np.ndarray, np.ndarray]  # (steps, training loss)
    val: tuple[np.ndarray, np.ndarray]  # (steps, val_nme2d_68)
    evaluations: list[Evaluation] = field(default_factory=list)
    test: Evaluation | None = None  # the chosen one

    @property
    def name(self) -> str:
        return self.path.name

    def values(self) -> dict[str, float]:
        """{COLUMNS key: value}, NaN where the run has none."""
        out = {
            "final_loss": float(self.loss[1][-1]) if self.loss[1].size else math.nan,
            BEST_METRIC: float(np.min(self.val[1])) if self.val[1].size else math.nan,
        }
        row = self.test.row if self.test else {}
        for key in report.BUCKET_METRICS:
            out[f"test_{key}"] = _number((row.get(key) or {}).get("mean"))
        out["test_nme2d_68_all"] = _number((row.get("nme2d_68") or {}).get("all"))
        return out


@dataclass
class Variant:
    label: str
    runs: list[Run]

    @property
    def n(self) -> int:
        return len(self.runs)

    def metrics(self) -> dict[str, dict]:
        values = [run.values() for run in self.runs]
        out = {}
        for key, _, _ in COLUMNS:
            mean, std, n = aggregate([v[key] for v in values])
            out[key] = {"mean": mean, "std": std, "n": n}
        return out

    def per_image(self, metric: str) -> np.ndarray:
        """The finite per-image test errors of all seeds, pooled."""
        tested = [run.test for run in self.runs if run.test]
        parts = [np.asarray(t.per_image.get(metric) or [], dtype=np.float64) for t in tested]
        pooled = np.concatenate(parts) if parts else np.zeros(0)
        return pooled[np.isfinite(pooled)]


def _number(value) -> float:
    return math.nan if value is None else float(value)


# --- collecting runs ------------------------------------------------------------------------------


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders of `paths`: each path is a run folder (it holds run.json) or a root whose
    immediate subfolders holding run.json are runs (in sweep order, by the index in their
    sweep_run.json, then by name). Duplicates are dropped.

    Raises:
      CompareError: a path that does not exist or holds no run.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if not path.is_dir():
            raise CompareError(f"{path}: no such folder")
        if (path / "run.json").is_file():
            runs = [path]
        else:
            runs = sorted(
                (p for p in path.iterdir() if p.is_dir() and (p / "run.json").is_file()), key=_sweep_order
            )
        if not runs:
            raise CompareError(
                f"{path}: no runs found (a run folder holds run.json; a sweep root holds run folders)"
            )
        for run in runs:
            if run.resolve() not in seen:
                seen.add(run.resolve())
                found.append(run)
    return found


def _sweep_order(run_dir: Path) -> tuple[int, str]:
    """(index in its sweep, name); runs not made by a sweep after those that are."""
    path = run_dir / "sweep_run.json"  # written by experiments.runner
    try:
        index = int(json.loads(path.read_text())["index"]) if path.is_file() else 1 << 30
    except (ValueError, KeyError, TypeError):
        index = 1 << 30
    return index, run_dir.name


def _read_json(path: Path, run_dir: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CompareError(f"{run_dir}: {path.name} is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise CompareError(f"{run_dir}: {path.name} does not hold a JSON object")
    return doc


def _read_metrics(run_dir: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    loss_steps, losses, val_steps, vals = [], [], [], []
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise CompareError(f"{run_dir}: metrics.jsonl line {number} is not valid JSON") from None
        if record.get("loss") is not None:
            loss_steps.append(record["step"])
            losses.append(record["loss"])
        if record.get(BEST_METRIC) is not None:
            val_steps.append(record["step"])
            vals.append(record[BEST_METRIC])

    def arrays(steps, values):
        return np.asarray(steps, np.float64), np.asarray(values, np.float64)

    return arrays(loss_steps, losses), arrays(val_steps, vals)


def _evaluations(run_dir: Path) -> list[Evaluation]:
    """Every checkpoint row of RUN/eval/*/*/metrics.json."""
    out = []
    for path in sorted(run_dir.glob("eval/*/*/metrics.json")):
        doc = _read_json(path, run_dir)
        checkpoints = doc.get("checkpoints") or []
        results = doc.get("results") or {}
        per_image = doc.get("per_image") or {}
        if "data_fingerprint" not in doc:
            raise CompareError(f"{run_dir}: {path.relative_to(run_dir)} has no data_fingerprint")
        data = {
            "fingerprint": str(doc["data_fingerprint"]),
            "name": str(doc.get("data_name", "")),
            "kind": str(doc.get("data_kind", "")),
            "num_images": doc.get("num_images"),
            "balanced": bool((doc.get("subset") or {}).get("balanced", False)),
        }
        methods = {c.get("method") for c in checkpoints}
        others = [m for m in results if m not in methods]
        # The reference row: the baseline method (prn_jax.evaluation.baseline.BASELINE_NAME).
        others.sort(key=lambda m: not m.lower().startswith("baseline"))
        baseline = (others[0], results[others[0]], per_image.get(others[0]) or {}) if others else None
        for checkpoint in checkpoints:
            method = checkpoint.get("method")
            if method not in results:
                continue
            out.append(
                Evaluation(
                    path=path,
                    data=data,
                    checkpoint={
                        "name": str(checkpoint.get("name", "")),
                        "step": checkpoint.get("step"),
                        "method": method,
                    },
                    row=results[method],
                    per_image=per_image.get(method) or {},
                    baseline=baseline,
                )
            )
    return out


def load_run(run_dir: str | Path) -> Run:
    """A finished run: config, seed, training/validation curves and its test evaluations.

    Raises:
      CompareError: the run is unfinished (status != "finished" or step != total_steps) or its
        files are unreadable.
    """
    run_dir = Path(run_dir)
    info = _read_json(run_dir / "run.json", run_dir)
    status, step, total = info.get("status"), info.get("step"), info.get("total_steps")
    if status != "finished" or step is None or step != total:
        raise CompareError(
            f"{run_dir}: unfinished run (status {status}, step {step} of {total}); compare finished runs only"
        )
    config = info.get("config")
    if not isinstance(config, dict):
        raise CompareError(f"{run_dir}: run.json has no config")
    loss, val = _read_metrics(run_dir)
    seed = info.get("seed", config.get("seed"))
    return Run(run_dir, config, seed, loss, val, _evaluations(run_dir))


def _data_text(data: Mapping) -> str:
    text = f"{data['kind']} {data['name']}".strip() or "test data"
    extra = f", {data['num_images']} images" if data.get("num_images") is not None else ""
    extra += ", balanced subset" if data.get("balanced") else ""
    return f"{text} (fingerprint {data['fingerprint']}{extra})"


def _choose_evaluations(runs: Sequence[Run], data: str | None) -> None:
    """Set run.test for every run (or none): the same test data for all, best > last > latest."""
    with_eval = [r for r in runs if r.evaluations]
    if not with_eval:
        if data:
            raise CompareError(f"{runs[0].path}: no test evaluation (RUN/eval/...) but --data {data} given")
        return
    if len(with_eval) != len(runs):
        missing = next(r for r in runs if not r.evaluations)
        raise CompareError(
            f"{missing.path}: no test evaluation, but {with_eval[0].path} has one; "
            f"evaluate every run (prn-jax eval) or none"
        )
    if data:
        for run in runs:
            run.evaluations = [
                e
                for e in run.evaluations
                if e.data["fingerprint"].startswith(data)
                or data in (e.data["name"], f"{e.data['kind']}-{e.data['name']}")
            ]
            if not run.evaluations:
                raise CompareError(f"{run.path}: no test evaluation on data {data!r}")
    common = set.intersection(*({e.data_key for e in r.evaluations} for r in runs))
    if not common:
        first = runs[0]
        keys = {e.data_key for e in first.evaluations}
        other = next(r for r in runs[1:] if not keys & {e.data_key for e in r.evaluations})
        raise CompareError(
            f"{other.path}: test-evaluated on {_data_text(other.evaluations[0].data)}, but "
            f"{first.path} on {_data_text(first.evaluations[0].data)}; compare runs tested on the same data"
        )
    if len(common) > 1:
        described = sorted({_data_text(e.data) for e in runs[0].evaluations if e.data_key in common})
        raise CompareError(
            f"{runs[0].path}: the runs were evaluated on several data sets ({'; '.join(described)}); "
            f"choose one with --data FINGERPRINT"
        )
    (key,) = common
    for run in runs:
        candidates = [e for e in run.evaluations if e.data_key == key]

        def rank(e: Evaluation):
            name = e.checkpoint["name"]
            preference = CHECKPOINT_PREFERENCE.index(name) if name in CHECKPOINT_PREFERENCE else 2
            step = e.checkpoint["step"] if isinstance(e.checkpoint["step"], int) else -1
            return (preference, -step, -e.path.stat().st_mtime)

        run.test = min(candidates, key=rank)


# --- variants and aggregation ---------------------------------------------------------------------


def _without_seed(config: Mapping) -> dict:
    return {k: v for k, v in config.items() if k != "seed"}


def _variant_key(config: Mapping) -> str:
    return json.dumps(_without_seed(config), sort_keys=True, default=str)


def format_value(value) -> str:
    """A config value for a label: numbers compactly (1.0 -> 1, 0.001 -> 0.001), sequences as
    (16,4,3,0)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(format_value(v) for v in value) + ")"
    return str(value)


def variant_labels(configs: Sequence[Mapping]) -> list[str]:
    """One label per config: `field=value` for every flattened config field (dotted key, "seed"
    left out) whose value differs between the configs, joined by ", "; "all runs" when they do
    not differ. A field missing from a config shows as `field=unset`."""
    flat = [flatten(_without_seed(c)) for c in configs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    unset = object()

    def canonical(value):
        return unset if value is unset else json.dumps(value, sort_keys=True, default=str)

    differing = [k for k in keys if len({canonical(f.get(k, unset)) for f in flat}) > 1]
    if not differing:
        return [SINGLE_VARIANT_LABEL] * len(configs)
    return [", ".join(f"{k}={format_value(f[k]) if k in f else 'unset'}" for k in differing) for f in flat]


def aggregate(values: Iterable[float | None]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (ddof=1), n) over the finite values (None counts as
    missing); std is NaN when n < 2, mean is NaN when n == 0."""
    array = np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)
    array = array[np.isfinite(array)]
    n = int(array.size)
    mean = float(array.mean()) if n else math.nan
    std = float(array.std(ddof=1)) if n > 1 else math.nan
    return mean, std, n


def group_variants(runs: Sequence[Run]) -> list[Variant]:
    """Runs grouped by their config without "seed", in first-seen order, labelled."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(_variant_key(run.config), []).append(run)
    labels = variant_labels([members[0].config for members in groups.values()])
    return [Variant(label, members) for label, members in zip(labels, groups.values())]


# --- outputs --------------------------------------------------------------------------------------


def _value(value: float, percent: bool) -> str:
    return f"{100.0 * value:.2f}" if percent else f"{value:.4g}"


def format_cell(stats: Mapping, runs: int, percent: bool) -> str:
    """ "7.90 ± 0.31" (percent) from {"mean", "std", "n"}; "± —" for one value, "—" for none,
    "(n=k)" when only k of the variant's runs have the value."""
    if not stats["n"]:
        return MISSING
    std = _value(stats["std"], percent) if stats["n"] > 1 else MISSING
    cell = f"{_value(stats['mean'], percent)} ± {std}"
    return cell if stats["n"] == runs else f"{cell} (n={stats['n']})"


def _checkpoint_text(run: Run) -> str:
    c = run.test.checkpoint
    return c["name"] if str(c["name"]) == str(c["step"]) else f"{c['name']} step {c['step']}"


def _baseline(runs: Sequence[Run]) -> tuple[str, dict, dict] | None:
    return runs[0].test.baseline if runs and runs[0].test else None


def markdown(variants: Sequence[Variant], title: str) -> str:
    """The comparison table (see `compare`) with its data line, notes and run lists."""
    runs = [r for v in variants for r in v.runs]
    stats = [v.metrics() for v in variants]
    baseline = _baseline(runs)
    baseline_values = {}
    if baseline:
        row = baseline[1]
        baseline_values = {
            f"test_{k}": _number((row.get(k) or {}).get("mean")) for k in report.BUCKET_METRICS
        }
        baseline_values["test_nme2d_68_all"] = _number((row.get("nme2d_68") or {}).get("all"))
    tested = runs[0].test is not None
    test_columns = [
        c
        for c in TEST_COLUMNS
        if tested and (any(s[c[0]]["n"] for s in stats) or math.isfinite(baseline_values.get(c[0], math.nan)))
    ]
    columns = [*TRAIN_COLUMNS, *test_columns]
    header = ["Variant", "n", *(c[1] for c in columns)] + (["test checkpoint"] if tested else [])
    lines = [f"# {title}", ""]
    if tested:
        lines.append(
            f"Test columns: {_data_text(runs[0].test.data)}; mean of the three |yaw|-bucket means (the "
            f"paper's Table 1 layout), except the all-images column."
        )
    else:
        lines.append("Test columns: none (no run has a test evaluation; `prn-jax eval` writes one).")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, s in zip(variants, stats):
        cells = [variant.label, str(variant.n), *(format_cell(s[c[0]], variant.n, c[2]) for c in columns)]
        if tested:
            cells.append(", ".join(dict.fromkeys(r.test.checkpoint["name"] for r in variant.runs)))
        lines.append("| " + " | ".join(cells) + " |")
    if baseline:
        cells = [f"{baseline[0]} (reference)", MISSING, MISSING, MISSING]
        for key, _, percent in test_columns:
            value = baseline_values.get(key, math.nan)
            cells.append(_value(value, percent) if math.isfinite(value) else MISSING)
        lines.append("| " + " | ".join(cells + [MISSING]) + " |")
    lines += [
        "",
        "Mean ± sample standard deviation (ddof=1) over the runs (seeds) of a variant; n = runs; "
        "± — when n = 1, (n=k) when only k runs have the value. Errors: NME in %; final loss: the "
        "last logged training loss; val (best): the lowest validation 68-point 2D NME of a run "
        "(the step of its best checkpoint).",
    ]
    if baseline:
        lines.append(f"The reference row is {runs[0].name}'s evaluation of the same data.")
    lines += ["", "Runs:", ""]
    for variant in variants:
        parts = [
            f"{r.name} (seed {r.seed}" + (f", {_checkpoint_text(r)})" if r.test else ")")
            for r in variant.runs
        ]
        lines.append(f"- {variant.label}: {', '.join(parts)}")
    return "\n".join(lines) + "\n"


def csv_text(variants: Sequence[Variant]) -> str:
    """One row per variant: variant, n, <key>_mean and <key>_std for every COLUMNS key (ratios;
    empty when missing), runs (folder names joined by ";")."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["variant", "n", *(f"{k}{s}" for k, _, _ in COLUMNS for s in ("_mean", "_std")), "runs"])
    for variant in variants:
        stats = variant.metrics()
        cells = []
        for key, _, _ in COLUMNS:
            for part in ("mean", "std"):
                value = stats[key][part]
                cells.append(repr(value) if math.isfinite(value) else "")
        writer.writerow([variant.label, variant.n, *cells, ";".join(r.name for r in variant.runs)])
    return buffer.getvalue()


def _band(series: Sequence[tuple[np.ndarray, np.ndarray]]):
    """(steps, mean, min, max) over the series, each interpolated onto the union of their steps
    (within its own step range)."""
    union = np.unique(np.concatenate([s for s, _ in series]))
    stack = np.full((len(series), union.size), np.nan)
    for i, (steps, values) in enumerate(series):
        order = np.argsort(steps)
        steps, values = steps[order], values[order]
        inside = (union >= steps[0]) & (union <= steps[-1])
        stack[i, inside] = np.interp(union[inside], steps, values)
    return union, np.nanmean(stack, 0), np.nanmin(stack, 0), np.nanmax(stack, 0)


def _save_png(fig: Figure, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.partial")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path


def plot_learning_curves(variants: Sequence[Variant], path: str | Path) -> Path:
    """Training loss (log y) and validation 68-point 2D NME (%) against the step: per variant the
    mean over its seeds as a line and the min-max over them as a band; legend below the axes."""
    path = Path(path)
    height = 4.2 + 0.25 * len(variants)
    fig = Figure(figsize=(12, height), dpi=100)
    FigureCanvasAgg(fig)
    loss_ax, val_ax = fig.subplots(1, 2)
    handles, any_val, positive = [], False, True
    for i, variant in enumerate(variants):
        colour = f"C{i % 10}"
        label = f"{variant.label} (n={variant.n})"
        losses = [r.loss for r in variant.runs if r.loss[0].size]
        if losses:
            steps, mean, low, high = _band(losses)
            positive &= bool(np.all(low > 0))
            (line,) = loss_ax.plot(steps, mean, color=colour, label=label)
            loss_ax.fill_between(steps, low, high, color=colour, alpha=0.2, linewidth=0)
            handles.append(line)
        vals = [r.val for r in variant.runs if r.val[0].size]
        if vals:
            any_val = True
            steps, mean, low, high = _band(vals)
            (line,) = val_ax.plot(steps, 100 * mean, color=colour, marker=".", label=label)
            val_ax.fill_between(steps, 100 * low, 100 * high, color=colour, alpha=0.2, linewidth=0)
            if not losses:
                handles.append(line)
    if positive and handles:
        loss_ax.set_yscale("log")
    loss_ax.set(xlabel="step", ylabel="training loss", title="Training loss")
    val_ax.set(xlabel="step", ylabel="NME (%)", title=f"Validation {report.METRIC_COLUMNS['nme2d_68']}")
    if not any_val:
        val_ax.text(0.5, 0.5, "no periodic validation", ha="center", va="center", transform=val_ax.transAxes)
    for ax in (loss_ax, val_ax):
        ax.grid(True, alpha=0.3)
    legend_fraction = min(0.6, (0.19 * len(handles) + 0.1) / height)
    if handles:
        fig.legend(
            handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), fontsize="small", frameon=False
        )
    fig.tight_layout(rect=(0, legend_fraction, 1, 1))
    return _save_png(fig, path)


def plot_ceds(variants: Sequence[Variant], out_dir: Path) -> list[Path]:
    """ced_<metric>.png per metric of report.CED_TITLES with data: one curve per variant (the
    per-image errors of its seeds pooled) plus the reference baseline."""
    runs = [r for v in variants for r in v.runs]
    if not runs or runs[0].test is None:
        return []
    baseline = _baseline(runs)
    data = runs[0].test.data
    name = f"{data['kind']} {data['name']}".strip() or "test data"
    paths = []
    for metric, title in report.CED_TITLES.items():
        curves = {}
        for variant in variants:
            errors = variant.per_image(metric)
            if errors.size:
                curves[variant.label] = errors
        if not curves:
            continue
        if baseline:
            errors = np.asarray(baseline[2].get(metric) or [], dtype=np.float64)
            errors = errors[np.isfinite(errors)]
            if errors.size:
                curves[baseline[0]] = errors
        path = out_dir / f"ced_{metric}.png"
        tmp = path.with_name(f".{path.name}.partial")
        report.plot_ced(curves, tmp, f"{name}, {title}")
        tmp.replace(path)
        paths.append(path)
    return paths


def compare(paths: Sequence[str | Path], out: str | Path | None = None, data: str | None = None) -> dict:
    """Compare runs: find them, check they are finished and evaluated alike, group the seeds of a
    variant, and write comparison.md, comparison.csv, learning_curves.png and ced_<metric>.png.

    Args:
      paths: run folders and/or sweep roots (folders whose subfolders are runs).
      out: output folder (created); default ROOT/compare for a single root argument.
      data: the test data to use when the runs were evaluated on several: a fingerprint (or its
        prefix), a data name or "<kind>-<name>".

    Returns:
      {"table": path, "csv": path, "plots": [paths], "variants": [{"label", "runs", "n",
       "metrics": {key: {"mean", "std", "n"}}}]} (keys of COLUMNS; ratios, loss as logged).

    Raises:
      CompareError: no runs, an unfinished run, different test data, some runs evaluated and
        others not, or no output folder for several arguments.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise CompareError("no run folders or sweep roots given")
    run_dirs = find_runs(paths)
    if out is None:
        if len(paths) != 1 or (paths[0] / "run.json").is_file():
            raise CompareError(
                f"{paths[0]}: an output folder (--out) is needed unless the one argument is a sweep root"
            )
        out = paths[0] / "compare"
    out = Path(out)
    runs = [load_run(d) for d in run_dirs]
    _choose_evaluations(runs, data)
    variants = group_variants(runs)
    out.mkdir(parents=True, exist_ok=True)
    where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} folders"
    title = f"Comparison of {len(runs)} runs in {len(variants)} variants: {where}"
    table = report._write_atomic(out / "comparison.md", markdown(variants, title))
    csv_path = report._write_atomic(out / "comparison.csv", csv_text(variants))
    plots = [plot_learning_curves(variants, out / "learning_curves.png"), *plot_ceds(variants, out)]
    return {
        "table": table,
        "csv": csv_path,
        "plots": plots,
        "variants": [
            {"label": v.label, "runs": [r.name for r in v.runs], "n": v.n, "metrics": v.metrics()}
            for v in variants
        ],
    }
