"""A synthetic FaceModel on a UV grid, for tests and benchmarks where no BFM is available.

A rows x cols vertex grid over the UV square, a smooth face-like surface in BFM-like units
(about +-80,000 per axis, so real 300W-LP pose scales of ~1e-3 give a face of ~200 px), smooth
random bases (random Fourier features of UV), 68 keypoints at a rough landmark layout, and
per-vertex region labels.
"""

import numpy as np

from prn_jax.geometry import face_model as fm


# Rough 68-point layout in (u, v), v up: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47,
# mouth 48-67.
def _ellipse(cu, cv, ru, rv, count, start=np.pi):
    angle = start - 2 * np.pi * np.arange(count) / count
    return list(zip(cu + ru * np.cos(angle), cv + rv * np.sin(angle)))


_JAW = [(0.18 + 0.64 * i / 16, 0.62 - 0.45 * np.sin(np.pi * i / 16)) for i in range(17)]
_BROWS = [(0.22 + 0.06 * i, 0.74) for i in range(5)] + [(0.54 + 0.06 * i, 0.74) for i in range(5)]
_NOSE = [(0.5, 0.66 - 0.05 * i) for i in range(4)] + [(0.40 + 0.05 * i, 0.44) for i in range(5)]
_EYES = _ellipse(0.34, 0.63, 0.07, 0.035, 6) + _ellipse(0.66, 0.63, 0.07, 0.035, 6)
_MOUTH = _ellipse(0.5, 0.30, 0.14, 0.07, 12) + _ellipse(0.5, 0.30, 0.08, 0.03, 8)
KEYPOINT_UV = np.array(_JAW + _BROWS + _NOSE + _EYES + _MOUTH)


def grid_triangles(rows, cols):
    """(2 (rows-1)(cols-1), 3) int32 triangles of a row-major rows x cols vertex grid."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    p00 = (r * cols + c).ravel()
    p01, p10, p11 = p00 + 1, p00 + cols, p00 + cols + 1
    return np.concatenate([np.stack([p00, p10, p01], -1), np.stack([p01, p10, p11], -1)]).astype(np.int32)


def _smooth_fields(uv, count, rng, features=24, frequency=3.0):
    """(n, 3, count) smooth random functions of UV via random Fourier features, unit-ish scale."""
    w = rng.normal(0, frequency, (2, features))
    phase = rng.uniform(0, 2 * np.pi, features)
    basis = np.cos(uv @ w + phase) * np.sqrt(2.0 / features)
    coef = rng.normal(0, 1, (features, 3 * count))
    return (basis @ coef).astype(np.float32).reshape(len(uv), 3, count)


def make_grid_face_model(
    rows=64, cols=64, num_shape=199, num_exp=29, seed=0, with_texture=False
) -> fm.FaceModel:
    """A FaceModel on a rows x cols UV grid (see module docstring); deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    v, u = np.meshgrid(np.linspace(1, 0, rows), np.linspace(0, 1, cols), indexing="ij")
    uv = np.stack([u.ravel(), v.ravel()], -1)
    x, y = (uv[:, 0] - 0.5) * 160e3, (uv[:, 1] - 0.5) * 190e3
    z = 70e3 * np.sqrt(np.clip(1 - (x / 110e3) ** 2 - (y / 130e3) ** 2, 0, None))
    mean = np.stack([x, y, z], -1).astype(np.float32)
    shape_basis = _smooth_fields(uv, num_shape, rng) * 1e-1
    exp_basis = _smooth_fields(uv, num_exp, rng) * 3e3
    shape_std = np.geomspace(4e4, 1e3, num_shape).astype(np.float32)
    exp_std = np.geomspace(2.0, 0.1, num_exp).astype(np.float32)
    grid_rc = np.rint(
        np.stack([(1 - KEYPOINT_UV[:, 1]) * (rows - 1), KEYPOINT_UV[:, 0] * (cols - 1)], -1)
    ).astype(int)
    kpt_ind = (grid_rc[:, 0] * cols + grid_rc[:, 1]).astype(np.int32)
    # Regions: inside the jaw/forehead outline = face (2); near eyes, nose, mouth = 1.
    dist = np.linalg.norm(uv[:, None] - KEYPOINT_UV[None, 27:], axis=-1).min(1)
    face = ((x / 75e3) ** 2 + ((y - 10e3) / 95e3) ** 2) < 1
    labels = np.where(face, fm.REGION_FACE, fm.REGION_OUTSIDE)
    labels = np.where(face & (dist < 0.04), fm.REGION_EYE_NOSE_MOUTH, labels)
    labels[kpt_ind] = fm.REGION_KEYPOINT
    tri = grid_triangles(rows, cols)
    texture = {}
    if with_texture:
        texture = dict(
            tex_mean=np.full((rows * cols, 3), 128, np.float32),
            tex_basis=_smooth_fields(uv, 10, rng),
            tex_std=np.ones(10, np.float32),
        )
    return fm.FaceModel(
        mean=mean,
        shape_basis=shape_basis,
        shape_std=shape_std,
        exp_basis=exp_basis,
        exp_std=exp_std,
        triangles=tri[: len(tri) - 2],
        mouth_triangles=tri[len(tri) - 2 :],
        kpt_ind=kpt_ind,
        uv=uv.astype(np.float32),
        region_labels=labels.astype(np.int32),
        **texture,
    )
