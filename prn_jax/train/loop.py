"""The training loop: `train_and_evaluate(config, workdir)`, metrics logging, checkpoints and
the best-on-validation checkpoint.

The loop hands periodic evaluation a state and gets scores back (`evaluation.periodic`); it owns
every side effect of training (files, logs, checkpoints).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

from prn_jax import checkpointing, configuration
from prn_jax import loss as loss_lib
from prn_jax.checkpointing import Checkpointer
from prn_jax.data import eval_data, train_data
from prn_jax.evaluation import periodic
from prn_jax.geometry import model_assets
from prn_jax.train import preemption
from prn_jax.train import step as step_lib
from prn_jax.train.trainer import Trainer, stack_dispatch, to_host


def make_periodic_eval(config, log: Callable[[str], None], context=None):
    """evaluate(state) -> {"val_nme2d_68": ...} on the first `config.eval_limit` records of the
    training dataset's validation split (never the test set), or None when
    `config.eval_every_steps` is 0; context: the run's `representation.Context`."""
    if not config.eval_every_steps:
        return None
    if config.data.source not in train_data.FILE_SOURCES:
        raise configuration.ConfigError(
            f"config.eval_every_steps = {config.eval_every_steps}: periodic validation reads the "
            f"validation split of the tfds dataset; config.data.source = {config.data.source!r} has none "
            f"(set eval_every_steps = 0)"
        )
    assets = model_assets.load_assets(config.data.model_dir, config.image_size)[0]
    try:
        examples = eval_data.validation_examples(config, config.eval_limit)
    except FileNotFoundError as e:
        raise configuration.ConfigError(
            f"config.eval_every_steps = {config.eval_every_steps}: {e}; or set eval_every_steps = 0"
        ) from e
    log(
        f"periodic validation every {config.eval_every_steps} steps on {len(examples)} held-out images "
        f"({eval_data.VALIDATION_SPLIT} split of {config.data.dir})"
    )
    return periodic.make_periodic_evaluator(config, examples, assets, context=context)


def train_and_evaluate(config, workdir: str | Path, log: Callable[[str], None] = print) -> dict:
    """Train from scratch or resume from WORKDIR's latest checkpoint.

    Returns {"state", "last_metrics", "trace_count", "step", "stopped_by"}: the final state and
    logged metrics; how often the step was traced (compiled) during this call: 1, or 0 when this
    process had already compiled the same programs (see `Trainer`); the step reached; and the
    signal's name ("SIGTERM", "SIGINT") when a signal stopped the run early (`preemption`: a
    checkpoint was saved at that step; rerunning resumes exactly), else "".

    Writes WORKDIR/run.json (config, provenance, status: running, stopped or finished),
    WORKDIR/metrics.jsonl (one line per logged step) and WORKDIR/checkpoints/. The step
    runs under `jax.transfer_guard("disallow")`: batches are put on the devices explicitly and
    metrics fetched explicitly, so any hidden host round-trip inside the loop is an error.
    """
    workdir = Path(workdir)
    if jax.process_index() != 0:
        log = lambda message: None  # noqa: E731 - only process 0 reports
    if config.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(config.compilation_cache_dir))
    given = copy.deepcopy(config)  # run.json records the config as given (before data sizes)
    train_data.prepare_data_config(config)
    trainer = Trainer(config)  # validates the config before any compilation
    total = configuration.total_steps(config)
    log(f"data:        {train_data.describe(config)}")
    if config.data.source == "generated":
        log(
            "warning: procedural arrays (a grid of 64 'keypoints', no faces) - for smoke runs, tests "
            "and benchmarks; set config.data.source = 'tfds' to train on prn_300w_lp"
        )
    log(
        f"run:         {total} steps ({total / configuration.steps_per_epoch(config):.1f} epochs of "
        f"{configuration.steps_per_epoch(config)} steps), global batch {config.batch_size} on "
        f"{trainer.num_devices} {jax.default_backend()} device(s), {config.image_size}x{config.image_size} "
        f"maps, width {config.width}, {config.dtype}"
    )
    log(f"checkpoints: {Path(workdir).resolve() / 'checkpoints'} (config, seed, versions, git revision)")
    traces_before = trainer.trace_count
    labels, geometry, context = train_data.training_geometry(config)
    weights = trainer.place(jnp.asarray(loss_lib.weight_map(labels, config.weight_ratios)))
    geometry = trainer.place(geometry) if geometry is not None else None
    run_inputs = trainer.place(step_lib.run_inputs(config, context))
    periodic_eval = make_periodic_eval(config, log, context)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(workdir, config)
    resident = train_data.make_resident(config, trainer.mesh, log)  # None unless data.source = device
    data_iterator = train_data.make_data_iterator(config, trainer.num_local_devices)
    latest = ckpt.latest_step()
    if latest is None:
        state = trainer.init_state()
    else:
        state = ckpt.restore(latest, trainer.abstract_state(), data_iterator)
        log(f"resumed from {ckpt.directory / str(latest)}")
    start = int(to_host(state.step))
    k = config.steps_per_dispatch
    lead = jax.process_index() == 0
    if lead:
        write_run_record(workdir, given, total, start, "running" if start < total else "finished")
    logger = MetricsLogger(workdir, start, enabled=lead)
    best = BestCheckpoint(workdir, config, logger.history) if periodic_eval else None
    batches = (
        data_iterator
        if data_iterator is not None
        else train_data.make_batches(config, start, trainer.num_local_devices)
    )
    batches = stack_dispatch(batches, k)
    log(
        f"training steps {start}..{total} on {trainer.num_devices} {jax.default_backend()} device(s), "
        f"global batch {config.batch_size}, {configuration.steps_per_epoch(config)} steps/epoch"
    )
    if start >= total:
        log(f"already finished: step {start} of {total}; nothing to train")
    elif trainer.trace_count == traces_before:
        log("compiling the train step (the first step waits for it)")
    last, t0, done = {}, time.perf_counter(), start
    stop = preemption.StopSignal()
    with stop:
        for step in range(start, total, k):
            batch = trainer.place_batch(next(batches))
            with jax.transfer_guard("disallow"):
                state, metrics = trainer.step(state, batch, weights, geometry, run_inputs, resident)
            done = step + k
            if done % config.log_every_steps == 0 or done == total:
                last = {k_: float(to_host(v)) for k_, v in metrics.items()}
                last["seconds"] = round(time.perf_counter() - t0, 3)
                logger.write(done, last)
                log(
                    f"step {done}/{total}  loss {last['loss']:.6f}  lr {last['learning_rate']:.2e}  "
                    f"({last['seconds']:.1f}s)"
                )
            if periodic_eval and (done % config.eval_every_steps == 0 or done == total):
                scores = periodic_eval(jax.tree.map(to_host, state))
                logger.write(done, scores)
                log(f"step {done}/{total}  eval " + "  ".join(f"{n} {v:.4f}" for n, v in scores.items()))
                best.update(done, scores, state)
            stopping = stop.should_stop()  # every process calls it after every dispatch
            if done % config.checkpoint_every_steps == 0 or done == total or stopping:
                ckpt.save(done, state, data_iterator)
            if stopping and done < total:
                break
        ckpt.close()
    logger.close()
    if best:
        best.close()
    status = "finished" if done >= total else "stopped"
    if lead:
        write_run_record(workdir, given, total, done, status)
    if done < total:
        log(
            f"{stop.name}: stopped at step {done} of {total}; saved {ckpt.directory / str(done)}; "
            f"run the same command again to resume"
        )
    return {
        "state": state,
        "last_metrics": last,
        "trace_count": trainer.trace_count - traces_before,
        "step": done,
        "stopped_by": stop.name if done < total else "",
    }


def write_run_record(workdir: Path, config, total: int, step: int, status: str) -> None:
    """WORKDIR/run.json: the run's config as given (before `prepare_data_config`) and provenance
    (`checkpointing.run_metadata`), its length, the step reached and its status (running,
    stopped, finished), written atomically."""
    record = {
        "status": status,
        "step": int(step),
        "total_steps": int(total),
        **checkpointing.run_metadata(config),
    }
    tmp = workdir / ".run.json.partial"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(workdir / "run.json")


def read_run_record(workdir: str | Path) -> dict | None:
    """WORKDIR/run.json as written by `write_run_record`, or None when absent."""
    path = Path(workdir) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else None


class MetricsLogger:
    """Appends {"step": ..., metrics} lines to WORKDIR/metrics.jsonl and writes the same scalars
    as TensorBoard events (WORKDIR/tensorboard); lines past the resumed step are dropped first."""

    def __init__(self, workdir: Path, start_step: int, enabled: bool = True):
        self.path = workdir / "metrics.jsonl"
        self.enabled = enabled
        self.history = read_log(workdir) if enabled else []
        self.history = [r for r in self.history if r["step"] <= start_step]
        self.writer = None
        if enabled:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(workdir / "tensorboard"), purge_step=start_step + 1)

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        record = {"step": step, **scalars}
        self.history.append(record)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer:
            self.writer.close()


class BestCheckpoint:
    """Keeps the state with the lowest `BEST_METRIC` (validation split) in WORKDIR/best (one Orbax
    step): the checkpoint `--checkpoint best` names."""

    def __init__(self, workdir: Path, config, history: list[dict]):
        self.checkpointer = Checkpointer(workdir, config, keep=1, subdir="best")
        past = [r[BEST_METRIC] for r in history if BEST_METRIC in r]
        self.best = min(past) if past else float("inf")

    def update(self, step: int, scores: dict, state) -> None:
        value = scores.get(BEST_METRIC)
        if value is not None and value < self.best:
            self.best = value
            self.checkpointer.save(step, state)

    def close(self) -> None:
        self.checkpointer.close()


BEST_METRIC = "val_nme2d_68"


def read_log(workdir: str | Path) -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
