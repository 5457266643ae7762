"""Paper Table 3 ablation: weight ratio 1:1:1:1 instead of 16:4:3:0.

prn-jax train --config configs/ablation_ratio_1111.py --workdir runs/ratio_1111
"""

import ml_collections

from prn_jax.configs import paper


def get_config() -> ml_collections.ConfigDict:
    c = paper.get_config()
    c.weight_ratios = (1.0, 1.0, 1.0, 1.0)
    return c
