"""Paper Table 3 ablation: weight ratio 1:1:1:1 instead of 16:4:3:0; otherwise the paper recipe
(configs/paper.py), so it needs the same data (the prn_300w_lp tfds dataset and the face model).

  prn-jax train --config ablation_ratio_1111 --workdir runs/ratio_1111 \\
      --config.data.dir=data/tfds --config.data.model_dir=/data/BFM

Time and result: the full recipe is not run on these machines (no 300W-LP, no GPU lent; the
paper's Table 3 has its numbers). Its local variant on the embedded default, measured on a 2-core
CPU on 2026-12-02 (147 s for 600 steps):

  prn-jax train --config ablation_ratio_1111:local --workdir runs/ratio_1111_local

gives a 68-point 2D NME on the synthetic test set of 39.82% at the validation-chosen step 200
and 39.71% at step 600 (16:4:3:0, `paper:local`: 39.95% and 41.04%): not converged, so no
ranking of the ratios can be read from it.
"""

import ml_collections

from prn_jax.configs import paper


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The ablation on the paper's recipe, or on `paper:local` ("local")."""
    c = paper.get_config(variant)
    c.weight_ratios = (1.0, 1.0, 1.0, 1.0)
    return c
