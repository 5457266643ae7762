"""The numpy z-buffer renderer and the rendered synthetic faces."""

import numpy as np
import pytest

from prn_jax.synth import face_generator, render, sampling, scene

SMALL = face_generator.ModelSpec(rows=61, cols=71, num_shape=40, num_exp=20, num_tex=40)


@pytest.fixture(scope="module")
def face():
    return face_generator.make_procedural_face(SMALL)


def test_rasterize_single_triangle_weights_and_depth():
    # Clockwise in y-down image pixels = front-facing.
    vertices = np.array([[1.0, 1.0, 10.0], [1.0, 9.0, 20.0], [9.0, 1.0, 30.0]])
    frags = render.rasterize(vertices, np.array([[0, 1, 2]]), 12, 12)
    cover = frags.coverage()
    assert cover[1, 1] and cover[5, 3] and not cover[8, 8] and not cover[0, 0]
    np.testing.assert_allclose(frags.weights.sum(1), 1, atol=1e-6)
    i = np.flatnonzero(frags.pixel_index == 3 * 12 + 5)[0]  # pixel (row 3, col 5) = (x 5, y 3)
    np.testing.assert_allclose(frags.weights[i], [0.25, 0.25, 0.5], atol=1e-6)
    np.testing.assert_allclose(frags.depth[i], 22.5, atol=1e-5)
    back = render.rasterize(vertices, np.array([[0, 2, 1]]), 12, 12)  # culled when reversed
    assert len(back.pixel_index) == 0


def test_nearer_triangle_wins():
    far = np.array([[0.0, 0.0, 1.0], [0.0, 9.0, 1.0], [9.0, 0.0, 1.0]])
    near = far + np.array([0.0, 0.0, 5.0])
    vertices = np.concatenate([near, far])
    for tris in ([[0, 1, 2], [3, 4, 5]], [[3, 4, 5], [0, 1, 2]]):
        frags = render.rasterize(vertices, np.array(tris), 10, 10)
        np.testing.assert_allclose(frags.depth, 6.0)


def _frontal(face, yaw_deg=0.0):
    m = face.model
    app = sampling.Appearance(
        shape=np.zeros(m.shape_std.size),
        exp=np.zeros(m.exp_std.size),
        tex=np.zeros(m.tex_std.size),
        illum=np.array([0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.3, 0.3, 0.1, 10]),
        color=np.array([1, 1, 1, 0, 0, 0, 1], np.float32),
        scale=1.4e-3,
    )
    pose = sampling.place_pose(m, app, np.array([0.0, yaw_deg, 0.0]) * sampling.DEG, (225, 225))
    return sampling.fit(app, pose)


def test_landmarks_fall_on_the_rendered_face_with_right_depth_order(face):
    m = face.model
    background = np.zeros((450, 450, 3), np.float32)
    rendered = scene.render_fit(face, _frontal(face), background, np.random.default_rng(0))
    kpt = rendered.vertices[m.kpt_ind]
    nose_x, nose_y = np.round(kpt[30, :2]).astype(int)
    assert rendered.fragments.coverage()[nose_y, nose_x]
    assert rendered.image[nose_y, nose_x].mean() > 40  # skin, not the black background
    depth = rendered.fragments.depth_buffer()
    assert abs(depth[nose_y, nose_x] - kpt[30, 2]) < 3.0  # the visible surface is the nose
    for cheek in (1, 15, 3, 13):  # jaw / cheek landmarks
        x, y = np.round(kpt[cheek, :2]).astype(int)
        assert rendered.fragments.coverage()[y, x]
        assert depth[nose_y, nose_x] > depth[y, x] + 10  # nose nearer than cheeks
    assert scene.visible(rendered.fragments, rendered.vertices, m.kpt_ind[17:]).all()
    assert not rendered.fragments.coverage()[5, 5]  # corners stay background


def test_mirrored_fit_renders_the_mirror_image(face):
    fit = _frontal(face, yaw_deg=35.0)
    fit = sampling.Fit(
        pose=fit.pose,
        shape=np.random.default_rng(1).normal(size=fit.shape.size) * face.model.shape_std,
        exp=fit.exp,
        tex=fit.tex,
        illum=fit.illum,
        color=fit.color,
    )
    background = np.zeros((450, 450, 3), np.float32)
    a = scene.render_fit(face, fit, background, np.random.default_rng(0)).fragments.coverage()
    b = scene.render_fit(
        face, sampling.mirrored(face, fit), background, np.random.default_rng(0)
    ).fragments.coverage()
    assert a.sum() > 10000
    assert (a != b[:, ::-1]).mean() < 1e-3


def test_profile_landmarks_marched_to_the_silhouette(face):
    fit = _frontal(face, yaw_deg=60.0)  # positive yaw turns the face to image left
    rendered = scene.render_fit(face, fit, np.zeros((450, 450, 3), np.float32), np.random.default_rng(0))
    marched = scene.contour_landmarks(face, rendered.vertices, fit.pose)
    raw = rendered.vertices[face.model.kpt_ind, :2]
    # The image-left jaw (landmarks 1-8) turns away: marched points move outwards onto the
    # outline (smaller x) and lie on the rendered face; the near side (10-17) stays put.
    assert np.all(marched[1:6, 0] <= raw[1:6, 0]) and np.any(marched[1:6, 0] < raw[1:6, 0] - 5)
    np.testing.assert_allclose(marched[12:17], raw[12:17])
    cover = rendered.fragments.coverage()
    xy = np.round(marched[1:6]).astype(int)
    assert cover[xy[:, 1], np.clip(xy[:, 0] + 1, 0, 449)].all()
    assert not cover[xy[:, 1], np.clip(xy[:, 0] - 4, 0, 449)].all()
