"""The paper's recipe: resfcn256 at 256x256, width 16, batch 16, Adam 1e-4 halved every 5 epochs,
the 16:4:3:0 weight map and the paper's augmentation, on 300W-LP.

Data: the prn_300w_lp tfds dataset and the face model's UV assets (BFM.mat + BFM_UV.mat from
face3d, or PRNet's uv-data). Without them `train` refuses and names the build command:

  prn-jax build --data-dir data/tfds --manual-dir /data/300W-LP-parent --model /data/BFM \\
      --dataset both --map-size 256
  prn-jax train --config paper --workdir runs/paper \\
      --config.data.dir=data/tfds --config.data.model_dir=/data/BFM

Time and result: not run on these machines (no 300W-LP here, no GPU lent). One step of batch 16
takes 4.4 s on a 2-core CPU (BUILD_NOTES, current figures), so 30 epochs of 122,450 examples
(229,590 steps) are for accelerators; PRNet reports 3.62% mean NME on AFLW2000-3D.

`paper:local` (get_config("local")) is the same recipe shrunk to run on the embedded default in
minutes: 64x64 maps, width 8, 600 steps, the main job's data (`bash scripts/main_job.sh` makes
it). It is not the paper's experiment and does not reach its numbers (1e-4 over 600 steps is far
from converged): it is for trying a change of the recipe before sending it to a pod.

  prn-jax train --config paper:local --workdir runs/paper_local
  prn-jax eval --workdir runs/paper_local --checkpoint best --checkpoint last \
      --data runs/default/data/synth/AFLW2000

Measured on a 2-core CPU, 2026-12-02: 2 min 30 s for the 600 steps; on the synthetic test set
the validation-chosen checkpoint (step 200) has a 68-point 2D NME of 39.95% (mean face 18.86%):
at lr 1e-4 and BatchNorm momentum 0.999 the paper's recipe has not started to learn in 600
steps, which is what `cpu_default` changes.
"""

import ml_collections

from prn_jax.augment import AugmentParams


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The paper's recipe ("") or its local variant ("local", module docstring)."""
    if variant not in ("", "local"):
        raise ValueError(f"unknown variant {variant!r}: paper takes '' or 'local'")
    c = ml_collections.ConfigDict()
    c.seed = 0  # determines init, data order and augmentation
    # Model (docs/network.md).
    c.image_size = 256  # input crop and UV map size S (divisible by 32)
    c.width = 16  # base width; 16 gives 13,353,618 parameters
    c.dtype = "float32"  # compute dtype: float32 or bfloat16 (params stay float32)
    c.bn_momentum = 0.999  # BatchNorm moving-statistics decay (TF default)
    c.bn_impl = "fused"  # fused | flax | flax_fast_variance: BatchNorm + activation;
    # fused: one op, hand-written gradient, single-pass float32
    # statistics (prn_jax.model.batch_norm), fastest (BUILD_NOTES #9)
    c.decoder_impl = "subpixel"  # reference | flipped_conv | subpixel: same function, same
    # parameters (prn_jax.model.decoder_ops); subpixel is fastest
    c.encoder_conv_impl = "xla"  # xla | fast_grad: same function; fast_grad computes the
    # stride-2 input gradients by sub-pixel (prn_jax.model.conv_ops),
    # ~1 s/step faster on CPU, but jax 0.10.2 crashed writing its
    # train step to a persistent compilation cache (BUILD_NOTES #9)
    # Loss (docs/training.md).
    c.loss = "weighted_l2"  # weighted_l2 | euclidean | l1 | an import path module:function
    # (your own loss, prn_jax.loss's docstring gives the signature)
    # What the network regresses (prn_jax.representation): position (the paper's: the position
    # map / 1.1 S) | mean_offset (its offset from the mean face's map) | an import path.
    c.representation = "position"
    c.weight_ratios = (16.0, 4.0, 3.0, 0.0)  # keypoints : eyes/nose/mouth : face : neck
    # Weight of each example's mean depth error (the z offset, unobservable: targets put min z at
    # 0 over the whole mesh) against the rest of the error; 1 = the paper's plain loss.
    c.z_offset_weight = 1.0
    c.l2_regularization = 0.0  # TF PRNet used 2e-4 * sum(w^2) / 2 on conv weights
    # Optimisation (docs/training.md).
    c.batch_size = 16  # global batch, split over num_devices
    c.num_devices = -1  # -1: all local devices
    c.learning_rate = 1e-4
    c.flat_optimizer_state = True  # Adam's moments as one vector each (fewer kernels, faster
    # compile, same update). False: one per parameter (as saved
    # before 2026-12-02)
    c.lr_decay_epochs = 5  # staircase: lr *= lr_decay_factor every lr_decay_epochs
    c.lr_decay_factor = 0.5
    c.num_epochs = 30
    c.num_steps = -1  # -1: num_epochs * steps_per_epoch
    # On-device augmentation (docs/training.md; prn_jax.augment.AugmentParams): rotation
    # U(-45, 45) deg, translation up to 10% of S, scale U(0.9, 1.2), colour U(0.6, 1.4),
    # noise-texture occlusion. Applied inside the pmapped step; never at evaluation.
    c.augment = AugmentParams().to_config()
    # Data.
    c.data = ml_collections.ConfigDict()
    # tfds: prn_300w_lp streamed from the host | device: prn_300w_lp loaded once into device memory,
    # batches gathered there (prn_jax.data.device_data) | generated: procedural arrays (tests, benchmarks)
    c.data.source = "tfds"
    c.data.num_train_examples = 122450  # steps per epoch (tfds: replaced by the dataset's size)
    c.data.dir = ""  # tfds data dir holding the prepared builder
    c.data.builder = "prn_300w_lp"
    c.data.builder_config = ""  # "" = f"size{image_size}"
    c.data.split = "train"
    c.data.model_dir = ""  # BFM.mat + BFM_UV.mat (or PRNet uv-data): region labels
    c.data.num_threads = 2  # grain read threads
    c.data.worker_count = 0  # grain worker processes (0: threads of this process)
    c.data.prefetch_batches = 2
    c.data.maps_on_device = False  # True: send fits (~1 KB), render the maps in the step (needs BFM.mat)
    # data.source = "device": the memory of one device (0: what the device reports; on CPU the
    # host's memory shared by its devices) and the share of it the training set may take.
    c.data.device_memory_bytes = 0
    c.data.device_memory_fraction = 0.5
    # Periodic validation (68-point NME) on the training dataset's validation split, held out by
    # identity (never the test set), logged with the training metrics; the checkpoint with the
    # lowest val_nme2d_68 is kept in WORKDIR/best (`--checkpoint best`).
    c.eval_every_steps = 0  # 0: off
    c.eval_limit = 64  # validation images used
    # Test set that `prn-jax sweep` evaluates each finished run on (`prn-jax eval --data`;
    # AFLW2000-3D folder or tfds dir); "" = none. `train` never reads it.
    c.test_data = ""
    # Step-time hygiene.
    c.steps_per_dispatch = 1  # >1: scan this many train steps inside one device call
    c.compilation_cache_dir = ""  # persistent XLA compilation cache ("" = off)
    # Bookkeeping.
    c.log_every_steps = 100
    c.checkpoint_every_steps = 2000
    c.keep_checkpoints = 3
    if variant == "local":
        c.image_size = 64
        c.width = 8
        c.num_steps = 600
        c.data.dir = "runs/default/data/tfds"
        c.data.model_dir = "runs/default/data/synth/model"
        c.eval_every_steps = 200
        c.eval_limit = 32
        c.test_data = "runs/default/data/synth/AFLW2000"
        c.log_every_steps = 50
        c.checkpoint_every_steps = 200
    return c
