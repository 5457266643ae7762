"""A tiny CPU config for tests and smoke runs: 64x64 maps, width 4, 16 steps on procedural arrays
(no files needed; a grid of 64 "keypoints", not faces: its numbers mean nothing).

  prn-jax train --config tiny --workdir runs/tiny

Time: about a minute on a 2-core CPU, nearly all of it compiling; the loss falls (the overfit
tests in tests/test_train.py check learning on it).
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
