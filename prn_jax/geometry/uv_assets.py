"""Fixed UV-space assets: face mask, region labels and weight maps, keypoint pixels, dense
vertex pixels and the triangulation of the face-mask grid; derived from a FaceModel or read
from PRNet's `Data/uv-data` folder.

Region label convention (int32 (S, S)): 0 = the 68 keypoint pixels, 1 = eyes/nose/mouth,
2 = other face, 3 = neck/outside face. The loss weight map is `ratios[labels]`, e.g.
ratios (16, 4, 3, 0) (paper) or (1, 1, 1, 0).
"""

import dataclasses
from pathlib import Path

import numpy as np
import scipy.ndimage
import scipy.spatial
from matplotlib.path import Path as Polygon
from PIL import Image

from prn_jax.geometry import face_model as fm
from prn_jax.geometry import uv_raster

PRNET_WEIGHT_LEVELS = (255, 64, 48)  # uv_weight_mask.png grey levels of labels 0, 1, 2


@dataclasses.dataclass(frozen=True, eq=False)
class UVAssets:
    """Attributes:
    size: S.
    region_labels: (S, S) int32 labels (module docstring).
    kpt_uv: (68, 2) int32 (u = column, v = row); landmarks are `pos[v, u, :]`.
    face_indices: (P,) int32 ascending flat indices row * S + col of the face-mask pixels
      (PRNet `face_ind`); dense vertices are `pos.reshape(-1, 3)[face_indices]`.
    triangles: (T, 3) int32 triangulation of the face-mask grid, indexing `face_indices`.
    """

    size: int
    region_labels: np.ndarray
    kpt_uv: np.ndarray
    face_indices: np.ndarray
    triangles: np.ndarray

    @property
    def face_mask(self) -> np.ndarray:
        """(S, S) bool: every label but 3."""
        return self.region_labels != fm.REGION_OUTSIDE


def region_labels_from_prnet_masks(weight_mask, face_mask):
    """PRNet masks -> labels: grey 255 -> 0, 64 -> 1, 48 -> 2 (nearest level), masked out -> 3.

    `uv_weight_mask.png` also holds a few blended greys (53, 58, 117, 122, 128) at region
    borders; each goes to the nearest of the three levels.
    """
    levels = np.asarray(PRNET_WEIGHT_LEVELS, np.int32)
    nearest = np.abs(np.asarray(weight_mask, np.int32)[..., None] - levels).argmin(-1)
    return np.where(np.asarray(face_mask) > 0, nearest, fm.REGION_OUTSIDE).astype(np.int32)


def keypoint_uv_pixels(model: fm.FaceModel, size: int):
    """(68, 2) int32 (u, v) pixel of each keypoint vertex's UV, rounded to the nearest pixel."""
    return np.rint(uv_raster.uv_to_pixels(model.uv[model.kpt_ind], size)).astype(np.int32)


def _derived_face_regions(raster, kpt_uv):
    """Heuristic labels for a model without per-vertex labels (needs a 68-point layout).

    face = covered pixels inside the jaw line (0-16) closed upward to the top edge; eyes, nose,
    mouth = convex hulls of points 36-47 / 27-35 / 48-67, dilated by S/64 pixels.
    """
    size = raster.size
    rows, cols = np.mgrid[:size, :size]
    pixels = np.stack([cols.ravel(), rows.ravel()], -1)
    jaw = kpt_uv[:17].astype(float)
    outline = np.concatenate([[[jaw[0, 0], -1.0]], jaw, [[jaw[-1, 0], -1.0]]])
    face = Polygon(outline).contains_points(pixels).reshape(size, size) & raster.mask
    features = np.zeros((size, size), bool)
    for group in (slice(36, 42), slice(42, 48), slice(27, 36), slice(48, 68)):
        points = kpt_uv[group].astype(float)
        hull = scipy.spatial.ConvexHull(points)
        features |= Polygon(points[hull.vertices]).contains_points(pixels).reshape(size, size)
    features = scipy.ndimage.binary_dilation(features, iterations=max(1, size // 64))
    labels = np.full((size, size), fm.REGION_OUTSIDE, np.int32)
    labels[face] = fm.REGION_FACE
    labels[face & features] = fm.REGION_EYE_NOSE_MOUTH
    return labels


def region_labels_from_model(model: fm.FaceModel, raster: uv_raster.UVRaster):
    """(S, S) int32 labels from the model.

    With per-vertex `region_labels`: each covered pixel takes the label of its heaviest
    barycentric vertex; uncovered pixels are 3. Without: `_derived_face_regions`. Either way the
    68 keypoint pixels are then set to 0.
    """
    kpt_uv = keypoint_uv_pixels(model, raster.size)
    if model.region_labels is None:
        labels = _derived_face_regions(raster, kpt_uv)
    else:
        heaviest = raster.vertex_ids[np.arange(len(raster.weights)), raster.weights.argmax(1)]
        labels = np.full(raster.size * raster.size, fm.REGION_OUTSIDE, np.int32)
        labels[raster.pixel_index] = model.region_labels[heaviest]
        labels = labels.reshape(raster.size, raster.size)
        labels[labels == fm.REGION_KEYPOINT] = fm.REGION_EYE_NOSE_MOUTH
    labels[kpt_uv[:, 1], kpt_uv[:, 0]] = fm.REGION_KEYPOINT
    return labels


def mask_grid_triangles(mask):
    """Triangulation of the pixel grid under a (S, S) bool mask.

    Each 2x2 pixel quad with all four pixels in the mask gives two triangles (split on the
    anti-diagonal), one with exactly three gives the triangle of those three; all with the same
    orientation. Returns (T, 3) int32 indices into the mask's pixels in row-major order.
    """
    mask = np.asarray(mask, bool)
    index = np.full(mask.shape, -1, np.int64)
    index[mask] = np.arange(mask.sum())
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()  # (r, c), (r, c + 1)
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()  # (r + 1, c), (r + 1, c + 1)
    ia, ib, ic, id_ = a >= 0, b >= 0, c >= 0, d >= 0
    candidates = [
        (np.stack([a, c, b], -1), ia & ib & ic),  # full quad, first half / no d
        (np.stack([b, c, d], -1), ib & ic & id_),  # full quad, second half / no a
        (np.stack([a, c, d], -1), ia & ic & id_ & ~ib),  # no b
        (np.stack([a, d, b], -1), ia & ib & id_ & ~ic),  # no c
    ]
    return np.concatenate([tri[keep] for tri, keep in candidates]).astype(np.int32)


def _assets(labels, kpt_uv):
    size = labels.shape[0]
    face_mask = labels != fm.REGION_OUTSIDE
    return UVAssets(
        size=size,
        region_labels=labels.astype(np.int32),
        kpt_uv=np.asarray(kpt_uv, np.int32),
        face_indices=np.flatnonzero(face_mask.ravel()).astype(np.int32),
        triangles=mask_grid_triangles(face_mask),
    )


def uv_assets_from_model(model: fm.FaceModel, raster: uv_raster.UVRaster) -> UVAssets:
    """All UV assets of `model` at the raster's size."""
    return _assets(region_labels_from_model(model, raster), keypoint_uv_pixels(model, raster.size))


def _read_grey(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (PRNet uv-data folder)")
    image = np.asarray(Image.open(path))
    if image.ndim == 3:
        image = image[..., 0]
    return image


def load_prnet_uv_data(folder) -> UVAssets:
    """Reads PRNet's `Data/uv-data` folder: uv_kpt_ind.txt (2 x 68: u row, v row),
    uv_face_mask.png, uv_weight_mask.png and face_ind.txt (checked against the mask).
    """
    folder = Path(folder)
    face_mask = _read_grey(folder / "uv_face_mask.png")
    weight_mask = _read_grey(folder / "uv_weight_mask.png")
    size = face_mask.shape[0]
    if face_mask.shape != (size, size) or weight_mask.shape != face_mask.shape:
        raise ValueError(
            f"{folder}: uv_face_mask.png {face_mask.shape} and uv_weight_mask.png "
            f"{weight_mask.shape} must be the same square size"
        )
    kpt_path = folder / "uv_kpt_ind.txt"
    kpt = np.loadtxt(kpt_path)
    if kpt.shape != (2, fm.NUM_KEYPOINTS):
        raise ValueError(f"{kpt_path}: shape {kpt.shape}, expected (2, {fm.NUM_KEYPOINTS})")
    kpt_uv = np.rint(kpt.T).astype(np.int32)
    if kpt_uv.min() < 0 or kpt_uv.max() >= size:
        raise ValueError(f"{kpt_path}: pixel outside the {size}x{size} map")
    labels = region_labels_from_prnet_masks(weight_mask, face_mask)
    assets = _assets(labels, kpt_uv)
    face_ind_path = folder / "face_ind.txt"
    if face_ind_path.is_file():
        face_ind = np.loadtxt(face_ind_path).astype(np.int64)
        if not np.array_equal(face_ind, assets.face_indices):
            raise ValueError(f"{face_ind_path}: does not list the nonzero pixels of uv_face_mask.png")
    return assets
