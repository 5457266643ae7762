"""`prn-jax bench model`: the batch-size sweep, the JSON report and the numbers in it."""

import json

import jax
import numpy as np
import pytest

from prn_jax import bench, configuration
from prn_jax.bench import model as bench_model


def _out_of_memory() -> jax.errors.JaxRuntimeError:
    return jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 3221225472 bytes."
    )


def test_sweep_stops_at_the_first_batch_that_does_not_fit():
    tried = []

    def run_one(batch_size, first):
        tried.append((batch_size, first))
        if batch_size >= 64:
            raise _out_of_memory()
        return {"batch_size": batch_size, "train_step_s": 0.1}

    rows = bench_model.sweep_batch_sizes(run_one, [128, 16, 64, 32])
    assert tried == [(16, True), (32, False), (64, False)]  # increasing; 128 never tried
    assert [r["batch_size"] for r in rows] == [16, 32, 64]
    assert rows[-1]["out_of_memory"] and "RESOURCE_EXHAUSTED" in rows[-1]["error"]
    assert not any(r.get("out_of_memory") for r in rows[:-1])


def test_sweep_lets_other_errors_through():
    def run_one(batch_size, first):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        bench_model.sweep_batch_sizes(run_one, [16])
    assert not bench_model.is_out_of_memory(ValueError("RESOURCE_EXHAUSTED"))  # only XLA's own error


def test_batch_sizes_must_divide_over_the_devices(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--config", "tiny", "--batch-sizes", "8,6,12", "--config.num_devices=4"])
    assert "[6]" in capsys.readouterr().err


def test_procedural_batch_repeats_distinct_examples_up_to_the_batch():
    config = configuration.load_config("tiny", ["image_size=32", "batch_size=40", "steps_per_dispatch=2"])
    batch = bench_model.procedural_batch(config, num_local_devices=4)
    assert batch["image"].shape == batch["pos_map"].shape == (4, 2, 10, 32, 32, 3)
    flat = batch["image"][:, 0].reshape(40, -1)
    n = bench_model.DISTINCT_EXAMPLES
    assert len({row.tobytes() for row in flat}) == n
    np.testing.assert_array_equal(flat[n:], flat[: 40 - n])
    np.testing.assert_array_equal(batch["image"][:, 0], batch["image"][:, 1])


def test_throughput_plot_marks_the_batch_that_did_not_fit(tmp_path):
    rows = [
        {
            "decoder_impl": "subpixel",
            "dtype": d,
            "augment": False,
            "batch_size": b,
            "train_images_per_s": 100.0 * b**0.5,
            "train_mfu": 0.01 * b**0.5,
        }
        for d in ("bfloat16", "float32")
        for b in (16, 64)
    ]
    rows.append(
        {
            "decoder_impl": "subpixel",
            "dtype": "float32",
            "augment": False,
            "batch_size": 256,
            "out_of_memory": True,
            "error": "RESOURCE_EXHAUSTED",
        }
    )
    path = bench_model.plot_throughput(rows, tmp_path / "sub" / "sweep.png", "test")
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (1100, 450)  # two panels: images/s and MFU
        pixels = np.asarray(image.convert("L"))
    assert pixels.min() < 100 and pixels.std() > 10  # something is drawn


def test_model_benchmark_reports_consistent_numbers(tmp_path, tiny_run, capsys):
    out = tmp_path / "bench.json"
    overrides = [f"--config.{o}" for o in tiny_run]
    assert (
        bench.main(
            [
                "model",
                "--config",
                "tiny",
                "--repeats",
                "1",
                "--latency-repeats",
                "2",
                "--forward-batch",
                "2",
                "--batch-sizes",
                "2",
                "--peak-tflops",
                "0.5",
                "--json",
                str(out),
                "--plot",
                str(tmp_path / "bench.png"),
                *overrides,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["backend"] == "cpu" and report["packages"]["jax"] == jax.__version__
    (row,) = report["rows"]
    assert row["batch_size"] == 2 and row["num_devices"] == 1 and row["dtype"] == "float32"
    assert row["train_images_per_s"] == pytest.approx(2 / row["train_step_s"])
    # fwd + bwd of the convolutions is ~3x the forward; BatchNorm and Adam add a little.
    assert 2.8 < row["train_flops_per_example"] / row["forward_flops_per_example"] < 4.0
    assert row["train_mfu"] == pytest.approx(
        row["train_flops_per_example"] * row["train_images_per_s"] / 0.5e12
    )
    assert 0 < row["forward_b1_s"] and row["forward_b2_images_per_s"] == pytest.approx(
        2 / row["forward_b2_s"]
    )
    assert "MFU" in printed and "fwd b1" in printed and f"wrote {out}" in printed
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_sweep_benchmark_prints_both_kinds_of_runs(tiny_run, capsys):
    overrides = [f"--config.{o}" for o in tiny_run]
    assert bench.main(["sweep", "--runs", "2", "--steps", "2", *overrides]) == 0
    printed = capsys.readouterr().out
    separate = printed.split("separate (compiles every run):")[1].splitlines()[0].split(",")
    swept = printed.split("sweep (one process):")[1].splitlines()[0].split(",")
    assert len(separate) == len(swept) == 2 and all(float(s) > 0 for s in separate + swept)
    assert "compile time saved per run:" in printed


@pytest.mark.slow
def test_device_resident_row_times_both_steps_and_their_ratio(tmp_path, capsys):
    out = tmp_path / "resident.json"
    tiny = ["image_size=32", "width=2", "num_devices=2", "augment.enabled=True"]
    argv = ["model", "--config", "tiny", "--resident-only", "--batch-sizes", "4", "--repeats", "2"]
    assert bench.main([*argv, "--json", str(out), *[f"--config.{o}" for o in tiny]]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == []  # --resident-only: no plain train-step rows
    (row,) = report["resident_rows"]
    assert row["batch_size"] == 4 and row["num_devices"] == 2 and row["augment"]
    assert row["resident_over_preplaced"] == pytest.approx(row["resident_step_s"] / row["preplaced_step_s"])
    # The same step, plus a gather: XLA counts (nearly) the same FLOPs (both render the maps).
    assert row["resident_flops_per_example"] == pytest.approx(row["preplaced_flops_per_example"], rel=0.05)
    assert row["preplaced_flops_per_example"] > 1e6
    printed = capsys.readouterr().out
    assert "device-resident step" in printed and "ratio x" in printed
