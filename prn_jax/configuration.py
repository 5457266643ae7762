"""Loading, overriding and validating experiment configs (ml_collections `get_config()` files).

A config is named by a path (`configs/paper.py`) or by the name of a file in the repository's
`configs/` folder (`paper`), which is installed as the package `prn_jax.configs`. Overrides are
`--config.FIELD=VALUE` / `FIELD=VALUE` strings; values are parsed as Python literals and must keep
the field's type.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable
from pathlib import Path

import ml_collections

import prn_jax.configs
from prn_jax import augment, loss, model, plugins, representation
from prn_jax.model import conv_ops, decoder_ops

CONFIGS_DIR = Path(prn_jax.configs.__file__).resolve().parent
DTYPES = ("float32", "bfloat16")


class ConfigError(ValueError):
    """A config field has an impossible value; the message names the field."""


def config_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".py" and path.exists():
        return path
    candidate = CONFIGS_DIR / f"{name_or_path}.py"
    if candidate.exists():
        return candidate
    known = ", ".join(
        sorted(
            str(p.relative_to(CONFIGS_DIR).with_suffix(""))
            for p in CONFIGS_DIR.rglob("*.py")
            if p.stem != "__init__"
        )
    )
    raise ConfigError(f"config {name_or_path!r} not found (neither a .py file nor one of: {known})")


def load_config(name_or_path: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
    """Import `get_config()` from a config file and apply overrides ("a.b=1", "--config.a.b=1").

    `NAME:ARG` (e.g. `paper:local`) calls `get_config(ARG)`, big_vision's way of offering
    variants of one recipe from one file.
    """
    module, arg = load_module(name_or_path)
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except TypeError as e:
        raise ConfigError(f"config {name_or_path!r} takes no argument: {e}") from e
    except ValueError as e:
        raise ConfigError(f"config {name_or_path!r}: {e}") from e
    for item in overrides:
        apply_override(config, item)
    return config


def load_module(name_or_path: str):
    """(the config file's module, its ARG of `NAME:ARG` or "")."""
    name, _, arg = (
        str(name_or_path).partition(":") if not Path(name_or_path).exists() else (name_or_path, "", "")
    )
    path = config_path(name)
    # Config files import their siblings as `prn_jax.configs.paper`.
    spec = importlib.util.spec_from_file_location(f"_prn_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config {path}: defines no get_config()")
    return module, arg


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
    text = item[len("--config.") :] if item.startswith("--config.") else item
    if "=" not in text:
        raise ConfigError(f"override {item!r} must look like FIELD=VALUE")
    key, raw = text.split("=", 1)
    parent = config
    *scopes, leaf = key.split(".")
    for scope in scopes:
        if scope not in parent or not isinstance(parent[scope], ml_collections.ConfigDict):
            raise ConfigError(f"override {item!r}: config has no section {scope!r}")
        parent = parent[scope]
    if leaf not in parent:
        raise ConfigError(f"override {item!r}: config has no field {key!r}")
    old = parent[leaf]
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # bare strings
    if isinstance(old, bool) != isinstance(value, bool) and old is not None:
        raise ConfigError(f"override {item!r}: field {key!r} is {type(old).__name__}")
    if isinstance(old, float) and isinstance(value, int):
        value = float(value)
    if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    if old is not None and not isinstance(value, type(old)):
        raise ConfigError(
            f"override {item!r}: field {key!r} needs a {type(old).__name__}, got {type(value).__name__}"
        )
    parent[leaf] = value


def validate_config(config: ml_collections.ConfigDict, device_count: int) -> None:
    """Fail before any compilation on an impossible value, naming the field."""

    def need(ok: bool, field: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"config.{field} = {_get(config, field)!r}: {why}")

    need(
        isinstance(config.image_size, int) and config.image_size >= 32 and config.image_size % 32 == 0,
        "image_size",
        "must be a positive multiple of 32 (the encoder halves it 5 times)",
    )
    need(
        isinstance(config.width, int) and config.width >= 2 and config.width % 2 == 0,
        "width",
        "must be an even integer >= 2",
    )
    need(config.dtype in DTYPES, "dtype", f"must be one of {DTYPES}")
    need(
        config.decoder_impl in decoder_ops.DECODER_IMPLS,
        "decoder_impl",
        f"must be one of {decoder_ops.DECODER_IMPLS}",
    )
    need(
        config.get("encoder_conv_impl", "xla") in conv_ops.CONV_IMPLS,
        "encoder_conv_impl",
        f"must be one of {conv_ops.CONV_IMPLS}",
    )
    for field, resolve, default in (
        ("loss", loss.resolve_loss, "weighted_l2"),
        ("representation", representation.resolve, "position"),
    ):
        try:
            resolve(config.get(field, default))
        except plugins.PluginError as e:
            raise ConfigError(f"config.{field} = {config.get(field)!r}: {e}") from None
    ratios = tuple(config.weight_ratios)
    need(
        len(ratios) == loss.NUM_REGIONS and all(r >= 0 for r in ratios) and any(r > 0 for r in ratios),
        "weight_ratios",
        "needs 4 non-negative numbers, at least one positive",
    )
    need(0 <= config.bn_momentum < 1, "bn_momentum", "must be in [0, 1)")
    need(config.get("bn_impl", "flax") in model.BN_IMPLS, "bn_impl", f"must be one of {model.BN_IMPLS}")
    need(
        isinstance(config.get("bn_fast_variance", False), bool),
        "bn_fast_variance",
        "must be True or False (configs saved before bn_impl)",
    )
    need(
        isinstance(config.get("flat_optimizer_state", False), bool),
        "flat_optimizer_state",
        "must be True or False",
    )
    need(config.l2_regularization >= 0, "l2_regularization", "must be >= 0")
    need(
        isinstance(config.get("z_offset_weight", 1.0), float) and config.get("z_offset_weight", 1.0) >= 0,
        "z_offset_weight",
        "must be a float >= 0",
    )
    need(config.learning_rate > 0, "learning_rate", "must be > 0")
    need(config.lr_decay_epochs > 0, "lr_decay_epochs", "must be > 0")
    need(0 < config.lr_decay_factor <= 1, "lr_decay_factor", "must be in (0, 1]")
    need(
        config.num_devices == -1 or 1 <= config.num_devices <= device_count,
        "num_devices",
        f"must be -1 or between 1 and the {device_count} local devices",
    )
    devices = device_count if config.num_devices == -1 else config.num_devices
    need(
        config.batch_size > 0 and config.batch_size % devices == 0,
        "batch_size",
        f"must be a positive multiple of the device count ({devices})",
    )
    need(
        config.data.num_train_examples >= config.batch_size,
        "data.num_train_examples",
        f"must be at least one global batch ({config.batch_size})",
    )
    need(
        config.num_epochs > 0 or config.num_steps > 0,
        "num_epochs",
        "num_epochs or num_steps must be positive",
    )
    try:
        augment.AugmentParams.from_config(config)
    except (KeyError, ValueError) as e:
        raise ConfigError(str(e).strip("'\"")) from e
    for field in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "steps_per_dispatch"):
        need(_get(config, field) > 0, field, "must be > 0")
    k = config.steps_per_dispatch
    for field in ("log_every_steps", "checkpoint_every_steps"):
        need(_get(config, field) % k == 0, field, f"must be a multiple of steps_per_dispatch ({k})")
    need(
        total_steps(config) % k == 0,
        "num_steps",
        f"the run length ({total_steps(config)} steps) must be a multiple of steps_per_dispatch ({k})",
    )


def _get(config, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def steps_per_epoch(config) -> int:
    return max(1, config.data.num_train_examples // config.batch_size)


def total_steps(config) -> int:
    return config.num_steps if config.num_steps > 0 else config.num_epochs * steps_per_epoch(config)
