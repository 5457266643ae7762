"""The fast GroundTruthRenderer equals the reference fit -> position map paths."""

import numpy as np

from prn_jax.geometry import grid_model, ground_truth, uv_raster


def _fits(model, batch, rng):
    shape = rng.normal(size=(batch, model.shape_basis.shape[2])) * model.shape_std
    exp = rng.normal(size=(batch, model.exp_basis.shape[2])) * model.exp_std
    pose_para = np.tile([[-0.13, -0.77, 0.056, 183.6, 189.5, -81.7, 1.3e-3]], (batch, 1))
    pose_para[:, :3] += rng.uniform(-0.3, 0.3, (batch, 3))
    return shape.astype(np.float32), exp.astype(np.float32), pose_para


def test_renderer_matches_reference_to_a_thousandth_px():
    model = grid_model.make_grid_face_model(24, 20, num_shape=7, num_exp=5)
    raster = uv_raster.build_uv_raster(model.uv, model.full_triangles, 64)
    renderer = ground_truth.GroundTruthRenderer(model, raster, 450, crop_scale=1.6)
    rng = np.random.default_rng(3)
    for batch in (3, 5, 3):  # buffers are re-sized and reused across calls
        shape, exp, pose_para = _fits(model, batch, rng)
        maps, transform = renderer(shape, exp, pose_para)
        vertices, want_transform = ground_truth.fit_to_crop_vertices(
            model.mean, model.shape_basis, model.exp_basis, model.kpt_ind, shape, exp, pose_para, 450, 64, 1.6
        )
        want = uv_raster.render_position_maps(np.asarray(vertices, np.float64), raster)
        assert maps.shape == (batch, 64, 64, 3) and maps.dtype == np.float32
        np.testing.assert_allclose(maps, want, atol=1e-3)
        np.testing.assert_allclose(transform, want_transform, rtol=1e-5, atol=1e-4)
        assert np.all(maps[:, ~raster.mask] == 0)
        assert np.allclose(np.asarray(vertices)[..., 2].min(-1), 0.0, atol=1e-4)
        reference, _ = ground_truth.fit_to_position_maps(
            model, raster, shape, exp, pose_para, 450, crop_scale=1.6
        )
        np.testing.assert_allclose(maps, reference, atol=1e-3)
