"""Device-resident training data (`config.data.source = "device"`, prn_jax.data.device_data): the
memory plan and its refusal, the order (the streaming pipeline's), batches gathered on the devices
equal to the streaming pipeline's bit for bit, and training and resuming on it."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import float64_compute

from prn_jax import configuration
from prn_jax.data import device_data, input_pipeline, train_data
from prn_jax.train import loop
from prn_jax.train import step as step_lib

BFM_FITS = {"pose": ((7,), np.float32), "shape": ((199,), np.float32), "expression": ((29,), np.float32)}


def _bfm_layout(size: int) -> dict:
    return {
        "image": ((size, size, 3), np.dtype(np.uint8)),
        **BFM_FITS,
        "crop_transform": ((3, 3), np.float32),
        "image_height": ((), np.float32),
    }


def test_memory_plan_of_300w_lp_and_its_refusal():
    """300W-LP at 256 (122,450 records, crops + BFM fits) over 8 devices: 3.6 GiB each, which
    fits an 80 GB GPU's half and is refused on a 4 GiB one, naming the numbers and the fix."""
    layout = _bfm_layout(256)
    plan = device_data.memory_plan(122450, layout, 8, 1024, 80 * 10**9, 0.5)
    assert plan.records_per_device == 15307 and plan.record_bytes == 196608 + 245 * 4
    assert plan.resident_bytes == 15307 * 197588 and plan.gather_bytes == 1024 * 197588
    assert plan.fits and "15,307 per device" in plan.describe()
    device_data.check_plan(plan)
    small = device_data.memory_plan(122450, layout, 8, 1024, 4 * 2**30, 0.5, "test limit")
    assert not small.fits
    with pytest.raises(device_data.DeviceMemoryError) as e:
        device_data.check_plan(small)
    message = str(e.value)
    assert "3.005 GiB per device" in message and "2.000 GiB allowed" in message
    assert "config.data.source = 'tfds'" in message and "test limit" in message
    # Stored maps instead of fits: 2 bytes per map value more.
    maps = {"image": layout["image"], device_data.LEVELS_FIELD: ((256, 256, 3), np.uint16)}
    assert device_data.memory_plan(10, maps, 1, 2, 1, 1.0).record_bytes == 3 * 196608


def test_device_memory_is_the_runtime_figure_or_the_shared_host_memory():
    limit, where = device_data.device_memory_bytes(jax.devices()[0])
    assert 2**28 < limit < 2**44 and "host memory" in where  # the CPU backend reports none

    class Gpu:
        platform = "gpu"

        def memory_stats(self):
            return {"bytes_limit": 12345}

    assert device_data.device_memory_bytes(Gpu()) == (12345, "gpu memory_stats bytes_limit")


def test_order_is_the_streaming_order_and_resumes_from_epoch_and_position():
    n, batch, seed = 21, 4, 3  # 5 steps an epoch, one record dropped each epoch
    order = device_data.DeviceOrder(n, batch, num_local_devices=2, seed=seed)
    streaming = [input_pipeline.ProcessOrder(n, batch, p, 2, seed) for p in (0, 1)]
    steps = [next(order) for _ in range(12)]  # two epochs and a bit
    for s, got in enumerate(steps):
        assert got["index"].shape == (2, batch) and got["index"].dtype == np.int32
        assert (got["index"][0] == got["index"][1]).all()
        expected = [streaming[p][s * 2 + k] for p in (0, 1) for k in range(2)]
        np.testing.assert_array_equal(got["index"][0], expected)
    state = json.loads(order.get_state())
    assert state == {"epoch": 2, "position": 2}
    fresh = device_data.DeviceOrder(n, batch, 2, seed)
    fresh.set_state(order.get_state())
    np.testing.assert_array_equal(next(fresh)["index"], next(order)["index"])
    with pytest.raises(ValueError, match="position"):
        fresh.set_state({"epoch": 0, "position": 5})
    with pytest.raises(ValueError, match="source the run was started with"):
        fresh.set_state(b'{"next_index": 3}')  # a grain iterator's


def _config(data, *extra: str):
    return configuration.load_config(
        "tiny",
        [
            "image_size=64",
            "data.source=device",
            f"data.dir='{data['tfds']}'",
            f"data.model_dir='{data['model']}'",
            *extra,
        ],
    )


def _mesh(n: int) -> jax.sharding.Mesh:
    return jax.sharding.Mesh(np.asarray(jax.devices()[:n]), (step_lib.AXIS,))


@pytest.mark.parametrize(("devices", "batch", "maps_on_device"), [(1, 4, False), (3, 6, True), (4, 8, False)])
def test_gathered_batches_equal_the_streaming_pipeline_bit_for_bit(
    tiny_synth_tfds, devices, batch, maps_on_device
):
    """Steps across two epochs; 3 devices leave the last block padded."""
    config = _config(tiny_synth_tfds, f"batch_size={batch}", f"data.maps_on_device={maps_on_device}")
    train_data.prepare_data_config(config)
    records = config.data.num_train_examples
    lines = []
    resident = device_data.load_resident(config, _mesh(devices), lines.append)
    assert lines[0].startswith(f"device-resident data: {records} records over {devices} device(s)")
    assert {k: v.shape[:2] for k, v in resident.items()} == dict.fromkeys(
        resident, (devices, -(-records // devices))
    )
    assert (device_data.LEVELS_FIELD in resident) != maps_on_device
    order = device_data.DeviceOrder(records, batch, devices, config.seed)
    stream = input_pipeline.make_train_loader(config, num_local_devices=devices)
    gather = jax.pmap(
        functools.partial(device_data.gather_batch, axis_name=step_lib.AXIS),
        axis_name=step_lib.AXIS,
        devices=jax.devices()[:devices],
    )
    for _ in range(2 * (records // batch) + 1):
        expected = next(stream)
        got = jax.device_get(gather(resident, next(order)["index"]))
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key].dtype == expected[key].dtype, key
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_refuses_a_set_that_does_not_fit_before_loading(tiny_synth_tfds, tmp_path):
    config = _config(tiny_synth_tfds, "data.device_memory_bytes=100000", "num_devices=1")
    with pytest.raises(configuration.ConfigError, match="stream it instead with config.data.source = 'tfds'"):
        loop.train_and_evaluate(config, tmp_path, log=lambda s: None)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    bad = _config(tiny_synth_tfds, "data.device_memory_fraction=1.5")
    with pytest.raises(configuration.ConfigError, match="device_memory_fraction"):
        train_data.prepare_data_config(bad)


def _losses(workdir: Path) -> list[float]:
    return [r["loss"] for r in loop.read_log(workdir) if "loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "cpu_default"])
def test_device_source_trains_like_streaming_and_resumes_exactly(name, tiny_synth_tfds, tmp_path, tiny_run):
    """4 steps (two epochs of the 16-record set at batch 8, maps_on_device for tiny, stored maps
    for cpu_default) streamed and device-resident: the same losses; a device run resumed at step 2
    (its epoch/position state restored from the checkpoint) ends bit-identical. cpu_default (its
    scale jitter on) runs in float64: in float32 its warp, fused differently in the two programs,
    differs by ~1e-7, which Adam's first steps (update ~ sign of the gradient) grow to ~4% of the
    loss by step 4 (measured 2026-12-03)."""
    data = tiny_synth_tfds
    precise = name == "cpu_default"
    common = [
        "width=2",
        "batch_size=8",
        "num_devices=1",
        "image_size=64",
        "num_steps=4",
        "log_every_steps=1",
        "checkpoint_every_steps=2",
        "eval_every_steps=0",
        f"data.dir='{data['tfds']}'",
        f"data.model_dir='{data['model']}'",
        f"data.maps_on_device={name == 'tiny'}",
        *(["dtype='float64'"] if precise else []),
    ]
    compute = float64_compute if precise else contextlib.nullcontext
    runs = {}
    for source in ("tfds", "device"):
        with compute():
            config = configuration.load_config(name, [*common, f"data.source={source}"])
            lines = []
            runs[source] = loop.train_and_evaluate(config, tmp_path / source, log=lines.append)
        assert any(line.startswith("device-resident data:") for line in lines) == (source == "device")
    streamed, device = _losses(tmp_path / "tfds"), _losses(tmp_path / "device")
    assert len(device) == 4 and len(set(device)) == 4
    assert device == pytest.approx(streamed, rel=1e-6, abs=0)
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "device", resumed)
    shutil.rmtree(resumed / "checkpoints" / "4")
    state = json.loads(next((resumed / "checkpoints" / "2" / "data").glob("*.json")).read_text())
    assert state == {"epoch": 1, "position": 0}
    with compute():
        config = configuration.load_config(name, [*common, "data.source=device"])
        result = loop.train_and_evaluate(config, resumed, log=lambda s: None)
    assert result["trace_count"] == 0
    assert _losses(resumed) == device
    for a, b in zip(jax.tree.leaves(runs["device"]["state"]), jax.tree.leaves(result["state"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


WORKER = """
import sys
from prn_jax import cli, configuration
configuration.DTYPES += ('float64',)
sys.exit(cli.main(['train', *sys.argv[1:]]))
"""


@pytest.mark.slow
def test_two_processes_of_two_devices_train_like_one_streaming_process(tiny_synth_tfds, tmp_path):
    """2 processes x 2 devices, device-resident (each process loads its devices' blocks; the
    gather's reduce-scatter crosses processes), against 1 process x 4 devices streaming the same
    global batches (float64 compute, as test_multiprocess); then a resume from step 2 on 2
    processes ends with the same log."""

    data = tiny_synth_tfds
    overrides = [
        "dtype=float64",
        "width=2",
        "batch_size=8",
        "image_size=64",
        "num_steps=4",
        "log_every_steps=1",
        "checkpoint_every_steps=2",
        "eval_every_steps=0",
        f"data.dir={data['tfds']}",
        f"data.model_dir={data['model']}",
        "data.maps_on_device=True",
    ]
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "SLURM_"))}
    env["JAX_ENABLE_X64"] = "1"

    def launch(workdir: Path):
        args = ["--config", "tiny", "--workdir", str(workdir), "--config.data.source=device"]
        args += [f"--config.{o}" for o in overrides]
        code = (
            "import sys; from launch import local_multiprocess as lm; "
            f"sys.exit(lm.launch({args!r}, 2, 2, command=[sys.executable, '-c', {WORKER!r}]))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return out.stdout

    printed = launch(tmp_path / "two")
    assert "device-resident data:" in printed and "over 4 device(s)" in printed
    with float64_compute():
        config = configuration.load_config(
            "tiny", [*overrides, "dtype='float64'", "data.source=tfds", "num_devices=4"]
        )
        loop.train_and_evaluate(config, tmp_path / "one", log=lambda s: None)
    two, one = _losses(tmp_path / "two"), _losses(tmp_path / "one")
    assert len(two) == 4 and two[:2] == pytest.approx(one[:2], rel=1e-6)
    assert two == pytest.approx(one, rel=2e-2)  # gloo's summation order, amplified (test_multiprocess)
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "two", resumed)
    shutil.rmtree(resumed / "checkpoints" / "4")
    assert "resumed from" in launch(resumed)
    assert _losses(resumed) == two
