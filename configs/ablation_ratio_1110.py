"""Paper Table 3 ablation: weight ratio 1:1:1:0 instead of 16:4:3:0; otherwise the paper recipe
(configs/paper.py), so it needs the same data (the prn_300w_lp tfds dataset and the face model).

  prn-jax train --config ablation_ratio_1110 --workdir runs/ratio_1110 \\
      --config.data.dir=data/tfds --config.data.model_dir=/data/BFM

Time and result: not run on these machines (no 300W-LP, no GPU lent); the paper's Table 3 gives
the ablation's published numbers. On the embedded default the same change is one override of
`paper:local`: `--config.weight_ratios="(1, 1, 1, 0)"`.
"""

import ml_collections

from prn_jax.configs import paper


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The ablation on the paper's recipe, or on `paper:local` ("local")."""
    c = paper.get_config(variant)
    c.weight_ratios = (1.0, 1.0, 1.0, 0.0)
    return c
