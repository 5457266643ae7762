"""Losses and target representations plugged in from config alone: a loss defined in this test
module trains by import path, the mean-offset representation trains and evaluation decodes it."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prn_jax import configuration, inference, representation
from prn_jax import loss as loss_lib
from prn_jax import model as model_lib
from prn_jax.geometry import model_assets
from prn_jax.train import loop


def tripled_l1(pred, target, weights, config):
    """A user's loss (signature of prn_jax.loss): 3 x the built-in l1 loss."""
    return 3.0 * loss_lib.position_map_loss(pred, target, weights, "l1", config.get("z_offset_weight", 1.0))


def _first_loss(tmp_path, name, tiny_run, *extra) -> float:
    config = configuration.load_config(
        "tiny", [*tiny_run, "num_steps=1", "log_every_steps=1", "checkpoint_every_steps=1", *extra]
    )
    return loop.train_and_evaluate(config, tmp_path / name, log=lambda m: None)["last_metrics"]["loss"]


def test_a_loss_from_a_user_file_trains_from_config_alone(tmp_path, tiny_run, monkeypatch):
    builtin = _first_loss(tmp_path, "l1", tiny_run, "loss='l1'")
    by_file = _first_loss(tmp_path, "file", tiny_run, f"loss='{__file__}:tripled_l1'")
    assert by_file == pytest.approx(3 * builtin, rel=1e-5)  # the step's loss is the user's
    package = tmp_path / "my_project"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "losses.py").write_text(
        "from prn_jax import loss\n\n\ndef halved_l2(pred, target, weights, config):\n"
        "    return 0.5 * loss.position_map_loss(pred, target, weights)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    l2 = _first_loss(tmp_path, "l2", tiny_run)
    by_module = _first_loss(tmp_path, "module", tiny_run, "loss='my_project.losses:halved_l2'")
    assert by_module == pytest.approx(0.5 * l2, rel=1e-5)
    sys.modules.pop("my_project.losses", None)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("loss", "'l3'", "unknown loss 'l3'"),
        ("loss", "'no_such_module_xyz:f'", "cannot import 'no_such_module_xyz'"),
        ("loss", "'prn_jax.loss:no_such_fn'", "has no attribute 'no_such_fn'"),
        ("loss", "'prn_jax.loss:LOSSES'", "names a tuple, not a function"),
        ("representation", "'offset'", "unknown representation 'offset'"),
        ("representation", "'prn_jax.loss:weight_map'", "not a prn_jax.representation.Representation"),
    ],
)
def test_bad_plugins_fail_naming_the_field(field, value, message):
    config = configuration.load_config("tiny", [f"{field}={value}"])
    with pytest.raises(configuration.ConfigError, match=f"config.{field} = .*{message}"):
        configuration.validate_config(config, 1)


def test_representations_round_trip():
    rng = np.random.default_rng(0)
    pos = jnp.asarray(rng.uniform(0, 70, (2, 64, 64, 3)), jnp.float32)
    context = representation.Context(mean_map=jnp.asarray(rng.uniform(0, 70, (64, 64, 3)), jnp.float32))
    for rep in representation.REPRESENTATIONS.values():
        target = jax.jit(rep.encode)(pos, context)
        assert float(target.min()) >= 0 and float(target.max()) <= 1  # within the sigmoid's range
        np.testing.assert_allclose(rep.decode(target, context), pos, atol=1e-4)
    offset = representation.REPRESENTATIONS["mean_offset"]
    np.testing.assert_allclose(offset.encode(context.mean_map[None], context), 0.5)  # the mean face


def test_mean_offset_trains_and_evaluation_decodes_it(tmp_path, tiny_synth_tfds):
    data = tiny_synth_tfds
    config = configuration.load_config(
        "cpu_default",
        [
            "representation='mean_offset'",
            "width=2",
            "batch_size=4",
            "num_devices=1",
            "num_steps=8",
            "log_every_steps=4",
            "checkpoint_every_steps=8",
            "eval_every_steps=0",
            f"data.dir='{data['tfds']}'",
            f"data.model_dir='{data['model']}'",
        ],
    )
    result = loop.train_and_evaluate(config, tmp_path, log=lambda m: None)
    assert np.isfinite(result["last_metrics"]["loss"])
    saved, _, variables = inference.restore_variables(tmp_path, "last")
    assert saved.representation == "mean_offset"
    assets, frontal = model_assets.load_assets(data["model"], 64)[:2]
    crops = np.random.default_rng(1).uniform(0, 1, (2, 64, 64, 3)).astype(np.float32)
    context = representation.make_context(64, frontal, assets)
    decoded = inference.run_predict_fn(saved, variables, 2, context)(crops)
    # The raw output through the paper's decoding, re-read as an offset from the mean face.
    paper = inference.make_predict_fn(model_lib.build_model(saved), variables, 2)(crops)
    mean_map = context.mean_map
    scale = model_lib.position_scale(64)
    expected = (paper / scale - 0.5) * 2 * scale + np.asarray(mean_map)
    np.testing.assert_allclose(decoded, expected, atol=2e-3)
    assert np.abs(np.asarray(mean_map)).max() > 1  # a real mean face, not zeros
