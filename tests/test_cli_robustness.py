"""The command line never answers with a traceback (issue 24): a fast parser that imports no JAX,
help with defaults and examples, `--config.*` refused where nothing takes it, OS errors and
unusable outputs as one line before any work, one image loader for `predict` and evaluation, and
show-batch finding the model of the main job's layout."""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import scipy.io
from PIL import Image

from prn_jax import cli, cpu_runtime, predict
from prn_jax.data import eval_data, formats
from prn_jax.data import show_batch as show_batch_lib

HEAVY = ("jax", "tensorflow_datasets", "flax", "matplotlib", "orbax", "optax", "chex")


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------------------ parser and help


def test_building_the_parser_imports_no_heavy_library():
    code = (
        "import sys; from prn_jax import cli; cli.build_parser(); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_top_level_help_lists_every_command_and_ends_with_three_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "PRNet" in out and "JAX" in out
    command_lines = {line.split()[0] for line in out.splitlines() if line.startswith("    ")}
    assert set(cli.COMMANDS) | {"bench"} <= command_lines
    tail = out.strip().splitlines()[-4:]
    assert tail[0] == "examples:" and all(line.strip().startswith("prn-jax ") for line in tail[1:])


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_help_shows_defaults_and_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"\n  prn-jax {command} " in out or f"\n    prn-jax {command} " in out
    assert "(default: None)" not in out and "(default: False)" not in out
    (subparsers,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    formatter = subparsers.choices[command]._get_formatter()
    for action in subparsers.choices[command]._actions:
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert "default" in formatter._expand_help(action), (command, action.dest)


def test_help_only_runs_skip_the_cpu_settings_reexec(monkeypatch, capsys):
    assert cli.asks_only_for_help(["--help"]) and cli.asks_only_for_help(["train", "-h"])
    assert cli.asks_only_for_help([]) and cli.asks_only_for_help(["--version"])
    assert not cli.asks_only_for_help(["train", "--workdir", "w"])
    assert not cli.asks_only_for_help(["predict", "--", "-h"])  # a file named -h
    calls = []
    monkeypatch.setattr(cpu_runtime, "apply_or_reexec", calls.append)
    monkeypatch.delitem(sys.modules, "jax")  # as in a fresh `prn-jax` process
    monkeypatch.setattr(sys, "argv", ["prn-jax", "train", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        cli.entry()
    assert exit_info.value.code == 0 and calls == [] and "--workdir" in capsys.readouterr().out


# ------------------------------------------------------------------------------ --config.*


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["eval", "--workdir", "{t}/run", "--data", "{t}"], "checkpoint"),
        (["predict", "{t}/x.png", "--weights", "{t}/w.npz", "--model", "{t}", "--auto-box"], "checkpoint"),
        (["synth", "--out", "{t}/synth"], "takes no config"),
        (["build", "--data-dir", "{t}/tfds", "--manual-dir", "{t}"], "takes no config"),
        (["compare", "{t}/run"], "takes no config"),
        (["import-weights", "{t}/ckpt", "--out", "{t}/w.npz"], "takes no config"),
    ],
)
def test_commands_without_a_config_refuse_overrides_before_any_work(tmp_path, capsys, argv, reason):
    argv = [a.format(t=tmp_path) for a in argv]
    assert cli.main([*argv, "--config.batch_size", "8"]) == 2
    _one_line_error(capsys, f"prn-jax {argv[0]}: error:", "--config.batch_size=8", reason)
    assert _listing(tmp_path) == []


def test_commands_with_a_config_take_overrides():
    parser = cli.build_parser()
    for argv in (["train", "--workdir", "w"], ["main"], ["sweep", "c.py"], ["show-batch", "--data", "d"]):
        assert parser.parse_args(argv).takes_config, argv


# ------------------------------------------------------------------------------ OS errors, outputs


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(13, "Permission denied", "/data/locked"),
        FileExistsError(17, "File exists", "/data/locked"),
        NotADirectoryError(20, "Not a directory", "/data/locked"),
        IsADirectoryError(21, "Is a directory", "/data/locked"),
        FileNotFoundError(2, "No such file or directory", "/data/locked"),
    ],
)
def test_os_errors_are_one_line(monkeypatch, capsys, error):
    from prn_jax.cli import synth

    def fail(args):
        raise error

    monkeypatch.setattr(synth, "run", fail)
    assert cli.main(["synth", "--out", "x"]) == 2
    line = _one_line_error(capsys)
    assert line == f"prn-jax synth: error: {error.strerror}: /data/locked"


def test_interrupt_is_one_line(monkeypatch, capsys):
    from prn_jax.cli import synth

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "run", interrupted)
    assert cli.main(["synth", "--out", "x"]) == 130
    _one_line_error(capsys, "interrupted")


@pytest.mark.parametrize(
    "command, flag",
    [
        ("eval --workdir {t}/run --data {t}/in --out {t}/file", "--out"),
        ("predict {t}/in/x.png --weights {t}/in/w.npz --model {t}/in --auto-box --out {t}/file", "--out"),
        ("synth --out {t}/file", "--out"),
        ("synth --out {t}/file/inside", "--out"),
        ("build --data-dir {t}/file --manual-dir {t}/in", "--data-dir"),
        ("main --out {t}/file", "--out"),
        ("show-batch --data {t}/in --model {t}/in --out {t}/in", "--out"),
        ("show-batch --data {t}/in --model {t}/in --out {t}/file/b.png", "--out"),
        ("compare {t}/in --out {t}/file", "--out"),
    ],
)
def test_unusable_outputs_are_refused_before_any_work(tmp_path, capsys, command, flag):
    (tmp_path / "in").mkdir()
    (tmp_path / "file").write_text("a regular file\n")
    before = _listing(tmp_path)
    argv = command.format(t=tmp_path).split()
    assert cli.main(argv) == 2
    _one_line_error(capsys, f"prn-jax {argv[0]}: error: {flag}", str(tmp_path))
    assert _listing(tmp_path) == before


def test_eval_default_output_folder_must_be_writable(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "eval").write_text("not a folder")
    (tmp_path / "data").mkdir()
    assert cli.main(["eval", "--workdir", str(run), "--data", str(tmp_path / "data")]) == 2
    _one_line_error(capsys, "default output folder", str(run / "eval"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_parent_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert cli.main(["synth", "--out", str(locked / "synth")]) == 2
        _one_line_error(capsys, "--out", "not writable")
    finally:
        locked.chmod(0o700)


def test_check_output_helpers(tmp_path):
    assert cli.check_output_dir(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # creates nothing
    (tmp_path / "f").write_text("")
    with pytest.raises(cli.UsageError, match="exists and is not a folder"):
        cli.check_output_dir(tmp_path / "f", "--out")
    with pytest.raises(cli.UsageError, match="is a file, not a folder"):
        cli.check_output_dir(tmp_path / "f" / "x", "--out")
    with pytest.raises(cli.UsageError, match="is a folder"):
        cli.check_output_file(tmp_path, "--out")
    assert cli.check_output_file(tmp_path / "new" / "g.png", "--out").name == "g.png"


def test_argument_values_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    argv = ["build", "--data-dir", str(tmp_path / "tfds"), "--manual-dir", str(tmp_path / "raw")]
    assert cli.main([*argv, "--dataset", "nope"]) == 2
    _one_line_error(capsys, "--dataset nope", "prn_300w_lp", "aflw2000_3d")
    assert cli.main(["build", "--data-dir", str(tmp_path / "t"), "--manual-dir", str(tmp_path / "no")]) == 2
    _one_line_error(capsys, "--manual-dir", "no such folder")
    assert cli.main(["synth", "--out", str(tmp_path / "s"), "--num", "-1"]) == 2
    _one_line_error(capsys, "--num -1")
    assert _listing(tmp_path) == ["raw"]


# ------------------------------------------------------------------------------ the image loader


def _png16(path, values: np.ndarray) -> None:
    """A 16-bit PNG (grey (H, W) or RGB (H, W, 3)), written by hand: Pillow writes no 16-bit RGB."""
    height, width = values.shape[:2]
    colour_type = 0 if values.ndim == 2 else 2
    raw = b"".join(b"\0" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    gradient = (np.arange(48 * 40).reshape(48, 40) * (65535 / (48 * 40 - 1))).astype(np.uint16)
    image = Image.frombytes("I;16", (40, 48), gradient.astype("<u2").tobytes())
    assert image.mode == "I;16"
    image.save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    for pixels in (formats.load_rgb_image(tmp_path / "g16.png"), predict.read_image(tmp_path / "g16.png")):
        assert pixels.shape == (48, 40, 3) and pixels.dtype == np.uint8
        assert (pixels < 255).mean() > 0.9  # not all white
        np.testing.assert_allclose(pixels[..., 0], gradient / 257, atol=0.5)
        assert (pixels[..., 0] == pixels[..., 2]).all()


def test_other_modes_convert_to_rgb(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    wide = rng.integers(0, 65536, (40, 36, 3)).astype(np.uint16)
    _png16(tmp_path / "rgb16.png", wide)
    np.testing.assert_allclose(formats.load_rgb_image(tmp_path / "rgb16.png"), wide / 257, atol=1.0)
    Image.fromarray(np.dstack([rgb, np.zeros_like(rgb[..., 0])])).save(tmp_path / "rgba.png")  # alpha 0
    np.testing.assert_array_equal(formats.load_rgb_image(tmp_path / "rgba.png"), rgb)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(formats.load_rgb_image(tmp_path / "grey.png"), np.dstack([rgb[..., 0]] * 3))
    palette = Image.fromarray(rgb).quantize(16)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(
        formats.load_rgb_image(tmp_path / "palette.png"), np.asarray(palette.convert("RGB"))
    )
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # red
    red = formats.load_rgb_image(tmp_path / "cmyk.jpg")
    assert red.shape == (40, 40, 3) and red[..., 0].min() > 200 and red[..., 1:].max() < 60


def test_tiny_missing_and_broken_images_are_refused_by_name(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    Image.new("RGB", (formats.MIN_IMAGE_SIDE, formats.MIN_IMAGE_SIDE - 1)).save(tmp_path / "thin.png")
    Image.new("RGB", (formats.MIN_IMAGE_SIDE, formats.MIN_IMAGE_SIDE)).save(tmp_path / "ok.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    assert formats.load_rgb_image(tmp_path / "ok.png").shape == (32, 32, 3)
    for name, reason in [
        ("dot.png", "1x1 pixels, smaller than the 32x32 minimum"),
        ("thin.png", "32x31 pixels"),
        ("broken.jpg", "cannot decode"),
        ("missing.png", "file missing"),
    ]:
        with pytest.raises(formats.FormatError, match=reason) as info:
            formats.load_rgb_image(tmp_path / name)
        assert info.value.key == "image" and info.value.path == str(tmp_path / name)
        with pytest.raises(predict.InputError, match=reason):
            predict.read_image(tmp_path / name)


def test_grey_jpeg_loads_for_predict_and_evaluation(tmp_path):
    grey = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (40, 1))
    Image.fromarray(grey).save(tmp_path / "face.jpg", quality=95)
    rng = np.random.default_rng(0)
    scipy.io.savemat(
        tmp_path / "face.mat",
        {
            "Pose_Para": np.zeros((1, 7)),
            "Shape_Para": np.zeros((199, 1)),
            "Exp_Para": np.zeros((29, 1)),
            "pt3d_68": rng.uniform(0, 40, (3, 68)),
        },
    )
    from_predict = predict.read_image(tmp_path / "face.jpg")
    (example,) = eval_data.examples_from_folder(tmp_path)
    for pixels in (from_predict, example["image"]):
        assert pixels.shape == (40, 48, 3) and pixels.dtype == np.uint8
        np.testing.assert_allclose(pixels[..., 1], grey, atol=4)
    np.testing.assert_array_equal(from_predict, example["image"])


def test_predict_refuses_a_1x1_image_alone(tmp_path, capsys):
    from prn_jax.geometry import face_model, grid_model
    from prn_jax.model import tf_weights

    size = 64
    face = grid_model.make_grid_face_model(rows=48, cols=48, num_shape=5, num_exp=3)
    face_model.save_face_model(face, tmp_path / "BFM.mat", tmp_path / "BFM_UV.mat")
    rng = np.random.default_rng(0)
    shapes = tf_weights.expected_tf_shapes(width=2, image_size=size)
    arrays = {name: rng.uniform(0.5, 1.0, shape).astype(np.float32) for name, shape in shapes.items()}
    variables = tf_weights.variables_from_tf_arrays(arrays, width=2, image_size=size)
    weights = tf_weights.save_weights(tmp_path / "w.npz", variables)
    Image.new("RGB", (1, 1), (90, 90, 90)).save(tmp_path / "dot.png")
    Image.fromarray(np.full((64, 80, 3), 90, np.uint8)).save(tmp_path / "face.png")
    out = tmp_path / "out"
    argv = ["predict", str(tmp_path / "dot.png"), str(tmp_path / "face.png"), "--weights", str(weights)]
    argv += ["--image-size", str(size), "--model", str(tmp_path), "--auto-box", "--out", str(out)]
    capsys.readouterr()
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err)
    assert "dot.png" in errors[0] and "smaller than the 32x32 minimum" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["face", "summary.csv"]
    assert sorted(p.name for p in (out / "face").iterdir()) == [
        "face0_kpt.txt",
        "face0_mesh.obj",
        "face0_pose.json",
        "overlay.png",
    ]


# ------------------------------------------------------------------------------ show-batch


def test_show_batch_finds_the_main_job_model_or_names_the_flag(tmp_path, capsys):
    data = tmp_path / "runs" / "default" / "data"
    (data / "tfds").mkdir(parents=True)
    out = tmp_path / "batch.png"
    argv = ["show-batch", "--data", str(data / "tfds"), "--out", str(out)]
    assert cli.main(argv) == 2
    _one_line_error(capsys, "--data", str(data / "synth" / "model"), "--model")
    assert not out.exists()
    (data / "synth" / "model").mkdir(parents=True)
    for name in ("BFM.mat", "BFM_UV.mat"):
        (data / "synth" / "model" / name).write_bytes(b"")
    assert show_batch_lib.default_model_dir(data / "tfds") == data / "synth" / "model"
    # As `prn-jax eval` finds it: DATA/model first, then DATA/../model.
    for folder in (data / "model", data / "tfds" / "model"):
        folder.mkdir()
        for name in ("BFM.mat", "BFM_UV.mat"):
            (folder / name).write_bytes(b"")
        assert show_batch_lib.default_model_dir(data / "tfds") == folder
        assert eval_data.find_model_dir(data / "tfds") == folder
