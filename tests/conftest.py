"""Test setup: 8 simulated CPU devices (for the pmap tests) and shared fixtures."""

import contextlib
import gc
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# In-process tests run with jaxlib's default CPU settings, not `prn-jax`'s tuned ones
# (prn_jax/cpu_runtime.py), so their programs stay those of the last green CI: jax 0.10.2 crashed
# (SIGABRT, SIGSEGV) writing train-step executables to the persistent cache used below
# (BUILD_NOTES, issue 9).


import jax  # noqa: E402  (after XLA_FLAGS)

# Identical programs compiled by different tests (the same tiny model) are compiled once, in a
# fresh directory per session (never reading entries of other runs). Tests whose programs jax
# 0.10.2 cannot serialise on CPU use the `no_compilation_cache` fixture.
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="prn_jax_test_jit_cache_"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled program after each test module. Each XLA CPU executable maps its code
    (a few memory maps each); one process holding the whole suite's programs passed Linux's
    default limit of 65,530 maps (vm.max_map_count) at ~93% of the suite and segfaulted in the
    next compile (2026-12-03, 29,000 maps a fifth of the way in). A later module that needs a
    program again reads it from the session's persistent cache or recompiles it."""
    yield
    from prn_jax.train import trainer

    trainer.clear_program_cache()
    jax.clear_caches()
    gc.collect()


@contextlib.contextmanager
def float64_compute():
    """float64 compute, a test-only dtype (`configuration.DTYPES` extended, jax's x64 mode on):
    in float32 a width-2 net with 27 BatchNorms amplifies summation-order noise too soon for tight
    comparisons. test_train's float64 8-device step is shared by most of its tests and by
    test_multiprocess's 1-process reference (compiled once per pytest process, see
    prn_jax.train.trainer.Trainer); test_multiprocess's workers extend DTYPES the same way (its WORKER)."""
    from prn_jax import configuration

    with pytest.MonkeyPatch.context() as patch, jax.enable_x64(True):
        patch.setattr(configuration, "DTYPES", (*configuration.DTYPES, "float64"))
        yield


@pytest.fixture
def no_compilation_cache():
    """Write nothing to the persistent cache during a test: serialising the executable of the
    augmented 2-device train step aborted the interpreter (SIGABRT in put/get_executable_and_time,
    seen three times with jax 0.10.2 on CPU), and so did the float64 scanned train step of
    test_steps_per_dispatch_equals_single_steps (2026-11-29, its encoder then "fast_grad").
    (`jax_enable_compilation_cache` is read once per
    process, so the write threshold is what can be changed here; with nothing written, the
    fresh cache directory never holds such an entry to read back.)"""
    before = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1e9)
    yield
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before)


def shared_dir() -> Path | None:
    """The project's ../shared folder (or $PRN_JAX_SHARED), None when absent."""
    env = os.environ.get("PRN_JAX_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return path if path.is_dir() else None


@pytest.fixture
def shared():
    path = shared_dir()
    if path is None:
        pytest.skip("../shared (reference files and real fixtures) is absent on this machine")
    return path


@pytest.fixture(scope="session")
def tiny_run() -> list[str]:
    """Overrides of configs/tiny.py for the one tiny 1-device float32 run (64x64, width 2, batch 2)
    that test_config's generated configs, the runs of test_evaluate and test_predict and the
    overfit test of test_train train: its step compiles once per pytest process (prn_jax.train.trainer.Trainer
    shares compiled programs). Learning rate 1e-2: the overfit test needs it (see there)."""
    return ["image_size=64", "width=2", "batch_size=2", "num_devices=1", "learning_rate=1e-2"]


@pytest.fixture(scope="session")
def tiny_synth_tfds(tmp_path_factory):
    """Tiny synthetic sets, built: {'raw', 'tfds', 'model', 'aflw'} paths (prn_300w_lp/size64 with
    16 records, aflw2000_3d/maps64 with 4 images), from a small procedural model."""
    from prn_jax.datasets.aflw2000_3d import Aflw20003d
    from prn_jax.datasets.prn_300w_lp import Prn300wLp
    from prn_jax.synth import datasets, face_generator

    root = tmp_path_factory.mktemp("tiny_synth")
    face = face_generator.make_procedural_face(
        face_generator.ModelSpec(rows=61, cols=71, num_shape=40, num_exp=20, num_tex=40)
    )
    datasets.generate(face, root / "raw", num=8, seed=3, test_num=4, flip=True, workers=1, progress=False)
    common = dict(data_dir=root / "tfds", manual_dir=root / "raw", model_dir=root / "raw" / "model")
    Prn300wLp(config="size64", workers=1, **common).download_and_prepare()
    Aflw20003d(config="maps64", **common).download_and_prepare()
    return {
        "raw": root / "raw",
        "tfds": root / "tfds",
        "model": root / "raw" / "model",
        "aflw": root / "raw" / "AFLW2000",
    }
