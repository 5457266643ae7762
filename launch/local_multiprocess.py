"""Run `prn-jax train` as N cooperating processes on this machine (CPU devices, loopback
coordinator): the basis of the multi-process tests and a way to try a multi-host setup locally.

  python -m launch.local_multiprocess --num-processes 2 --devices-per-process 2 -- \
      --config tiny --workdir runs/tiny_2x2

Every child gets JAX_PLATFORMS=cpu, K simulated CPU devices (XLA_FLAGS), and
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, which `prn_jax.distributed` reads.
Output lines are prefixed with "[pI] ". When one process fails the others are stopped and the
launcher exits with the first failing status (a signal -S becomes 128 + S).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

GRACE_S = 5.0  # after a failure, how long the other processes get to exit before SIGKILL


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(base: dict, process_id: int, num_processes: int, devices: int, coordinator: str) -> dict:
    env = dict(base)
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=" ".join(flags + [f"--xla_force_host_platform_device_count={devices}"]),
        JAX_COORDINATOR_ADDRESS=coordinator,
        JAX_NUM_PROCESSES=str(num_processes),
        JAX_PROCESS_ID=str(process_id),
        PYTHONUNBUFFERED="1",
    )
    return env


def _pump(stream, prefix: str) -> None:
    for line in iter(stream.readline, ""):
        sys.stdout.write(prefix + line)
        sys.stdout.flush()
    stream.close()


def launch(
    train_args: Sequence[str],
    num_processes: int,
    devices_per_process: int,
    port: int | None = None,
    command: Sequence[str] | None = None,
) -> int:
    """Start the processes, relay their output, return 0 or the first failure's exit status."""
    coordinator = f"127.0.0.1:{port or free_port()}"
    cmd = list(command or [sys.executable, "-m", "prn_jax.cli", "train"]) + list(train_args)
    procs = [
        subprocess.Popen(
            cmd,
            env=child_env(os.environ, i, num_processes, devices_per_process, coordinator),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(num_processes)
    ]
    pumps = [
        threading.Thread(target=_pump, args=(p.stdout, f"[p{i}] "), daemon=True) for i, p in enumerate(procs)
    ]
    for t in pumps:
        t.start()
    failure = 0
    try:
        while [p.poll() for p in procs].count(None):  # polls every process (no short-circuit)
            failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
            if failed:
                failure = failed[0]
                break
            time.sleep(0.1)
        else:
            failure = next((p.returncode for p in procs if p.returncode), 0)
    except KeyboardInterrupt:
        failure = -signal.SIGINT  # or SIGTERM, see main()
    finally:
        _stop(procs)
        for t in pumps:
            t.join(timeout=5)
    if failure:
        print(f"[launcher] a process failed with status {failure}; stopped the others", file=sys.stderr)
    return 128 - failure if failure < 0 else failure


def _stop(procs: list[subprocess.Popen]) -> None:
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.terminate()
    deadline = time.monotonic() + GRACE_S
    for p in running:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, train_args = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    parser = argparse.ArgumentParser(
        prog="python -m launch.local_multiprocess",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Arguments after -- go to `prn-jax train`.",
    )
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument("--devices-per-process", type=int, default=1)
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    args = parser.parse_args(ours)
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children when the launcher is stopped
    if args.num_processes < 1 or args.devices_per_process < 1:
        parser.error("--num-processes and --devices-per-process must be >= 1")
    return launch(train_args, args.num_processes, args.devices_per_process, args.port)


if __name__ == "__main__":
    sys.exit(main())
