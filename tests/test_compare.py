"""Tests of prn_jax.experiments.compare and `prn-jax compare` on fabricated run folders."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from prn_jax import cli
from prn_jax.evaluation import report
from prn_jax.experiments import compare

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FINGERPRINT = "0123456789ab"
BASELINE = "Baseline: mean face in GT crop"
METRICS = ("nme2d_68", "nme2d_68_diag", "nme3d_68", "nme2d_dense", "nme3d_dense", "reconstruction")
# variant (weight ratios) -> seeds
VARIANTS = {(16.0, 4.0, 3.0, 0.0): (0, 1), (1.0, 1.0, 1.0, 0.0): (0, 1), (1.0, 1.0, 1.0, 1.0): (0,)}
TOTAL_STEPS = 100


def _config(ratios, seed):
    return {
        "seed": seed,
        "weight_ratios": list(ratios),
        "learning_rate": 0.001,
        "data": {"dir": "data/tfds", "builder_config": "size64"},
        "augment": {"enabled": False},
    }


def _buckets(errors, yaw):
    yaw = np.abs(yaw)
    parts = [errors[(yaw > lo) & (yaw <= hi)] for lo, hi in ((-1, 30), (30, 60), (60, 90))]
    means = [float(p.mean()) for p in parts]
    return {
        **dict(zip(("0-30", "30-60", "60-90"), means)),
        "mean": float(np.mean(means)),
        "all": float(errors.mean()),
    }


def _eval_doc(rng, method, step, fingerprint, scale):
    yaw = rng.uniform(-90, 90, 30)
    yaw[:3] = (10.0, 45.0, 75.0)  # every bucket has images
    results, per_image = {}, {}
    for name, level in ((method, scale), (BASELINE, 0.2)):
        errors = {k: level * rng.uniform(0.5, 1.5, yaw.size) for k in METRICS}
        errors["reconstruction"][:2] = np.nan  # missing per-image values are null
        results[name] = {"n": int(yaw.size)}
        for k, e in errors.items():
            finite = np.isfinite(e)
            results[name][k] = _buckets(e[finite], yaw[finite])
        per_image[name] = {
            "file_id": [f"img{i}" for i in range(yaw.size)],
            "yaw_deg": yaw.tolist(),
            **{k: [None if not math.isfinite(v) else float(v) for v in e] for k, e in errors.items()},
        }
    return {
        "data_fingerprint": fingerprint,
        "data_name": "AFLW2000",
        "data_kind": "synthetic",
        "num_images": int(yaw.size),
        "checkpoints": [{"method": method, "name": "best", "folder": "best", "step": step}],
        "results": results,
        "per_image": per_image,
    }


def make_run(
    root,
    name,
    ratios,
    seed,
    *,
    status="finished",
    step=TOTAL_STEPS,
    fingerprint=FINGERPRINT,
    evaluate=True,
    validate=True,
    rng=None,
):
    rng = rng or np.random.default_rng([seed, *name.encode()])
    run = root / name
    run.mkdir(parents=True)
    info = {
        "config": _config(ratios, seed),
        "seed": seed,
        "total_steps": TOTAL_STEPS,
        "status": status,
        "step": step,
        "git_revision": "abc",
    }
    (run / "run.json").write_text(json.dumps(info))
    lines = []
    for s in range(10, step + 1, 10):
        loss = float(rng.uniform(0.5, 1.5) / s)
        lines.append(
            {
                "step": s,
                "loss": loss,
                "total_loss": loss,
                "grad_norm": 1.0,
                "learning_rate": 1e-3,
                "seconds": 0.1,
            }
        )
        if validate and s % 50 == 0:
            lines.append(
                {
                    "step": s,
                    "val_nme2d_68": float(rng.uniform(0.05, 0.1)),
                    "val_nme3d_68": float(rng.uniform(0.05, 0.1)),
                }
            )
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if evaluate:
        best = 50
        out = run / "eval" / f"synthetic-AFLW2000-{fingerprint}" / f"best{best}"
        out.mkdir(parents=True)
        doc = _eval_doc(rng, f"prn-jax best (step {best})", best, fingerprint, rng.uniform(0.05, 0.1))
        (out / "metrics.json").write_text(json.dumps(doc))
    return run


def make_sweep(root, **kwargs):
    runs = []
    for i, (ratios, seeds) in enumerate(VARIANTS.items()):
        for seed in seeds:
            runs.append(make_run(root, f"v{i}_seed{seed}", ratios, seed, **kwargs))
    return runs


# --- recomputation from the files, independent of the module ------------------------------------


def _recompute(run):
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    vals = [x["val_nme2d_68"] for x in lines if "val_nme2d_68" in x]
    doc = json.loads(next(run.glob("eval/*/*/metrics.json")).read_text())
    row = doc["results"][doc["checkpoints"][0]["method"]]
    out = {
        "final_loss": [x["loss"] for x in lines if "loss" in x][-1],
        "val_nme2d_68": min(vals) if vals else math.nan,
        "test_nme2d_68_all": row["nme2d_68"]["all"],
    }
    out.update({f"test_{k}": row[k]["mean"] for k in report.BUCKET_METRICS})
    return out


def _expected(runs_of_variant, key):
    values = np.array([_recompute(r)[key] for r in runs_of_variant])
    std = float(np.std(values, ddof=1)) if values.size > 1 else math.nan
    return float(np.mean(values)), std


def _table_rows(text):
    rows = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    return header, {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in rows[2:]}


def test_helpers():
    configs = [_config(r, s) for r, seeds in VARIANTS.items() for s in seeds]
    labels = compare.variant_labels(configs)
    assert labels[0] == labels[1] == "weight_ratios=(16,4,3,0)"  # the seed does not count
    assert labels[2] == "weight_ratios=(1,1,1,0)"
    assert compare.variant_labels(configs[:2]) == ["all runs", "all runs"]
    nested = [_config((1, 1, 1, 0), 0), _config((1, 1, 1, 0), 0)]
    nested[1]["data"]["dir"] = "other"
    nested[1]["learning_rate"] = 1e-4
    assert compare.variant_labels(nested) == [
        "learning_rate=0.001, data.dir=data/tfds",
        "learning_rate=0.0001, data.dir=other",
    ]
    mean, std, n = compare.aggregate([0.1, 0.3, None, float("nan")])
    assert (mean, n) == (pytest.approx(0.2), 2) and std == pytest.approx(np.std([0.1, 0.3], ddof=1))
    mean, std, n = compare.aggregate([0.5])
    assert mean == 0.5 and math.isnan(std) and n == 1
    assert compare.aggregate([])[2] == 0


def test_find_runs(tmp_path):
    runs = make_sweep(tmp_path / "sweep", evaluate=False)
    (tmp_path / "sweep" / "not_a_run").mkdir()
    assert compare.find_runs([tmp_path / "sweep"]) == sorted(runs)
    assert compare.find_runs([runs[1], tmp_path / "sweep"])[0] == runs[1]
    assert len(compare.find_runs([runs[1], tmp_path / "sweep"])) == len(runs)
    with pytest.raises(compare.CompareError, match="not_a_run: no runs found"):
        compare.find_runs([tmp_path / "sweep" / "not_a_run"])


def test_compare_table_csv_and_plots(tmp_path):
    root = tmp_path / "sweep"
    runs = make_sweep(root)
    result = compare.compare([root])
    out = root / "compare"
    assert result["table"] == out / "comparison.md" and result["csv"] == out / "comparison.csv"
    groups = [runs[0:2], runs[2:4], runs[4:5]]
    labels = ["weight_ratios=(16,4,3,0)", "weight_ratios=(1,1,1,0)", "weight_ratios=(1,1,1,1)"]
    assert [v["label"] for v in result["variants"]] == labels
    assert [v["runs"] for v in result["variants"]] == [[r.name for r in g] for g in groups]

    text = result["table"].read_text()
    assert "synthetic AFLW2000 (fingerprint 0123456789ab, 30 images)" in text
    header, rows = _table_rows(text)
    assert header[:4] == ["Variant", "n", "final loss", "val 68 pts 2D (best)"]
    for key in report.BUCKET_METRICS:
        assert report.METRIC_COLUMNS[key] in header
    assert "68 pts 2D, all images" in header and header[-1] == "test checkpoint"
    column = {key: header.index(heading) for key, heading, _ in compare.COLUMNS}
    for label, group in zip(labels, groups):
        cells = rows[label]
        assert cells[1] == str(len(group)) and cells[-1] == "best"
        for key, _, percent in compare.COLUMNS:
            mean, std = _expected(group, key)
            scale, fmt = (100.0, "{:.2f}") if percent else (1.0, "{:.4g}")
            want = fmt.format(scale * mean) + " ± " + ("—" if len(group) == 1 else fmt.format(scale * std))
            assert cells[column[key]] == want, (label, key)
    baseline_doc = json.loads(next(runs[0].glob("eval/*/*/metrics.json")).read_text())["results"][BASELINE]
    baseline_cells = rows[f"{BASELINE} (reference)"]
    assert baseline_cells[column["test_nme3d_dense"]] == f"{100 * baseline_doc['nme3d_dense']['mean']:.2f}"
    assert baseline_cells[column["val_nme2d_68"]] == "—"
    runs_line = "- weight_ratios=(16,4,3,0): v0_seed0 (seed 0, best step 50), v0_seed1 (seed 1, best step 50)"
    assert runs_line in text

    with result["csv"].open() as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == labels
    for row, group in zip(table, groups):
        assert row["n"] == str(len(group)) and row["runs"] == ";".join(r.name for r in group)
        for key, _, _ in compare.COLUMNS:
            mean, std = _expected(group, key)
            assert float(row[f"{key}_mean"]) == pytest.approx(mean, rel=1e-12)
            if len(group) > 1:
                assert float(row[f"{key}_std"]) == pytest.approx(std, rel=1e-12)
            else:
                assert row[f"{key}_std"] == ""
    for variant, group in zip(result["variants"], groups):
        want = _expected(group, "test_nme2d_68")[0]
        assert variant["metrics"]["test_nme2d_68"]["mean"] == pytest.approx(want)

    names = sorted(p.name for p in result["plots"])
    assert names == sorted(["learning_curves.png", *(f"ced_{k}.png" for k in report.CED_TITLES)])
    for path in result["plots"]:
        assert path.parent == out and path.read_bytes()[:8] == PNG_SIGNATURE
    assert not list(out.glob(".*partial"))


def test_runs_without_validation_or_evaluation(tmp_path):
    runs = [make_run(tmp_path, f"r{s}", (16, 4, 3, 0), s, evaluate=False, validate=False) for s in range(2)]
    result = compare.compare(runs, tmp_path / "out")
    header, rows = _table_rows(result["table"].read_text())
    assert header == ["Variant", "n", "final loss", "val 68 pts 2D (best)"]  # no test columns
    assert rows["all runs"][3] == "—"
    assert [p.name for p in result["plots"]] == ["learning_curves.png"]


def test_unfinished_run_is_refused(tmp_path):
    make_sweep(tmp_path)
    make_run(tmp_path, "stopped", (16, 4, 3, 0), 2, status="preempted", step=60)
    message = r"stopped: unfinished run \(status preempted, step 60 of 100\)"
    with pytest.raises(compare.CompareError, match=message):
        compare.compare([tmp_path], tmp_path / "out")
    make_run(tmp_path / "b", "short", (16, 4, 3, 0), 2, status="finished", step=90)
    with pytest.raises(compare.CompareError, match="short: unfinished"):
        compare.compare([tmp_path / "b"])


def test_different_test_data_is_refused(tmp_path):
    make_sweep(tmp_path)
    make_run(tmp_path, "z_other_data", (16, 4, 3, 0), 2, fingerprint="ffffffffffff")
    with pytest.raises(compare.CompareError, match="z_other_data: test-evaluated on .*ffffffffffff"):
        compare.compare([tmp_path], tmp_path / "out")


def test_partly_evaluated_runs_are_refused(tmp_path):
    make_sweep(tmp_path)
    make_run(tmp_path, "z_no_eval", (16, 4, 3, 0), 2, evaluate=False)
    with pytest.raises(compare.CompareError, match="z_no_eval: no test evaluation"):
        compare.compare([tmp_path], tmp_path / "out")


def test_several_run_folders_need_out(tmp_path):
    runs = make_sweep(tmp_path)
    with pytest.raises(compare.CompareError, match="--out"):
        compare.compare(runs[:2])


def test_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "compare", "prn_jax.cli.compare")
    root = tmp_path / "sweep"
    make_sweep(root)
    out = tmp_path / "out"
    assert cli.main(["compare", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out / "comparison.md") in printed
    assert "| weight_ratios=(1,1,1,1) | 1 |" in printed
    assert (out / "learning_curves.png").read_bytes()[:8] == PNG_SIGNATURE

    make_run(root, "stopped", (16, 4, 3, 0), 5, status="running", step=40)
    assert cli.main(["compare", str(root), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prn-jax compare: error: ") and "stopped" in err[0]
    assert "Traceback" not in captured.err and captured.out == ""
