"""The morphable face model container and its face3d-format (BFM.mat, BFM_UV.mat) reader/writer.

Layout on disk (face3d `BFM.mat`, MATLAB v5, one struct variable `model`):
  shapeMU (3n, 1), shapePC (3n, ks), shapeEV (ks, 1), expMU (3n, 1), expPC (3n, ke),
  expEV (ke, 1), tri (3, t) 1-based, tri_mouth (3, tm) 1-based, kpt_ind (1, 68) 1-based,
  optional texMU (3n, 1), texPC (3n, kt), texEV (kt, 1), and (this project's extension)
  optional region_labels (n, 1).
Vertices are x, y, z interleaved in the 3n axis (Fortran reshape to (3, n), then transpose).
`BFM_UV.mat` holds `UV` (n, 2) in [0, 1].
"""

import dataclasses
from pathlib import Path

import numpy as np
import scipy.io

NUM_KEYPOINTS = 68
REGION_KEYPOINT, REGION_EYE_NOSE_MOUTH, REGION_FACE, REGION_OUTSIDE = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True, eq=False)
class FaceModel:
    """A linear 3D morphable model with per-vertex UV coordinates.

    n vertices, t face triangles, tm mouth triangles, ks / ke / kt basis vectors.
    Model units are those of the file (BFM: micrometre-scale; the 3DDFA pose scale maps them
    to pixels).

    Attributes:
      mean: (n, 3) float32, mean shape with the expression mean folded in (face3d convention).
      shape_basis: (n, 3, ks) float32, identity basis; raw coefficients (not std-scaled).
        Memory-identical to face3d's (3n, ks) `shapePC`: `shape_basis.reshape(3 * n, ks)`.
      shape_std: (ks,) float32, `shapeEV`.
      exp_basis: (n, 3, ke) float32, expression basis.
      exp_std: (ke,) float32, `expEV`.
      triangles: (t, 3) int32, 0-based face triangles (`tri`).
      mouth_triangles: (tm, 3) int32, 0-based mouth triangles (`tri_mouth`).
      kpt_ind: (68,) int32, 0-based vertex index of each of the 68 landmarks.
      uv: (n, 2) float32 in [0, 1], (u, v) with v up (face3d flips it when rasterising).
      region_labels: optional (n,) int32: 0 keypoint, 1 eyes/nose/mouth, 2 other face,
        3 neck/outside face.
      tex_mean: optional (n, 3) float32 albedo mean (`texMU`).
      tex_basis: optional (n, 3, kt) float32 albedo basis (`texPC`).
      tex_std: optional (kt,) float32 (`texEV`).
    """

    mean: np.ndarray
    shape_basis: np.ndarray
    shape_std: np.ndarray
    exp_basis: np.ndarray
    exp_std: np.ndarray
    triangles: np.ndarray
    mouth_triangles: np.ndarray
    kpt_ind: np.ndarray
    uv: np.ndarray
    region_labels: np.ndarray | None = None
    tex_mean: np.ndarray | None = None
    tex_basis: np.ndarray | None = None
    tex_std: np.ndarray | None = None

    def __post_init__(self):
        validate_face_model(self, source="FaceModel")

    @property
    def num_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def full_triangles(self) -> np.ndarray:
        """(t + tm, 3) int32: face then mouth triangles, what face3d rasterises into UV space."""
        return np.concatenate([self.triangles, self.mouth_triangles], axis=0)


def _fail(source, key, message):
    raise ValueError(f"{source}: field {key!r}: {message}")


def _check_shape(source, key, array, shape):
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape)
    ):
        _fail(source, key, f"shape {array.shape}, expected {tuple(shape)} (None = any)")


def _check_finite(source, key, array):
    if not np.all(np.isfinite(array)):
        _fail(source, key, "contains NaN or infinite values")


def _check_indices(source, key, array, n):
    if array.size and (array.min() < 0 or array.max() >= n):
        _fail(source, key, f"index out of range [0, {n}) (min {array.min()}, max {array.max()})")


def validate_face_model(model: FaceModel, source: str) -> None:
    """Raises ValueError naming `source` and the field on any shape, dtype or range mismatch."""
    n = model.mean.shape[0] if model.mean.ndim == 2 else -1
    _check_shape(source, "mean", model.mean, (None, 3))
    _check_finite(source, "mean", model.mean)
    for basis_key, std_key in (("shape_basis", "shape_std"), ("exp_basis", "exp_std")):
        basis, std = getattr(model, basis_key), getattr(model, std_key)
        _check_shape(source, basis_key, basis, (n, 3, None))
        _check_shape(source, std_key, std, (basis.shape[2],))
        _check_finite(source, basis_key, basis)
    for key in ("triangles", "mouth_triangles"):
        tri = getattr(model, key)
        _check_shape(source, key, tri, (None, 3))
        if tri.dtype != np.int32:
            _fail(source, key, f"dtype {tri.dtype}, expected int32")
        _check_indices(source, key, tri, n)
    _check_shape(source, "kpt_ind", model.kpt_ind, (NUM_KEYPOINTS,))
    _check_indices(source, "kpt_ind", model.kpt_ind, n)
    _check_shape(source, "uv", model.uv, (n, 2))
    if not (np.all(np.isfinite(model.uv)) and model.uv.min() >= -1e-6 and model.uv.max() <= 1 + 1e-6):
        _fail(source, "uv", "values must lie in [0, 1]")
    if model.region_labels is not None:
        _check_shape(source, "region_labels", model.region_labels, (n,))
        if not np.isin(model.region_labels, (0, 1, 2, 3)).all():
            _fail(source, "region_labels", "values must be in {0, 1, 2, 3}")
    tex = (model.tex_mean, model.tex_basis, model.tex_std)
    if any(x is not None for x in tex):
        if any(x is None for x in tex):
            _fail(source, "tex_mean/tex_basis/tex_std", "give all three or none")
        _check_shape(source, "tex_mean", model.tex_mean, (n, 3))
        _check_shape(source, "tex_basis", model.tex_basis, (n, 3, None))
        _check_shape(source, "tex_std", model.tex_std, (model.tex_basis.shape[2],))


def _interleaved_to_vertices(flat: np.ndarray) -> np.ndarray:
    """(3n, k) x,y,z-interleaved rows -> (n, 3, k); the same as the Fortran (3, n) reshape."""
    return np.ascontiguousarray(flat, dtype=np.float32).reshape(-1, 3, flat.shape[1])


def _read_mat(path: Path):
    try:
        return scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several types for corrupt / missing files
        raise ValueError(f"{path}: cannot read as a MATLAB file ({error})") from error


def load_face_model(bfm_path, uv_path) -> FaceModel:
    """Reads a face3d-layout `BFM.mat` and `BFM_UV.mat` into a validated FaceModel.

    Folds expMU into the mean, makes triangles (t, 3) and all indices 0-based (face3d's loader).
    """
    bfm_path, uv_path = Path(bfm_path), Path(uv_path)
    content = _read_mat(bfm_path)
    if "model" not in content:
        _fail(bfm_path, "model", "missing struct variable (face3d BFM.mat layout)")
    struct = content["model"]
    if struct.dtype.names is None or struct.size != 1:
        _fail(bfm_path, "model", "expected a 1x1 MATLAB struct")
    struct = struct[0, 0]
    names = set(struct.dtype.names)

    def field(key, required=True):
        if key not in names:
            if required:
                _fail(bfm_path, f"model.{key}", "missing")
            return None
        value = np.asarray(struct[key])
        if value.dtype == object or not np.issubdtype(value.dtype, np.number):
            _fail(bfm_path, f"model.{key}", f"expected a numeric array, got dtype {value.dtype}")
        return value

    source = str(bfm_path)
    shape_mu, exp_mu = field("shapeMU"), field("expMU")
    _check_shape(source, "model.shapeMU", shape_mu, (None, 1))
    n3 = shape_mu.shape[0]
    if n3 % 3:
        _fail(source, "model.shapeMU", f"length {n3} is not a multiple of 3")
    n = n3 // 3
    _check_shape(source, "model.expMU", exp_mu, (n3, 1))

    def basis(pc_key, ev_key):
        pc, ev = field(pc_key), field(ev_key)
        _check_shape(source, f"model.{pc_key}", pc, (n3, None))
        _check_shape(source, f"model.{ev_key}", ev.reshape(ev.shape[0], -1), (pc.shape[1], 1))
        return _interleaved_to_vertices(pc), ev.reshape(-1).astype(np.float32)

    shape_basis, shape_std = basis("shapePC", "shapeEV")
    exp_basis, exp_std = basis("expPC", "expEV")

    def triangles(key):
        tri = field(key)
        _check_shape(source, f"model.{key}", tri, (3, None))
        if not np.all(tri == np.round(tri)):
            _fail(source, f"model.{key}", "non-integer vertex index")
        tri = tri.T.astype(np.int64) - 1
        _check_indices(source, f"model.{key} (1-based in file)", tri, n)
        return np.ascontiguousarray(tri, dtype=np.int32)

    kpt = field("kpt_ind")
    if kpt.size != NUM_KEYPOINTS:
        _fail(source, "model.kpt_ind", f"{kpt.size} entries, expected {NUM_KEYPOINTS}")
    kpt = kpt.reshape(-1).astype(np.int64) - 1
    _check_indices(source, "model.kpt_ind (1-based in file)", kpt, n)

    region = field("region_labels", required=False)
    if region is not None:
        region = region.reshape(-1).astype(np.int32)

    tex_present = [k for k in ("texMU", "texPC", "texEV") if k in names]
    tex_mean = tex_basis = tex_std = None
    if tex_present:
        tex_mu = field("texMU")
        _check_shape(source, "model.texMU", tex_mu, (n3, 1))
        tex_mean = _interleaved_to_vertices(tex_mu)[:, :, 0]
        tex_basis, tex_std = basis("texPC", "texEV")

    uv_content = _read_mat(uv_path)
    if "UV" not in uv_content:
        _fail(uv_path, "UV", "missing (face3d BFM_UV.mat layout)")
    uv = np.asarray(uv_content["UV"], dtype=np.float32)
    _check_shape(str(uv_path), "UV", uv, (n, 2))

    try:
        return FaceModel(
            mean=_interleaved_to_vertices(shape_mu + exp_mu)[:, :, 0],
            shape_basis=shape_basis,
            shape_std=shape_std,
            exp_basis=exp_basis,
            exp_std=exp_std,
            triangles=triangles("tri"),
            mouth_triangles=triangles("tri_mouth"),
            kpt_ind=kpt.astype(np.int32),
            uv=uv,
            region_labels=region,
            tex_mean=tex_mean,
            tex_basis=tex_basis,
            tex_std=tex_std,
        )
    except ValueError as error:
        raise ValueError(f"{bfm_path} / {uv_path}: {error}") from error


def _vertices_to_interleaved(array: np.ndarray) -> np.ndarray:
    """(n, 3) or (n, 3, k) -> (3n, k) float32, x,y,z interleaved."""
    return np.asarray(array, dtype=np.float32).reshape(array.shape[0] * 3, -1)


def save_face_model(model: FaceModel, bfm_path, uv_path) -> None:
    """Writes `model` as face3d-layout `BFM.mat` + `BFM_UV.mat` (1-based indices, expMU = 0).

    `load_face_model` on the written files gives back the same arrays.
    """
    struct = {
        "shapeMU": _vertices_to_interleaved(model.mean),
        "shapePC": _vertices_to_interleaved(model.shape_basis),
        "shapeEV": np.asarray(model.shape_std, np.float32)[:, None],
        "expMU": np.zeros((3 * model.num_vertices, 1), np.float32),
        "expPC": _vertices_to_interleaved(model.exp_basis),
        "expEV": np.asarray(model.exp_std, np.float32)[:, None],
        "tri": (model.triangles.T + 1).astype(np.float64),
        "tri_mouth": (model.mouth_triangles.T + 1).astype(np.float64),
        "kpt_ind": (model.kpt_ind[None, :] + 1).astype(np.float64),
    }
    if model.region_labels is not None:
        struct["region_labels"] = model.region_labels[:, None].astype(np.float64)
    if model.tex_mean is not None:
        struct["texMU"] = _vertices_to_interleaved(model.tex_mean)
        struct["texPC"] = _vertices_to_interleaved(model.tex_basis)
        struct["texEV"] = np.asarray(model.tex_std, np.float32)[:, None]
    scipy.io.savemat(str(bfm_path), {"model": struct}, do_compression=False)
    scipy.io.savemat(str(uv_path), {"UV": np.asarray(model.uv, np.float64)})
