"""The paper's recipe: resfcn256 at 256x256, width 16, batch 16, Adam 1e-4 halved every 5 epochs.

  prn-jax train --config configs/paper.py --workdir runs/paper
"""

import ml_collections

from prn_jax.augment import AugmentParams


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0                      # determines init, data order and augmentation
    # Model (REFERENCE.md section 2).
    c.image_size = 256              # input crop and UV map size S (divisible by 32)
    c.width = 16                    # base width; 16 gives 13,353,618 parameters
    c.dtype = "float32"             # compute dtype: float32 or bfloat16 (params stay float32)
    c.decoder_impl = "subpixel"     # reference | flipped_conv | subpixel: same function, same
                                    # parameters (prn_jax.decoder_ops); subpixel is fastest
    # Loss (REFERENCE.md section 3).
    c.loss = "weighted_l2"          # weighted_l2 | euclidean | l1
    c.weight_ratios = (16.0, 4.0, 3.0, 0.0)  # keypoints : eyes/nose/mouth : face : neck
    c.l2_regularization = 0.0       # TF PRNet used 2e-4 * sum(w^2) / 2 on conv weights
    # Optimisation (REFERENCE.md section 5).
    c.batch_size = 16               # global batch, split over num_devices
    c.num_devices = -1              # -1: all local devices
    c.learning_rate = 1e-4
    c.lr_decay_epochs = 5           # staircase: lr *= lr_decay_factor every lr_decay_epochs
    c.lr_decay_factor = 0.5
    c.num_epochs = 30
    c.num_steps = -1                # -1: num_epochs * steps_per_epoch
    # On-device augmentation (REFERENCE.md section 5; prn_jax.augment.AugmentParams): rotation
    # U(-45, 45) deg, translation up to 10% of S, scale U(0.9, 1.2), colour U(0.6, 1.4),
    # noise-texture occlusion. Applied inside the pmapped step; never at evaluation.
    c.augment = AugmentParams().to_config()
    # Data.
    c.data = ml_collections.ConfigDict()
    c.data.source = "generated"     # generated: procedural arrays (no files)
    c.data.num_train_examples = 122450  # 300W-LP with flips; sets steps per epoch
    # Step-time hygiene.
    c.steps_per_dispatch = 1        # >1: scan this many train steps inside one device call
    c.compilation_cache_dir = ""    # persistent XLA compilation cache ("" = off)
    # Bookkeeping.
    c.log_every_steps = 100
    c.checkpoint_every_steps = 2000
    c.keep_checkpoints = 3
    return c
