"""prn_jax.cpu_runtime: the tuned CPU process settings and the `prn-jax` entry's one re-exec."""

from __future__ import annotations

import os
import subprocess
import sys

from prn_jax import cpu_runtime


def test_tuned_environment_adds_missing_settings_and_keeps_the_users():
    env = cpu_runtime.tuned_environment({"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "A": "b"})
    assert env["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=8",
        "--xla_cpu_experimental_ynn_fusion_type=",
    ]
    assert env["A"] == "b"
    if cpu_runtime._uses_glibc():
        assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    user = {
        "XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT",
        "GLIBC_TUNABLES": "glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2",
    }
    kept = cpu_runtime.tuned_environment(user)
    assert kept["XLA_FLAGS"] == user["XLA_FLAGS"]
    if cpu_runtime._uses_glibc():
        assert kept["GLIBC_TUNABLES"] == user["GLIBC_TUNABLES"]
    # Idempotent: a second pass changes nothing.
    assert cpu_runtime.tuned_environment(env) == env


_PROBE = """
import os, sys
from prn_jax import cpu_runtime
calls = []
os.execve = lambda exe, argv, env: calls.append((argv, env)) or sys.exit(
    'EXEC ' + repr(argv[1:]) + ' ' + env.get('GLIBC_TUNABLES', '') + ' | ' + env['XLA_FLAGS'])
cpu_runtime.apply_or_reexec(['train', '--workdir', 'w'])
print('NOEXEC', os.environ.get('XLA_FLAGS', ''))
"""


def _probe(**env_extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XLA_FLAGS", "GLIBC_TUNABLES", "PRN_JAX_CPU_DEFAULTS")
    }
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True)


def test_entry_reexecs_once_with_the_settings_and_respects_opt_out():
    fresh = _probe()
    if cpu_runtime._uses_glibc():
        assert "EXEC ['-m', 'prn_jax.cli', 'train', '--workdir', 'w'] glibc.malloc.hugetlb=1" in fresh.stderr
        assert "--xla_cpu_experimental_ynn_fusion_type=" in fresh.stderr
    else:
        assert "NOEXEC --xla_cpu_experimental_ynn_fusion_type=" in fresh.stdout
    # Already applied (the re-executed process) or switched off: no exec, environment untouched.
    assert _probe(PRN_JAX_CPU_DEFAULTS="1").stdout.strip() == "NOEXEC"
    assert _probe(PRN_JAX_CPU_DEFAULTS="0").stdout.strip() == "NOEXEC"
