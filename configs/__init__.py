"""prn-jax's experiment configs (`get_config()` files), installed as `prn_jax.configs`.

Name one on the command line (`--config paper`) or by path (`--config configs/paper.py`).
This folder is never a top-level `configs` package.
"""

if __name__ != "prn_jax.configs":
    raise ImportError(
        f"{__file__} holds prn-jax's configs and is importable only as prn_jax.configs "
        f"(imported here as {__name__!r} because the current directory is the prn-jax checkout)"
    )
