"""The train step as it would run on a GPU, checked on this CPU machine by cross-lowering.

JAX lowers a program for a platform it has no devices of (`Traced.lower(lowering_platforms=)`, as
`jax.export` does). The step is the trainer's own per-device function under `shard_map` over its
devices' mesh, which is how `jax.pmap` runs it (jax 0.10). Lowered for "cuda", it must need no host
work (no callbacks, no conditionals on data), compute its convolutions in bfloat16 under
dtype=bfloat16 while keeping the state float32, donate the state, and, with the sub-pixel decoder
and the fast-gradient encoder, use no input-dilated convolution (XLA's slow transposed-convolution
lowering on GPU, issue 9). With `maps_on_device` and augmentation, every float32 dot of the step
(the ground truth's synthesis GEMMs; the affines and augmentation's transforms are element-wise)
must ask for Precision.HIGHEST, for "cuda" and "tpu" alike (issue 25; tests/test_precision.py
shows the error it prevents).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from prn_jax import configuration
from prn_jax.bench import model as bench_model
from prn_jax.geometry import ground_truth
from prn_jax.train import step as step_lib
from prn_jax.train import trainer as trainer_lib

SIZE = 32
# A face model's sizes for the maps_on_device step: vertices, identity and expression components.
VERTICES, SHAPE_COMPONENTS, EXP_COMPONENTS = 500, 10, 5


def _fit_inputs(batch: int):
    """Abstract fits of `batch` examples and a FitRenderArrays (maps_on_device)."""
    f32 = jnp.float32
    fits = {
        "image": jax.ShapeDtypeStruct((batch, SIZE, SIZE, 3), jnp.uint8),
        "pose": jax.ShapeDtypeStruct((batch, 7), f32),
        "shape": jax.ShapeDtypeStruct((batch, SHAPE_COMPONENTS), f32),
        "expression": jax.ShapeDtypeStruct((batch, EXP_COMPONENTS), f32),
        "crop_transform": jax.ShapeDtypeStruct((batch, 3, 3), f32),
        "image_height": jax.ShapeDtypeStruct((batch,), f32),
    }
    geometry = ground_truth.FitRenderArrays(
        jax.ShapeDtypeStruct((VERTICES, 3), f32),
        jax.ShapeDtypeStruct((VERTICES, 3, SHAPE_COMPONENTS), f32),
        jax.ShapeDtypeStruct((VERTICES, 3, EXP_COMPONENTS), f32),
        jax.ShapeDtypeStruct((SIZE * SIZE, 3), jnp.int32),
        jax.ShapeDtypeStruct((SIZE * SIZE, 3), f32),
    )
    return fits, geometry


def _lowered_step(
    platform: str, *overrides: str, fits: bool = False
) -> tuple[jax.stages.Lowered, trainer_lib.Trainer]:
    """The tiny bfloat16 2-device train step (32x32, batch 4) lowered for `platform`; with
    `fits`, on batches of fits whose maps the step renders (maps_on_device)."""
    config = configuration.load_config(
        "tiny", [f"image_size={SIZE}", "num_devices=2", "batch_size=4", "dtype=bfloat16", *overrides]
    )
    trainer = trainer_lib.Trainer(config)
    step = step_lib.make_train_step(trainer._programs.config, trainer.model, trainer.tx)
    sharded = jax.shard_map(
        step,
        mesh=trainer.mesh,
        in_specs=(P(), P(step_lib.AXIS), P(), P(), P()),
        out_specs=(P(), P()),
        check_vma=False,
    )
    if fits:
        batch, geometry = _fit_inputs(4)
    else:
        batch = {k: jax.ShapeDtypeStruct((4, SIZE, SIZE, 3), jnp.float32) for k in ("image", "pos_map")}
        geometry = None
    weights = jax.ShapeDtypeStruct((SIZE, SIZE), jnp.float32)
    run = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), step_lib.run_inputs(config))
    traced = jax.jit(sharded, donate_argnums=(0,)).trace(
        trainer.abstract_state(), batch, weights, geometry, run
    )
    return traced.lower(lowering_platforms=(platform,)), trainer


def _conditionals_on_data(text: str) -> list[str]:
    """Result types of the `stablehlo.case` ops with more than one branch that return arrays (a
    branch chosen by data). Single-branch cases and cases of one i32 scalar are
    `lax.platform_dependent`'s platform index, which XLA folds away."""
    found, open_cases = [], []  # open_cases: [indent, branches] of the cases being read
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if '"stablehlo.case"' in line:
            open_cases.append([indent, 1])
        elif open_cases and indent == open_cases[-1][0] and line.strip() == "}, {":
            open_cases[-1][1] += 1
        elif open_cases and indent == open_cases[-1][0] and line.lstrip().startswith("}) :"):
            _, branches = open_cases.pop()
            result = line.split("->", 1)[1].split(" loc(")[0].strip()
            if branches > 1 and result != "tensor<i32>":
                found.append(result)
    return found


@pytest.fixture(scope="module")
def cuda_step():
    lowered, trainer = _lowered_step("cuda")
    return lowered.as_text(), trainer


def _custom_call_targets(text: str) -> set[str]:
    return set(re.findall(r"custom_call @(\w+)", text)) | set(re.findall(r'call_target_name = "(\w+)"', text))


def test_cuda_train_step_needs_no_host_work(cuda_step):
    text, _ = cuda_step
    assert _custom_call_targets(text) == set(), (
        f"custom calls in the CUDA train step: {_custom_call_targets(text)}"
    )
    # The check finds a host callback (lowered for the CPU: this jaxlib has no CUDA callback).
    with_callback = (
        jax.jit(lambda x: jax.pure_callback(np.negative, x, x))
        .trace(jax.ShapeDtypeStruct((3,), jnp.float32))
        .lower(lowering_platforms=("cpu",))
    )
    assert any("callback" in t for t in _custom_call_targets(with_callback.as_text()))
    assert "stablehlo.if" not in text and "infeed" not in text and "outfeed" not in text
    assert _conditionals_on_data(text) == []
    # The check finds the CPU program's conditionals (BatchNorm's fusion boundary, 2 per layer).
    cpu_step, _ = _lowered_step("cpu")
    assert len(_conditionals_on_data(cpu_step.as_text())) > 50


def test_cuda_train_step_computes_in_bfloat16_on_float32_state(cuda_step):
    text, trainer = cuda_step
    convs = re.findall(r"stablehlo\.convolution.* : \((.*?)\) -> tensor<(.*?)>", text)
    assert len(convs) > 100
    assert all(out.endswith("bf16") and operands.count("bf16") == 2 for operands, out in convs), [
        c for c in convs if not c[1].endswith("bf16")
    ][:3]
    state = trainer.abstract_state()
    assert {str(x.dtype) for x in jax.tree.leaves((state.params, state.batch_stats))} == {"float32"}
    assert {str(x.dtype) for x in jax.tree.leaves(state.opt_state)} == {"float32", "int32"}  # moments, count
    # Every state leaf is donated: the step updates the state in place.
    main = re.search(r"func\.func public @main\((.*?)\) ->", text, re.S).group(1)
    donated = main.count("jax.buffer_donor = true") + main.count("tf.aliasing_output")
    assert donated == len(jax.tree.leaves(state))


def _input_dilated_convolutions(text: str) -> int:
    return len(re.findall(r"stablehlo\.convolution.*lhs_dilate = \[(?!1, 1\])", text))


def test_cuda_train_step_without_input_dilated_convolutions():
    fast, _ = _lowered_step("cuda", "decoder_impl=subpixel", "encoder_conv_impl=fast_grad")
    assert _input_dilated_convolutions(fast.as_text()) == 0
    reference, _ = _lowered_step("cuda", "decoder_impl=reference", "encoder_conv_impl=xla")
    assert _input_dilated_convolutions(reference.as_text()) >= 10
    # The same arithmetic either way, by XLA's count of the lowered programs (which does not count
    # inserted zeros): 1.9% apart at this width, from the formulations' elementwise work.
    assert bench_model._flops(fast.cost_analysis()) == pytest.approx(
        bench_model._flops(reference.cost_analysis()), rel=5e-2
    )


def _dots(text: str) -> list[tuple[str, str]]:
    """(precision, operand types) of every stablehlo.dot_general."""
    return re.findall(r"stablehlo\.dot_general .*?precision = \[(\w+, \w+)\] : \((.*?)\) ->", text)


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_ground_truth_and_augmentation_dots_run_at_highest_precision(platform):
    """maps_on_device + augmentation: the float32 dots (the synthesis GEMMs (B, k) x (k, 3n)) ask
    for HIGHEST on the GPU and the TPU; no other dot exists; convolutions keep the default
    (their precision is the compute dtype's business)."""
    lowered, _ = _lowered_step(platform, "augment.enabled=True", "data.maps_on_device=True", fits=True)
    text = lowered.as_text()
    dots = _dots(text)
    assert len(dots) == text.count("stablehlo.dot_general")  # the pattern reads every dot
    gemms = [operands for _, operands in dots if f"x{3 * VERTICES}xf32" in operands]
    assert len(gemms) == 2, dots  # identity and expression bases
    assert {p for p, operands in dots if "f32" in operands} == {"HIGHEST, HIGHEST"}, dots
    convs = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    assert len(convs) > 50 and not any("HIGHEST" in line for line in convs)
    # The check sees a default-precision dot: the step on stored maps has none, so use a jnp.dot.
    plain = (
        jax.jit(jnp.dot)
        .trace(jax.ShapeDtypeStruct((2, 3), jnp.float32), jax.ShapeDtypeStruct((3, 4), jnp.float32))
        .lower(lowering_platforms=(platform,))
    )
    assert [p for p, _ in _dots(plain.as_text())] == ["DEFAULT, DEFAULT"]
