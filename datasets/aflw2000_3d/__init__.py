"""tfds builder `aflw2000_3d`: AFLW2000-3D evaluation examples."""

from prn_jax.datasets.aflw2000_3d.aflw2000_3d_dataset_builder import Aflw20003d, Aflw20003dConfig
