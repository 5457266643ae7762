"""Harmonic (Tutte) UV embedding of disc meshes."""

import numpy as np
import pytest

from prn_jax.geometry import grid_model, uv_embedding, uv_raster


def _signed_areas(uv, triangles):
    p = uv[triangles]
    return np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])


def _cap_mesh(rows=18, cols=22, seed=0):
    """A jittered spherical cap (disc topology) with consistently oriented triangles."""
    rng = np.random.default_rng(seed)
    v, u = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    u = u + rng.uniform(-0.02, 0.02, u.shape)
    v = v + rng.uniform(-0.02, 0.02, v.shape)
    z = np.sqrt(np.clip(3 - u**2 - v**2, 0, None))
    return np.stack([u.ravel(), v.ravel(), z.ravel()], -1), grid_model.grid_triangles(rows, cols)


@pytest.mark.parametrize("weights", ["uniform", "cotangent"])
def test_embedding_is_a_bijection_onto_the_square(weights):
    vertices, triangles = _cap_mesh()
    uv = uv_embedding.harmonic_uv_embedding(vertices, triangles, weights)
    assert uv.min() >= -1e-12 and uv.max() <= 1 + 1e-12
    areas = _signed_areas(uv, triangles)
    assert np.all(areas > 0) or np.all(areas < 0), "flipped triangles"
    loop = uv_embedding.boundary_loop(triangles)
    x, y = uv[loop, 0], uv[loop, 1]
    polygon = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    # Same orientation and total area = boundary polygon's area: the triangles tile it.
    np.testing.assert_allclose(np.abs(areas).sum() / 2, polygon, rtol=1e-9)
    assert polygon > 0.99  # the boundary polygon is (nearly) the unit square
    on_edge = np.minimum(np.minimum(uv[loop], 1 - uv[loop]).min(1), 1)
    np.testing.assert_allclose(on_edge, 0, atol=1e-12)


def test_embedding_feeds_the_raster():
    vertices, triangles = _cap_mesh(12, 12)
    uv = uv_embedding.harmonic_uv_embedding(vertices, triangles)
    raster = uv_raster.build_uv_raster(uv, triangles, 32)
    assert raster.mask.mean() > 0.9  # (nearly) the whole square is covered


def test_closed_mesh_is_rejected():
    tetrahedron = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]])
    with pytest.raises(ValueError, match="no boundary"):
        uv_embedding.boundary_loop(tetrahedron)
