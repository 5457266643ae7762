"""Source files and record formats of the 300W-LP / AFLW2000-3D datasets.

Readers and validators of the original `.jpg` + `.mat` files (every error names the file and
the key), the pairing of images with their `.mat` files, the image crop stored in training
records, and the compact exact position-map encoding of the tfds records (`encode_position_map`
/ `decode_position_map`). Used by both dataset builders and by the evaluator.

`.mat` keys read (MATLAB v5, scipy.io.loadmat):
  Pose_Para (1, 7): pitch, yaw, roll (radians), tx, ty, tz, scale (3DDFA convention).
  Shape_Para (ks, 1), Exp_Para (ke, 1): raw morphable-model coefficients.
  pt3d_68 (3, 68) (AFLW2000-3D only): landmarks in image pixels (x right, y down, z).
"""

import dataclasses
import io
import zlib
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

from prn_jax.data import source_tree

W300LP_DATABASES = ("AFW", "HELEN", "IBUG", "LFPW")
FLIP_SUFFIX = "_Flip"
NUM_LANDMARKS = 68

# Position-map quantisation: value = (q - OFFSET_LEVEL) * size / LEVELS_PER_SIZE, q uint16.
# Step size/32768 (1/128 px at S = 256: max error S/65536 = 0.0039 px), range
# [-0.5 S, 1.5 S) for x, y and z; 0 is exactly level 16384 and every level is exact in float32.
LEVELS_PER_SIZE = 32768
OFFSET_LEVEL = 16384
ZLIB_LEVEL = 6


class FormatError(ValueError):
    """A source file that cannot give a correct example.

    Attributes:
      path: the offending file. key: the `.mat` key, 'image', or the missing partner file.
      reason: what is wrong.
    """

    def __init__(self, path, key, reason):
        self.path, self.key, self.reason = str(path), key, reason
        super().__init__(f"{path}: {key}: {reason}")

    def __reduce__(self):  # rebuilt from its fields when it crosses a process boundary
        return FormatError, (self.path, self.key, self.reason)


@dataclasses.dataclass(frozen=True)
class Fit:
    """A morphable-model fit of one image.

    Attributes:
      pose: (7,) float32 `Pose_Para` (pitch, yaw, roll radians, tx, ty, tz, scale).
      shape_para: (ks,) float32 identity coefficients. exp_para: (ke,) float32 expression ones.
    """

    pose: np.ndarray
    shape_para: np.ndarray
    exp_para: np.ndarray

    @property
    def yaw_degrees(self) -> float:
        return float(np.degrees(self.pose[1]))


@dataclasses.dataclass(frozen=True)
class AflwAnnotation:
    """An AFLW2000-3D `.mat`: the fit and `pt3d_68` (68, 3) float32 image pixels."""

    fit: Fit
    pt3d_68: np.ndarray


def read_mat(path) -> dict:
    """The variables of a MATLAB file, on disk or a `source_tree.ZipMember` (FormatError when
    missing or unreadable)."""
    path = source_tree.as_source(path)
    if not path.is_file():
        raise FormatError(path, ".mat", "file missing")
    try:
        if isinstance(path, source_tree.ZipMember):
            return scipy.io.loadmat(io.BytesIO(path.read_bytes()))
        return scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several types for corrupt files
        raise FormatError(path, ".mat", f"unreadable MATLAB file ({error})") from error


def _array(content, path, key, shape):
    """content[key] as a finite float array of exactly `shape` (None = any length)."""
    if key not in content:
        raise FormatError(path, key, "missing")
    value = np.asarray(content[key])
    if not np.issubdtype(value.dtype, np.number):
        raise FormatError(path, key, f"dtype {value.dtype}, expected numbers")
    if value.ndim != len(shape) or any(w is not None and g != w for g, w in zip(value.shape, shape)):
        raise FormatError(path, key, f"shape {value.shape}, expected {shape} (None = any)")
    if not np.all(np.isfinite(value)):
        raise FormatError(path, key, "contains NaN or infinite values")
    return value


def fit_from_mat(content: dict, path) -> Fit:
    """`Pose_Para` (1, 7), `Shape_Para` (ks, 1), `Exp_Para` (ke, 1) -> Fit."""
    return Fit(
        pose=_array(content, path, "Pose_Para", (1, 7))[0].astype(np.float32),
        shape_para=_array(content, path, "Shape_Para", (None, 1))[:, 0].astype(np.float32),
        exp_para=_array(content, path, "Exp_Para", (None, 1))[:, 0].astype(np.float32),
    )


def read_300w_lp_fit(path) -> Fit:
    """The fit of a 300W-LP `.mat`."""
    return fit_from_mat(read_mat(path), path)


def read_aflw2000_annotation(path) -> AflwAnnotation:
    """The fit and `pt3d_68` (3, 68 in the file) of an AFLW2000-3D `.mat`."""
    content = read_mat(path)
    pt3d = _array(content, path, "pt3d_68", (3, NUM_LANDMARKS)).T.astype(np.float32)
    return AflwAnnotation(fit=fit_from_mat(content, path), pt3d_68=np.ascontiguousarray(pt3d))


def check_fit_matches_model(fit: Fit, num_shape: int, num_exp: int, path) -> None:
    """FormatError naming `Shape_Para` / `Exp_Para` when a coefficient count differs."""
    for key, got, want in (
        ("Shape_Para", fit.shape_para.size, num_shape),
        ("Exp_Para", fit.exp_para.size, num_exp),
    ):
        if got != want:
            raise FormatError(path, key, f"{got} coefficients, the model has {want}")


def read_rgb_image(path) -> tuple[bytes, np.ndarray]:
    """The file's bytes (on disk or a `source_tree.ZipMember`) and its decoded (H, W, 3) uint8 RGB
    pixels.

    FormatError (key 'image') when missing, undecodable (also truncated) or not 3-channel RGB.
    """
    path = source_tree.as_source(path)
    if not path.is_file():
        raise FormatError(path, "image", "file missing")
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            mode = image.mode
            pixels = np.asarray(image)
    except Exception as error:  # PIL raises several types for corrupt files
        raise FormatError(path, "image", f"cannot decode ({error})") from error
    if mode != "RGB" or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise FormatError(path, "image", f"mode {mode} shape {pixels.shape}, expected RGB")
    return data, pixels


# Smallest width and height, in pixels, that `load_rgb_image` accepts. Below it an image cannot
# hold a face worth predicting or evaluating (the network's crops are 64 to 256 pixels; a 32 x 32
# face is already upsampled 2-8x), so such a file is almost surely a thumbnail, an icon or a
# mistake, and is refused with its name instead of giving a meaningless result.
MIN_IMAGE_SIDE = 32
# Pillow modes of 16-bit (or wider integer) greyscale images: values 0..65535.
_WIDE_GREY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
# Modes with an alpha channel (or a palette that may carry transparency): read through RGBA.
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA", "P")


def load_rgb_image(path, min_side: int = MIN_IMAGE_SIDE) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of any image file Pillow decodes: the one image loader of
    `prn-jax predict` and of evaluation folders (the tfds builders keep `read_rgb_image`, which
    accepts only RGB files).

    Conversions: 8-bit RGB as stored; 8-bit grey (and bilevel) repeated in the three channels;
    16-bit grey PNG/TIFF scaled by 255/65535 and rounded (not clipped: a clipped one is all white);
    16-bit RGB(A) PNG as Pillow reads it (the high byte of each value); palette images through their
    palette; an alpha channel is dropped (not composited); CMYK (and YCbCr) JPEGs converted by
    Pillow. Only the first frame of a multi-frame file is read; EXIF orientation is not applied.

    FormatError (key 'image') naming the file when it is missing, undecodable (also truncated),
    floating-point, or smaller than `min_side` pixels in width or height.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "image", "file missing" if not path.exists() else "not a file")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width < min_side or height < min_side:
                raise FormatError(
                    path,
                    "image",
                    f"{width}x{height} pixels, smaller than the {min_side}x{min_side} minimum "
                    f"(formats.MIN_IMAGE_SIDE)",
                )
            image.load()
            mode = image.mode
            if mode in _WIDE_GREY_MODES:
                grey = np.asarray(image).astype(np.float64)
                grey = np.rint(np.clip(grey, 0, 65535) * (255 / 65535)).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=-1)
            if mode == "F":
                raise FormatError(path, "image", "floating-point (mode F) image: save it as 8- or 16-bit")
            if mode in _ALPHA_MODES:
                return np.ascontiguousarray(np.asarray(image.convert("RGBA"))[..., :3])
            return np.asarray(image.convert("RGB"))
    except FormatError:
        raise
    except Exception as error:  # PIL raises several types for corrupt or unsupported files
        message = str(error).strip().splitlines()
        detail = message[0] if message and not isinstance(error, UnidentifiedImageError) else "not an image"
        raise FormatError(path, "image", f"cannot decode ({detail})") from error


def pair_images_with_mats(folder) -> tuple[list[tuple[Path, Path]], list[FormatError]]:
    """(image, .mat) pairs of a folder (or a `source_tree.ZipFolder`) sorted by name, and a
    FormatError per unpaired file.

    An image without its `.mat` names the key '.mat'; a `.mat` without its image the key 'image'.
    Other files are ignored.
    """
    folder = source_tree.as_source(folder)
    images = {p.stem: p for p in folder.glob("*.jpg")}
    mats = {p.stem: p for p in folder.glob("*.mat")}
    pairs = [(images[s], mats[s]) for s in sorted(images.keys() & mats.keys())]
    problems = [
        FormatError(images[s], ".mat", f"no {s}.mat beside the image")
        for s in sorted(images.keys() - mats.keys())
    ]
    problems += [
        FormatError(mats[s], "image", f"no {s}.jpg beside the annotation")
        for s in sorted(mats.keys() - images.keys())
    ]
    return pairs, problems


def crop_image(pixels: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """The S x S crop of an image through a crop transform: bilinear, black outside.

    Args:
      pixels: (H, W, 3) uint8. transform: (3, 3) image pixels -> crop pixels (integer
        coordinates at pixel centres, as in `geometry.crop`). size: S.
    Returns:
      (S, S, 3) uint8; crop pixel (r, c) samples the image at inverse(transform) @ (c, r, 1).
    """
    inverse = np.linalg.inv(np.asarray(transform, np.float64))
    # PIL samples at pixel-centre coordinates c + 0.5: shift into and out of that frame.
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    pil = half @ inverse @ np.linalg.inv(half)
    image = Image.fromarray(pixels).transform(
        (size, size),
        Image.Transform.AFFINE,
        tuple(pil[:2].ravel()),
        Image.Resampling.BILINEAR,
        fillcolor=(0, 0, 0),
    )
    return np.asarray(image)


def jpeg_bytes(pixels: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def position_map_range(size: int) -> tuple[float, float]:
    """(lowest, highest) value a stored map of side `size` can hold, in crop pixels."""
    step = size / LEVELS_PER_SIZE
    return -OFFSET_LEVEL * step, (65535 - OFFSET_LEVEL) * step


def quantize_position_map(position_map: np.ndarray) -> np.ndarray:
    """(S, S, 3) float crop pixels -> (S, S, 3) uint16 levels (nearest).

    Raises ValueError (key 'position_map') when a value is outside `position_map_range(S)`.
    """
    size = position_map.shape[0]
    low, high = position_map_range(size)
    if not np.all(np.isfinite(position_map)) or position_map.min() < low or position_map.max() > high:
        raise ValueError(
            f"position_map: values [{np.nanmin(position_map):.2f}, "
            f"{np.nanmax(position_map):.2f}] outside the storable [{low}, {high}] px"
        )
    levels = np.rint(np.asarray(position_map, np.float64) * (LEVELS_PER_SIZE / size)) + OFFSET_LEVEL
    return levels.astype(np.uint16)


def encode_position_map(position_map: np.ndarray) -> bytes:
    """(S, S, 3) float crop pixels -> the record's `position_map` bytes.

    uint16 levels (`quantize_position_map`), differences along each row (mod 2^16), split into
    a high-byte and a low-byte plane, zlib: lossless on the levels, about 4-6x smaller than
    zlib on the raw levels because neighbouring pixels differ by a few hundred levels.
    """
    levels = quantize_position_map(position_map)
    deltas = levels.copy()
    deltas[:, 1:] -= levels[:, :-1]  # uint16 arithmetic wraps: exact mod 2^16
    planes = np.stack([deltas >> 8, deltas & 0xFF]).astype(np.uint8)
    return zlib.compress(planes.tobytes(), ZLIB_LEVEL)


def decode_position_map(encoded: bytes, size: int) -> np.ndarray:
    """Record bytes -> (size, size, 3) float32 crop pixels; inverse of `encode_position_map`.

    Exact to half a level: |error| <= size / 65536 px (0.0039 px at 256); zeros stay zeros.
    """
    planes = np.frombuffer(zlib.decompress(encoded), np.uint8)
    if planes.size != 2 * size * size * 3:
        raise ValueError(f"position_map: {planes.size} bytes decoded, expected a {size}x{size}x3 map")
    planes = planes.reshape(2, size, size, 3).astype(np.uint16)
    deltas = (planes[0] << 8) | planes[1]
    levels = np.cumsum(deltas, axis=1, dtype=np.uint16)
    return (levels.astype(np.float32) - OFFSET_LEVEL) * np.float32(size / LEVELS_PER_SIZE)
