"""UV raster, position maps, UV assets (model-derived and PRNet uv-data) and mesh output."""

import dataclasses
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from prn_jax import loss
from prn_jax.geometry import face_model, grid_model, mesh_io, uv_assets, uv_raster


def _prnet_uv_data():
    for root in (
        Path(__file__).resolve().parents[2] / "shared",
        Path(os.environ.get("PRN_JAX_SHARED", "/nonexistent")),
    ):
        folder = root / "fixtures/real/prnet_uv_data"
        if folder.is_dir():
            return folder
    pytest.skip("PRNet uv-data fixture (../shared/fixtures/real/prnet_uv_data) not available")


@pytest.fixture(scope="module")
def model_and_raster():
    model = grid_model.make_grid_face_model(48, 40, num_shape=4, num_exp=3)
    return model, uv_raster.build_uv_raster(model.uv, model.full_triangles, 128)


def _random_disc_mesh(rng, count=400):
    """Random points on a jittered grid inside a disc of UV, Delaunay-triangulated."""
    import scipy.spatial

    points = rng.uniform(0.05, 0.95, (count, 2))
    points = points[np.linalg.norm(points - 0.5, axis=1) < 0.45]
    return points, scipy.spatial.Delaunay(points).simplices.astype(np.int32)


def test_affine_values_are_reproduced_exactly():
    rng = np.random.default_rng(0)
    uv, tri = _random_disc_mesh(rng)
    size = 96
    pixels = uv_raster.uv_to_pixels(uv, size)
    affine = rng.normal(size=(3, 2)) * 10
    offset = rng.normal(size=3) * 50
    vertices = (pixels @ affine.T + offset).astype(np.float32)
    raster = uv_raster.build_uv_raster(uv, tri, size)
    maps = uv_raster.render_position_maps(vertices[None], raster)[0]
    rows, cols = np.nonzero(raster.mask)
    expected = np.stack([cols, rows], -1) @ affine.T + offset
    np.testing.assert_allclose(maps[rows, cols], expected, atol=2e-3)
    assert 0.5 < raster.mask.mean() < 0.7  # the disc covers ~ pi * 0.45^2 of the square
    assert np.all(maps[~raster.mask] == 0)  # pixels outside every triangle are zero
    np.testing.assert_allclose(raster.weights.sum(1), 1, atol=1e-6)
    assert raster.weights.min() >= 0


def test_vertices_round_trip_through_the_map(model_and_raster):
    model, raster = model_and_raster
    u, v = model.uv[:, 0], model.uv[:, 1]
    values = np.stack([60 * np.sin(2 * u) + 40 * v, 80 * v**2, 30 * np.cos(3 * u * v)], -1)
    maps = uv_raster.render_position_maps(values.astype(np.float32), raster)
    pixels = uv_raster.uv_to_pixels(model.uv, raster.size)
    # face3d's strict inside test leaves some pixels on the mesh border uncovered (zero):
    # compare where all four bilinear neighbours are covered.
    lo = np.clip(np.floor(pixels).astype(int), 0, raster.size - 2)
    mask = raster.mask
    interior = (
        mask[lo[:, 1], lo[:, 0]]
        & mask[lo[:, 1] + 1, lo[:, 0]]
        & mask[lo[:, 1], lo[:, 0] + 1]
        & mask[lo[:, 1] + 1, lo[:, 0] + 1]
    )
    assert interior.mean() > 0.95
    sampled = mesh_io.sample_position_map(maps, pixels)
    error = np.abs(sampled - values)[interior].max()
    assert error < 0.05, error  # far below a pixel


def test_numpy_and_jax_maps_agree(model_and_raster):
    model, raster = model_and_raster
    rng = np.random.default_rng(1)
    vertices = rng.normal(size=(2, model.num_vertices, 3)).astype(np.float32)
    ids, weights = raster.dense()
    np.testing.assert_allclose(
        np.asarray(uv_raster.render_position_maps_jax(jnp.asarray(vertices), ids, weights, raster.size)),
        uv_raster.render_position_maps(vertices, raster),
        atol=1e-5,
    )


def test_lowest_triangle_index_wins_overlaps():
    uv = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float)
    tri = np.array([[0, 1, 2], [0, 1, 3]], np.int32)  # overlapping in the lower-left half
    raster = uv_raster.build_uv_raster(uv, tri, 8)
    tri_map = np.full(64, -1)
    tri_map[raster.pixel_index] = raster.triangle
    tri_map = tri_map.reshape(8, 8)
    assert tri_map[7, 0] == 0 and tri_map[6, 1] == 0  # covered by both: triangle 0
    assert tri_map[2, 6] == 1  # (u, v) = (6/7, 5/7): only triangle 1


def test_prnet_uv_data_loader():
    assets = uv_assets.load_prnet_uv_data(_prnet_uv_data())
    assert assets.size == 256
    assert assets.face_indices.shape == (43867,)
    assert assets.face_mask.sum() == 43867
    labels = assets.region_labels
    assert (labels == 0).sum() == 68
    assert np.all(labels[assets.kpt_uv[:, 1], assets.kpt_uv[:, 0]] == 0)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    weights = loss.weight_map(labels, (16, 4, 3, 0))
    assert weights.dtype == np.float32 and weights.max() == 16 and weights[0].max() == 0
    assert np.all(weights[~assets.face_mask] == 0)
    # Every triangle uses face-mask pixels only, and they tile the mask grid.
    assert assets.triangles.max() < 43867 and len(assets.triangles) > 2 * 43867 * 0.95


def test_prnet_masks_to_labels():
    weight = np.array([[255, 64, 48, 58, 53, 128, 48]])
    face = np.array([[255, 255, 255, 255, 255, 255, 0]])
    np.testing.assert_array_equal(
        uv_assets.region_labels_from_prnet_masks(weight, face), [[0, 1, 2, 1, 2, 1, 3]]
    )


@pytest.mark.parametrize("with_labels", [True, False])
def test_model_assets(model_and_raster, with_labels):
    model, raster = model_and_raster
    if not with_labels:
        model = dataclasses.replace(model, region_labels=None)
    assets = uv_assets.uv_assets_from_model(model, raster)
    labels = assets.region_labels
    kpt = uv_assets.keypoint_uv_pixels(model, raster.size)
    assert np.all(labels[kpt[:, 1], kpt[:, 0]] == face_model.REGION_KEYPOINT)
    assert (labels == 0).sum() == len(np.unique(kpt, axis=0))
    assert np.all(labels[~raster.mask] == face_model.REGION_OUTSIDE)
    counts = np.bincount(labels.ravel(), minlength=4)
    assert counts[1] > 0 and counts[2] > counts[1] and counts[3] > 0
    np.testing.assert_array_equal(assets.face_indices, np.flatnonzero(labels.ravel() != 3))


def test_mask_grid_triangles():
    full = np.ones((3, 3), bool)
    tri = uv_assets.mask_grid_triangles(full)
    assert tri.shape == (8, 3)
    corner = np.ones((2, 2), bool)
    corner[1, 1] = False
    np.testing.assert_array_equal(uv_assets.mask_grid_triangles(corner), [[0, 2, 1]])
    rng = np.random.default_rng(0)
    mask = rng.uniform(size=(12, 12)) < 0.7
    tri = uv_assets.mask_grid_triangles(mask)
    rows, cols = np.nonzero(mask)
    p = np.stack([cols, rows], -1)[tri].astype(float)
    cross = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    assert np.all(cross == -1)  # every triangle is half a unit pixel quad, same orientation


def test_landmarks_vertices_and_obj(tmp_path):
    size = 16
    pos = np.random.default_rng(0).uniform(0, 255, (size, size, 3)).astype(np.float32)
    kpt_uv = np.array([[3, 5], [10, 2]])
    np.testing.assert_array_equal(mesh_io.landmarks_from_position_map(pos, kpt_uv), [pos[5, 3], pos[2, 10]])
    mask = np.zeros((size, size), bool)
    mask[4:9, 2:12] = True
    labels = np.where(mask, 2, 3).astype(np.int32)
    assets = uv_assets.UVAssets(
        size=size,
        region_labels=labels,
        kpt_uv=kpt_uv,
        face_indices=np.flatnonzero(mask.ravel()).astype(np.int32),
        triangles=uv_assets.mask_grid_triangles(mask),
    )
    vertices, triangles = mesh_io.mesh_from_position_map(pos, assets)
    np.testing.assert_array_equal(vertices, pos[mask])
    image = np.zeros((256, 256, 3), np.uint8)
    image[..., 0] = 255
    path = tmp_path / "face.obj"
    mesh_io.write_position_map_obj(path, pos, assets, image=image)
    lines = path.read_text().splitlines()
    v_lines = [line for line in lines if line.startswith("v ")]
    f_lines = [line for line in lines if line.startswith("f ")]
    assert len(v_lines) == mask.sum() and len(f_lines) == len(triangles)
    np.testing.assert_allclose(
        [float(x) for x in v_lines[0].split()[1:]], list(vertices[0]) + [1, 0, 0], atol=1e-5
    )
    assert [int(x) for x in f_lines[0].split()[1:]] == list(triangles[0] + 1)
    # y up (PRNet's demo): y' = H - 1 - y, the winding reversed so normals still face the camera.
    mesh_io.write_position_map_obj(path, pos, assets, image=image, y_up_height=256)
    lines = path.read_text().splitlines()
    first = [float(x) for x in next(line for line in lines if line.startswith("v ")).split()[1:4]]
    np.testing.assert_allclose(first, [vertices[0, 0], 255 - vertices[0, 1], vertices[0, 2]], atol=1e-5)
    face = next(line for line in lines if line.startswith("f "))
    assert [int(x) for x in face.split()[1:]] == list(triangles[0][::-1] + 1)


def test_fit_to_position_maps_numpy_jax_and_reference_agree():
    from prn_jax.geometry import ground_truth

    model = grid_model.make_grid_face_model(40, 40)
    raster = uv_raster.build_uv_raster(model.uv, model.full_triangles, 64)
    rng = np.random.default_rng(0)
    shape = (rng.normal(size=(3, 199)) * model.shape_std).astype(np.float32)
    exp = (rng.normal(size=(3, 29)) * model.exp_std).astype(np.float32)
    pose_para = np.tile([[-0.13, -0.77, 0.056, 183.6, 189.5, -81.7, 1.3e-3]], (3, 1))
    pose_para[:, :3] += rng.uniform(-0.3, 0.3, (3, 3))
    maps, transform = ground_truth.fit_to_position_maps(model, raster, shape, exp, pose_para, 450)
    vertices, _ = ground_truth.fit_to_crop_vertices(
        model.mean, model.shape_basis, model.exp_basis, model.kpt_ind, shape, exp, pose_para, 450, 64
    )
    reference = uv_raster.render_position_maps(vertices, raster)
    np.testing.assert_allclose(maps, reference, atol=1e-3)
    jax_maps, jax_transform = ground_truth.make_fit_to_position_maps_jax(model, raster, 450)(
        shape, exp, pose_para
    )
    np.testing.assert_allclose(np.asarray(jax_maps), maps, atol=2e-3)
    np.testing.assert_allclose(np.asarray(jax_transform), transform, rtol=1e-5)
    assert maps.dtype == np.float32 and np.all(maps[:, ~raster.mask] == 0)
