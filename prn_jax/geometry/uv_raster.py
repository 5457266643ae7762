"""The UV raster: which triangle and barycentric weights cover each UV pixel, computed once per
(model, map size), and position maps for a batch of vertex sets as one gather + weighted sum.

UV pixel frame (face3d `process_uv`): column = u * (S - 1), row = S - 1 - v * (S - 1), so v = 1
is the top row. A pixel (row, col) is covered by a triangle when its integer centre lies
inside it with barycentric weights w1 >= 0, w2 >= 0, w0 > 0 (face3d's point-in-triangle
test); where several triangles cover a pixel the lowest triangle index wins (face3d draws in
index order at constant depth). Pixels outside every triangle are zero in the maps.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import scipy.sparse


@dataclasses.dataclass(frozen=True, eq=False)
class UVRaster:
    """Barycentric raster of a UV-mapped mesh at size x size.

    Attributes:
      size: S, the map side in pixels.
      pixel_index: (P,) int32 flat index row * S + col of each covered pixel, ascending.
      triangle: (P,) int32 covering triangle.
      vertex_ids: (P, 3) int32 vertex indices of that triangle.
      weights: (P, 3) float32 barycentric weights (sum 1) of those vertices at the pixel centre.
    """

    size: int
    pixel_index: np.ndarray
    triangle: np.ndarray
    vertex_ids: np.ndarray
    weights: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(S, S) bool, True at covered pixels."""
        mask = np.zeros(self.size * self.size, bool)
        mask[self.pixel_index] = True
        return mask.reshape(self.size, self.size)

    def dense(self):
        """Per-pixel ids (S*S, 3) int32 and weights (S*S, 3) float32, zero weights outside."""
        ids = np.zeros((self.size * self.size, 3), np.int32)
        weights = np.zeros((self.size * self.size, 3), np.float32)
        ids[self.pixel_index] = self.vertex_ids
        weights[self.pixel_index] = self.weights
        return ids, weights


def raster_matrix(raster: UVRaster, num_vertices: int):
    """(S*S, n) scipy CSR matrix, 3 barycentric weights per covered pixel row, empty rows
    outside: `matrix @ values` renders (n, C) per-vertex values into (S*S, C) maps, for any C
    (e.g. 3 * batch columns at once)."""
    rows = np.repeat(raster.pixel_index, 3)
    return scipy.sparse.csr_matrix(
        (raster.weights.ravel(), (rows, raster.vertex_ids.ravel())),
        shape=(raster.size * raster.size, num_vertices),
    )


def uv_to_pixels(uv, size):
    """(n, 2) UV in [0, 1] -> (n, 2) float (col, row) UV-pixel coordinates (v flipped)."""
    uv = np.asarray(uv, np.float64)
    return np.stack([uv[:, 0] * (size - 1), size - 1 - uv[:, 1] * (size - 1)], axis=-1)


def _barycentric(points, a, b, c):
    """Weights (w0, w1, w2) of points (m, 2) in triangles (m, 2) x 3, face3d's formulas."""
    v0, v1, v2 = c - a, b - a, points - a
    dot00 = (v0 * v0).sum(-1)
    dot01 = (v0 * v1).sum(-1)
    dot02 = (v0 * v2).sum(-1)
    dot11 = (v1 * v1).sum(-1)
    dot12 = (v1 * v2).sum(-1)
    denom = dot00 * dot11 - dot01 * dot01
    inv = np.where(denom == 0, 0.0, 1.0 / np.where(denom == 0, 1.0, denom))
    w2 = (dot11 * dot02 - dot01 * dot12) * inv
    w1 = (dot00 * dot12 - dot01 * dot02) * inv
    return np.stack([1 - w1 - w2, w1, w2], axis=-1), denom != 0


def build_uv_raster(uv, triangles, size, chunk=1 << 16) -> UVRaster:
    """Rasterises the mesh's UV layout once.

    Args:
      uv: (n, 2) in [0, 1] (v up). triangles: (t, 3) int 0-based (face3d rasterises the face and
        mouth triangles: pass `model.full_triangles`). size: S.
      chunk: triangles processed at a time (bounds memory for coarse meshes).
    Returns:
      The UVRaster.
    """
    triangles = np.asarray(triangles, np.int64)
    pixels = uv_to_pixels(uv, size)
    best = np.full(size * size, np.iinfo(np.int64).max)
    best_weights = np.zeros((size * size, 3))
    for start in range(0, len(triangles), chunk):
        tri_ids = np.arange(start, min(start + chunk, len(triangles)))
        corners = pixels[triangles[tri_ids]]  # (m, 3, 2)
        lo = np.maximum(np.ceil(corners.min(1)), 0).astype(np.int64)
        hi = np.minimum(np.floor(corners.max(1)), size - 1).astype(np.int64)
        extent = np.maximum(hi - lo + 1, 0)  # (m, 2) columns, rows
        counts = extent[:, 0] * extent[:, 1]
        owner = np.repeat(np.arange(len(tri_ids)), counts)
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        col = lo[owner, 0] + offset % extent[owner, 0]
        row = lo[owner, 1] + offset // extent[owner, 0]
        tri_corners = corners[owner]
        weights, valid = _barycentric(
            np.stack([col, row], -1).astype(np.float64),
            tri_corners[:, 0],
            tri_corners[:, 1],
            tri_corners[:, 2],
        )
        inside = valid & (weights[:, 1] >= 0) & (weights[:, 2] >= 0) & (weights[:, 0] > 0)
        flat = (row * size + col)[inside]
        tri = tri_ids[owner[inside]]
        weights = weights[inside]
        # Lowest triangle index per pixel: sort by (pixel, triangle), keep the first of each pixel.
        order = np.lexsort((tri, flat))
        flat, tri, weights = flat[order], tri[order], weights[order]
        first = np.ones(len(flat), bool)
        first[1:] = flat[1:] != flat[:-1]
        flat, tri, weights = flat[first], tri[first], weights[first]
        better = tri < best[flat]
        best[flat[better]] = tri[better]
        best_weights[flat[better]] = weights[better]
    pixel_index = np.flatnonzero(best != np.iinfo(np.int64).max)
    triangle = best[pixel_index]
    return UVRaster(
        size=size,
        pixel_index=pixel_index.astype(np.int32),
        triangle=triangle.astype(np.int32),
        vertex_ids=triangles[triangle].astype(np.int32),
        weights=best_weights[pixel_index].astype(np.float32),
    )


def render_position_maps(vertices, raster: UVRaster):
    """Interpolates per-vertex values into UV maps (numpy).

    Args:
      vertices: (..., n, C) per-vertex values, usually crop-pixel positions (C = 3).
    Returns:
      (..., S, S, C) same dtype, zero outside the raster mask.
    """
    vertices = np.asarray(vertices)
    batch, channels = vertices.shape[:-2], vertices.shape[-1]
    flat = vertices.reshape((-1,) + vertices.shape[-2:])
    weights = raster.weights.astype(vertices.dtype)
    values = flat[:, raster.vertex_ids[:, 0]] * weights[:, 0, None]
    values += flat[:, raster.vertex_ids[:, 1]] * weights[:, 1, None]
    values += flat[:, raster.vertex_ids[:, 2]] * weights[:, 2, None]
    out = np.zeros((flat.shape[0], raster.size * raster.size, channels), vertices.dtype)
    out[:, raster.pixel_index] = values
    return out.reshape(batch + (raster.size, raster.size, channels))


def render_position_maps_jax(vertices, vertex_ids, weights, size):
    """JAX version over the dense raster (`UVRaster.dense()`): a gather and a weighted sum.

    Args:
      vertices: (..., n, C). vertex_ids: (S*S, 3) int32. weights: (S*S, 3), zero outside.
    Returns:
      (..., S, S, C), zero outside the mask. jit-able; no scatter.
    """
    gathered = jnp.take(vertices, vertex_ids, axis=-2)  # (..., S*S, 3, C)
    values = (gathered * weights.astype(vertices.dtype)[..., None]).sum(-2)
    return values.reshape(vertices.shape[:-2] + (size, size, vertices.shape[-1]))
