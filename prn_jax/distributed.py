"""Joining JAX's distributed runtime (one process per host) before any JAX computation.

Where the process learns its place, first match wins:
  1. explicit arguments (`prn-jax train --coordinator HOST:PORT --num-processes N --process-id I`);
  2. the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
     (set by `launch/local_multiprocess.py`);
  3. SLURM inside `srun` with SLURM_NTASKS > 1: coordinator = first host of the step's node list,
     port JAX_COORDINATOR_PORT or one derived from the job id (as JAX does); one task per node
     sees all the node's accelerators, one task per GPU sees the GPU SLURM_LOCALID;
  4. a Cloud TPU VM (libtpu and TPU chips present) or a Kubernetes indexed Job (JOB_COMPLETION_INDEX
     and the `kubernetes` package): JAX's own detection, `jax.distributed.initialize()` without
     arguments;
  otherwise the run is single-process and nothing is initialized.

CPU collectives go through gloo (needed for cross-process reductions on the CPU backend; ignored
by GPU/TPU backends), and multi-process CPU runs do not use the persistent compilation cache.
Connecting is bounded by `timeout_s`: an unreachable coordinator raises `DistributedError` naming
the address instead of hanging.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import socket
import time
from collections.abc import Mapping

import jax

DEFAULT_TIMEOUT_S = 300
ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = (
    "JAX_COORDINATOR_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
)


class DistributedError(RuntimeError):
    """The distributed runtime could not be joined (bad arguments, unreachable coordinator)."""


def slurm_params(env: Mapping[str, str]) -> tuple[str, int, int, list[int] | None] | None:
    """(coordinator 'host:port', num_processes, process_id, local_device_ids or None) for a
    multi-task SLURM step, else None. local_device_ids is [SLURM_LOCALID] when a node runs several
    tasks (one per GPU), None (all visible devices) with one task per node."""
    needed = ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID")
    if not all(k in env for k in needed) or int(env["SLURM_NTASKS"]) <= 1:
        return None
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if not nodes:
        raise DistributedError(
            "SLURM_NTASKS > 1 but neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST "
            "is set; launch the tasks with srun"
        )
    port = env.get("JAX_COORDINATOR_PORT") or str(int(env["SLURM_JOB_ID"]) % 2**12 + 65535 - 2**12 + 1)
    tasks_per_node = env.get("SLURM_NTASKS_PER_NODE", env.get("SLURM_TASKS_PER_NODE", "1"))
    several = int(tasks_per_node.split("(")[0].split(",")[0]) > 1
    local = [int(env["SLURM_LOCALID"])] if several and "SLURM_LOCALID" in env else None
    return f"{first_host(nodes)}:{port}", int(env["SLURM_NTASKS"]), int(env["SLURM_PROCID"]), local


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list: 'gpu[007-009,012],cpu1' -> 'gpu007', 'a,b' -> 'a'."""
    m = re.match(r"([^,\[]*)(?:\[([^,\-\]]+))?", nodelist)
    return m.group(1) + (m.group(2) or "")


def on_cloud_tpu_vm() -> bool:
    """libtpu installed and TPU chips attached (/dev/accel* or /dev/vfio/N)."""
    chips = glob.glob("/dev/accel*") or [p for p in glob.glob("/dev/vfio/*") if p.rsplit("/", 1)[1].isdigit()]
    return bool(chips) and importlib.util.find_spec("libtpu") is not None


def on_kubernetes_indexed_job(env: Mapping[str, str]) -> bool:
    return (
        "KUBERNETES_SERVICE_HOST" in env
        and "JOB_COMPLETION_INDEX" in env
        and importlib.util.find_spec("kubernetes") is not None
    )


def initialize_from_env_or_args(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: int = DEFAULT_TIMEOUT_S,
) -> str | None:
    """Join the distributed runtime if this is a multi-process launch; call before any JAX work.

    Returns how the process was placed ('explicit', 'env', 'slurm', 'cloud_tpu', 'kubernetes')
    or None for a single-process run. Raises `DistributedError` on incomplete arguments or when
    the coordinator cannot be reached within `timeout_s` seconds.
    """
    env = os.environ
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    local_ids = None
    if any(v is not None for v in given.values()):
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise DistributedError(
                f"multi-process launch: also give {', '.join(missing)} "
                f"(got {', '.join(f'{k}={v}' for k, v in given.items() if v is not None)})"
            )
        how = "explicit"
    elif ENV_COORDINATOR in env and ENV_NUM_PROCESSES in env and ENV_PROCESS_ID in env:
        coordinator, num_processes, process_id = (
            env[ENV_COORDINATOR],
            int(env[ENV_NUM_PROCESSES]),
            int(env[ENV_PROCESS_ID]),
        )
        how = "env"
    elif (slurm := slurm_params(env)) is not None:
        coordinator, num_processes, process_id, local_ids = slurm
        how = "slurm"
    elif on_cloud_tpu_vm() or on_kubernetes_indexed_job(env):
        how = "kubernetes" if "KUBERNETES_SERVICE_HOST" in env else "cloud_tpu"
        _connect(dict(initialization_timeout=int(timeout_s)), "the address JAX detects", timeout_s)
        return how
    else:
        return None
    if num_processes == 1:
        return None
    if not 0 <= process_id < num_processes:
        raise DistributedError(f"process_id = {process_id}: must be in [0, num_processes = {num_processes})")
    if ":" not in coordinator:
        raise DistributedError(f"coordinator = {coordinator!r}: must look like HOST:PORT")
    if process_id != 0:
        wait_for_coordinator(coordinator, timeout_s)
    _connect(
        dict(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_ids,
            cluster_detection_method="deactivate",
            initialization_timeout=int(timeout_s),
        ),
        f"{coordinator} (process {process_id} of {num_processes})",
        timeout_s,
    )
    return how


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Poll until a TCP connection to `address` ('host:port') opens, else raise DistributedError.
    (JAX's client aborts the whole process with a C++ fatal error when it times out.)"""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(
                (host.strip("[]"), int(port)), timeout=max(0.1, min(2.0, timeout_s))
            ):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"could not reach the JAX coordinator at {address} within {timeout_s} s ({e}). "
                    f"Is process 0 running and is the address reachable from this host?"
                ) from e
            time.sleep(0.25)


def _connect(kwargs: dict, where: str, timeout_s: int) -> None:
    if jax.distributed.is_initialized():  # joined by an earlier run in this process
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as e:  # noqa: BLE001 - the runtime raises XlaRuntimeError and others
        raise DistributedError(
            f"could not join the JAX distributed runtime at coordinator {where} within {timeout_s} s: "
            f"{type(e).__name__}: {str(e).strip()[:400]}. Is process 0 running and is the address "
            f"reachable from this host?"
        ) from e
    if jax.default_backend() == "cpu":
        # jax 0.10.2, CPU + gloo: only process 0 writes the persistent compilation cache, and a
        # run where process 0 loaded the train step from it while process 1 compiled it hung in
        # its first step. Every process compiles instead.
        jax.config.update("jax_enable_compilation_cache", False)
