"""Random fit parameters in the 300W-LP / AFLW2000-3D `.mat` conventions.

A `Fit` holds exactly what a dataset `.mat` stores (already rounded to the stored dtypes, so an
image rendered from it and the ground truth read back from the file agree):
  pose (7,) float32 [pitch, yaw, roll (rad), tx, ty, tz, scale] (3DDFA, camera y up),
  shape (ks,), exp (ke,), tex (kt,) float64 raw coefficients,
  illum (10,) float64 (`render.shade` layout), color (7,) float32 (`render.color_transform`).
"""

import dataclasses
import math

import numpy as np

from prn_jax.synth import reproducible

DEG = np.pi / 180.0
IMAGE_SIZE = 450
# 300W-LP subjects per source database (AFW 5,207, HELEN 37,676, IBUG 1,786, LFPW 16,556 images).
DATABASES = ("AFW", "HELEN", "IBUG", "LFPW")
DATABASE_WEIGHTS = np.array([5207, 37676, 1786, 16556], np.float64)
# AFLW2000-3D |yaw| buckets [0, 30), [30, 60), [60, 90] degrees: 1,312 / 383 / 305 images.
AFLW_BUCKET_WEIGHTS = np.array([1312, 383, 305], np.float64)


@dataclasses.dataclass(frozen=True)
class Fit:
    pose: np.ndarray
    shape: np.ndarray
    exp: np.ndarray
    tex: np.ndarray
    illum: np.ndarray
    color: np.ndarray


@dataclasses.dataclass(frozen=True)
class Appearance:
    """Per-subject draws: identity, expression, albedo, light, colour, scale."""

    shape: np.ndarray
    exp: np.ndarray
    tex: np.ndarray
    illum: np.ndarray
    color: np.ndarray
    scale: float


def sample_appearance(rng, model, face_width_px=(150.0, 250.0)) -> Appearance:
    """Coefficients ~ N(0, std) (the jaw-open expression one-sided), light and colour jitter."""
    shape = rng.normal(size=model.shape_std.shape) * model.shape_std
    exp = rng.normal(size=model.exp_std.shape) * model.exp_std
    exp[0] = abs(exp[0]) * 1.5 if rng.uniform() < 0.6 else 0.0  # jaw open: closed 40% of faces
    tex = rng.normal(size=model.tex_std.shape) * model.tex_std
    tint = rng.uniform(0.93, 1.07, 3)
    ambient = rng.uniform(0.3, 0.7) * tint
    direct = rng.uniform(0.3, 0.8) * rng.uniform(0.93, 1.07, 3)
    illum = np.concatenate(
        [
            ambient,
            direct,
            [
                rng.uniform(-50, 60) * DEG,
                rng.uniform(-70, 70) * DEG,
                rng.uniform(0.0, 0.3),
                rng.uniform(5.0, 30.0),
            ],
        ]
    )
    color = np.concatenate([rng.uniform(0.9, 1.1, 3), rng.uniform(-0.04, 0.04, 3), [rng.uniform(0.75, 1.0)]])
    width = np.ptp(model.mean[model.kpt_ind, 0])
    scale = rng.uniform(*face_width_px) / width
    return Appearance(shape, exp, tex, illum, color.astype(np.float32), float(scale))


def place_pose(model, appearance, angles, centre, image_size=IMAGE_SIZE):
    """Pose_Para (7,) float32 putting the keypoint centroid at image pixel `centre` (x, y down)."""
    k = model.kpt_ind
    rows = np.concatenate(
        [model.shape_basis[k].reshape(len(k) * 3, -1).T, model.exp_basis[k].reshape(len(k) * 3, -1).T]
    )
    coef = np.concatenate([appearance.shape, appearance.exp])
    vertices = reproducible.combine(model.mean[k], rows, coef).reshape(-1, 3)
    angles = [float(a) for a in angles]
    camera = reproducible.transform(vertices, angles + [0.0, 0.0, 0.0, appearance.scale])
    centroid = [math.fsum(camera[:, i].astype(np.float64)) / len(k) for i in range(2)]
    tx = float(centre[0]) - centroid[0]
    ty = (image_size - 1 - float(centre[1])) - centroid[1]
    return np.array([*angles, tx, ty, 0.0, appearance.scale], np.float32)


def fit(appearance, pose_para) -> Fit:
    return Fit(
        pose=np.asarray(pose_para, np.float32),
        shape=appearance.shape,
        exp=appearance.exp,
        tex=appearance.tex,
        illum=appearance.illum,
        color=appearance.color,
    )


def profile_angles(rng, num_views):
    """(num_views, 3) (pitch, yaw, roll) rad of one 300W-LP subject: a near-frontal base view,
    then yaw profiled in equal steps away from frontal up to 75-90 degrees (3DDFA face
    profiling), each view with small pitch / roll jitter; pitch within +-30, roll within +-20."""
    base_yaw = np.clip(rng.normal(0, 12), -35, 35)
    direction = np.sign(base_yaw) if base_yaw != 0 else 1.0
    if rng.uniform() < 0.5:
        direction = -direction if abs(base_yaw) < 5 else direction
    last = rng.uniform(75, 90)
    steps = np.arange(num_views) / max(num_views - 1, 1)
    yaw = direction * (abs(base_yaw) + steps * (last - abs(base_yaw)))
    yaw[0] = base_yaw
    pitch = np.clip(rng.normal(0, 10) + rng.normal(0, 3, num_views), -30, 30)
    roll = np.clip(rng.normal(0, 6) + rng.normal(0, 2, num_views), -20, 20)
    return np.stack([pitch, yaw, roll], -1) * DEG


def aflw_angles(rng, bucket):
    """(pitch, yaw, roll) rad with |yaw| uniform in bucket [0, 30), [30, 60) or [60, 90]."""
    yaw = rng.uniform(30 * bucket, 30 * bucket + 30) * rng.choice([-1.0, 1.0])
    pitch = np.clip(rng.normal(0, 10), -30, 30)
    roll = np.clip(rng.normal(0, 6), -20, 20)
    return np.array([pitch, yaw, roll]) * DEG


def image_centre(rng, image_size=IMAGE_SIZE, jitter=15.0):
    return image_size / 2 + np.clip(rng.normal(0, jitter, 2), -2 * jitter, 2 * jitter)


def mirrored(face, f: Fit, image_size=IMAGE_SIZE) -> Fit:
    """The fit of the left-right mirrored image (x -> W - 1 - x): yaw, roll and the light azimuth
    negated, antisymmetric coefficients negated (the model's bases have a definite parity)."""
    p = np.array(f.pose, np.float64)
    p[1], p[2], p[3] = -p[1], -p[2], image_size - 1 - p[3]
    illum = f.illum.copy()
    illum[7] = -illum[7]
    return Fit(
        pose=p.astype(np.float32),
        shape=f.shape * face.shape_parity,
        exp=f.exp * face.exp_parity,
        tex=f.tex * face.tex_parity,
        illum=illum,
        color=f.color,
    )
