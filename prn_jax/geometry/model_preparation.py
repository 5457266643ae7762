"""face3d's `BFM.mat`, `BFM_UV.mat` and `BFM_info.mat` from the raw downloads, without MATLAB.

The steps of face3d's `examples/Data/BFM/generate.m`, reproduced exactly (docs/model_preparation.md
explains each, quirks included):
  1. trim Basel's 3N-row arrays (N = 53,490) to the 3n rows (n = 53,215) of 3DDFA's `trimIndex`,
     x, y, z interleaved: vertex i (1-based) keeps rows 3i-2, 3i-1, 3i;
  2. `tri` and `kpt_ind` from `model_info.mat` (`tri`, `keypoints`), as stored;
  3. the expression basis `expMU`, `expPC`, `expEV` = 3DDFA's `mu_exp`, `w_exp`, `sigma_exp`
     (already trimmed);
  4. the UVs: 3DMMasSTN's `UV(trimIndex, :)`, then three bad vertices replaced by the mean of
     their neighbours (`UV_REPAIRS`);
  5. the mouth triangles: 3DDFA's `tri_mouth` minus the columns numbered like the three bad UV
     vertices (`MOUTH_DROPPED_COLUMNS`: none of the 107), plus 7 inner-mouth triangles
     (`MOUTH_ADDITIONS`).
Indices stay 1-based in the outputs (face3d's layout; `face_model.load_face_model` reads them).

Functional core: `assemble` (arrays in, arrays out). Edges: `find_raw_files`, `read_raw`,
`write_prepared`, and `prepare_model`, which runs them in order. Every problem with an input
raises `RawModelError` naming the file and the variable.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import scipy.io

# role -> (file name, where it comes from); the files are searched for under the downloads folder.
RAW_FILES = {
    "basel": ("01_MorphableModel.mat", "Basel Face Model 2009"),
    "info": ("model_info.mat", "3DDFA / Face Profiling"),
    "expression": ("Model_Expression.mat", "3DDFA"),
    "mouth": ("Model_tri_mouth.mat", "3DDFA / HPEN"),
    "uv": ("BFM_UV.mat", "3DMMasSTN util/"),
}
# Optional 3DDFA/HPEN files whose variables generate.m copies into BFM_info.mat (steps 4-6).
OPTIONAL_INFO_FILES = {
    "Model_face_contour_trimed.mat": (
        "face_contour",
        "face_contour_line",
        "face_contour_front",
        "face_contour_front_line",
    ),
    "Modelplus_nose_hole.mat": ("nose_hole", "nose_hole_right", "nose_hole_left"),
    "Modelplus_parallel.mat": ("parallel", "parallel_face_contour"),
}
# model_info.mat variables copied into BFM_info.mat when present (generate.m needs them; the
# project reads none of them).
INFO_PASSTHROUGH = ("symlist", "symlist_tri")

# generate.m's UV repair, 1-based trimmed vertex numbers: vertex <- mean of these vertices' UVs.
UV_REPAIRS = (
    (10032, (10033, 10158)),
    (10155, (10534, 10157, 10661)),
    (10280, (10916, 10286)),
)
# generate.m removes mouth-triangle COLUMNS numbered like the bad UV vertices (it passes
# `bad_ind` to `setdiff` where `ind_bad = 38` was meant): with 107 columns nothing is removed.
MOUTH_DROPPED_COLUMNS = tuple(vertex for vertex, _ in UV_REPAIRS)
# The 7 inner-mouth triangles generate.m appends (1-based trimmed vertex numbers, one per row).
MOUTH_ADDITIONS = (
    (6420, 6542, 6664),
    (6420, 6294, 6167),
    (6167, 6297, 6420),
    (6167, 6297, 6296),
    (6167, 6296, 6295),
    (6167, 6295, 6039),
    (6168, 6295, 6039),
)
# The fewest trimmed vertices those hard-coded numbers allow.
MIN_TRIMMED_VERTICES = max(max(v, *n) for v, n in UV_REPAIRS)
OUTPUT_FILES = ("BFM.mat", "BFM_UV.mat", "BFM_info.mat")


class RawModelError(ValueError):
    """A raw download that cannot give face3d's model: names the file and the variable."""

    def __init__(self, path, variable, reason):
        self.path, self.variable, self.reason = str(path), variable, reason
        super().__init__(f"{path}: {variable}: {reason}")


@dataclasses.dataclass(frozen=True)
class RawModel:
    """The variables generate.m reads, as stored (MATLAB classes: single stays float32, double
    float64), keyed by variable name, with the file each came from.

    basel: shapeMU (3N, 1), shapePC (3N, ks), shapeEV (ks, 1), texMU (3N, 1), texPC (3N, kt),
      texEV (kt, 1), segbin (N, r) when present.
    info: trimIndex (n, 1) 1-based into N, keypoints (1, 68) 1-based into n, tri (3, t)
      1-based into n, optional segbin (N, r) (replaces Basel's), segbin_tri, symlist,
      symlist_tri.
    expression: mu_exp (3n, 1), w_exp (3n, ke), sigma_exp (ke, 1).
    mouth: tri_mouth (3, tm) 1-based into n. uv: UV (N, 2) in [0, 1].
    extra: variables of the OPTIONAL_INFO_FILES found. paths: role -> file.
    """

    basel: dict
    info: dict
    expression: dict
    mouth: dict
    uv: dict
    extra: dict
    paths: dict


@dataclasses.dataclass(frozen=True)
class PreparedModel:
    """What generate.m saves: `model` (BFM.mat's struct fields, in its order), `uv` (n, 2) float64
    (BFM_UV.mat's `UV`) and `model_info` (BFM_info.mat's struct fields)."""

    model: dict
    uv: np.ndarray
    model_info: dict


# ------------------------------------------------------------------------------ functional core


def interleaved_rows(trim_index) -> np.ndarray:
    """(n,) or (n, 1) 1-based vertex numbers -> (3n,) 0-based rows [3i-3, 3i-2, 3i-1] per vertex.

    generate.m's `trimIndex_f = [3*t-2, 3*t-1, 3*t]'; trimIndex_f(:)` for a column `t`. Index
    arrays are cast to int64 first: MATLAB stores integer-valued doubles as uint16 on disk and
    `3 * t` would wrap in uint16.
    """
    t = np.asarray(trim_index).reshape(-1).astype(np.int64)
    return np.stack([3 * t - 3, 3 * t - 2, 3 * t - 1], axis=1).reshape(-1)


def repair_uv(uv: np.ndarray) -> np.ndarray:
    """(n, 2) trimmed UVs -> a copy with generate.m's three bad vertices set to their neighbours'
    mean (`UV_REPAIRS`, applied in order; MATLAB's mean = sum / count)."""
    out = np.array(uv, dtype=np.float64, copy=True)
    for vertex, neighbours in UV_REPAIRS:
        rows = out[[n - 1 for n in neighbours]]
        total = rows[0].copy()
        for row in rows[1:]:
            total = total + row
        out[vertex - 1] = total / len(neighbours)
    return out


def mouth_triangles(tri_mouth: np.ndarray) -> np.ndarray:
    """(3, tm) raw 1-based mouth triangles -> generate.m's (3, tm' + 7): the columns whose
    1-based number is not in MOUTH_DROPPED_COLUMNS, then MOUTH_ADDITIONS (one per column). The
    result keeps `tri_mouth`'s class (MATLAB's concatenation with a double does)."""
    keep = [j for j in range(tri_mouth.shape[1]) if j + 1 not in MOUTH_DROPPED_COLUMNS]
    added = np.asarray(MOUTH_ADDITIONS, np.float64).T.astype(tri_mouth.dtype)
    return np.concatenate([tri_mouth[:, keep], added], axis=1)


def assemble(raw: RawModel) -> PreparedModel:
    """generate.m's `model`, `UV` and `model_info` from the raw variables (module docstring)."""
    basel, info = raw.basel, raw.info
    rows = interleaved_rows(info["trimIndex"])
    vertex_rows = np.asarray(info["trimIndex"]).reshape(-1).astype(np.int64) - 1
    tri_mouth = mouth_triangles(raw.mouth["tri_mouth"])
    model = {
        "shapeMU": basel["shapeMU"][rows],
        "shapePC": basel["shapePC"][rows],
        "shapeEV": basel["shapeEV"],
        "texMU": basel["texMU"][rows],
        "texPC": basel["texPC"][rows],
        "texEV": basel["texEV"],
        "tri": info["tri"],
        "kpt_ind": info["keypoints"],
        "expMU": raw.expression["mu_exp"],
        "expPC": raw.expression["w_exp"],
        "expEV": raw.expression["sigma_exp"],
        "tri_mouth": tri_mouth,
    }
    uv = repair_uv(raw.uv["UV"][vertex_rows])
    segbin = info["segbin"] if "segbin" in info else basel["segbin"]  # model_info.mat's wins
    model_info = {"kpt_ind": info["keypoints"], "trimIndex": info["trimIndex"]}
    model_info.update({k: info[k] for k in INFO_PASSTHROUGH if k in info})
    model_info["segbin"] = segbin[vertex_rows].T
    if "segbin_tri" in info:
        model_info["segbin_tri"] = info["segbin_tri"].T
    model_info["tri_mouth"] = tri_mouth
    model_info.update(raw.extra)
    model_info["uv_coords"] = uv
    return PreparedModel(model=model, uv=uv, model_info=model_info)


# ------------------------------------------------------------------------------ edges: reading


def find_raw_files(downloads, exclude=None) -> dict[str, Path]:
    """role -> path of each RAW_FILES name under `downloads` (searched recursively, e.g. face3d's
    raw/, 3ddfa/, stn/ folders), leaving out anything under `exclude` (the output folder, whose
    BFM_UV.mat would otherwise be a second match). The OPTIONAL_INFO_FILES found are listed
    under their file names.

    RawModelError naming the file when one is missing or found twice.
    """
    downloads = Path(downloads)
    exclude = Path(exclude).resolve() if exclude is not None else None

    def matches(name):
        found = sorted(p for p in downloads.rglob(name) if p.is_file())
        if exclude is not None:
            found = [p for p in found if not p.resolve().is_relative_to(exclude)]
        return found

    paths = {}
    for role, (name, origin) in RAW_FILES.items():
        found = matches(name)
        if not found:
            raise RawModelError(downloads / name, "file", f"missing (from {origin}; searched {downloads})")
        if len(found) > 1:
            raise RawModelError(found[1], "file", f"found twice (also {found[0]}); keep one")
        paths[role] = found[0]
    for name in OPTIONAL_INFO_FILES:
        found = matches(name)
        if found:
            paths[name] = found[0]
    return paths


def _load(path: Path, names) -> dict:
    try:
        return scipy.io.loadmat(str(path), mat_dtype=True, variable_names=list(names))
    except NotImplementedError as error:  # scipy's answer to an HDF5-based v7.3 file
        raise RawModelError(path, "file", f"MATLAB v7.3 (HDF5) file, save it as -v7 ({error})") from error
    except Exception as error:  # scipy raises several types for corrupt files
        raise RawModelError(path, "file", f"unreadable MATLAB file ({error})") from error


def _check(content, path, key, shape, required=True):
    """content[key] as a numeric array of `shape` (None = any length); None when absent and not
    required."""
    if key not in content:
        if required:
            raise RawModelError(path, key, "variable missing")
        return None
    value = np.asarray(content[key])
    if value.dtype == bool:
        value = value.astype(np.uint8)
    if not np.issubdtype(value.dtype, np.number):
        raise RawModelError(path, key, f"dtype {value.dtype}, expected numbers")
    if value.ndim != len(shape) or any(w is not None and g != w for g, w in zip(value.shape, shape)):
        raise RawModelError(path, key, f"shape {value.shape}, expected {shape} (None = any length)")
    if not np.all(np.isfinite(value)):
        raise RawModelError(path, key, "contains NaN or infinite values")
    return value


def _check_indices(value, path, key, high):
    if not np.array_equal(value, np.round(value)):
        raise RawModelError(path, key, "non-integer index")
    if value.size and (value.min() < 1 or value.max() > high):
        raise RawModelError(
            path,
            key,
            f"1-based index out of range [1, {high}] (min {value.min():.0f}, max {value.max():.0f})",
        )


def read_raw(paths: dict) -> RawModel:
    """The variables generate.m uses from the files of `find_raw_files`, checked for presence,
    shape, consistency and index range (RawModelError naming the file and variable)."""
    p = paths
    basel = _load(p["basel"], ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "segbin"))
    shape_mu = _check(basel, p["basel"], "shapeMU", (None, 1))
    n3_full = shape_mu.shape[0]
    if n3_full % 3:
        raise RawModelError(p["basel"], "shapeMU", f"{n3_full} rows, not a multiple of 3 (x, y, z)")
    n_full = n3_full // 3
    shape_pc = _check(basel, p["basel"], "shapePC", (n3_full, None))
    tex_pc = _check(basel, p["basel"], "texPC", (n3_full, None))
    basel_vars = {
        "shapeMU": shape_mu,
        "shapePC": shape_pc,
        "shapeEV": _check(basel, p["basel"], "shapeEV", (shape_pc.shape[1], 1)),
        "texMU": _check(basel, p["basel"], "texMU", (n3_full, 1)),
        "texPC": tex_pc,
        "texEV": _check(basel, p["basel"], "texEV", (tex_pc.shape[1], 1)),
    }
    info_names = ("trimIndex", "keypoints", "tri", "segbin", "segbin_tri", *INFO_PASSTHROUGH)
    info = _load(p["info"], info_names)
    trim = _check(info, p["info"], "trimIndex", (None, 1))
    _check_indices(trim, p["info"], "trimIndex", n_full)
    if np.unique(trim).size != trim.size:
        raise RawModelError(p["info"], "trimIndex", "repeated vertex numbers")
    n = trim.shape[0]
    if n < MIN_TRIMMED_VERTICES:
        raise RawModelError(
            p["info"],
            "trimIndex",
            f"{n} vertices; generate.m's UV repair and mouth triangles number vertices up to "
            f"{MIN_TRIMMED_VERTICES} (3DDFA's has 53,215)",
        )
    keypoints = _check(info, p["info"], "keypoints", (1, 68))
    _check_indices(keypoints, p["info"], "keypoints", n)
    tri = _check(info, p["info"], "tri", (3, None))
    _check_indices(tri, p["info"], "tri", n)
    info_vars = {"trimIndex": trim, "keypoints": keypoints, "tri": tri}
    for key in ("segbin_tri", *INFO_PASSTHROUGH):
        if key in info:
            info_vars[key] = np.asarray(info[key])
    segbin = _check(info, p["info"], "segbin", (n_full, None), required=False)
    if segbin is not None:
        info_vars["segbin"] = segbin
    else:
        basel_vars["segbin"] = _check(basel, p["basel"], "segbin", (n_full, None))

    expression = _load(p["expression"], ("mu_exp", "w_exp", "sigma_exp"))
    w_exp = _check(expression, p["expression"], "w_exp", (3 * n, None))
    expression_vars = {
        "mu_exp": _check(expression, p["expression"], "mu_exp", (3 * n, 1)),
        "w_exp": w_exp,
        "sigma_exp": _check(expression, p["expression"], "sigma_exp", (w_exp.shape[1], 1)),
    }
    mouth = _load(p["mouth"], ("tri_mouth",))
    tri_mouth = _check(mouth, p["mouth"], "tri_mouth", (3, None))
    _check_indices(tri_mouth, p["mouth"], "tri_mouth", n)
    uv_file = _load(p["uv"], ("UV",))
    uv = _check(uv_file, p["uv"], "UV", (n_full, 2))
    extra = {}
    for name, variables in OPTIONAL_INFO_FILES.items():
        if name in paths:
            content = _load(paths[name], variables)
            extra.update({k: content[k] for k in variables if k in content})
    return RawModel(
        basel=basel_vars,
        info=info_vars,
        expression=expression_vars,
        mouth={"tri_mouth": tri_mouth},
        uv={"UV": uv},
        extra=extra,
        paths=dict(paths),
    )


# ------------------------------------------------------------------------------ edges: writing


def write_prepared(prepared: PreparedModel, out) -> dict[str, Path]:
    """Writes OUT/BFM.mat (struct `model`), OUT/BFM_UV.mat (`UV`) and OUT/BFM_info.mat (struct
    `model_info`), MATLAB v5 uncompressed (the bases are floats: zlib would save little and cost
    tens of seconds). Returns {file name: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    contents = {
        "BFM.mat": {"model": prepared.model},
        "BFM_UV.mat": {"UV": prepared.uv},
        "BFM_info.mat": {"model_info": prepared.model_info},
    }
    paths = {}
    for name, content in contents.items():
        partial = out / f".{name}.partial"
        scipy.io.savemat(str(partial), content, do_compression=False)
        partial.replace(out / name)  # never a half-written BFM.mat under its final name
        paths[name] = out / name
    return paths


def prepare_model(downloads, out) -> dict:
    """find -> read -> assemble -> write; returns {'inputs': role -> path, 'outputs': name ->
    path, 'vertices': n, 'triangles': t, 'mouth_triangles': tm}."""
    inputs = find_raw_files(downloads, exclude=out)
    prepared = assemble(read_raw(inputs))
    outputs = write_prepared(prepared, out)
    return {
        "inputs": inputs,
        "outputs": outputs,
        "vertices": prepared.uv.shape[0],
        "triangles": prepared.model["tri"].shape[1],
        "mouth_triangles": prepared.model["tri_mouth"].shape[1],
    }
