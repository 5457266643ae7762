"""Tests of prn_jax.augment: geometry consistency of image vs position map, identities, keys,
colour, occlusion, and agreement of the JAX and numpy/scipy paths."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import ndimage

from prn_jax import augment

S = 256
NUM_LANDMARKS = 68
# One jitted function per (params, shapes): compiles are the cost of these tests, so tests share
# the parameter sets and shapes below.
BATCH = 4
PARAMS = augment.AugmentParams(occlusion_prob=1.0)
augment_batch = jax.jit(augment.augment_batch, static_argnames="params")
sample_batch_draws = jax.jit(augment.sample_batch_draws, static_argnums=(1, 2, 3))
IDENTITY_RANGES = augment.AugmentParams(
    rotation_deg=0.0, translation_frac=0.0, scale_range=(1.0, 1.0), color_range=(1.0, 1.0), occlusion_prob=0.0
)


def _example(size=64, map_size=32, seed=0, batch=None):
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    image = rng.random(lead + (size, size, 3), dtype=np.float32)
    pos = rng.uniform(-10, size + 10, lead + (map_size, map_size, 3)).astype(np.float32)
    return image, pos


def _separated_points(rng, n, lo, hi, min_dist):
    points = []
    while len(points) < n:
        p = rng.uniform(lo, hi, 2)
        if all(np.hypot(*(p - q)) >= min_dist for q in points):
            points.append(p)
    return np.array(points)


def _marked_image(points, size, sigma=1.2):
    """Gaussian marks of peak 1 centred at the (x, y) points, on black."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    image = np.zeros((size, size))
    for x, y in points:
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=-1).astype(np.float32)


def test_landmarks_read_from_augmented_map_fall_on_warped_marks():
    rng = np.random.default_rng(1)
    map_size = 16
    landmarks = _separated_points(rng, NUM_LANDMARKS, 48, S - 48, min_dist=14)
    # The 68 landmark UV pixels of a synthetic map; its other pixels hold unrelated points.
    uv = rng.choice(map_size * map_size, NUM_LANDMARKS, replace=False)
    rows, cols = np.unravel_index(uv, (map_size, map_size))
    pos = rng.uniform(0, S, (map_size, map_size, 3)).astype(np.float32)
    pos[rows, cols, :2] = landmarks
    image = _marked_image(landmarks, S)
    batch = BATCH
    params = augment.AugmentParams(occlusion=False)
    out_images, out_pos = augment_batch(
        jax.random.PRNGKey(3), np.stack([image] * batch), np.stack([pos] * batch), params=params
    )
    checked = 0
    for i in range(batch):
        warped = np.asarray(out_images[i]).mean(axis=-1)
        labels, count = ndimage.label(warped > 0.05)
        centroids = np.array(ndimage.center_of_mass(warped, labels, np.arange(1, count + 1)))
        centroids = centroids[:, ::-1]  # (row, col) -> (x, y)
        read = np.asarray(out_pos[i])[rows, cols, :2]
        inside = np.all((read > 6) & (read < S - 7), axis=1)
        assert inside.sum() >= 40, "augmentation moved most marks out of the crop"
        dist = np.linalg.norm(read[inside, None, :] - centroids[None], axis=-1)
        nearest = dist.argmin(axis=1)
        assert len(set(nearest)) == inside.sum(), "two landmarks matched one mark"
        assert dist.min(axis=1).max() < 1.0, dist.min(axis=1).max()
        checked += inside.sum()
    assert checked >= 160
    # The batch really was transformed (not a trivial pass).
    assert not np.allclose(np.asarray(out_pos)[:, rows, cols, :2], landmarks, atol=2)


@pytest.mark.parametrize(
    "params",
    [
        augment.AugmentParams.off(),
        augment.AugmentParams(geometric=False, color=False, occlusion=False),
        IDENTITY_RANGES,
    ],
    ids=["off", "all-flags-off", "identity-ranges"],
)
def test_identity_params_are_a_bit_exact_no_op(params):
    images, pos = _example(batch=BATCH)
    out_images, out_pos = augment_batch(jax.random.PRNGKey(0), images, pos, params=params)
    np.testing.assert_array_equal(np.asarray(out_images), images)
    np.testing.assert_array_equal(np.asarray(out_pos), pos)
    draw = augment.sample_draw(jax.random.PRNGKey(0), 64, params)
    host_image, host_pos = augment.augment_example_numpy(draw, images[0], pos[0], params)
    np.testing.assert_array_equal(host_image, images[0])
    np.testing.assert_array_equal(host_pos, pos[0])


def test_same_key_same_output_and_other_key_other_output():
    images, pos = _example(batch=BATCH)
    a = augment_batch(jax.random.PRNGKey(7), images, pos, params=PARAMS)
    b = augment_batch(jax.random.PRNGKey(7), images, pos, params=PARAMS)
    c = augment_batch(jax.random.PRNGKey(8), images, pos, params=PARAMS)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.allclose(np.asarray(a[0]), np.asarray(c[0]))
    assert not np.allclose(np.asarray(a[1]), np.asarray(c[1]))


def test_examples_in_a_batch_get_different_parameters():
    key = jax.random.PRNGKey(0)
    draws = sample_batch_draws(key, BATCH, 64, PARAMS)
    for leaf in jax.tree.leaves(draws):
        if leaf.dtype == bool:
            continue
        flat = np.asarray(leaf).reshape(BATCH, -1)
        assert len({row.tobytes() for row in flat}) == BATCH
    image, pos = _example()
    out_images, _ = augment_batch(key, np.stack([image] * BATCH), np.stack([pos] * BATCH), params=PARAMS)
    for i in range(1, BATCH):
        assert not np.allclose(np.asarray(out_images[0]), np.asarray(out_images[i]))
    # Example i is drawn from fold_in(key, i), so a per-example call reproduces the batch.
    one = augment.sample_draw(jax.random.fold_in(key, 3), 64, PARAMS)
    for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(draws)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y[3]), rtol=1e-6)


def test_similarity_moves_xy_and_multiplies_z_by_its_scale():
    params = augment.AugmentParams()
    _, pos = _example(map_size=8)
    scales = []
    for seed in range(5):
        m = augment.sample_similarity(jax.random.PRNGKey(seed), S, params)
        m64 = np.asarray(m, np.float64)
        scale = np.hypot(m64[0, 0], m64[1, 0])
        scales.append(scale)
        assert params.scale_range[0] <= scale <= params.scale_range[1]
        angle = np.degrees(np.arctan2(m64[1, 0], m64[0, 0]))
        assert abs(angle) <= params.rotation_deg
        np.testing.assert_allclose(m64[:2, :2] @ m64[:2, :2].T, scale**2 * np.eye(2), atol=1e-6)
        # The crop centre moves by the translation alone, at most 10% of S per axis.
        centre = np.array([(S - 1) / 2, (S - 1) / 2, 1.0])
        assert np.all(np.abs((m64 @ centre)[:2] - centre[:2]) <= 0.1 * S + 1e-3)
        out = np.asarray(augment.transform_position_map(pos, m), np.float64)
        np.testing.assert_allclose(out[..., 2], pos[..., 2] * scale, rtol=1e-5)
        xy1 = np.concatenate([pos[..., :2], np.ones(pos.shape[:2] + (1,))], axis=-1)
        np.testing.assert_allclose(out[..., :2], (xy1 @ m64.T)[..., :2], rtol=1e-5, atol=1e-3)
    assert np.ptp(scales) > 0.01


def test_color_scale_stays_in_unit_range_and_scales_each_channel():
    image, _ = _example()
    params = augment.AugmentParams()
    key = jax.random.PRNGKey(4)
    out = np.asarray(augment.color_scale(key, image, params))
    factors = np.asarray(augment.sample_color_scale(key, params))
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.all((factors >= 0.6) & (factors <= 1.4))
    np.testing.assert_allclose(out, np.clip(image * factors, 0, 1), rtol=1e-6)
    bright = augment.color_scale(
        key, np.full((8, 8, 3), 0.9, np.float32), augment.AugmentParams(color_range=(1.3, 1.4))
    )
    np.testing.assert_array_equal(np.asarray(bright), 1.0)


def test_occlusion_changes_one_patch_and_not_the_target():
    image, pos = _example()
    params = augment.AugmentParams(geometric=False, color=False, occlusion_prob=1.0)
    for seed in range(4):
        key = jax.random.PRNGKey(seed)
        out_image, out_pos = augment.augment_example(key, image, pos, params)
        np.testing.assert_array_equal(np.asarray(out_pos), pos)
        changed = np.any(np.asarray(out_image) != image, axis=-1)
        draw = augment.sample_draw(key, 64, params)
        ys, xs = np.mgrid[0:64, 0:64].astype(np.float64)
        occ = augment.Occlusion(*(np.asarray(a, np.float64) for a in draw.occlusion))
        mask, _, _ = augment._occlusion_geometry(np, xs, ys, occ)
        assert changed.sum() > 0
        assert not np.any(changed & ~mask), "pixels outside the patch changed"
        assert changed.sum() >= 0.99 * mask.sum()
        assert ndimage.label(changed)[1] == 1, "the patch is not one connected region"
    never = augment.occlude(jax.random.PRNGKey(0), image, augment.AugmentParams(occlusion_prob=0.0))
    np.testing.assert_array_equal(np.asarray(never), image)


def test_occlusion_probability_and_shapes():
    params = augment.AugmentParams(occlusion_prob=0.3)
    draws = sample_batch_draws(jax.random.PRNGKey(0), 400, S, params)
    rate = float(np.mean(draws.occlusion.apply))
    assert 0.22 < rate < 0.38, rate
    assert 0.35 < float(np.mean(draws.occlusion.ellipse)) < 0.65
    full = 2 * np.asarray(draws.occlusion.half_size) / S
    assert full.min() >= 0.1 - 1e-6 and full.max() <= 0.5 + 1e-6


def test_numpy_and_jax_agree_for_the_same_draw():
    images, pos = _example(batch=BATCH, seed=5)
    key = jax.random.PRNGKey(11)
    out_images, out_pos = jax.device_get(augment_batch(key, images, pos, params=PARAMS))
    draws = jax.device_get(sample_batch_draws(key, BATCH, 64, PARAMS))
    for i in range(BATCH):
        draw = jax.tree.map(lambda a: a[i], draws)
        host_image, host_pos = augment.augment_example_numpy(draw, images[i], pos[i], PARAMS)
        diff = np.abs(host_image - out_images[i])
        # Pixels exactly on the patch boundary may fall either side in float32 vs float64.
        assert np.mean(diff > 1e-4) < 2e-3
        np.testing.assert_allclose(host_pos, out_pos[i], rtol=1e-5, atol=1e-3)


def test_params_from_config_and_validation():
    config = ml_collections.ConfigDict()
    config.augment = augment.AugmentParams().to_config()
    assert augment.AugmentParams.from_config(config) == augment.AugmentParams()
    config.augment.rotation_deg = 30
    config.augment.scale_range = [0.8, 1.1]
    config.augment.occlusion = False
    params = augment.AugmentParams.from_config(config)
    assert params.rotation_deg == 30.0 and params.scale_range == (0.8, 1.1)
    assert not params.occlusion
    hash(params)  # usable as a static jit argument
    with pytest.raises(KeyError, match="rotation"):
        augment.AugmentParams.from_config({"augment": {"rotation": 10.0}})
    with pytest.raises(KeyError, match="augment"):
        augment.AugmentParams.from_config(ml_collections.ConfigDict())
    with pytest.raises(ValueError, match="scale_range"):
        augment.AugmentParams(scale_range=(1.2, 0.9))
    with pytest.raises(ValueError, match="occlusion_prob"):
        augment.AugmentParams.from_config({"augment": {"occlusion_prob": 1.5}})


def test_bad_shapes_are_rejected():
    image, pos = _example()
    with pytest.raises(AssertionError):
        augment.augment_batch(jax.random.PRNGKey(0), image, pos, augment.AugmentParams())
    with pytest.raises(AssertionError):
        augment.warp_image(image, jnp.eye(2))
    with pytest.raises(ValueError, match="pos"):
        augment.augment_example_numpy(None, image, pos[..., :2], augment.AugmentParams())


def test_benchmark_main_runs_small(capsys):
    from prn_jax.bench import augment as bench_augment

    result = bench_augment.main(["--batch", "2", "--size", "32", "--repeats", "1", "--warmup", "1"])
    assert result["jax"] > 0 and result["numpy"] > 0
    assert "ratio" in capsys.readouterr().out
