from pathlib import Path

import pytest

from prn_jax import configuration
from prn_jax.experiments import sweep
from prn_jax.train import loop
from prn_jax.train import trainer as trainer_lib

CONFIGS = sorted(
    str(p.relative_to(configuration.CONFIGS_DIR).with_suffix(""))
    for p in configuration.CONFIGS_DIR.rglob("*.py")
    if p.stem != "__init__"
)


def test_overrides_keep_types():
    c = configuration.load_config(
        "tiny",
        ["--config.learning_rate=3e-4", "width=8", "weight_ratios=(1, 1, 1, 0)", "data.source=generated"],
    )
    assert c.learning_rate == 3e-4 and c.width == 8 and c.weight_ratios == (1, 1, 1, 0)
    with pytest.raises(configuration.ConfigError, match="width"):
        configuration.load_config("tiny", ["width=wide"])
    with pytest.raises(configuration.ConfigError, match="no field 'nope'"):
        configuration.load_config("tiny", ["nope=1"])
    with pytest.raises(configuration.ConfigError, match="not found"):
        configuration.load_config("no_such_config")


@pytest.mark.parametrize(
    "override, field",
    [
        ("image_size=48", "image_size"),
        ("learning_rate=-1.0", "learning_rate"),
        ("batch_size=7", "batch_size"),
        ("loss='l3'", "loss"),
        ("dtype='float16'", "dtype"),
        ("decoder_impl='fft'", "decoder_impl"),
        ("weight_ratios=(1, 1, 1)", "weight_ratios"),
    ],
)
def test_impossible_values_fail_before_compiling(override, field):
    config = configuration.load_config("tiny", [override, "num_devices=8"])
    with pytest.raises(configuration.ConfigError, match=f"config.{field} "):
        trainer_lib.Trainer(config)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_loads_and_runs_one_step(name, tmp_path: Path, request, tiny_run):
    small = ["num_steps=1", "checkpoint_every_steps=1", "log_every_steps=1"]
    if configuration.load_config(name).data.source == "tfds":
        data = request.getfixturevalue("tiny_synth_tfds")  # built once per session
        # Width 2 and batch 4 of 16 records at 64x64: the train step of test_main_job's run of
        # cpu_default, compiled once per pytest process (prn_jax.train.trainer.Trainer).
        small += [
            "width=2",
            "batch_size=4",
            "num_devices=1",
            "image_size=64",
            f"data.dir='{data['tfds']}'",
            f"data.model_dir='{data['model']}'",
            "eval_every_steps=0",  # the tiny set's one identity leaves no validation split
        ]
    else:
        small += tiny_run
    config = configuration.load_config(name, small)
    lines = []
    result = loop.train_and_evaluate(config, tmp_path, log=lines.append)
    # The start-up summary says what runs; procedural data is flagged.
    assert lines[0].startswith("data:") and any(line.startswith("run:         1 steps") for line in lines)
    assert any(line.startswith("checkpoints: ") for line in lines)
    procedural = config.data.source == "generated"
    assert any(line.startswith("warning: procedural arrays") for line in lines) == procedural
    assert int(result["state"].step) == 1
    assert result["last_metrics"]["loss"] > 0
    assert (tmp_path / "checkpoints" / "1").is_dir()


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_docstring_gives_commands_that_parse(name):
    """big_vision style: each config says how it runs; its `prn-jax ...` lines must parse and name
    a loadable config."""
    import importlib
    import shlex

    from prn_jax import cli

    doc = importlib.import_module(f"prn_jax.configs.{name.replace('/', '.')}").__doc__
    commands = [
        line.strip() for line in doc.replace("\\\n", " ").splitlines() if line.strip().startswith("prn-jax ")
    ]
    assert any(c.startswith(("prn-jax train ", "prn-jax sweep ")) for c in commands), f"{name}: no command"
    parser = cli.build_parser()
    for command in commands:
        argv = shlex.split(command)[1:]
        args = parser.parse_args([a for a in argv if not a.startswith("--config.")])
        if args.command == "train":
            configuration.load_config(args.config, [a for a in argv if a.startswith("--config.")])
        if args.command == "sweep":
            assert len(sweep.plan(args.config)) > 1


def test_paper_refuses_without_data_and_names_the_build_command(tmp_path, capsys):
    from prn_jax import cli

    assert cli.main(["train", "--config", "paper", "--workdir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.data.dir = ''" in err and "prn-jax build --data-dir" in err
    assert not (tmp_path / "run").exists()
    local = configuration.load_config("paper:local")
    paper = configuration.load_config("paper")
    assert (local.image_size, local.width, local.num_steps) == (64, 8, 600)
    assert local.learning_rate == paper.learning_rate and local.augment == paper.augment
    assert paper.data.source == "tfds" and configuration.load_config("tiny").data.source == "generated"
    with pytest.raises(configuration.ConfigError, match="unknown variant 'pod'"):
        configuration.load_config("paper:pod")


def test_config_overrides_in_both_command_line_forms():
    from prn_jax import cli

    overrides, rest = cli.split_overrides(
        ["train", "--config.batch_size", "8", "--workdir", "w", "--config.width=4", "--config", "tiny"]
    )
    assert overrides == ["--config.batch_size=8", "--config.width=4"]
    assert rest == ["train", "--workdir", "w", "--config", "tiny"]
    config = configuration.load_config("tiny", overrides)
    assert (config.batch_size, config.width) == (8, 4)
