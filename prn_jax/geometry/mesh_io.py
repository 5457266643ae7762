"""Reading a position map back: landmarks, dense vertices, a triangle mesh, `.obj` output.

Position maps are (..., S, S, 3) in crop (or, after `crop.uncrop`, original image) pixels.
"""

import functools
from pathlib import Path

import numpy as np

from prn_jax.geometry import _array


def landmarks_from_position_map(position_map, kpt_uv):
    """(..., S, S, 3) map, (68, 2) int (u, v) -> (..., 68, 3) `pos[v, u]`. numpy or JAX."""
    return position_map[..., kpt_uv[:, 1], kpt_uv[:, 0], :]


def vertices_from_position_map(position_map, face_indices):
    """(..., S, S, 3) map, (P,) flat face-pixel indices -> (..., P, 3) dense vertices."""
    size = position_map.shape[-2]
    flat = position_map.reshape(position_map.shape[:-3] + (size * size, position_map.shape[-1]))
    return flat[..., face_indices, :]


def mesh_from_position_map(position_map, assets):
    """(S, S, 3) map + `UVAssets` -> vertices (P, 3) and triangles (T, 3) int32."""
    return vertices_from_position_map(position_map, assets.face_indices), assets.triangles


def sample_position_map(position_map, points):
    """Bilinear sample of a (S, S, C) map at (m, 2) float (col, row) pixels -> (m, C).

    Points are clamped to the map. numpy or JAX.
    """
    xp = _array.namespace(position_map, points)
    size = position_map.shape[0]
    points = xp.clip(points, 0, size - 1)
    lo = xp.clip(xp.floor(points).astype(xp.int32), 0, size - 2)
    frac = (points - lo)[..., None]
    col, row = lo[:, 0], lo[:, 1]
    top = position_map[row, col] * (1 - frac[:, 0]) + position_map[row, col + 1] * frac[:, 0]
    bottom = position_map[row + 1, col] * (1 - frac[:, 0]) + position_map[row + 1, col + 1] * frac[:, 0]
    return top * (1 - frac[:, 1]) + bottom * frac[:, 1]


def sample_image_colors(image, vertices):
    """Nearest-pixel colours of `image` (H, W, C) at vertices (m, >=2) image pixels (x, y).

    Coordinates are rounded and clamped to the image, as PRNet does. Returns (m, C) float32 in
    the image's value range.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    x = np.clip(np.rint(vertices[:, 0]), 0, width - 1).astype(np.int64)
    y = np.clip(np.rint(vertices[:, 1]), 0, height - 1).astype(np.int64)
    return image[y, x].astype(np.float32)


def obj_text(vertices, triangles, colors=None, decimals: int = 6) -> str:
    """Wavefront `.obj` text: `v x y z [r g b]` lines then 1-based `f i j k` lines.

    Args:
      vertices: (m, 3). triangles: (T, 3) 0-based. colors: optional (m, 3), written as given
        (use [0, 1] floats for most viewers). decimals: digits after the point of every value.
    """
    rows = np.asarray(vertices, np.float64)
    if colors is not None:
        colors = np.asarray(colors, np.float64)
        if colors.shape != rows.shape:
            raise ValueError(f"colors shape {colors.shape} != vertices {rows.shape}")
        rows = np.concatenate([rows, colors], axis=1)
    line = "v" + f" %.{decimals}f" * rows.shape[1] + "\n"
    vertex_block = line * len(rows) % tuple(rows.ravel().tolist())  # one C-level format
    triangles = np.ascontiguousarray(triangles, np.int64)
    return vertex_block + _face_block(triangles.tobytes(), len(triangles))


@functools.lru_cache(maxsize=8)
def _face_block(triangles: bytes, count: int) -> str:
    """The `f` lines of a triangulation (cached: predictions reuse the same one)."""
    faces = np.frombuffer(triangles, np.int64).reshape(count, 3) + 1
    return "f %d %d %d\n" * count % tuple(faces.ravel().tolist())


def write_obj(path, vertices, triangles, colors=None):
    """Writes `obj_text(vertices, triangles, colors)` to `path`."""
    try:
        text = obj_text(vertices, triangles, colors)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    Path(path).write_text(text)


def write_position_map_obj(path, position_map, assets, image=None, y_up_height: int | None = None):
    """Mesh of a (S, S, 3) map in image pixels as `.obj`; colours from `image` ([0, 255] uint8
    or [0, 1] float, written in [0, 1]) when given.

    y_up_height: None writes the map's frame (x right, y down, z toward the camera); an image
    height H writes y' = H - 1 - y (y up, as PRNet's demo writes meshes, so y-up viewers show the
    face upright) with the triangles' winding reversed, so their normals still face the camera.
    """
    vertices, triangles = mesh_from_position_map(np.asarray(position_map), assets)
    colors = None
    if image is not None:
        colors = sample_image_colors(image, vertices)
        if np.asarray(image).dtype == np.uint8:
            colors = colors / 255.0
    if y_up_height is not None:
        vertices = np.array(vertices, np.float64)
        vertices[:, 1] = y_up_height - 1 - vertices[:, 1]
        triangles = np.asarray(triangles)[:, ::-1]
    write_obj(path, vertices, triangles, colors)
