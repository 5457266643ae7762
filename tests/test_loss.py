import jax.numpy as jnp
import numpy as np
import pytest

from prn_jax import loss


def _maps(seed=0, b=2, s=8):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(b, s, s, 3)).astype(np.float32),
        rng.normal(size=(b, s, s, 3)).astype(np.float32),
        rng.uniform(0, 3, size=(s, s)).astype(np.float32),
    )


@pytest.mark.parametrize("kind", loss.LOSSES)
def test_losses_match_numpy(kind):
    pred, target, w = _maps()
    d = pred.astype(np.float64) - target
    err = {"weighted_l2": (d**2).sum(-1), "euclidean": np.sqrt((d**2).sum(-1)), "l1": np.abs(d).sum(-1)}[kind]
    want = np.mean([(w * e).sum() / w.sum() for e in err])
    got = float(loss.position_map_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(w), kind))
    assert got == pytest.approx(want, rel=1e-5)


def test_loss_is_zero_on_perfect_prediction_and_ignores_zero_weight():
    pred, target, _ = _maps(1)
    w = np.ones((8, 8), np.float32)
    w[:, :4] = 0
    target2 = target.copy()
    target2[:, :, :4] += 100.0  # only where the weight is 0
    for kind in loss.LOSSES:
        assert (
            float(loss.position_map_loss(jnp.asarray(target), jnp.asarray(target2), jnp.asarray(w), kind))
            == 0.0
        )


def test_euclidean_gradient_finite_at_zero_error():
    import jax

    _, target, w = _maps(2)
    g = jax.grad(lambda p: loss.position_map_loss(p, jnp.asarray(target), jnp.asarray(w), "euclidean"))(
        jnp.asarray(target)
    )
    assert np.isfinite(np.asarray(g)).all()


def test_weight_map_ratios_land_on_regions():
    labels = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], np.int32)
    w = loss.weight_map(labels)
    np.testing.assert_array_equal(w, [[16, 4, 3, 0], [0, 3, 4, 16]])
    np.testing.assert_array_equal(loss.weight_map(labels, (1, 1, 1, 0)), [[1, 1, 1, 0], [0, 1, 1, 1]])
    assert loss.weight_map(labels, (1, 1, 1, 1)).min() == 1


def test_weight_map_rejects_bad_input():
    with pytest.raises(ValueError, match="4 entries"):
        loss.weight_map(np.zeros((2, 2), np.int32), (1, 2))
    with pytest.raises(ValueError, match="range"):
        loss.weight_map(np.full((2, 2), 4, np.int32))
    with pytest.raises(ValueError, match="unknown loss"):
        loss.position_map_loss(jnp.zeros((1, 2, 2, 3)), jnp.zeros((1, 2, 2, 3)), jnp.ones((2, 2)), "l3")


def test_paper_ratio_on_prnet_masks(shared):
    """PRNet's own masks: 68 keypoint pixels get 16, the neck (outside the face mask) 0."""
    from PIL import Image

    uv = shared / "fixtures" / "real" / "prnet_uv_data"
    kpt = np.loadtxt(uv / "uv_kpt_ind.txt").astype(int)  # (2, 68): u, v
    face = np.asarray(Image.open(uv / "uv_face_mask.png").convert("L")) > 0
    labels = np.where(face, 2, 3).astype(np.int32)
    labels[kpt[1], kpt[0]] = 0
    w = loss.weight_map(labels)
    assert (w[kpt[1], kpt[0]] == 16).all()
    assert (w[~face] == 0).all()


def test_z_offset_weight_splits_depth_offset_from_shape():
    rng = np.random.default_rng(0)
    target = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
    pred = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
    w = jnp.asarray(rng.uniform(0.5, 2.0, size=(4, 4)), jnp.float32)
    shifted = pred.at[..., 2].add(jnp.asarray([[[[5.0]]], [[[-3.0]]]])[..., 0])  # per-example z offsets
    plain = loss.position_map_loss(pred, target, w)
    assert float(loss.position_map_loss(pred, target, w, z_offset_weight=1.0)) == float(plain)
    free = [float(loss.position_map_loss(p, target, w, z_offset_weight=0.0)) for p in (pred, shifted)]
    np.testing.assert_allclose(free[0], free[1], rtol=1e-5)  # a depth offset costs nothing
    assert float(loss.position_map_loss(shifted, target, w)) > 5 * free[1]
    # weighted_l2: residual + a * offset, exactly.
    half = float(loss.position_map_loss(pred, target, w, z_offset_weight=0.5))
    np.testing.assert_allclose(half, free[0] + 0.5 * (float(plain) - free[0]), rtol=1e-5)
    with pytest.raises(ValueError, match="z_offset_weight"):
        loss.position_map_loss(pred, target, w, z_offset_weight=-1.0)
