"""`prn-jax synth` end to end on a tiny model."""

import numpy as np
from PIL import Image

from prn_jax import cli
from prn_jax.cli import synth
from prn_jax.geometry import face_model as fm
from prn_jax.synth import contact_sheet


def test_synth_cli_writes_model_sets_and_contact_sheet(tmp_path, capsys):
    out = tmp_path / "synth"
    argv = [
        "--out",
        str(out),
        "--num",
        "2",
        "--test-num",
        "1",
        "--seed",
        "3",
        "--flip",
        "--contact-sheet",
        "--workers",
        "1",
        "--grid-rows",
        "41",
        "--grid-cols",
        "51",
    ]
    assert cli.main(["synth", *argv]) == 0
    model = fm.load_face_model(out / "model" / "BFM.mat", out / "model" / "BFM_UV.mat")
    assert model.num_vertices == 41 * 51 and model.shape_basis.shape[2] == 199
    assert len(list((out / "300W_LP").rglob("*_1_*.jpg"))) == 4  # 2 + 2 mirrors
    assert (out / "AFLW2000" / "image00000.mat").exists()
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width > 0 and sheet.height >= 256
    pixels = np.asarray(sheet.convert("RGB"))
    legend = pixels[: contact_sheet.LEGEND_PX]
    assert legend.max() > 200 and (legend == 0).mean() > 0.5  # white legend text on black
    pos_tile = pixels[contact_sheet.LEGEND_PX :, 256:512]
    assert (pos_tile.sum(-1) == 0).mean() > 0.2  # black off the face
    assert cli.main(["synth", *argv]) == 0  # resumes: nothing to do
    assert "0 samples written, 3 already complete" in capsys.readouterr().out


def test_the_command_line_has_the_synth_command():
    args = cli.build_parser().parse_args(["synth", "--out", "x", "--num", "5"])
    assert args.func is synth.run and args.num == 5 and args.test_num == 0
