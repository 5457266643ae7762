"""Process settings that make XLA's CPU backend fast for this network (measured: BUILD_NOTES, issue 9).

Two settings, both read only when a process starts (XLA_FLAGS: when JAX creates its CPU backend;
GLIBC_TUNABLES: when the C library loads), so the `prn-jax` command applies them by re-executing
itself once, before it imports JAX:

- `--xla_cpu_experimental_ynn_fusion_type=` (no YNNPACK library fusions). jaxlib 0.10's default
  sends convolutions to YNNPACK, whose kernel gradients run ~9x slower than XLA's own
  (one 4x4 32->32 layer at 128x128, batch 16: 764 ms vs 85 ms).
- `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`: glibc backs large allocations with transparent huge
  pages. XLA allocates its temporary buffers afresh for every step; with 4 KiB pages the paper
  config's step took ~430,000 page faults (about 1.7 GB touched anew per step), with huge pages
  ~7,000, and the step got ~20% faster on the development VM.

A setting the user already gave (the flag in XLA_FLAGS, or any glibc.malloc.hugetlb tunable) is
kept as given. PRN_JAX_CPU_DEFAULTS=0 turns all of this off.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

XLA_CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=",)
# Compile options for programs that run once (initialisation): LLVM at -O0 compiled the train
# state's init program in ~4 s instead of 19-25 s at XLA's default -O3 (BUILD_NOTES, issue 9).
RUN_ONCE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"
_APPLIED_MARK = "PRN_JAX_CPU_DEFAULTS"


def tuned_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` plus the settings above (those the user has not set). Pure; a copy."""
    out = dict(env)
    flags = out.get("XLA_FLAGS", "").split()
    for flag in XLA_CPU_FLAGS:
        name = flag.split("=", 1)[0]
        if not any(f.split("=", 1)[0] == name for f in flags):
            flags.append(flag)
    out["XLA_FLAGS"] = " ".join(flags)
    if _uses_glibc():
        tunables = [t for t in out.get("GLIBC_TUNABLES", "").split(":") if t]
        if not any(t.startswith("glibc.malloc.hugetlb=") for t in tunables):
            tunables.append(HUGEPAGE_TUNABLE)
        out["GLIBC_TUNABLES"] = ":".join(tunables)
    return out


def _uses_glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def apply_or_reexec(argv: list[str]) -> None:
    """Make this process run with `tuned_environment`; call before importing JAX.

    If only XLA_FLAGS is missing it is set in place; if a C-library setting is missing the
    process re-executes itself (`python -m prn_jax.cli ARGV`) once with the tuned environment.
    """
    if os.environ.get(_APPLIED_MARK) is not None:  # "0": off; "1": already applied
        return
    wanted = tuned_environment(os.environ)
    wanted[_APPLIED_MARK] = "1"
    if wanted.get("GLIBC_TUNABLES") != os.environ.get("GLIBC_TUNABLES"):
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", "prn_jax.cli", *argv], wanted)
    os.environ.update(wanted)
