"""Texture and surface from a position map: the UV texture sampled from the photo, surface normals,
the visibility mask, the depth image, and texture transfer between faces (PRNet's texture
editing). Pure functions of arrays.

Frames: a position map `pos` is (S, S, 3) in original image pixels, x right, y down, z toward
the camera (larger z = nearer; z is known up to a shift). Images are (H, W, 3) uint8 RGB or float
in [0, 1]; pixel (row, col) has its centre at (x, y) = (col, row). Dense vertices are the map's
face-mask pixels (`UVAssets.face_indices`), triangulated by `UVAssets.triangles`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from prn_jax.geometry import mesh_io
from prn_jax.geometry import uv_assets as uv_assets_lib
from prn_jax.synth import render

VISIBILITY_TOLERANCE = 0.02  # of the face's size (mean side of its x-y box): depth-test slack


def sample_image(image: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear samples of an image at float pixel positions.

    Args:
      image: (H, W, C) any numeric dtype. xy: (..., 2) (x, y) image pixels.
    Returns:
      values (..., C) float32 in the image's units (0 outside), inside (...,) bool: the point lies
      within the image's pixel centres [0, W-1] x [0, H-1].
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    x, y = np.asarray(xy[..., 0], np.float64), np.asarray(xy[..., 1], np.float64)
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1) & np.isfinite(x) & np.isfinite(y)
    x = np.where(inside, x, 0.0)
    y = np.where(inside, y, 0.0)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, max(width - 2, 0))
    y0 = np.clip(np.floor(y).astype(np.int64), 0, max(height - 2, 0))
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    img = image.astype(np.float32)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    values = (top * (1 - fy) + bottom * fy) * inside[..., None]
    return values.astype(np.float32), inside


def uv_texture(image: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(S, S, 3) float32 UV texture in [0, 1]: the image sampled (bilinear) at each map pixel's
    (x, y); 0 where the point falls outside the image (PRNet samples the same way, nearest)."""
    image = np.asarray(image)
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    values, _ = sample_image(image[..., :3], np.asarray(pos)[..., :2])
    return np.clip(values / scale, 0.0, 1.0)


def map_normals(pos: np.ndarray, face_mask: np.ndarray) -> np.ndarray:
    """(S, S, 3) float32 unit surface normals of a position map, oriented toward the camera.

    Central differences along the map's columns (u) and rows (v); n = d/du x d/dv, whose sign
    depends on the UV layout's handedness, so the orientation is fixed by the face as a whole:
    the sum of n_z over the face mask (= signed projected area) is positive, because a face's
    front-facing part always projects larger than its back-facing part. 0 outside `face_mask`.
    """
    pos = np.asarray(pos, np.float64)
    du = np.zeros_like(pos)
    dv = np.zeros_like(pos)
    du[:, 1:-1] = pos[:, 2:] - pos[:, :-2]
    du[:, 0], du[:, -1] = pos[:, 1] - pos[:, 0], pos[:, -1] - pos[:, -2]
    dv[1:-1] = pos[2:] - pos[:-2]
    dv[0], dv[-1] = pos[1] - pos[0], pos[-1] - pos[-2]
    normals = np.cross(du, dv) * np.asarray(face_mask, bool)[..., None]
    if normals[..., 2].sum() < 0:
        normals = -normals
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    return (normals / np.maximum(length, 1e-12)).astype(np.float32)


def rasterize_face(pos: np.ndarray, assets: uv_assets_lib.UVAssets, height: int, width: int):
    """`synth.render.Fragments` of the map's dense mesh in an H x W image (z-buffer, nearest
    surface wins, no culling)."""
    vertices = mesh_io.vertices_from_position_map(np.asarray(pos, np.float64), assets.face_indices)
    return render.rasterize(vertices, assets.triangles, height, width, cull_back=False)


def depth_image(pos: np.ndarray, assets: uv_assets_lib.UVAssets, height: int, width: int) -> np.ndarray:
    """(H, W) float32 depth of the predicted surface: z (image pixels, toward the camera, the map's
    own z origin) of the nearest surface at each pixel centre, NaN where the face does not cover
    the pixel (PRNet's depth image before its normalisation)."""
    depth = rasterize_face(pos, assets, height, width).depth_buffer()
    return np.where(np.isfinite(depth), depth, np.nan).astype(np.float32)


def depth_to_uint8(depth: np.ndarray) -> np.ndarray:
    """(H, W) uint8 view of `depth_image`: nearest point 255, farthest covered point 1, 0 outside."""
    covered = np.isfinite(depth)
    if not covered.any():
        return np.zeros(depth.shape, np.uint8)
    lo, hi = float(np.nanmin(depth)), float(np.nanmax(depth))
    scaled = 1 + 254 * (np.where(covered, depth, lo) - lo) / max(hi - lo, 1e-6)
    return np.where(covered, np.rint(scaled), 0).astype(np.uint8)


def visibility_mask(
    pos: np.ndarray,
    assets: uv_assets_lib.UVAssets,
    height: int,
    width: int,
    tolerance: float = VISIBILITY_TOLERANCE,
    min_cos: float = 0.0,
) -> np.ndarray:
    """(S, S) bool: the face-mask pixels of the map whose surface point is seen in the photo.

    Seen = inside the image, normal facing the camera (n_z > min_cos, `map_normals`) and not
    behind a nearer part of the face (z >= z-buffer at its pixel - tolerance x face size).
    """
    pos = np.asarray(pos, np.float64)
    mask = assets.face_mask
    normals = map_normals(pos, mask)
    depth = rasterize_face(pos, assets, height, width).depth_buffer()
    xy = pos[..., :2]
    face_xy = xy[mask]
    face_size = float(np.mean(face_xy.max(0) - face_xy.min(0))) if len(face_xy) else 1.0
    col, row = np.rint(xy[..., 0]), np.rint(xy[..., 1])
    inside = (col >= 0) & (col <= width - 1) & (row >= 0) & (row <= height - 1)
    col = np.clip(np.nan_to_num(col), 0, width - 1).astype(np.int64)
    row = np.clip(np.nan_to_num(row), 0, height - 1).astype(np.int64)
    front = pos[..., 2] >= depth[row, col] - tolerance * face_size
    return mask & inside & (normals[..., 2] > min_cos) & front


def vertex_colors(texture: np.ndarray, assets: uv_assets_lib.UVAssets) -> np.ndarray:
    """(P, C) the texture's values at the dense vertices (face-mask pixels)."""
    texture = np.asarray(texture)
    return texture.reshape(-1, texture.shape[-1])[assets.face_indices]


def render_face(
    pos: np.ndarray, assets: uv_assets_lib.UVAssets, colors: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The map's dense mesh with per-vertex colours (P, C), z-buffered and Gouraud-shaded into
    an H x W image: (H, W, C) float32 (0 outside) and the (H, W) bool coverage."""
    fragments = rasterize_face(pos, assets, height, width)
    colors = np.asarray(colors, np.float32)
    ids = np.asarray(assets.triangles)[fragments.triangle]
    values = sum(colors[ids[:, k]] * fragments.weights[:, k : k + 1] for k in range(3))
    out = np.zeros((height * width, colors.shape[-1]), np.float32)
    out[fragments.pixel_index] = values
    return out.reshape(height, width, -1), fragments.coverage()


def feather(mask: np.ndarray, radius: float) -> np.ndarray:
    """(H, W) float32 alpha in [0, 1]: the bool mask eroded by `radius` pixels and blurred by it,
    so the blend is 1 well inside the mask and reaches 0 at its border."""
    mask = np.asarray(mask, bool)
    if radius <= 0:
        return mask.astype(np.float32)
    size = 2 * int(round(radius)) + 1
    eroded = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(size))
    blurred = eroded.filter(ImageFilter.GaussianBlur(radius / 2))
    return (np.asarray(blurred, np.float32) / 255.0) * mask


def match_colors(source: np.ndarray, target: np.ndarray, source_mask, target_mask) -> np.ndarray:
    """Source colours (..., 3) shifted and scaled per channel so that their mean and standard
    deviation over `source_mask` equal the target's over `target_mask` (a global stand-in for
    PRNet's Poisson blending: the swapped face takes the destination's lighting level)."""
    src = np.asarray(source, np.float32)
    s_pix, t_pix = (
        src[np.asarray(source_mask, bool)],
        np.asarray(target, np.float32)[np.asarray(target_mask, bool)],
    )
    if len(s_pix) < 2 or len(t_pix) < 2:
        return src
    scale = t_pix.std(0) / np.maximum(s_pix.std(0), 1e-6)
    return (src - s_pix.mean(0)) * scale + t_pix.mean(0)


def swap_texture(
    dst_image: np.ndarray,
    dst_pos: np.ndarray,
    src_texture: np.ndarray,
    src_visible: np.ndarray,
    assets: uv_assets_lib.UVAssets,
    match: bool = True,
    feather_fraction: float = 0.04,
) -> np.ndarray:
    """PRNet's texture editing (whole face): the source face's UV texture rendered on the
    destination face and blended into the destination photo.

    Args:
      dst_image: (H, W, 3) uint8 destination photo. dst_pos: (S, S, 3) its face's map.
      src_texture: (S, S, 3) float in [0, 1], the source's `uv_texture`; src_visible: (S, S) bool
        its `visibility_mask`. Where the source face was hidden the destination's own texture
        is kept (PRNet uses the source's texture everywhere).
      match: per-channel colour statistics of the source texture matched to the destination's
        over the pixels both see (`match_colors`).
      feather_fraction: blend border width as a fraction of the face size.
    Returns:
      (H, W, 3) uint8.
    """
    dst_image = np.asarray(dst_image)
    height, width = dst_image.shape[:2]
    dst_texture = uv_texture(dst_image, dst_pos)
    dst_visible = visibility_mask(dst_pos, assets, height, width)
    src_visible = np.asarray(src_visible, bool)
    src = np.asarray(src_texture, np.float32)
    if match:
        both = src_visible & dst_visible
        src = np.clip(match_colors(src, dst_texture, both, both), 0.0, 1.0)
    new_texture = np.where(src_visible[..., None], src, dst_texture)
    rendered, coverage = render_face(dst_pos, assets, vertex_colors(new_texture, assets), height, width)
    face_xy = np.asarray(dst_pos)[assets.face_mask][:, :2]
    face_size = float(np.mean(face_xy.max(0) - face_xy.min(0))) if len(face_xy) else 0.0
    alpha = feather(coverage, feather_fraction * face_size)[..., None]
    out = dst_image.astype(np.float32) / 255.0 * (1 - alpha) + rendered * alpha
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
