"""`prn-jax bench optimizer-layout`: the train step with per-parameter vs flat Adam moments
(`config.flat_optimizer_state` False / True), in one process, timed in alternation.

Prints each side's first step (compile + run) and the median of the timed steps, and their ratio:

    prn-jax bench optimizer-layout --config paper --steps 4
    prn-jax bench optimizer-layout --config tiny --steps 20 --config.width=2
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from prn_jax import configuration
from prn_jax import loss as loss_lib
from prn_jax.data import train_data
from prn_jax.train.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="paper")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per side")
    args, overrides = parser.parse_known_args(argv)
    sides = {}  # flat -> {"trainer", "state", "batch", "weights", "times"}
    for flat in (False, True):
        config = configuration.load_config(
            args.config,
            ["data.source='generated'", *overrides, "num_devices=1", f"flat_optimizer_state={flat}"],
        )
        trainer = Trainer(config)
        side = {
            "trainer": trainer,
            "state": trainer.init_state(),
            "times": [],
            "weights": trainer.place(
                jnp.asarray(loss_lib.weight_map(train_data.region_labels(config), config.weight_ratios))
            ),
            "batch": trainer.place_batch(next(train_data.make_batches(config, 0, 1))),
        }
        first = _timed_step(side)
        print(f"flat_optimizer_state={flat}: first step (compile + run) {first:.1f} s", flush=True)
        sides[flat] = side
    for _ in range(args.steps):
        for side in sides.values():
            side["times"].append(_timed_step(side))
    for flat, side in sides.items():
        print(
            f"flat_optimizer_state={flat}: step median {statistics.median(side['times']):.3f} s "
            f"({', '.join(f'{t:.3f}' for t in side['times'])})"
        )
    ratio = statistics.median(sides[True]["times"]) / statistics.median(sides[False]["times"])
    print(f"ratio flat / per-parameter: {ratio:.3f}")
    return 0


def _timed_step(side: dict) -> float:
    """Run one train step on `side` (its state replaced by the result); seconds taken."""
    start = time.perf_counter()
    side["state"] = jax.block_until_ready(
        side["trainer"].step(side["state"], side["batch"], side["weights"])[0]
    )
    return time.perf_counter() - start
