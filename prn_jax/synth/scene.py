"""One synthetic photograph: a fit of the procedural face rendered over clutter, plus its
landmarks in the dataset conventions (image pixels, x right, y down)."""

import dataclasses
import functools

import numpy as np

from prn_jax.geometry import pose as pose_lib
from prn_jax.synth import render, reproducible, sampling

MOUTH_DARK = np.array([0.22, 0.07, 0.08])
TEETH = np.array([0.85, 0.82, 0.74])
INVISIBLE_AFLW = -1.0  # AFLW2000-3D marks occluded pt2d as x = -1, y = H + 2 (flipped -1)


@functools.lru_cache(maxsize=4)
def _incidence(face):
    return render.triangle_incidence(face.model.triangles, face.model.num_vertices)


@dataclasses.dataclass(frozen=True)
class Rendered:
    """image (H, W, 3) uint8; vertices (n, 3) float32 image pixels (x right, y down, z toward the
    camera, from `pose.fit_to_image_vertices`); fragments of the face mesh (mouth included)."""

    image: np.ndarray
    vertices: np.ndarray
    fragments: render.Fragments


@functools.lru_cache(maxsize=4)
def _flat_bases(face):
    """Per-face (k, 3n) float32 basis rows (shape then expression; texture) for `combine`."""
    model = face.model
    n3 = 3 * model.num_vertices
    geometry = np.concatenate([model.shape_basis.reshape(n3, -1).T, model.exp_basis.reshape(n3, -1).T])
    texture = np.ascontiguousarray(model.tex_basis.reshape(n3, -1).T)
    return np.ascontiguousarray(geometry), texture


def model_vertices(face, fit: sampling.Fit):
    """(n, 3) float32 model-space vertices of the fit's identity and expression."""
    geometry, _ = _flat_bases(face)
    coef = np.concatenate([fit.shape, fit.exp])
    return reproducible.combine(face.model.mean, geometry, coef).reshape(-1, 3)


def albedo(face, tex):
    """(n, 3) float32 albedo in [0, 1] of texture coefficients `tex` (kt,)."""
    _, texture = _flat_bases(face)
    return np.clip(reproducible.combine(face.model.tex_mean, texture, tex), 0, 255).reshape(
        -1, 3
    ) / np.float32(255)


def render_fit(
    face, fit: sampling.Fit, background, rng, image_size=sampling.IMAGE_SIZE, vertices=None, albedo_=None
):
    """Renders `fit` over `background` ((H, W, 3) float in [0, 1]); `rng` draws sensor noise.

    `vertices` / `albedo_` may pass `model_vertices(face, fit)` / `albedo(face, fit.tex)` when
    several views of one face are rendered.
    """
    model = face.model
    vertices = model_vertices(face, fit) if vertices is None else vertices
    albedo_ = albedo(face, fit.tex) if albedo_ is None else albedo_
    camera = reproducible.transform(vertices, fit.pose)
    image_vertices = pose_lib.to_image(camera, image_size).astype(np.float32)
    normals = render.vertex_normals(camera, model.triangles, _incidence(face))
    colours = render.shade(albedo_, normals, fit.illum)
    # The mouth interior: mouth triangles on their own vertex copies, dark red fading to teeth
    # at the upper lip, lit by the ambient term only.
    mouth_ids, mouth_tri = np.unique(model.mouth_triangles, return_inverse=True)
    mouth_tri = mouth_tri.reshape(model.mouth_triangles.shape) + model.num_vertices
    upper = face.mouth_upper[mouth_ids][:, None]
    mouth_colours = (MOUTH_DARK * (1 - upper) + TEETH * upper) * (fit.illum[0:3] + 0.3 * fit.illum[3:6])
    all_vertices = np.concatenate([image_vertices, image_vertices[mouth_ids]])
    all_colours = np.concatenate([colours, mouth_colours])
    all_colours = render.color_transform(all_colours, fit.color.astype(np.float64))
    triangles = np.concatenate([model.triangles, mouth_tri]).astype(np.int32)
    fragments = render.rasterize(all_vertices, triangles, image_size, image_size)
    image = render.composite(background, fragments, triangles, all_colours)
    image = render.to_uint8(image, rng, noise_std=rng.uniform(0.0, 0.02))
    return Rendered(image=image, vertices=image_vertices, fragments=fragments)


def contour_landmarks(face, image_vertices, pose_para):
    """(68, 2) 2D landmarks with the jaw line marched to the visible face outline.

    3DDFA-style landmark marching: each jaw keypoint moves along its grid row (a horizontal
    "parallel" of the head) towards the face centre, to the vertex that lies furthest out along
    the projected model x axis, i.e. onto the silhouette when its own side turns away. Jaw
    keypoints on the side facing the camera stay put (the surface is convex there).
    """
    rows, cols = face.grid_shape
    kpt = face.model.kpt_ind
    points = image_vertices[kpt, :2].astype(np.float64).copy()
    r = reproducible.rotation([float(a) for a in pose_para[:3]])
    axis = (r[0, 0], -r[1, 0])  # model +x in image (y down) pixels
    centre_col = cols // 2
    for i in range(17):
        vid = int(kpt[i])
        row, col = divmod(vid, cols)
        lo, hi = sorted((col, centre_col))
        candidates = row * cols + np.arange(lo, hi + 1)
        along = image_vertices[candidates, 0] * axis[0] + image_vertices[candidates, 1] * axis[1]
        side = -1.0 if col < centre_col else 1.0
        points[i] = image_vertices[candidates[np.argmax(side * along)], :2]
    return points


def visible(fragments, image_vertices, vertex_ids, tolerance=2.0):
    """(k,) bool: vertex inside the image and not hidden behind a nearer surface."""
    h, w = fragments.height, fragments.width
    xy = np.round(image_vertices[vertex_ids, :2]).astype(np.int64)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    depth = fragments.depth_buffer()
    z_front = depth[np.clip(xy[:, 1], 0, h - 1), np.clip(xy[:, 0], 0, w - 1)]
    return inside & (image_vertices[vertex_ids, 2] >= z_front - tolerance)


def face_roi(points, image_size=sampling.IMAGE_SIZE):
    """(4,) int16 [left, top, right, bottom]: square box twice the landmark box, centred on it."""
    lo, hi = points.min(0), points.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max()
    return np.round(np.concatenate([centre - half, centre + half])).astype(np.int16)
