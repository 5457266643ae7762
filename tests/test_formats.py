"""Source-file readers, the image crop and the position-map record codec (prn_jax.data.formats)."""

import pickle

import numpy as np
import pytest
import scipy.io
from PIL import Image

from prn_jax.data import formats
from prn_jax.geometry import crop


@pytest.mark.parametrize("size", [256, 64])
def test_position_map_codec_is_exact_to_a_hundredth_of_a_pixel(size):
    rng = np.random.default_rng(size)
    low, high = formats.position_map_range(size)
    assert low <= -0.5 * size and high >= 1.5 * size - size / 32768
    pos = rng.uniform(-0.45 * size, 1.45 * size, (size, size, 3)).astype(np.float32)
    pos[: size // 4] = 0.0  # outside the face region
    decoded = formats.decode_position_map(formats.encode_position_map(pos), size)
    assert decoded.dtype == np.float32 and decoded.shape == (size, size, 3)
    error = np.abs(decoded - pos).max()
    assert error <= size / 65536 + 1e-6 and error < 0.01
    assert np.all(decoded[: size // 4] == 0.0)


def test_position_map_codec_compresses_smooth_maps():
    size = 256
    rows, cols = np.mgrid[:size, :size].astype(np.float32)
    pos = np.stack([cols * 0.9 + 10, rows * 0.8 + 20, 50 + 0.001 * (cols - 128) ** 2], -1)
    assert len(formats.encode_position_map(pos)) < size * size * 3 * 2 / 4


def test_position_map_out_of_range_is_refused():
    pos = np.zeros((64, 64, 3), np.float32)
    pos[3, 4, 0] = 200.0
    with pytest.raises(ValueError, match="position_map"):
        formats.encode_position_map(pos)
    pos[3, 4, 0] = np.nan
    with pytest.raises(ValueError, match="position_map"):
        formats.encode_position_map(pos)


def test_crop_image_puts_a_point_where_the_transform_sends_it():
    image = np.zeros((450, 450, 3), np.uint8)
    image[150, 200] = 255
    transform = crop.crop_similarity(np.array([210.3, 160.7]), np.array(101.0), 256)
    out = formats.crop_image(image, transform, 256)
    rows, cols = np.nonzero(out[..., 0])
    weight = out[rows, cols, 0].astype(float)
    centroid = np.array([(cols * weight).sum(), (rows * weight).sum()]) / weight.sum()
    np.testing.assert_allclose(centroid, (transform @ [200, 150, 1])[:2], atol=0.05)


def _write_mat(path, **variables):
    scipy.io.savemat(str(path), variables)
    return path


def _good_fit(**override):
    variables = {
        "Pose_Para": np.zeros((1, 7), np.float32),
        "Shape_Para": np.zeros((199, 1)),
        "Exp_Para": np.zeros((29, 1)),
        "pt3d_68": np.zeros((3, 68), np.float32),
    }
    variables.update(override)
    return {k: v for k, v in variables.items() if v is not None}


@pytest.mark.parametrize(
    "override, key",
    [
        ({"Shape_Para": None}, "Shape_Para"),
        ({"Pose_Para": np.zeros((1, 6))}, "Pose_Para"),
        ({"Exp_Para": np.full((29, 1), np.nan)}, "Exp_Para"),
        ({"pt3d_68": np.zeros((2, 68))}, "pt3d_68"),
    ],
)
def test_bad_mat_names_file_and_key(tmp_path, override, key):
    path = _write_mat(tmp_path / "image00001.mat", **_good_fit(**override))
    with pytest.raises(formats.FormatError) as info:
        formats.read_aflw2000_annotation(path)
    assert info.value.key == key and info.value.path == str(path)
    assert str(path) in str(info.value) and key in str(info.value)


def test_unreadable_files(tmp_path):
    (tmp_path / "a.mat").write_bytes(b"not a mat file")
    with pytest.raises(formats.FormatError, match=r"a\.mat: \.mat: unreadable"):
        formats.read_300w_lp_fit(tmp_path / "a.mat")
    with pytest.raises(formats.FormatError, match="file missing"):
        formats.read_300w_lp_fit(tmp_path / "missing.mat")
    Image.new("RGB", (40, 40)).save(tmp_path / "b.jpg")
    (tmp_path / "c.jpg").write_bytes((tmp_path / "b.jpg").read_bytes()[:100])
    Image.new("L", (40, 40)).save(tmp_path / "d.jpg")
    assert formats.read_rgb_image(tmp_path / "b.jpg")[1].shape == (40, 40, 3)
    for name in ("c.jpg", "d.jpg", "e.jpg"):
        with pytest.raises(formats.FormatError) as info:
            formats.read_rgb_image(tmp_path / name)
        assert info.value.key == "image" and name in str(info.value)


def test_coefficient_count_must_match_model(tmp_path):
    fit = formats.fit_from_mat(_good_fit(), "x.mat")
    formats.check_fit_matches_model(fit, 199, 29, "x.mat")
    with pytest.raises(formats.FormatError, match=r"x\.mat: Exp_Para: 29 coefficients, the model has 10"):
        formats.check_fit_matches_model(fit, 199, 10, "x.mat")


def test_pairing_reports_both_kinds_of_orphan(tmp_path):
    for name in ("a.jpg", "a.mat", "b.jpg", "c.mat", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    pairs, problems = formats.pair_images_with_mats(tmp_path)
    assert [(i.name, m.name) for i, m in pairs] == [("a.jpg", "a.mat")]
    assert [(p.path.split("/")[-1], p.key) for p in problems] == [("b.jpg", ".mat"), ("c.mat", "image")]


def test_format_error_survives_pickling():
    error = pickle.loads(pickle.dumps(formats.FormatError("/x/y.mat", "Pose_Para", "missing")))
    assert (error.path, error.key, error.reason) == ("/x/y.mat", "Pose_Para", "missing")


def test_real_fixture_files(shared):
    real = shared / "fixtures" / "real"
    fit = formats.read_300w_lp_fit(real / "300w_lp" / "IBUG_image_008_1_0.mat")
    assert fit.pose.shape == (7,) and fit.shape_para.shape == (199,) and fit.exp_para.shape == (29,)
    _, pixels = formats.read_rgb_image(real / "300w_lp" / "IBUG_image_008_1_0.jpg")
    assert pixels.shape == (450, 450, 3)
    pairs, problems = formats.pair_images_with_mats(real / "aflw2000_3d")
    assert len(pairs) == 16 and not problems
    for _, mat in pairs:
        annotation = formats.read_aflw2000_annotation(mat)
        assert annotation.pt3d_68.shape == (68, 3) and annotation.pt3d_68.dtype == np.float32
        assert abs(annotation.fit.yaw_degrees) < 100
        # Landmarks lie in the 450 x 450 image (x, y).
        assert annotation.pt3d_68[:, :2].min() > -50 and annotation.pt3d_68[:, :2].max() < 500
