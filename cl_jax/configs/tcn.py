"""Time-Contrastive Networks (Sermanet et al. 2018, ICRA, arXiv:1704.06888): triplets of frames
of one clip. See ``cl_jax/methods/tcn.py``.

Presets (``--config=configs/tcn.py:<preset>``):

moving_digits (default) — single-view TCN on clips of the embedded digits moving on a 20x20
canvas (``cl_jax.data.moving_digits``), shipped with the install:
    python -m cl_jax.main --config=configs/tcn.py --workdir=runs/tcn
  An example is a whole clip of 8 frames; one 16x16 crop of it (every frame cut alike);
  positives within 1 frame of the anchor, negatives 3 or more frames away; semi-hard
  triplets, margin 0.2, 32-d embeddings (the paper's size); the shared ConvNet on single
  frames; Adam at 1e-3; batch 64 clips (512 frames). Evaluated on the concatenated frame
  features: the digit's identity (kNN, linear, few-label) and, by ridge regression, its
  position and velocity in the last frame. Seed 0, 178 s on a 2-core CPU (709 steps):
  position R^2 0.928 (random init 0.608), few-label (30 examples) 0.761 ± 0.041 (0.314);
  velocity R^2 0.586 (-0.214), few-label 0.242 ± 0.070 (0.093). The digit's identity is
  not learnt: few-label 0.112 ± 0.024 (random init 0.152), linear 0.604 (0.643), kNN
  0.136 (0.148); every triplet lies within one clip, one digit, so nothing in the loss
  asks for it.

moving_digits_multiview — multi-view TCN: the same clips seen by two synchronised cameras
(the second sees the canvas transposed); the positive of a frame is the other camera's frame
of the same time, the negatives that camera's frames 3 or more steps away.
    python -m cl_jax.main --config=configs/tcn.py:moving_digits_multiview --workdir=runs/mvtcn

The paper's own settings (Inception features of 299x299 robot videos, a 32-d embedding, its
positive and margin ranges in seconds) need video data that does not ship here; no preset
claims them.
"""

from cl_jax import config_lib

PRESETS = ("moving_digits", "moving_digits_multiview")


def get_config(preset=PRESETS[0]):
    if preset not in PRESETS:
        raise config_lib.ConfigError(f"Unknown tcn preset {preset!r}; choose one of "
                                     f"{', '.join(PRESETS)}.")
    cameras = 2 if preset == "moving_digits_multiview" else 1
    c = config_lib.base_config()
    c.method.update(dict(name="tcn", cameras=cameras, embed_dim=32, pos_window=1, neg_gap=3,
                         margin=0.2, mining="semihard"))
    config_lib.moving_digits_preset(c, frame_stack=8, cameras=cameras)
    c.data.clip_length = 8
    c.augment.num_global_views = 1
    c.augment.view1 = config_lib.view(16, crop_scale=(0.64, 0.64), crop_ratio=(1.0, 1.0),
                                      flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0)
    c.optim.update(name="adamw", base_lr=1e-3, weight_decay=0.0, warmup_epochs=0,
                   lr_scaling="none")
    c.batch_size, c.num_epochs = 64, 35
    return c
