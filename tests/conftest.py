"""Test setup: 8 simulated CPU devices (for the pmap tests) and a shared compilation cache."""

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after XLA_FLAGS)

# Identical programs compiled by different tests (same tiny model) are compiled once.
jax.config.update("jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "prn_jax_test_jit_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


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
