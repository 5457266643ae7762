"""Prediction outputs on a known synthetic face: depth and UV texture against the face's own render,
the visibility mask, texture transfer, frontalisation, contour drawing, atomic files."""

import numpy as np
import pytest
from PIL import Image

from prn_jax import predict, predict_outputs, texture
from prn_jax.geometry import grid_model, model_assets, pose, uv_assets, uv_raster
from prn_jax.synth import render

S = 64
H = W = 400


@pytest.fixture(scope="module")
def face():
    """A small grid morphable model, its UV raster and assets at S, the mean face (model frame)."""
    model = grid_model.make_grid_face_model(rows=48, cols=48, num_shape=5, num_exp=3)
    raster = uv_raster.build_uv_raster(model.uv, model.full_triangles, S)
    assets = uv_assets.uv_assets_from_model(model, raster)
    mean = predict.canonical_face_points(model_assets.frontal_map_from_model(model, raster), assets)
    return model, raster, assets, mean


def _scene(face, angles_deg, colour_fn, shape_scale=0.0, background=0.0):
    """The model at a 3DDFA pose rendered with per-vertex colours colour_fn(uv) (no shading):
    image (H, W, 3) uint8, its fragments, the image-frame position map (S, S, 3)."""
    model, raster, _, _ = face
    shape = shape_scale * model.shape_std * np.random.default_rng(3).normal(size=model.shape_std.shape)
    pose_para = np.array([*np.radians(angles_deg), 200.0, 210.0, 5.0, 1.2e-3])
    vertices = pose.fit_to_image_vertices(model, shape, np.zeros(model.exp_basis.shape[-1]), pose_para, H)
    fragments = render.rasterize(vertices, model.full_triangles, H, W, cull_back=False)
    canvas = np.full((H, W, 3), background, np.float32)
    image = render.to_uint8(render.composite(canvas, fragments, model.full_triangles, colour_fn(model.uv)))
    pos = uv_raster.render_position_maps(np.asarray(vertices, np.float64), raster)
    return image, fragments, pos


def uv_colours(uv):
    return np.stack([uv[:, 0], uv[:, 1], np.full(len(uv), 0.5)], -1)


def warm_colours(uv):
    return np.stack([0.9 - 0.3 * uv[:, 1], 0.3 + 0.2 * uv[:, 0], np.full(len(uv), 0.2)], -1)


def _expected_texture(face, colour_fn):
    model, raster, _, _ = face
    return uv_raster.render_position_maps(colour_fn(model.uv), raster)


def _interior(mask, steps=2):
    """The mask eroded by `steps` pixels (4-neighbourhood)."""
    inner = mask.copy()
    for _ in range(steps):
        inner[1:-1, 1:-1] &= inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
    return inner


@pytest.mark.parametrize("angles", [(0, 0, 0), (10, 45, -8)])
def test_depth_image_matches_the_render(face, angles):
    image, fragments, pos = _scene(face, angles, uv_colours)
    depth = texture.depth_image(pos, face[2], H, W)
    assert depth.shape == (H, W) and depth.dtype == np.float32
    truth = fragments.depth_buffer()
    both = _interior(np.isfinite(depth) & np.isfinite(truth), 2)
    assert both.sum() > 3000
    # Same surface, two triangulations (model grid vs UV-map grid): equal up to interpolation.
    diff = np.abs(depth[both] - truth[both])
    assert np.median(diff) < 0.3 and np.percentile(diff, 95) < 1.5
    # Coverage agrees too (the map mesh is the face-mask part of the model).
    assert np.isfinite(depth).sum() <= 1.02 * np.isfinite(truth).sum()
    view = texture.depth_to_uint8(depth)
    assert view.dtype == np.uint8 and view[~np.isfinite(depth)].max() == 0
    assert view[np.isfinite(depth)].min() >= 1 and view.max() == 255
    # Nearest = brightest: the nose region is nearer than the jaw corners at a frontal pose.
    if angles == (0, 0, 0):
        kpt = np.rint(pos[face[2].kpt_uv[:, 1], face[2].kpt_uv[:, 0], :2]).astype(int)
        assert view[kpt[30, 1], kpt[30, 0]] > view[kpt[4, 1], kpt[4, 0]]


def test_uv_texture_and_visibility_match_the_render(face):
    assets = face[2]
    expected = _expected_texture(face, uv_colours)
    stats = {}
    for yaw in (0, 80):
        image, _, pos = _scene(face, (0, yaw, 0), uv_colours)
        tex = texture.uv_texture(image, pos)
        visible = texture.visibility_mask(pos, assets, H, W)
        assert tex.shape == (S, S, 3) and tex.dtype == np.float32 and 0 <= tex.min() and tex.max() <= 1
        assert visible.shape == (S, S) and visible.dtype == bool and not (visible & ~assets.face_mask).any()
        err = np.abs(tex - expected).max(-1)
        inner = _interior(visible, 1)
        hidden = assets.face_mask & ~visible
        stats[yaw] = (visible.sum() / assets.face_mask.sum(), np.median(err[inner]), hidden, err)
        assert np.median(err[inner]) < 0.02 and np.percentile(err[inner], 95) < 0.06
    assert stats[0][0] > 0.9 and stats[80][0] < 0.8  # turned 80 degrees: the far cheek is hidden
    hidden, err = stats[80][2], stats[80][3]
    # Hidden pixels sample whatever covers them: the wrong colour, which the mask excludes.
    assert np.median(err[hidden]) > 5 * stats[80][1] + 0.1


def test_map_normals_face_the_camera_whatever_the_uv_handedness(face):
    _, _, pos = _scene(face, (0, 0, 0), uv_colours)
    mask = face[2].face_mask
    normals = texture.map_normals(pos, mask)
    np.testing.assert_allclose(np.linalg.norm(normals[mask], axis=-1), 1, atol=1e-5)
    assert np.median(normals[mask][:, 2]) > 0.8 and not normals[~mask].any()
    mirrored = texture.map_normals(pos[:, ::-1], mask[:, ::-1])  # UV layout mirrored
    assert np.median(mirrored[mask[:, ::-1]][:, 2]) > 0.8


def test_texture_swap_renders_the_source_texture_on_the_destination(face):
    assets = face[2]
    src_image, _, src_pos = _scene(face, (0, -20, 0), warm_colours, background=0.2)
    dst_image, fragments, dst_pos = _scene(face, (5, 25, 5), uv_colours, shape_scale=0.5, background=0.6)
    src_tex = texture.uv_texture(src_image, src_pos)
    src_vis = texture.visibility_mask(src_pos, assets, H, W)
    out = texture.swap_texture(dst_image, dst_pos, src_tex, src_vis, assets, match=False)
    assert out.shape == dst_image.shape and out.dtype == np.uint8
    # What the destination would look like with the source's colours, rendered from its geometry.
    truth, _, _ = _scene(face, (5, 25, 5), warm_colours, shape_scale=0.5, background=0.6)
    _, coverage = texture.render_face(dst_pos, assets, np.ones((len(assets.face_indices), 1)), H, W)
    inner = _interior(coverage, 8)
    err = np.abs(out.astype(float) - truth)[inner].max(-1) / 255
    assert inner.sum() > 2000 and np.median(err) < 0.03
    assert np.abs(out.astype(float) - dst_image)[inner].mean() > 40  # the face did change
    outside = ~coverage
    np.testing.assert_array_equal(out[outside], dst_image[outside])
    # Colour matching moves the source's statistics onto the destination's.
    matched = texture.swap_texture(dst_image, dst_pos, src_tex, src_vis, assets, match=True)
    dst_mean = dst_image[inner].mean(0)
    assert np.abs(matched[inner].mean(0) - dst_mean).max() < np.abs(out[inner].mean(0) - dst_mean).max()


def test_frontalize_removes_the_pose(face):
    model, raster, assets, mean = face
    maps = {a: _scene(face, a, uv_colours, shape_scale=0.5)[2] for a in ((0, 0, 0), (15, 50, -20))}
    fronts = {
        a: predict_outputs.frontalize(m.reshape(-1, 3)[assets.face_indices], mean) for a, m in maps.items()
    }
    a, b = fronts.values()
    size = np.ptp(a, axis=0).max()
    assert np.abs(a - b).max() < 0.01 * size
    assert np.abs(a[:, :2] - a[:, :2].mean(0)).max() > 0.3 * size  # not collapsed
    kpt = a.reshape(-1, 3)  # y up: eyes above the mouth, nose tip nearest
    vertex_of = {int(k): i for i, k in enumerate(assets.face_indices)}
    eye = vertex_of[int(assets.kpt_uv[36, 1] * S + assets.kpt_uv[36, 0])]
    mouth = vertex_of[int(assets.kpt_uv[57, 1] * S + assets.kpt_uv[57, 0])]
    assert kpt[eye, 1] > kpt[mouth, 1]


def test_contours_are_drawn_and_join_the_right_points():
    rng = np.random.default_rng(0)
    landmarks = np.column_stack([rng.uniform(40, 160, 68), rng.uniform(40, 160, 68), np.zeros(68)])
    segments = predict_outputs.contour_segments(landmarks)
    assert len(segments) == 9 and [len(s) for s in segments] == [17, 5, 5, 4, 5, 7, 7, 13, 9]
    np.testing.assert_array_equal(segments[5][-1], landmarks[36, :2])  # eyes and lips are closed
    blank = np.zeros((200, 200, 3), np.uint8)
    drawn = predict_outputs.draw_faces(blank, [{"landmarks": landmarks, "rotation": np.eye(3), "box": None}])
    midpoint = np.rint((landmarks[41, :2] + landmarks[36, :2]) / 2).astype(int)
    assert drawn[midpoint[1] - 1 : midpoint[1] + 2, midpoint[0] - 1 : midpoint[0] + 2].any()
    assert drawn.any(-1).mean() < 0.5 and drawn.shape == blank.shape


def test_outputs_are_parsed_and_written_atomically(tmp_path):
    assert predict_outputs.parse_outputs("depth,kpt") == ("kpt", "depth")
    assert predict_outputs.parse_outputs("all") == tuple(predict_outputs.OUTPUTS)
    with pytest.raises(ValueError, match="unknown.*'mesh'"):
        predict_outputs.parse_outputs("kpt,mesh")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        predict_outputs.write_atomic(tmp_path / "x.png", broken)
    assert list(tmp_path.iterdir()) == []
    predict_outputs.save_png(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    assert np.asarray(Image.open(tmp_path / "x.png")).shape == (4, 4) and len(list(tmp_path.iterdir())) == 1
