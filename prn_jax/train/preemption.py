"""Stopping on SIGTERM / SIGINT at a step boundary (cluster preemption, Ctrl-C).

While a `StopSignal` is active, the first SIGTERM or SIGINT only sets a flag; the training loop
checks it after each dispatch, saves a checkpoint at the step reached and returns. A second
signal (say, during that save) ends the process at once (exit 128 + signal number): a checkpoint
that Orbax had not finished writing is left as its temporary folder, never read back.

With several processes, each only sees its own signals, so they agree through a collective: at
every call `should_stop` takes the maximum of all processes' flags (one all-gather of one int),
and every process stops after the same step.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import jax
import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """Context manager: SIGTERM/SIGINT request a stop instead of killing the process."""

    def __init__(self):
        self.received: int | None = None  # the first signal's number
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            print(
                f"prn-jax: second {signal.Signals(signum).name}: stopping now, without saving",
                file=sys.stderr,
                flush=True,
            )
            os._exit(128 + signum)
        self.received = signum
        print(
            f"prn-jax: {signal.Signals(signum).name} received: stopping after this step and saving a "
            f"checkpoint (send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # handlers: main thread only
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""

    def should_stop(self) -> bool:
        """True when this process (or, multi-process, any process) received a signal; call it
        at the same points on every process."""
        if jax.process_count() == 1:
            return self.received is not None
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.int32(self.received or 0))
        stop = int(np.max(flags))
        if stop and self.received is None:
            self.received = stop  # another process's signal
        return bool(stop)
