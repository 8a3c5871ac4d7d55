"""Contrastive Predictive Coding v2 (Hénaff et al. 2020, ICML, arXiv:1905.09272). See
``cl_jax/methods/cpc.py``.

Presets (``--config=configs/cpc.py:<preset>``), each with its source and result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/cpc.py --workdir=runs/cpc
  A 3x3 grid of 4x4 patches at stride 2; the ConvNet (32, 64, 128) with LayerNorm encodes
  each patch; two residual blocks of row-causal convolutions (128 channels) as the context
  network; predictions 1 and 2 rows ahead; per patch, a window shift of up to 1 pixel and
  brightness / contrast jitter 0.2, no
  flips (digits are not mirror-symmetric); Adam (lr 1e-3). About 2 minutes on a 2-core CPU;
  numbers in the README.

imagenet — the grid of CPC v1's ImageNet model (van den Oord et al. 2018, section 3.2), which
  CPC v2 starts from: a 256x256 crop cut into 7x7 patches of 64x64 at stride 32, each moved
  by up to 4 pixels (v1: a random 60x60 sub-crop), predictions up to 5 rows ahead; CPC v2's
  changes as far as its text was checked here: LayerNorm in the encoder (ResNet-50 here, the
  paper's 63.8% linear top-1 model; its best uses a ResNet-161, 71.5%), colour dropping per
  patch (two of three channels dropped), batch 512, about 200 epochs (SimCLR's table C.1 on
  CPC v2). Not checked (no access to the paper's appendix here): v2's own patch sizes,
  context depth and width, optimiser, and its further augmentations (RandAugment's shears and
  rotations, elastic deformations); v1's Adam at lr 2e-4 is used. CPC v2 also predicts from
  below, left and right (four times the tasks); only the top-down direction is implemented.
    python -m cl_jax.main --config=configs/cpc.py:imagenet --workdir=gs://.../cpc
"""

from cl_jax import config_lib

PRESETS = ("digits", "imagenet")


def get_config(preset=PRESETS[0]):
    if preset not in PRESETS:
        raise config_lib.ConfigError(f"Unknown cpc preset {preset!r}; choose one of "
                                     f"{', '.join(PRESETS)}.")
    c = config_lib.base_config()
    c.method.update(dict(name="cpc", patch_size=4, patch_stride=2, context_width=128,
                         context_layers=2, pred_steps=2, patch_shift=1, patch_flip_prob=0.0,
                         patch_jitter=0.2, patch_drop_colour_prob=0.0))
    c.augment.num_global_views = 1
    config_lib.set_data_preset(c, preset)
    c.model.norm = "layer"
    c.optim.update(name="adamw", base_lr=1e-3, lr_scaling="none", weight_decay=0.0,
                   warmup_epochs=0)
    if preset == "digits":
        c.augment.view1 = config_lib.view(8, crop_scale=(0.6, 1.0), flip_prob=0.0,
                                          jitter_prob=0.0, grayscale_prob=0.0)
        c.batch_size, c.num_epochs = 256, 140
    else:
        c.method.update(patch_size=64, patch_stride=32, pred_steps=5, patch_shift=4,
                        context_width=1024, context_layers=5, patch_jitter=0.0,
                        patch_flip_prob=0.0, patch_drop_colour_prob=1.0)
        # v1: a 256 crop of the image resized to 300, flipped, in greyscale; colour is kept
        # here for v2's colour dropping.
        c.augment.view1 = config_lib.view(256, crop_scale=(0.3, 1.0), jitter_prob=0.0,
                                          grayscale_prob=0.0)
        c.eval.update(image_size=256, crop_fraction=0.875)
        c.batch_size, c.num_epochs = 512, 200
        c.optim.base_lr = 2e-4
        c.evals.linear.update(epochs=90, batch_size=4096)
    return c
