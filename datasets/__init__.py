"""prn-jax's tfds builders (one folder per dataset), installed as `prn_jax.datasets`.

This folder is never a top-level `datasets` package: that name belongs to Hugging Face datasets.
"""

if __name__ != "prn_jax.datasets":
    raise ImportError(
        f"{__file__} holds prn-jax's tfds builders and is importable only as prn_jax.datasets "
        f"(imported here as {__name__!r} because the current directory is the prn-jax checkout)"
    )
