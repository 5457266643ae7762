"""Full float32 precision of the on-device ground truth, shown by emulating a GPU's / TPU's default.

On NVIDIA GPUs XLA's default float32 dot rounds its inputs to TF32 (10 explicit mantissa bits),
on TPUs to bfloat16 (7 bits); CPUs compute float32 whatever the setting, so a CPU test cannot
see the difference by running the program. Here the program's jaxpr is evaluated on the CPU with
the inputs of every dot that does not ask for Precision.HIGHEST rounded first, which is what such
a device does. The chain as it was before issue 25 (the generic `geometry.pose` / `geometry.crop`
functions, default precision) moves the maps by tenths of a pixel (TF32) and pixels (bfloat16)
at S = 256; `position_maps_from_fits` (HIGHEST GEMMs, element-wise affines) stays within 1e-3 px
of a float64 reference under both. (The lowering tests in test_gpu_lowering.py check the same
property on the compiled train step: every float32 dot there carries HIGHEST.)
"""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from prn_jax import augment, geometry
from prn_jax.geometry import crop, ground_truth, pose, uv_raster
from prn_jax.synth import face_generator, sampling

SIZE = 256
IMAGE_HEIGHT = 450
MANTISSA_BITS = {"tf32": 10, "bfloat16": 7}


def _round_mantissa(x: np.ndarray, bits: int) -> np.ndarray:
    """float32 -> float32 rounded to nearest (ties to even) with `bits` explicit mantissa bits."""
    x = np.asarray(x, np.float32)
    if bits == 7:
        return x.astype(ml_dtypes.bfloat16).astype(np.float32)
    drop = 23 - bits
    u = x.view(np.uint32).astype(np.uint64)
    u = ((u + (1 << (drop - 1)) - 1 + ((u >> drop) & 1)) >> drop) << drop
    return u.astype(np.uint32).view(np.float32)


def _highest(precision) -> bool:
    if precision is None:
        return False
    if isinstance(precision, tuple):
        return all(_highest(p) for p in precision)
    return precision == jax.lax.Precision.HIGHEST or str(precision).upper().endswith("HIGHEST")


def _evaluate(jaxpr, consts, args, bits):
    """Evaluates a jaxpr eagerly; the float32 inputs of every dot_general whose precision is not
    HIGHEST are rounded to `bits` mantissa bits first (None: nothing rounded). Returns
    (outputs, number of dots rounded)."""
    env, rounded = {}, 0

    def read(v):
        return v.val if hasattr(v, "val") and not hasattr(v, "count") else env[v]

    for var, value in zip(jaxpr.constvars, consts):
        env[var] = value
    for var, value in zip(jaxpr.invars, args):
        env[var] = value
    for eqn in jaxpr.eqns:
        values = [read(v) for v in eqn.invars]
        inner = eqn.params.get("jaxpr")
        if eqn.primitive.name in ("pjit", "jit", "closed_call") and inner is not None:
            out, count = _evaluate(inner.jaxpr, inner.consts, values, bits)
            rounded += count
        elif eqn.primitive.name == "dot_general" and bits is not None:
            if not _highest(eqn.params["precision"]) and all(
                np.asarray(v).dtype == np.float32 for v in values
            ):
                values = [_round_mantissa(v, bits) for v in values]
                rounded += 1
            out = eqn.primitive.bind(*values, **eqn.params)
        else:
            out = eqn.primitive.bind(*values, **eqn.params)
        outs = out if eqn.primitive.multiple_results else [out]
        for var, value in zip(eqn.outvars, outs):
            env[var] = value
    return [read(v) for v in jaxpr.outvars], rounded


def _emulated(fn, args, bits):
    closed = jax.make_jaxpr(fn)(*args)
    outs, rounded = _evaluate(closed.jaxpr, closed.consts, jax.tree.leaves(args), bits)
    return np.asarray(outs[0]), rounded


def _previous_chain(arrays, pose_para, shape_para, exp_para, crop_transform, image_height):
    """`position_maps_from_fits` as it was before issue 25: the generic pose / crop functions,
    whose products are dots at the default precision."""
    vertices = pose.synthesize_vertices(
        arrays.mean, arrays.shape_basis, arrays.exp_basis, shape_para, exp_para
    )
    image = pose.to_image(pose.transform_vertices(vertices, pose_para), image_height[:, None])
    cropped = crop.crop_vertices(image, crop_transform)
    return uv_raster.render_position_maps_jax(cropped, arrays.vertex_ids, arrays.weights, arrays.size)


@pytest.fixture(scope="module")
def fits():
    """A small procedural model, its raster at 256, 8 fits across poses with their face3d crops,
    and float64 reference maps: (arrays, args (float32), reference (8, S, S, 3), mask)."""
    face = face_generator.make_procedural_face(
        face_generator.ModelSpec(rows=61, cols=71, num_shape=40, num_exp=20, num_tex=40)
    )
    model = face.model
    raster = geometry.build_uv_raster(model.uv, model.full_triangles, SIZE)
    rng = np.random.default_rng(7)
    poses, shapes, exps = [], [], []
    for _ in range(4):
        appearance = sampling.sample_appearance(rng, model)
        for angles in sampling.profile_angles(rng, 2):
            centre = rng.uniform(150, 300, 2)
            poses.append(sampling.place_pose(model, appearance, angles, centre))
            shapes.append(appearance.shape.astype(np.float32))
            exps.append(appearance.exp.astype(np.float32))
    pose_para, shape_para, exp_para = np.stack(poses), np.stack(shapes), np.stack(exps)
    heights = np.full(len(poses), IMAGE_HEIGHT, np.float32)
    image = pose.fit_to_image_vertices(
        model, shape_para.astype(np.float64), exp_para, pose_para, IMAGE_HEIGHT
    )
    transform = crop.crop_from_keypoints(image[:, model.kpt_ind], SIZE).astype(np.float32)
    reference = uv_raster.render_position_maps(
        crop.crop_vertices(image, transform.astype(np.float64)), raster
    )
    arrays = geometry.fit_render_arrays(model, raster)
    args = (pose_para, shape_para, exp_para, transform, heights)
    return arrays, args, reference, raster.mask


def test_closed_form_rotation_equals_the_product_of_the_three():
    angles = np.random.default_rng(0).uniform(-1.6, 1.6, (50, 3))
    np.testing.assert_allclose(
        np.asarray(ground_truth.rotation_3ddfa(jnp.asarray(angles, jnp.float32))),
        pose.rotation_matrix(angles),
        atol=2e-7,
    )


def test_round_mantissa_keeps_the_stated_bits():
    x = np.float32(1.0 + 2.0**-11 + 2.0**-20)  # just above half a TF32 ulp
    assert _round_mantissa(x, 10) == np.float32(1.0 + 2.0**-10)
    assert _round_mantissa(np.float32(1.0 + 2.0**-11), 10) == 1.0  # tie to even
    assert _round_mantissa(np.float32(451.3), 7) == 452.0  # bfloat16: 8 significant bits


@pytest.mark.parametrize("device", ["tf32", "bfloat16"])
def test_full_precision_prevents_the_error_of_default_precision(fits, device):
    arrays, args, reference, mask = fits
    bits = MANTISSA_BITS[device]
    errors = {}
    for name, fn in (("previous", _previous_chain), ("now", ground_truth.position_maps_from_fits)):
        maps, rounded = _emulated(fn, (arrays, *args), bits)
        errors[name] = np.abs(maps - reference)[:, mask].max()
        errors[f"{name}_dots_rounded"] = rounded
        exact, _ = _emulated(fn, (arrays, *args), None)  # float32 on the CPU
        errors[f"{name}_cpu"] = np.abs(exact - reference)[:, mask].max()
    print(device, errors)
    # Measured (2026-12-03): TF32 0.38 px, bfloat16 2.83 px before; 9.2e-5 px now, as on the CPU.
    assert errors["previous_dots_rounded"] >= 5 and errors["now_dots_rounded"] == 0
    assert errors["previous"] > {"tf32": 0.05, "bfloat16": 0.5}[device]
    assert errors["now"] < 1e-3 and errors["now_cpu"] < 1e-3 and errors["previous_cpu"] < 1e-3


def test_augmentation_transforms_have_no_dot():
    """The similarity's sampling, its inverse (image warp) and the map's value transform are
    element-wise: no float32 dot that a GPU or TPU would round."""
    params = augment.AugmentParams()

    def augmented(key, image, pos):
        return augment.augment_example(key, image, pos, params)

    closed = jax.make_jaxpr(augmented)(
        jax.random.PRNGKey(0), jnp.zeros((32, 32, 3), jnp.float32), jnp.zeros((32, 32, 3), jnp.float32)
    )
    assert "dot_general" not in str(closed)


@pytest.mark.skipif(jax.default_backend() == "cpu", reason="needs an accelerator (scripts/gpu_check.sh)")
def test_on_hardware_maps_match_cpu_maps(fits):
    """On a GPU / TPU: the maps rendered there against the CPU's (float32, same program) and the
    float64 reference; HIGHEST within 1e-3 px, the pre-issue-25 chain shown for comparison.
    Run by `scripts/gpu_check.sh` (PART=resident) with JAX_PLATFORMS=cuda,cpu."""
    arrays, args, reference, mask = fits
    accelerator = jax.devices()[0]
    maps = {}
    for name, fn in (("highest", ground_truth.position_maps_from_fits), ("previous", _previous_chain)):
        placed = jax.device_put((arrays, *args), accelerator)
        maps[name] = np.asarray(jax.jit(fn)(*placed))
    try:
        cpu = jax.devices("cpu")[0]
        cpu_maps = np.asarray(
            jax.jit(ground_truth.position_maps_from_fits)(*jax.device_put((arrays, *args), cpu))
        )
    except RuntimeError:  # no CPU backend in this process
        cpu_maps = None
    report = {f"{name} vs float64": float(np.abs(m - reference)[:, mask].max()) for name, m in maps.items()}
    if cpu_maps is not None:
        report.update(
            {f"{name} vs cpu": float(np.abs(m - cpu_maps)[:, mask].max()) for name, m in maps.items()}
        )
    print(f"precision on {accelerator.device_kind}: max px difference at S={SIZE}: {report}")
    assert report["highest vs float64"] < 1e-3
    if cpu_maps is not None:
        assert report["highest vs cpu"] < 1e-3
