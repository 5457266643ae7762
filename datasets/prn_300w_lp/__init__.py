"""tfds builder `prn_300w_lp`: 300W-LP fits -> PRNet training examples."""

from datasets.prn_300w_lp.prn_300w_lp_dataset_builder import BuildReport, Prn300wLp, Prn300wLpConfig
