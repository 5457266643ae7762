"""`prn-jax bench sweep`: a sweep's cost per run against plain `train` runs, in one process.

The same N runs (the tiny config on procedural data; seeds and weight ratios differ, so they
share one compiled program) are trained twice in temporary folders:
- "separate": each as a plain `train` in a new process would, compiling its programs again (the
  process's program cache is emptied before each run; process start-up itself is not counted);
- "sweep": through `experiments.runner.run_local`, which reuses the compiled programs.
Prints the seconds per run of each, and the compile time the sweep saves per run.

    prn-jax bench sweep --runs 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from prn_jax import configuration
from prn_jax.experiments import runner
from prn_jax.experiments import sweep as sweep_lib
from prn_jax.train import loop
from prn_jax.train import trainer as trainer_lib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=4, help="runs of each kind (>= 2)")
    parser.add_argument("--steps", type=int, default=16, help="train steps per run")
    args, overrides = parser.parse_known_args(argv)
    base = [o.removeprefix("--config.") for o in overrides]
    base += [f"num_steps={args.steps}", "checkpoint_every_steps=8", "log_every_steps=8"]
    axes = sweep_lib.product(
        sweep_lib.axis("weight_ratios", [(16.0, 4.0, 3.0, 0.0), (1.0, 1.0, 1.0, 0.0)]),
        sweep_lib.seeds((args.runs + 1) // 2),
    )[: args.runs]
    runs = []
    for i, run in enumerate(axes):
        config = configuration.load_config("tiny", base)
        for key, value in run.items():
            configuration.apply_override(config, f"{key}={value!r}")
        runs.append(sweep_lib.PlannedRun(i, sweep_lib.run_name(run), run, config))
    quiet = lambda message: None  # noqa: E731
    cached = dict(trainer_lib._programs)  # restored after: the benchmark must not cost the caller
    try:
        with tempfile.TemporaryDirectory(prefix="prn_bench_sweep_") as tmp:
            separate = []
            for run in runs:
                trainer_lib._programs.clear()  # what a new `prn-jax train` process starts with
                t0 = time.perf_counter()
                loop.train_and_evaluate(run.config, Path(tmp) / "separate" / run.name, log=quiet)
                separate.append(time.perf_counter() - t0)
            trainer_lib._programs.clear()
            result = runner.run_local(runs, Path(tmp) / "sweep", log=quiet)
            swept = [result["seconds"][run.name] for run in runs]
    finally:
        trainer_lib._programs.clear()
        trainer_lib._programs.update(cached)
    print(f"{args.runs} runs of {args.steps} steps (tiny config, one compiled program), seconds per run:")
    print(f"  separate (compiles every run): {', '.join(f'{s:.2f}' for s in separate)}")
    print(f"  sweep (one process):           {', '.join(f'{s:.2f}' for s in swept)}")
    later_separate, later_sweep = statistics.median(separate[1:]), statistics.median(swept[1:])
    print(
        f"runs after the first: median {later_separate:.2f} s separate vs {later_sweep:.2f} s in the sweep "
        f"(ratio {later_sweep / later_separate:.2f}); compile time saved per run: "
        f"{later_separate - later_sweep:.2f} s"
    )
    print(
        f"sweep overhead of its first run over a plain run: {swept[0] - separate[0]:+.2f} s "
        f"(the sweep's bookkeeping; both compile)"
    )
    return 0
