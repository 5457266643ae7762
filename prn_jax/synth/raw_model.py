"""Stand-ins for the raw model downloads that `prn-jax prepare-model` reads, in their formats.

Same file names, variable names, MATLAB classes (Basel's arrays single, 3DDFA's indices double),
shape conventions (3N-row interleaved arrays, index arrays as columns or rows as released) and
1-based index bases as the real files (docs/model_preparation.md); only the vertex count and
the geometry differ: the kept vertices form a rows x cols grid (UV = its normalised
coordinates, shape linear in them), and `extra` vertices that trimIndex drops sit between them
at random rows. generate.m's hard-coded vertex numbers (up to 10,916) need rows * cols >= 10,916.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

# face3d's folder layout of the downloads (examples/Data/BFM/readme.md).
LAYOUT = {
    "01_MorphableModel.mat": "raw",
    "model_info.mat": "3ddfa",
    "Model_Expression.mat": "3ddfa",
    "Model_tri_mouth.mat": "3ddfa",
    "BFM_UV.mat": "stn",
}


def grid_triangles(rows: int, cols: int) -> np.ndarray:
    """(2 (rows-1) (cols-1), 3) 0-based triangles of a row-major rows x cols vertex grid."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (r * cols + c).ravel()
    b, d, e = a + 1, a + cols, a + cols + 1
    return np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)])


def grid_mean(rows: int, cols: int) -> np.ndarray:
    """(rows * cols, 3) the stand-in's trimmed mean shape (shapeMU + mu_exp): x = 1000 col,
    y = 1000 row (model units, y up in UV), z = 500 (col - row); linear in the UV coordinates."""
    r, c = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")
    return np.stack([1000 * c.ravel(), 1000 * (rows - 1 - r).ravel(), 500 * (c - r).ravel()], 1)


def write_raw_model(
    out,
    rows: int = 105,
    cols: int = 105,
    extra: int = 275,
    num_shape: int = 199,
    num_exp: int = 29,
    num_tex: int = 199,
    num_mouth: int = 107,
    seed: int = 0,
) -> dict[str, Path]:
    """Writes the five raw files under OUT in face3d's layout (raw/, 3ddfa/, stn/); returns
    {file name: path}. Defaults: 11,025 kept of 11,300 vertices (the real files: 53,215 of 53,490),
    199 / 29 / 199 components, 107 mouth triangles, 105,840 -> 21,632 face triangles."""
    rng = np.random.default_rng(seed)
    n = rows * cols
    n_full = n + extra
    dropped = np.sort(rng.choice(n_full, extra, replace=False))
    kept = np.setdiff1d(np.arange(n_full), dropped)  # 0-based full numbers of the grid vertices
    mean = grid_mean(rows, cols)

    def full_interleaved(trimmed_rows, columns, dtype):
        """(3N, k): `trimmed_rows` (n, 3, k) at the kept vertices, random at the dropped ones."""
        full = rng.normal(size=(n_full, 3, columns))
        full[kept] = trimmed_rows
        return full.reshape(3 * n_full, columns).astype(dtype)

    shape_mu = full_interleaved(0.9 * mean[:, :, None], 1, np.float32)
    shape_pc = full_interleaved(rng.normal(size=(n, 3, num_shape)), num_shape, np.float32)
    tex_mu = full_interleaved(rng.uniform(0, 255, size=(n, 3, 1)), 1, np.float32)
    tex_pc = full_interleaved(rng.normal(size=(n, 3, num_tex)), num_tex, np.float32)
    basel = {
        "shapeMU": shape_mu,
        "shapePC": shape_pc,
        "shapeEV": np.sort(rng.uniform(1e3, 1e5, size=(num_shape, 1)))[::-1].astype(np.float32),
        "texMU": tex_mu,
        "texPC": tex_pc,
        "texEV": np.sort(rng.uniform(1, 100, size=(num_tex, 1)))[::-1].astype(np.float32),
        "tl": (rng.integers(0, n_full, size=(2 * n_full, 3)) + 1).astype(np.float64),  # unused
        "segbin": (rng.uniform(size=(n_full, 4)) < 0.25).astype(np.float64),
    }
    triangles = grid_triangles(rows, cols)
    info = {
        "trimIndex": (kept + 1).astype(np.float64)[:, None],
        "keypoints": (np.sort(rng.choice(n, 68, replace=False)) + 1).astype(np.float64)[None, :],
        "tri": (triangles.T + 1).astype(np.float64),
        "segbin": (rng.uniform(size=(n_full, 4)) < 0.5).astype(np.float64),  # replaces Basel's
        "segbin_tri": (rng.uniform(size=(len(triangles), 4)) < 0.5).astype(np.float64),
        "symlist": (rng.integers(0, n, size=(2, n // 2)) + 1).astype(np.float64),
        "symlist_tri": (rng.integers(0, len(triangles), size=(2, len(triangles) // 2)) + 1).astype(
            np.float64
        ),
    }
    expression = {
        "mu_exp": (0.1 * mean).reshape(-1, 1),
        "w_exp": rng.normal(size=(3 * n, num_exp)),
        "sigma_exp": rng.uniform(0.5, 2.0, size=(num_exp, 1)),
    }
    mouth_rows = triangles[rng.choice(len(triangles), num_mouth, replace=False)]
    mouth = {"tri_mouth": (mouth_rows.T + 1).astype(np.float64)}
    r, c = np.divmod(np.arange(n), cols)
    uv = rng.uniform(size=(n_full, 2))
    uv[kept] = np.stack([c / (cols - 1), (rows - 1 - r) / (rows - 1)], 1)
    contents = {
        "01_MorphableModel.mat": basel,
        "model_info.mat": info,
        "Model_Expression.mat": expression,
        "Model_tri_mouth.mat": mouth,
        "BFM_UV.mat": {"UV": uv},
    }
    paths = {}
    for name, content in contents.items():
        path = Path(out) / LAYOUT[name] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(str(path), content, do_compression=False)
        paths[name] = path
    return paths
