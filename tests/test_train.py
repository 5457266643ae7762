import json
import shutil
from pathlib import Path

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import float64_compute

from prn_jax import checkpointing, configuration
from prn_jax import loss as loss_lib
from prn_jax.data import train_data
from prn_jax.train import loop
from prn_jax.train import step as step_lib
from prn_jax.train import trainer as trainer_lib

SMALL = ["image_size=32", "width=2", "batch_size=8", "data.num_train_examples=16", "log_every_steps=1"]


def _config(*extra):
    return configuration.load_config("tiny", [*SMALL, *extra])


def _weights(config):
    return jnp.asarray(loss_lib.weight_map(train_data.region_labels(config), config.weight_ratios))


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _host_inputs(config, step, n):
    """Step `step`'s numpy batch for n devices and the loss weights, float32 as
    `loop.train_and_evaluate` feeds them whatever the compute dtype (so the step compiled here is
    the one its runs use)."""
    return next(train_data.make_batches(config, step, n)), _weights(config)


def _one_step(n, dtype="float32"):
    """One step on n devices, under `jax.transfer_guard("disallow")`; (state, loss, trainer)."""
    config = _config(f"num_devices={n}", f"dtype='{dtype}'")
    trainer = trainer_lib.Trainer(config)
    state = trainer.init_state()
    batch, weights = _host_inputs(config, 0, n)
    batch, weights = trainer.place_batch(batch), trainer.place(weights)
    with jax.transfer_guard("disallow"):
        state, metrics = trainer.step(state, batch, weights)
    return state, float(metrics["loss"]), trainer


def test_pmap_over_8_devices_equals_one_device_with_no_hidden_host_transfers():
    """Checked in float64 compute: in float32, a 27-BatchNorm net at init amplifies summation-order
    noise in its gradients to ~1e-2 relative (BUILD_NOTES, foundation), which Adam's first update
    (about lr * sign(g)) turns into a few flipped entries. The BatchNorm op alone is checked across
    devices in float32 (test_batch_norm)."""
    assert jax.local_device_count() >= 8, "conftest sets 8 simulated CPU devices"
    with float64_compute():
        (s1, l1, _), (s8, l8, trainer8) = _one_step(1, "float64"), _one_step(8, "float64")
        # The steps above ran under transfer_guard("disallow"); a numpy batch is an implicit transfer.
        unplaced, weights = _host_inputs(trainer8.config, 1, 8)
        with jax.transfer_guard("disallow"), pytest.raises(Exception, match="[Dd]isallowed"):
            trainer8.step(s8, unplaced, trainer8.place(weights))
    # The loss is a float32 scalar by design (loss.py): the mean over 8 examples and the pmean of
    # 8 per-device means may round one float32 ulp apart.
    assert l8 == pytest.approx(l1, rel=2e-7)
    # Adam's first moment after one step is 0.1 * the pmean'd gradient (stored in float32), per
    # parameter (the flat optimizer state holds it as one vector in ravel_pytree order).
    per_parameter = jax.flatten_util.ravel_pytree(s1.params)[1]
    for a, b in zip(_leaves(per_parameter(s1.opt_state[0].mu)), _leaves(per_parameter(s8.opt_state[0].mu))):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * np.abs(a).max())
    # Adam's first update lr * g / (|g| + eps) magnifies the float32 rounding of the loss in entries
    # whose gradient is near eps: measured 1 of the 8192 entries of one kernel 8.7e-6 apart.
    params1, params8 = _leaves(s1.params), _leaves(s8.params)
    close = np.concatenate([np.isclose(b, a, rtol=1e-6, atol=1e-7).ravel() for a, b in zip(params1, params8)])
    assert close.mean() > 0.9999
    for a, b in zip(params1, params8):
        np.testing.assert_allclose(b, a, atol=2e-5)  # 2% of one update (tiny config: lr 1e-3)
    for a, b in zip(_leaves(s1.batch_stats), _leaves(s8.batch_stats)):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


def test_runs_differing_only_in_host_fields_share_compiled_programs():
    """Trainers share model, optimizer and compiled step when their configs differ only in
    trainer_lib.HOST_FIELDS; the programs are built from a config without those fields."""
    base = trainer_lib.Trainer(_config("num_devices=2"))
    host_only = trainer_lib.Trainer(
        _config(
            "num_devices=2",
            "num_steps=99",
            "seed=7",
            "log_every_steps=3",
            "weight_ratios=(1.0, 1.0, 1.0, 0.0)",
            "data.dir='/elsewhere'",
        )
    )
    assert host_only.p_step is base.p_step and host_only.model is base.model
    for other in (
        _config("num_devices=2", "learning_rate=2e-3"),
        _config("num_devices=4"),
        _config("num_devices=2", "data.num_train_examples=32"),
    ):  # steps per epoch: the lr schedule
        assert trainer_lib.Trainer(other).p_step is not base.p_step
    with pytest.raises(AttributeError):
        base._programs.config.num_steps
    assert base.config.num_steps == -1  # the Trainer keeps the whole config


def test_learning_rate_halves_every_5_epochs():
    config = _config()
    spe = configuration.steps_per_epoch(config)
    assert spe == 2
    sched = step_lib.learning_rate_schedule(config)
    lr = config.learning_rate
    for k in range(4):
        boundary = 5 * spe * k
        assert float(sched(boundary)) == pytest.approx(lr * 0.5**k, rel=1e-6)
        if k:
            assert float(sched(boundary - 1)) == pytest.approx(lr * 0.5 ** (k - 1), rel=1e-6)


def test_flat_optimizer_state_updates_like_per_parameter_adam():
    """Adam over one flat vector (config.flat_optimizer_state) applies the per-parameter update:
    the same to float32 rounding (XLA fuses the two programs differently), moments 1-D."""
    rng = np.random.default_rng(0)
    params = {"a": {"kernel": rng.normal(size=(3, 3, 2, 4))}, "b": rng.normal(size=(5,))}
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    out = {}
    for flat in (False, True):
        tx = step_lib.make_optimizer(_config(f"flat_optimizer_state={flat}"))
        state, p = tx.init(params), params
        for k in range(3):
            grads = jax.tree.map(lambda x, k=k: jnp.cos(x * (k + 1)), p)
            updates, state = jax.jit(tx.update)(grads, state, p)
            p = jax.tree.map(jnp.add, p, updates)
        out[flat] = (p, state)
    for a, b in zip(_leaves(out[False][0]), _leaves(out[True][0])):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    assert out[True][1][0].mu.shape == (3 * 3 * 2 * 4 + 5,)
    assert jax.tree.structure(out[False][1][0].mu) == jax.tree.structure(params)
    # A config saved before the field existed gets per-parameter moments.
    old = _config()
    del old["flat_optimizer_state"]
    assert jax.tree.structure(step_lib.make_optimizer(old).init(params)[0].mu) == jax.tree.structure(params)


def test_checkpoint_of_other_optimizer_layout_is_refused_with_the_fix(tmp_path: Path):
    """A run saved before flat_optimizer_state existed (per-parameter Adam moments) is refused by a
    flat config, naming the override that resumes it, and restores with that override."""
    old = _config()
    del old["flat_optimizer_state"]
    state = {"w": np.arange(4.0, dtype=np.float32)}
    ckpt = checkpointing.Checkpointer(tmp_path, old)
    ckpt.save(1, state)
    ckpt.close()
    with pytest.raises(checkpointing.CheckpointError, match="--config.flat_optimizer_state=False"):
        checkpointing.Checkpointer(tmp_path, _config()).restore(1, state)
    restored = checkpointing.Checkpointer(tmp_path, _config("flat_optimizer_state=False")).restore(1, state)
    np.testing.assert_array_equal(restored["w"], state["w"])


def test_tiny_config_overfits_one_batch_in_float32_and_bfloat16(tiny_run):
    """Both compute dtypes overfit a batch (loss falls 10x); bfloat16 compute (float32 params, BN
    statistics, optimizer and loss) stays within 5% of the float32 loss over the first 4 steps
    (measured: 3.7%)."""
    # conftest's tiny run: 64x64, width 2, two examples, 150 steps (measured: float32 0.026x,
    # bfloat16 0.027x of the first loss; at width 4 0.039x and 0.035x). (The last BatchNorm's offset
    # must travel to about -3 for the small z targets, and Adam moves it by at most lr per step,
    # hence the high learning rate; 64 examples keep it from halving before step 160.)
    curves = {}
    for dtype in ("float32", "bfloat16"):
        config = configuration.load_config("tiny", [*tiny_run, f"dtype='{dtype}'"])
        trainer = trainer_lib.Trainer(config)
        traces_before = trainer.trace_count
        state = trainer.init_state()
        batch = trainer.place_batch(next(train_data.make_batches(config, 0, 1)))
        weights = trainer.place(_weights(config))
        losses = []
        for _ in range(150):
            state, metrics = trainer.step(state, batch, weights)
            losses.append(float(metrics["loss"]))
        assert min(losses[-10:]) < losses[0] / 10, (dtype, losses[0], losses[-10:])
        assert trainer.trace_count - traces_before <= 1  # compiled at most once, never retraced
        assert all(
            x.dtype == jnp.float32
            for x in jax.tree_util.tree_leaves(state)
            if jnp.issubdtype(x.dtype, jnp.floating)
        )
        curves[dtype] = np.array(losses)
    np.testing.assert_allclose(curves["bfloat16"][:4], curves["float32"][:4], rtol=0.05)


@pytest.fixture(scope="module")
def six_step_runs(tmp_path_factory) -> dict:
    """The same 6-step run (checkpoints at 3 and 6; float64 compute, whose step the other tests
    share) done in one go and as 3 steps, a fake log line past the checkpoint (the run died later),
    then a resume: {"config", "full", "resumed" (workdirs), "res_full", "res" (their results)}."""
    root = tmp_path_factory.mktemp("six_steps")
    with float64_compute():
        full = _config("num_steps=6", "checkpoint_every_steps=3", "dtype='float64'")
        res_full = loop.train_and_evaluate(full, root / "full", log=lambda s: None)
        loop.train_and_evaluate(
            _config("num_steps=3", "checkpoint_every_steps=3", "dtype='float64'"),
            root / "resumed",
            log=lambda s: None,
        )
        with (root / "resumed" / "metrics.jsonl").open("a") as f:
            f.write(json.dumps({"step": 4, "loss": -1.0}) + "\n")
        res = loop.train_and_evaluate(full, root / "resumed", log=lambda s: None)
    return {
        "config": full,
        "full": root / "full",
        "resumed": root / "resumed",
        "res_full": res_full,
        "res": res,
    }


def test_resume_is_bit_identical(six_step_runs):
    runs = six_step_runs
    assert runs["res_full"]["trace_count"] <= 1  # compiled at most once, never retraced
    assert runs["res"]["trace_count"] == 0  # the resumed run reused this process's programs
    for a, b in zip(_leaves(runs["res_full"]["state"]), _leaves(runs["res"]["state"])):
        np.testing.assert_array_equal(a, b)
    log_full = [r["loss"] for r in loop.read_log(runs["full"])]
    log_res = [r["loss"] for r in loop.read_log(runs["resumed"])]
    assert len(log_full) == 6 and log_res == log_full  # the fake step-4 line is gone
    meta = checkpointing.Checkpointer(runs["full"], runs["config"]).read_meta(6)
    assert meta["seed"] == runs["config"].seed and meta["config"]["num_steps"] == 6
    assert "jax" in meta["packages"] and meta["git_revision"]


def test_incompatible_checkpoint_is_refused_not_overwritten(six_step_runs, tmp_path: Path):
    workdir = tmp_path / "run"
    shutil.copytree(six_step_runs["full"], workdir)
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    other = _config("num_steps=8", "width=4")
    with pytest.raises(checkpointing.CheckpointError, match="width") as e:
        loop.train_and_evaluate(other, workdir, log=lambda s: None)
    assert str(workdir / "checkpoints" / "6") in str(e.value)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_corrupt_checkpoint_names_the_directory(six_step_runs, tmp_path: Path):
    workdir = tmp_path / "run"
    shutil.copytree(six_step_runs["full"], workdir)
    step_dir = workdir / "checkpoints" / "6"
    for sub in step_dir.iterdir():
        if sub.is_dir() and sub.name == "state":
            shutil.rmtree(sub)
            sub.mkdir()
            (sub / "garbage").write_text("not a checkpoint")
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    with float64_compute(), pytest.raises(checkpointing.CheckpointError, match=str(step_dir)) as e:
        loop.train_and_evaluate(_config("num_steps=8", "dtype='float64'"), workdir, log=lambda s: None)
    # One line, the error's first line only, and the way out: the previous checkpoint.
    previous = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())[-2]
    message = str(e.value)
    assert "\n" not in message and len(message) < 700
    assert f"use --checkpoint {previous}, the previous one" in message and "nothing was deleted" in message
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before


def test_steps_per_dispatch_equals_single_steps(tmp_path: Path, no_compilation_cache):
    """k steps scanned in one dispatch compute the same updates as k dispatches (checked in
    float64 compute: in float32 the two programs' different fusion gives ~1e-2 relative noise in
    the tiny net's gradients, see test_pmap_over_8_devices_equals_one_device)."""
    results = {}
    with float64_compute():
        for k in (1, 2):
            config = _config(
                "num_steps=4",
                "checkpoint_every_steps=4",
                "log_every_steps=2",
                f"steps_per_dispatch={k}",
                "dtype='float64'",
            )
            results[k] = loop.train_and_evaluate(config, tmp_path / str(k), log=lambda s: None)
            assert results[k]["trace_count"] <= 1
    for a, b in zip(_leaves(results[1]["state"]), _leaves(results[2]["state"])):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    assert [r["loss"] for r in loop.read_log(tmp_path / "1")] == pytest.approx(
        [r["loss"] for r in loop.read_log(tmp_path / "2")], rel=1e-6
    )
