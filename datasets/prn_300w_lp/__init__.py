"""tfds builder `prn_300w_lp`: 300W-LP fits -> PRNet training examples."""

from prn_jax.datasets.prn_300w_lp.prn_300w_lp_dataset_builder import Prn300wLp, Prn300wLpConfig
