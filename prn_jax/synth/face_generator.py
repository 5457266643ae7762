"""A procedural face morphable model with the structure of the 3DDFA-trimmed BFM.

The surface is a (rows x cols) vertex grid over a cylinder-like head: column c sits at azimuth
theta(c) around the vertical axis (theta = 0 faces the camera, denser near the face centre),
row r at parameter v(r) going up from the neck (v = 0) over the under-chin (jaw line at
`V_JAW`) and the face to the forehead top (v = 1). UV = (column, row) parameters in [0, 1], so
the face maps to the interior of the UV square and neck / ears / sides to its border.

Anatomy (forehead, brows, eye sockets with eyeballs, nose with alae and nostrils, lips with a
mouth slit, cheeks, chin, jaw, ears, neck) is built from smooth radial bumps on that head. The
mouth is a pair of grid rows that coincide in the mean (closed lips); the quads between them
are the mouth triangles (BFM `tri_mouth`), which open when the jaw-open expression moves the
lower row down.

Model space (BFM conventions): units of 1/1000 mm (micrometre scale, so 3DDFA pose scales of
~1.3e-3 give ~200 px faces), x towards the subject's left (image right in a frontal view), y up,
z out of the face towards the camera; the origin is at the centre of the 68 keypoints.

Everything is mirror-symmetric (x -> -x with column c <-> cols - 1 - c): the mean, the
triangulation, and every basis vector is either symmetric or antisymmetric, so a mirrored
face is the same model with antisymmetric coefficients negated (used for `*_Flip` samples).
"""

import dataclasses

import numpy as np

from prn_jax.geometry import face_model as fm

MM = 1000.0  # model units per millimetre

# Heights (mm, y up, 0 = eye level) of the construction.
Y_TOP = 105.0  # top of the surface (hair above the hairline)
Y_HAIRLINE = 72.0
Y_MOUTH = -62.0
Y_CHIN = -100.0  # jaw line under the chin
Y_NECK = -175.0  # bottom of the neck
EYE_X, EYE_Y = 32.0, 0.0
EYE_HALF_W, EYE_HALF_H = 14.0, 5.0
MOUTH_HALF_W = 25.0
THETA_MAX = np.deg2rad(125.0)
FACE_THETA = np.deg2rad(86.0)  # the face mask ends here (outline of the face)
V_NECK_TOP, V_JAW = 0.13, 0.23

# AFLW-21 landmark order (image-left first in a frontal view) as iBUG-68 indices; -1 entries
# (eye centres, ear lobes, mouth centre) are resolved to dedicated vertices.
AFLW21_FROM_IBUG = (17, 19, 21, 22, 24, 26, 36, -1, 39, 42, -1, 45, -1, 31, 30, 35, -1, 48, -1, 54, 8)


@dataclasses.dataclass(frozen=True, eq=False)
class ProceduralFace:
    """The model plus what only a synthetic generator knows.

    Attributes:
      model: the FaceModel (what BFM.mat + BFM_UV.mat store).
      grid_shape: (rows, cols); vertex k is at row k // cols, column k % cols.
      mirror: (n,) int32, index of each vertex's mirror image (x -> -x).
      shape_parity, exp_parity, tex_parity: (k,) float32, +1 symmetric / -1 antisymmetric basis
        vector.
      aflw21_ind: (21,) int32 vertex index of each AFLW-21 landmark.
      mouth_upper: (n,) float32, 1 on the upper-lip edge row, 0 elsewhere (teeth shading).
    """

    model: fm.FaceModel
    grid_shape: tuple
    mirror: np.ndarray
    shape_parity: np.ndarray
    exp_parity: np.ndarray
    tex_parity: np.ndarray
    aflw21_ind: np.ndarray
    mouth_upper: np.ndarray


def _gauss(x, y, cx, cy, sx, sy):
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _pair(x, y, cx, cy, sx, sy):
    """A left/right pair of Gaussians at (+-cx, cy)."""
    return _gauss(np.abs(x), y, cx, cy, sx, sy)


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _jaw_height(theta):
    """(mm) height of the jaw line (face / under-chin edge) at azimuth theta."""
    return Y_CHIN + 30.0 * (1 - np.cos(np.clip(theta, -np.pi / 2, np.pi / 2)))


def _base_radius(theta, y):
    """(mm) distance of the bare head surface from the vertical axis (elliptic cross-section)."""
    half_width = 72.0 - 22.0 * _smoothstep((-35.0 - y) / 65.0) - 6.0 * _smoothstep((y - 40.0) / 60)
    depth = 92.0 - 14.0 * _smoothstep((y - 25.0) / 80.0) ** 1.5 - 4.0 * _smoothstep((-60 - y) / 40)
    return half_width * depth / np.sqrt((depth * np.sin(theta)) ** 2 + (half_width * np.cos(theta)) ** 2)


def _mouth_weight(x):
    """1 between the mouth corners, 0 beyond them (where the lips are closed by construction)."""
    return 1 - _smoothstep((np.abs(x) - (MOUTH_HALF_W - 3)) / 6.0)


def _face_relief(x, y, theta):
    """(mm) radial relief of the face features at frontal coordinates (x, y)."""
    front = _smoothstep((np.cos(theta) - 0.05) / 0.35)
    # Nose: a ridge from the radix (y = 2) to the tip (y = -35), wider and higher towards the tip.
    t = np.clip((2.0 - y) / 37.0, 0, 1)
    ridge = (7 + 17 * t**1.6) * np.exp(-0.5 * (x / (5.5 + 7 * t)) ** 2)
    ridge *= 1 / (1 + np.exp(-(y + 39.0) / 1.6)) / (1 + np.exp((y - 6.0) / 3.0))
    nose = ridge + 5 * _gauss(x, y, 0, -33, 7, 5) + 6 * _pair(x, y, 14, -36, 5, 4.5)
    nose -= 2.5 * _pair(x, y, 7, -41, 3, 2)
    brows = 5 * _pair(x, y, 33, 14, 20, 6) + 3 * _gauss(x, y, 0, 9, 10, 8)
    eyes = -10 * _pair(x, y, EYE_X, EYE_Y, 16, 9) + 7 * _pair(x, y, EYE_X, EYE_Y, 11, 5.5)
    eyes += 1.5 * _pair(x, y, EYE_X, 5.5, 13, 2.2)
    cheeks = 5 * _pair(x, y, 46, -24, 14, 12) - 3 * _pair(x, y, 62, 22, 10, 15)
    lip_span = _mouth_weight(x * 0.95)
    lips = lip_span * (5 * _gauss(x, y, 0, Y_MOUTH + 6, 20, 4.5) + 5 * _gauss(x, y, 0, Y_MOUTH - 7, 17, 5))
    lips -= 1.2 * _gauss(x, y, 0, -50, 3, 5) + 3 * _pair(x, y, MOUTH_HALF_W + 1, Y_MOUTH, 4, 4)
    chin = 6 * _gauss(x, y, 0, -88, 16, 9) - 2.5 * _gauss(x, y, 0, -77, 15, 3)
    face = front * (nose + brows + eyes + cheeks + lips + chin)
    ears = (
        13
        * np.exp(-0.5 * ((np.abs(theta) - np.deg2rad(97)) / np.deg2rad(5)) ** 2)
        * np.exp(-0.5 * ((y + 12) / 22) ** 2)
    )
    return face + ears


@dataclasses.dataclass(frozen=True)
class _Grid:
    rows: int
    cols: int
    theta: np.ndarray  # (cols,)
    v: np.ndarray  # (rows,)
    mouth_row: int  # lower-lip edge row; mouth_row + 1 is the upper-lip edge row


def _make_grid(rows, cols):
    if cols % 2 == 0:
        raise ValueError(f"cols must be odd (a centre column), got {cols}")
    half = np.linspace(0.0, 1.0, cols // 2 + 1)
    s = np.concatenate([-half[:0:-1], half])  # exactly antisymmetric
    theta = THETA_MAX * (0.6 * s + 0.4 * s**3)
    v = np.linspace(0.0, 1.0, rows)
    # The mouth slit: the row pair whose linear height at the centre straddles the mouth line.
    y_centre = Y_CHIN + (v - V_JAW) / (1 - V_JAW) * (Y_TOP - Y_CHIN)
    mouth_row = int(np.searchsorted(y_centre, Y_MOUTH)) - 1
    return _Grid(rows, cols, theta, v, mouth_row)


def _surface(grid):
    """Mean surface: vertices (rows, cols, 3) mm and per-vertex frontal coords x0, y (mm)."""
    theta = grid.theta[None, :]
    v = grid.v[:, None]
    y_jaw = _jaw_height(theta)
    # Face rows: heights from the jaw line to the top; inside the mouth the two slit rows meet at
    # the mouth line (closed lips), elsewhere the rows are evenly spread.
    v_lo, v_hi = grid.v[grid.mouth_row], grid.v[grid.mouth_row + 1]
    y_lin = y_jaw + (v - V_JAW) / (1 - V_JAW) * (Y_TOP - y_jaw)
    y_closed = np.where(
        v <= v_lo,
        y_jaw + (v - V_JAW) / (v_lo - V_JAW) * (Y_MOUTH - y_jaw),
        Y_MOUTH + (v - v_hi) / (1 - v_hi) * (Y_TOP - Y_MOUTH),
    )
    x_approx = 90.0 * np.sin(theta)
    w = _mouth_weight(x_approx)
    y_face = w * y_closed + (1 - w) * y_lin
    r0 = _base_radius(theta, y_face)
    x0 = r0 * np.sin(theta)
    r_face = r0 + _face_relief(x0, y_face, theta)
    face = np.stack([r_face * np.sin(theta), y_face, r_face * np.cos(theta)], -1)
    # Neck: a cylinder of radius ~55 mm behind the face, flaring at the bottom.
    y_neck_top = y_jaw - 18.0
    t_neck = np.clip(v / V_NECK_TOP, 0, 1)
    y_neck = Y_NECK + t_neck * (y_neck_top - Y_NECK)
    r_neck = 55.0 + 12.0 * (1 - t_neck) ** 2
    neck = np.stack([r_neck * np.sin(theta), y_neck, -18.0 + r_neck * np.cos(theta)], -1)
    # Under-chin: from the neck top to the jaw line, bulging slightly downwards.
    jaw = np.stack(
        [_base_radius(theta, y_jaw) * np.sin(theta), y_jaw, _base_radius(theta, y_jaw) * np.cos(theta)], -1
    )
    neck_top = np.stack([55.0 * np.sin(theta), y_neck_top, -18.0 + 55.0 * np.cos(theta)], -1)
    t_chin = np.clip((v - V_NECK_TOP) / (V_JAW - V_NECK_TOP), 0, 1)[..., None]
    under = (1 - t_chin) * neck_top + t_chin * jaw
    under[..., 1] -= 6.0 * np.sin(np.pi * t_chin[..., 0]) * np.cos(theta / 2)
    vertices = np.where((v < V_NECK_TOP)[..., None], neck, np.where((v < V_JAW)[..., None], under, face))
    vertices = np.broadcast_to(vertices, (grid.rows, grid.cols, 3))
    y_param = np.where(v >= V_JAW, y_face, np.minimum(y_jaw, vertices[..., 1]))
    return vertices, np.broadcast_to(x0 * (v >= V_JAW), y_param.shape), y_param


def _triangles(grid):
    """Face triangles (outward-facing) and mouth triangles (the slit quads)."""
    rows, cols = grid.rows, grid.cols
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = r * cols + c
    b, cc, d = a + 1, a + cols, a + cols + 1
    left = c < (cols - 1) // 2  # mirrored diagonals keep the triangulation symmetric
    t1 = np.where(left[..., None], np.stack([a, b, d], -1), np.stack([a, b, cc], -1))
    t2 = np.where(left[..., None], np.stack([a, d, cc], -1), np.stack([b, d, cc], -1))
    quad_theta = 0.5 * (grid.theta[:-1] + grid.theta[1:])[None, :].repeat(rows - 1, 0)
    mouth = (r == grid.mouth_row) & (np.abs(90.0 * np.sin(quad_theta)) < MOUTH_HALF_W)
    tri = np.concatenate([t1[~mouth], t2[~mouth]]).astype(np.int32)
    tri_mouth = np.concatenate([t1[mouth], t2[mouth]]).astype(np.int32)
    return tri, tri_mouth


def _nearest(points, targets, candidates):
    """Index (among all vertices) of the candidate nearest each target (2D, mm)."""
    idx = np.flatnonzero(candidates)
    d = ((points[idx][None, :, :] - np.asarray(targets)[:, None, :]) ** 2).sum(-1)
    return idx[d.argmin(1)]


def _keypoints(grid, x0, y0, theta_v, row):
    """The 68 iBUG keypoint vertices and the 21 AFLW ones (frontal (x, y) mm targets)."""
    face = (row >= np.searchsorted(grid.v, V_JAW)) & (np.abs(theta_v) < FACE_THETA + 0.05)
    pts = np.stack([x0, y0], -1)
    jaw = []
    jaw_row = int(np.searchsorted(grid.v, V_JAW)) + 1
    for k in range(17):
        t = (k - 8) / 8
        if abs(t) <= 0.76:
            th = t / 0.75 * np.deg2rad(70)
            on_row = np.flatnonzero(row == jaw_row)
            jaw.append(on_row[np.abs(theta_v[on_row] - th).argmin()])
        else:
            height = -42.0 if abs(t) < 0.9 else -18.0
            th = np.sign(t) * np.deg2rad(84)
            d = (theta_v - th) ** 2 * 400 + ((y0 - height) / 10) ** 2
            jaw.append(int(np.argmin(np.where(face, d, np.inf))))
    brow_x = np.linspace(-52, -16, 5)
    brows = [(x, 15 + 5 * (1 - ((x + 33) / 20) ** 2)) for x in brow_x]
    brows += [(-x, y) for x, y in brows[::-1]]
    nose = [(0, 2), (0, -10), (0, -22), (0, -34)] + [(x, -41) for x in (-13, -7, 0, 7, 13)]
    eye = [(-46, 0), (-37, 4.6), (-27, 4.6), (-18, 0), (-27, -4.2), (-37, -4.2)]
    eye_r = [(-x, y) for x, y in eye[3::-1]] + [(-x, y) for x, y in eye[:3:-1]]
    m = Y_MOUTH
    outer = [
        (-25, m),
        (-15, m + 6.5),
        (-6, m + 9),
        (0, m + 8),
        (6, m + 9),
        (15, m + 6.5),
        (25, m),
        (15, m - 8),
        (7, m - 11),
        (0, m - 12),
        (-7, m - 11),
        (-15, m - 8),
    ]
    targets = brows + nose + eye + eye_r + outer
    others = list(_nearest(pts, targets, face))
    upper_row, lower_row = grid.mouth_row + 1, grid.mouth_row
    inner = [
        (-22, lower_row),
        (-9, upper_row),
        (0, upper_row),
        (9, upper_row),
        (22, lower_row),
        (9, lower_row),
        (0, lower_row),
        (-9, lower_row),
    ]
    inner_idx = [_nearest(pts, [(x, m)], row == rr)[0] for x, rr in inner]
    kpt = np.array(jaw + others + inner_idx, np.int64)
    specials = {
        7: _nearest(pts, [(-EYE_X, EYE_Y)], face)[0],
        10: _nearest(pts, [(EYE_X, EYE_Y)], face)[0],
        18: inner_idx[2],
    }
    ear_y = -30.0
    for slot, sign in ((12, -1), (16, 1)):
        d = (theta_v - sign * np.deg2rad(97)) ** 2 * 400 + ((y0 - ear_y) / 10) ** 2
        specials[slot] = int(np.argmin(d))
    aflw = np.array([specials[i] if j < 0 else kpt[j] for i, j in enumerate(AFLW21_FROM_IBUG)])
    return kpt, aflw


def _region_labels(x0, y0, theta_v, row, grid, kpt):
    face = (grid.v[row] >= V_JAW) & (np.abs(theta_v) <= FACE_THETA) & (y0 <= Y_HAIRLINE - 5)
    eyes = (np.abs(np.abs(x0) - EYE_X) < 19) & (np.abs(y0 - EYE_Y) < 10)
    nose_half = 7 + 13 * np.clip((6 - y0) / 50, 0, 1)
    nose = (np.abs(x0) < nose_half) & (y0 < 6) & (y0 > -46)
    mouth = (np.abs(x0) < MOUTH_HALF_W + 6) & (np.abs(y0 - Y_MOUTH) < 15)
    labels = np.full(x0.shape, fm.REGION_OUTSIDE, np.int32)
    labels[face] = fm.REGION_FACE
    labels[face & (eyes | nose | mouth)] = fm.REGION_EYE_NOSE_MOUTH
    labels[kpt] = fm.REGION_KEYPOINT
    return labels


def _texture_mean(x0, y0, theta_v, v):
    """(n, 3) albedo in 0..255: skin, lips, brows, eyes, nostrils, hair, ears."""
    skin = np.array([205.0, 160.0, 135.0])
    tex = np.broadcast_to(skin, x0.shape + (3,)).copy()

    def paint(mask, colour):
        mask = np.clip(mask, 0, 1)[:, None]
        tex[:] = tex * (1 - mask) + mask * np.asarray(colour, float)

    ax = np.abs(x0)
    paint(0.35 * _pair(x0, y0, 46, -35, 15, 12), (215, 130, 120))  # cheek blush
    lip = _mouth_weight(x0) * (_smoothstep((9 - np.abs(y0 - Y_MOUTH - 1)) / 3))
    paint(lip, (180, 92, 92))
    brow_y = 16 + 5 * (1 - ((ax - 33) / 20) ** 2)
    brow = (
        _smoothstep((3.2 - np.abs(y0 - brow_y)) / 1.5)
        * _smoothstep((52 - ax) / 3)
        * _smoothstep((ax - 13) / 3)
    )
    paint(brow, (70, 50, 38))
    ex, ey = (ax - EYE_X) / EYE_HALF_W, (y0 - EYE_Y) / np.where(y0 > EYE_Y, EYE_HALF_H, EYE_HALF_H * 0.85)
    opening = ex**2 + ey**2
    paint(_smoothstep((1.0 - opening) / 0.15), (232, 226, 220))  # sclera
    iris_r = np.hypot(ax - EYE_X, y0 - EYE_Y)
    paint(_smoothstep((5.5 - iris_r) / 0.8) * (opening < 1.05), (95, 65, 45))  # iris
    paint(_smoothstep((2.3 - iris_r) / 0.6), (15, 12, 12))  # pupil
    lid = np.exp(-0.5 * ((np.sqrt(opening) - 1.0) / 0.12) ** 2) * (0.6 + 0.4 * (y0 > EYE_Y))
    paint(lid * 0.9, (55, 40, 35))  # lashes / lids
    paint(_pair(x0, y0, 7, -41, 2.8, 1.8), (60, 35, 30))  # nostrils
    hair = _smoothstep((y0 - Y_HAIRLINE) / 8) + _smoothstep(
        (np.abs(theta_v) - np.deg2rad(104)) / 0.12
    ) * _smoothstep((y0 + 25) / 20)
    paint(hair, (55, 40, 30))
    ear = np.exp(-0.5 * ((np.abs(theta_v) - np.deg2rad(97)) / np.deg2rad(6)) ** 2) * np.exp(
        -0.5 * ((y0 + 12) / 22) ** 2
    )
    paint(0.5 * ear * (v >= V_JAW), (200, 135, 120))
    tex *= np.where(v < V_JAW, 0.92, 1.0)[:, None]  # neck shade
    return tex


def _project_parity(fields, parity, mirror, flip_x=True):
    """Makes fields[..., k] exactly symmetric (parity +1) or antisymmetric (-1)."""
    mirrored = fields[mirror].copy()
    if flip_x:
        mirrored[:, 0] *= -1
    return 0.5 * (fields + parity * mirrored)


def _cosine_fields(u, v, count, rng, max_freq, channels):
    """(n, channels, count) smooth random fields from a 2D cosine basis of UV."""
    freqs = [(a, b) for a in range(max_freq + 1) for b in range(max_freq + 1)]
    basis = np.stack([np.cos(np.pi * a * u) * np.cos(np.pi * b * v) for a, b in freqs], -1)
    decay = np.array([1.0 / (1 + a * a + b * b) for a, b in freqs])
    coef = rng.normal(size=(len(freqs), channels * count)) * decay[:, None]
    return (basis @ coef).reshape(len(u), channels, count)


def _orthonormal(fields):
    """Gram-Schmidt-orthonormalised columns of (n, c, k) fields, in order (via Cholesky of the
    Gram matrix: one GEMM instead of a slow tall QR)."""
    n, c, k = fields.shape
    flat = fields.reshape(n * c, k)
    lower = np.linalg.cholesky(flat.T @ flat)
    return np.linalg.solve(lower, flat.T).T.reshape(n, c, k)


def _identity_fields(pts, x0, y0, row, grid):
    """Named identity deformations [((n, 3) mm at one standard deviation, parity)]."""
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    face = (grid.v[row] >= V_JAW).astype(float)
    nose_w = _gauss(x0, y0, 0, -20, 14, 20) * face
    lower = _smoothstep((-40 - y0) / 40) * face
    named = [
        (np.stack([x, 0 * x, 0 * x], 1) * 0.06, 1),  # head width
        (np.stack([0 * x, y, 0 * x], 1) * 0.05, 1),  # face length
        (np.stack([0 * x, 0 * x, z], 1) * 0.05, 1),  # depth
        (np.stack([0 * x, 0 * x, nose_w * 6], 1), 1),  # nose protrusion
        (np.stack([x * 0.25 * nose_w, 0 * x, 0 * x], 1), 1),  # nose width
        (np.stack([0 * x, (y0 + 35) * 0.12 * nose_w, 0 * x], 1), 1),  # nose length
        (
            np.stack(
                [
                    0 * x,
                    -2 * _gauss(x0, y0, 0, -90, 18, 12) * face,
                    5 * _gauss(x0, y0, 0, -90, 18, 12) * face,
                ],
                1,
            ),
            1,
        ),  # chin
        (np.stack([x * 0.12 * lower, 0 * x, 0 * x], 1), 1),  # jaw width
        (np.stack([np.sign(x0) * 3 * _pair(x0, y0, EYE_X, 0, 14, 10), 0 * x, 0 * x], 1), 1),
        (np.stack([0 * x, 0 * x, 4 * _pair(x0, y0, 33, 14, 20, 7)], 1), 1),  # brow ridge
        (np.stack([0 * x, 0 * x, 4 * _pair(x0, y0, 46, -24, 14, 12)], 1), 1),  # cheekbones
        (np.stack([0 * x, 0 * x, 3 * _gauss(x0, y0, 0, Y_MOUTH, 20, 9)], 1), 1),  # lips
        (np.stack([0 * x, 0 * x, -0.06 * np.clip(y0 - 20, 0, None) * face], 1), 1),  # forehead
        (np.stack([0 * x, 0 * x, 0.02 * x0 * y0 / 10 * face], 1), -1),  # twist
        (np.stack([3 * nose_w, 0 * x, 0 * x], 1), -1),  # nose deviation
        (np.stack([2 * lower, 0 * x, 0 * x], 1), -1),  # jaw shift
    ]
    return named


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Size of the procedural model."""

    rows: int = 121
    cols: int = 141
    num_shape: int = 199
    num_exp: int = 29
    num_tex: int = 199
    seed: int = 20180920


def _expression_fields(x0, y0, v, row, grid, theta_v):
    """Named expression displacements (n, 3) mm at coefficient 1, with parities."""
    face = (v >= V_JAW).astype(float)
    # Lower / upper face split: the row step across the mouth slit between the corners (the lips
    # part there), a smooth ramp across the mouth line elsewhere (no crease in the cheeks).
    mouth_span = _mouth_weight(x0) * face
    below = (row <= grid.mouth_row).astype(float)
    ramp = np.where(face > 0, _smoothstep((Y_MOUTH - y0) / 16 + 0.5), 1.0)
    lower = mouth_span * below + (1 - mouth_span) * ramp
    upper = 1 - lower
    chin_ramp = np.clip((v - 0.03) / (V_JAW - 0.03), 0, 1)
    frontal_x = np.where(face > 0, x0, 90 * np.sin(theta_v))
    jaw_w = lower * chin_ramp * np.exp(-0.5 * (frontal_x / 50) ** 2) * _smoothstep(np.cos(theta_v) / 0.4)
    zeros = 0 * x0
    corner = _pair(x0, y0, MOUTH_HALF_W, Y_MOUTH, 10, 9) * face
    sx = np.sign(x0)
    mouth = _gauss(x0, y0, 0, Y_MOUTH, 22, 10) * face
    brows = _pair(x0, y0, 30, 17, 22, 9) * face
    named = [
        (np.stack([zeros, -14 * jaw_w, -4 * jaw_w], 1), 1),  # jaw open
        (
            np.stack(
                [4 * sx * corner, 5 * corner + 2 * _pair(x0, y0, 42, -40, 14, 14) * face, -2 * corner], 1
            ),
            1,
        ),  # smile
        (np.stack([5 * sx * corner, zeros, -1 * corner], 1), 1),  # mouth stretch
        (np.stack([zeros, -4 * corner, zeros], 1), 1),  # frown
        (np.stack([zeros, 5 * brows, zeros], 1), 1),  # brows raise
        (
            np.stack(
                [
                    -2 * sx * _pair(x0, y0, 15, 14, 9, 6) * face,
                    -3 * _pair(x0, y0, 15, 14, 9, 6) * face,
                    zeros,
                ],
                1,
            ),
            1,
        ),  # brow furrow
        (np.stack([-0.25 * x0 * mouth, zeros, 6 * mouth], 1), 1),  # pucker
        (np.stack([zeros, zeros, -3 * mouth], 1), 1),  # lips press
        (np.stack([zeros, zeros, 6 * _pair(x0, y0, 45, -50, 15, 15) * face], 1), 1),  # puff
        (np.stack([-6 * mouth, zeros, zeros], 1), -1),  # mouth sideways
        (np.stack([-5 * jaw_w, zeros, zeros], 1), -1),  # jaw sideways
        (np.stack([zeros, 2.5 * _pair(x0, y0, EYE_X, -6, 12, 4) * face, zeros], 1), 1),  # squint
        (np.stack([zeros, 3 * _pair(x0, y0, 14, -37, 8, 6) * face, zeros], 1), 1),  # sneer
        (
            np.stack([zeros, 3 * upper * _gauss(x0, y0, 0, Y_MOUTH + 5, 20, 6) * face, zeros], 1),
            1,
        ),  # upper lip raise
        (
            np.stack([zeros, -4 * lower * _gauss(x0, y0, 0, Y_MOUTH - 5, 20, 6) * face, zeros], 1),
            1,
        ),  # lower lip down
        (np.stack([zeros, 5 * sx * brows, zeros], 1), -1),  # brow asymmetry
        (np.stack([2 * sx * corner, 5 * sx * corner, zeros], 1), -1),  # half smile
    ]
    return named


def make_procedural_face(spec: ModelSpec = ModelSpec()) -> ProceduralFace:
    """Builds the procedural model; a pure function of `spec` (bit-identical across runs)."""
    rng = np.random.default_rng(spec.seed)
    grid = _make_grid(spec.rows, spec.cols)
    verts, x0g, y0g = _surface(grid)
    n = spec.rows * spec.cols
    pts = verts.reshape(n, 3)
    x0, y0 = x0g.reshape(n), y0g.reshape(n)
    row = np.repeat(np.arange(spec.rows), spec.cols)
    col = np.tile(np.arange(spec.cols), spec.rows)
    theta_v = grid.theta[col]
    v = grid.v[row]
    u = (col / (spec.cols - 1)).astype(np.float64)
    mirror = (row * spec.cols + (spec.cols - 1 - col)).astype(np.int32)

    tri, tri_mouth = _triangles(grid)
    kpt, aflw = _keypoints(grid, x0, y0, theta_v, row)
    labels = _region_labels(x0, y0, theta_v, row, grid, kpt)

    # Identity basis: named deformations then random smooth fields, orthonormalised.
    named_pairs = _identity_fields(pts, x0, y0, row, grid)
    named, parity = [f for f, _ in named_pairs], [p for _, p in named_pairs]
    extra = spec.num_shape - len(named)
    if extra < 0:
        raise ValueError(f"ModelSpec.num_shape: need at least {len(named)}, got {spec.num_shape}")
    rand = _cosine_fields(u, v, extra, rng, max_freq=11, channels=3)
    rand_parity = [(-1 if k % 3 == 2 else 1) for k in range(extra)]
    fields = np.concatenate([np.stack(named, -1), rand], -1)
    shape_parity = np.array(parity + rand_parity, np.float64)
    fields = _project_parity(fields, shape_parity, mirror)
    shape_basis = _orthonormal(fields)
    # Named fields are drawn at one standard deviation; random ones get a decaying spectrum
    # (per-vertex rms 1.5 mm / (k + 1)).
    named_norm = np.sqrt((fields[..., : len(named)] ** 2).sum((0, 1)))
    shape_std = np.concatenate([named_norm, 1.5 / (1 + np.arange(extra)) * np.sqrt(3 * n)]) * MM

    # Expression basis: named expressions, then random smooth local fields near mouth / eyes.
    exp_named = _expression_fields(x0, y0, v, row, grid, theta_v)
    extra_exp = spec.num_exp - len(exp_named)
    if extra_exp < 0:
        raise ValueError(f"ModelSpec.num_exp: need at least {len(exp_named)}, got {spec.num_exp}")
    local = (_gauss(x0, y0, 0, Y_MOUTH, 30, 18) + _pair(x0, y0, EYE_X, 8, 18, 12)) * (v >= V_JAW)
    rand_exp = _cosine_fields(u, v, extra_exp, rng, max_freq=9, channels=3) * local[:, None, None]
    rand_exp *= 3.0 / np.sqrt((rand_exp**2).sum((0, 1)) / (local > 0.3).sum())[None, None]
    exp_fields = np.concatenate([np.stack([f for f, _ in exp_named], -1), rand_exp], -1)
    exp_parity = np.array(
        [p for _, p in exp_named] + [(-1 if k % 2 else 1) for k in range(extra_exp)], np.float64
    )
    exp_basis = _project_parity(exp_fields, exp_parity, mirror) * MM
    exp_std = np.concatenate([np.full(len(exp_named), 0.6), np.full(extra_exp, 0.3)])

    # Texture: mean albedo, then named colour variations and random smooth colour fields.
    tex_mean = _texture_mean(x0, y0, theta_v, v)
    tex_mean = 0.5 * (tex_mean + tex_mean[mirror])
    ones = np.ones(n)
    hair = (
        _smoothstep((y0 - Y_HAIRLINE) / 8) + _smoothstep((np.abs(theta_v) - np.deg2rad(104)) / 0.12)
    ).clip(0, 1)
    skin = 1 - hair
    iris = _smoothstep((5.5 - np.hypot(np.abs(x0) - EYE_X, y0 - EYE_Y)) / 0.8) * (v >= V_JAW)
    lips = _mouth_weight(x0) * _smoothstep((9 - np.abs(y0 - Y_MOUTH - 1)) / 3) * (v >= V_JAW)
    tex_named = [
        np.stack([skin * c[0], skin * c[1], skin * c[2]], 1) for c in ((1, 0, 0), (0, 1, 0), (0, 0, 1))
    ]
    tex_named += [
        np.stack([hair, hair * 0.8, hair * 0.6], 1),
        np.stack([iris, iris, iris * 0.5], 1),
        np.stack([lips, -lips * 0.3, -lips * 0.3], 1),
        np.stack([ones, ones, ones], 1),
    ]
    extra_tex = spec.num_tex - len(tex_named)
    if extra_tex < 0:
        raise ValueError(f"ModelSpec.num_tex: need at least {len(tex_named)}, got {spec.num_tex}")
    rand_tex = _cosine_fields(u, v, extra_tex, rng, max_freq=11, channels=3)
    tex_fields = np.concatenate([np.stack(tex_named, -1), rand_tex], -1)
    tex_parity = np.array(
        [1] * len(tex_named) + [(-1 if k % 3 == 2 else 1) for k in range(extra_tex)], np.float64
    )
    tex_fields = _project_parity(tex_fields, tex_parity, mirror, flip_x=False)
    tex_basis = _orthonormal(tex_fields)
    tex_named_std = np.array([12.0, 10.0, 10.0, 25.0, 30.0, 15.0, 10.0]) * np.sqrt(
        (tex_fields[..., : len(tex_named)] ** 2).sum((0, 1))
    )
    tex_std = np.concatenate([tex_named_std, 6.0 / (1 + np.arange(extra_tex)) * np.sqrt(3 * n)])

    # Centre on the keypoints and make the mean exactly symmetric.
    mean = pts * MM
    mean = _project_parity(mean, 1.0, mirror)
    mean -= np.array([0.0, mean[kpt, 1].mean(), mean[kpt, 2].mean()])
    uv = np.stack([u, v], 1)
    model = fm.FaceModel(
        mean=mean.astype(np.float32),
        shape_basis=shape_basis.astype(np.float32),
        shape_std=shape_std.astype(np.float32),
        exp_basis=exp_basis.astype(np.float32),
        exp_std=exp_std.astype(np.float32),
        triangles=tri,
        mouth_triangles=tri_mouth,
        kpt_ind=kpt.astype(np.int32),
        uv=uv.astype(np.float32),
        region_labels=labels,
        tex_mean=tex_mean.astype(np.float32),
        tex_basis=tex_basis.astype(np.float32),
        tex_std=tex_std.astype(np.float32),
    )
    mouth_upper = (row == grid.mouth_row + 1).astype(np.float32)
    return ProceduralFace(
        model=model,
        grid_shape=(spec.rows, spec.cols),
        mirror=mirror,
        shape_parity=shape_parity.astype(np.float32),
        exp_parity=exp_parity.astype(np.float32),
        tex_parity=tex_parity.astype(np.float32),
        aflw21_ind=aflw.astype(np.int32),
        mouth_upper=mouth_upper,
    )
