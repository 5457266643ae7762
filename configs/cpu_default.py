"""The embedded default's CPU run: 64x64 crops and maps of the synthetic 300W-LP, width 8.

Run by the main job (`bash scripts/main_job.sh`, i.e. `prn-jax main`), which generates the
synthetic data, builds the tfds datasets and fills in the data paths:

  prn-jax train --config configs/cpu_default.py --workdir runs/default/run \
      --config.data.dir=runs/default/data/tfds --config.data.model_dir=runs/default/data/synth/model

Time and result (`bash scripts/main_job.sh` from a fresh clone, 2-core CPU, 2026-12-03): 6 min 52 s
in all, 320 s of it training; the validation-chosen checkpoint (step 2288) reaches, over the 150
synthetic test images, a 68-point 2D NME of 7.67% (mean face 18.86%), 3D 11.56% (27.09%), dense
3D 12.94% (30.98%) and ICP reconstruction 4.05% (4.20%; mean of yaw buckets 4.28% vs 4.94%, but
3.89% vs 3.70% at |yaw| < 30). Synthetic data: not comparable with the paper's numbers.
"""

import ml_collections

from prn_jax.configs import paper


def get_config() -> ml_collections.ConfigDict:
    c = paper.get_config()
    c.image_size = 64
    c.width = 8
    c.batch_size = 16
    c.bn_momentum = 0.9  # moving statistics must settle within a few hundred steps
    c.learning_rate = 1e-3  # short run: the paper's 1e-4 needs ~100x more steps
    c.lr_decay_epochs = 10  # one halving, at step 1,430 (BUILD_NOTES: halving every 5
    # epochs stalled this short run at ~11% NME)
    c.num_epochs = 16  # 2,288 steps of batch 16 over the 2,288 training crops of 143 synthetic
    # subjects (the main job's 1,200 fits x 2 flips, less the 7 subjects held out)
    c.z_offset_weight = 0.1  # the unobservable depth offset at 1/10 weight (BUILD_NOTES)
    # Regress the offset from the mean face's map (prn_jax.representation): against `position`
    # on the main job without augmentation, 3D 13.15 -> 12.31%, dense 3D 17.25 -> 13.49%, ICP
    # 5.84 -> 4.21%, 2D 7.90 -> 8.77% (BUILD_NOTES, 2026-12-02).
    c.representation = "mean_offset"
    # Scale jitter only. Training crops are 1.5x the landmark box (face3d), evaluation's 1.6x
    # (PRNet), so a test face is 0.9375x the size of a training face; trained without
    # augmentation the net predicted faces ~3% too large (ICP 4.21%, a tie with the mean face).
    # Scale 0.9-1.0 covers the test size: 2D 8.77 -> 7.67%, dense 3D 13.49 -> 12.94%, ICP
    # 4.21 -> 4.05% (BUILD_NOTES, issue 22). The paper's full augmentation (rotation, translation,
    # colour, occlusion) leaves this few-minute width-8 run at ~11% NME (issue 7); configs/paper.py
    # keeps it.
    c.augment.enabled = True
    c.augment.rotation_deg = 0.0
    c.augment.translation_frac = 0.0
    c.augment.scale_range = (0.9, 1.0)
    c.augment.color = False
    c.augment.occlusion = False
    c.data.source = "tfds"
    c.data.builder_config = "size64"
    c.log_every_steps = 25
    c.checkpoint_every_steps = 250
    c.keep_checkpoints = 2
    c.eval_every_steps = 250
    c.eval_limit = 256  # all of the validation split (112 crops of 7 subjects in the main job)
    return c
