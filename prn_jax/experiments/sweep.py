"""Sweeps declared next to the config: a config module's `get_sweep()` returns its runs as
override dicts, built with the helpers here (scenic's `hyper.product`/`zipit`, kauldron's
`sweep()` are the models):

    def get_sweep():
        return sweep.product(
            sweep.axis("weight_ratios", [(16.0, 4.0, 3.0, 0.0), (1.0, 1.0, 1.0, 0.0)]),
            sweep.seeds(3),
        )

Each run is the config with its overrides applied (`configuration.apply_override` rules: the
field must exist and keep its type) and lives in ROOT/<run_name(overrides)>.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence

import ml_collections

from prn_jax import configuration

Overrides = dict[str, object]


def axis(field: str, values: Iterable) -> list[Overrides]:
    """One axis: [{field: v} for v in values]."""
    return [{field: v} for v in values]


def seeds(n: int, start: int = 0) -> list[Overrides]:
    """The seed axis: seeds start .. start + n - 1."""
    return axis("seed", range(start, start + n))


def product(*axes: Sequence[Overrides]) -> list[Overrides]:
    """Every combination of one entry per axis, the last axis varying fastest."""
    out: list[Overrides] = [{}]
    for ax in axes:
        out = [{**a, **b} for a in out for b in ax]
    return out


def zipit(*axes: Sequence[Overrides]) -> list[Overrides]:
    """Entry i of every axis together; the axes must have the same length."""
    lengths = {len(ax) for ax in axes}
    if len(lengths) > 1:
        raise ValueError(f"zipit: axes of different lengths {sorted(lengths)}")
    return [{k: v for entry in entries for k, v in entry.items()} for entries in zip(*axes)]


def _value_text(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "-".join(_value_text(v) for v in value)
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(value)).strip("_") or "_"


def run_name(overrides: Mapping[str, object]) -> str:
    """A readable folder name from the overrides, in their order: `loss=l1,weight_ratios=1-1-1-0,seed=0`
    (tuples joined by '-', floats as %g, other characters than [A-Za-z0-9._+-] as '_')."""
    if not overrides:
        return "base"
    return ",".join(f"{key}={_value_text(value)}" for key, value in overrides.items())


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    index: int
    name: str
    overrides: Overrides
    config: ml_collections.ConfigDict


def load_sweep(config_name: str) -> list[Overrides]:
    """The runs of a config module's `get_sweep()` (`NAME:ARG` passes ARG, as for get_config)."""
    module, arg = configuration.load_module(config_name)
    get_sweep = getattr(module, "get_sweep", None)
    if not callable(get_sweep):
        raise configuration.ConfigError(f"config {config_name!r} defines no get_sweep(): not a sweep")
    runs = get_sweep(arg) if arg else get_sweep()
    if not runs or not all(isinstance(r, Mapping) for r in runs):
        raise configuration.ConfigError(f"config {config_name!r}: get_sweep() must return a list of dicts")
    return [dict(r) for r in runs]


def plan(config_name: str, overrides: Sequence[str] = ()) -> list[PlannedRun]:
    """The sweep's runs: config + command-line overrides (for all runs) + the run's overrides."""
    runs = load_sweep(config_name)
    planned, names = [], {}
    for i, run in enumerate(runs):
        config = configuration.load_config(config_name, overrides)
        for key, value in run.items():
            configuration.apply_override(config, f"{key}={value!r}")
        name = run_name(run)
        if name in names:
            raise configuration.ConfigError(
                f"config {config_name!r}: get_sweep() runs {names[name]} and {i} have the same "
                f"overrides ({name})"
            )
        names[name] = i
        planned.append(PlannedRun(i, name, run, config))
    return planned


def config_json(config) -> dict:
    """The config as run.json stores it (JSON types: tuples become lists)."""
    return json.loads(config.to_json())


def flatten(config: Mapping, prefix: str = "") -> dict:
    """Nested dicts -> {dotted key: value}."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
