"""Augmented Multiscale Deep InfoMax (Bachman et al. 2019, NeurIPS, arXiv:1906.00910; reference
code Philip-Bachman/amdim-public).

InfoNCE between the scales "1" (global), "5" and "7" (local maps) of two augmented views, the
pairings 1->5, 1->7 and 5->5 in both directions, scores scaled by ``1 / sqrt(n_rkhs)``, soft
clipped at ``method.tclip`` (20) and penalised by ``method.score_penalty`` (0.05) ``x mean
score ** 2``; see ``cl_jax/methods/amdim.py``. The scales are stages of the encoder:
``method.scale5_stage`` and ``scale7_stage`` (negative counts from the last), "1" the pooled
features.

Presets (``--config=configs/amdim.py:<preset>``), each with its source and result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/amdim.py --workdir=runs/amdim
  The shared ConvNet (32, 64, 128): "5" is its last, 2x2 map, "7" its 4x4 map (the digits
  have no 5x5 and 7x7 maps), "1" the pooled features. ``n_rkhs`` 128 instead of 1024 (a CPU
  budget: the heads and the scores dominate a step), tclip 20 and the 0.05 regulariser as
  the reference. Two 8x8 views, crop scale (0.3, 1) as the zoo's other digits presets, no
  flip, the reference's colour jitter (0.4, 0.4, 0.4, 0.2) with p=0.8 (brightness and
  contrast only, on the greyscale digits), no grayscale; Adam (betas 0.8 / 0.999, the
  reference's; AdamW's decoupled weight decay 1e-5), lr 1e-3 (the DIM digits preset's; the
  reference's 2e-4 was not tried here) with 50 warmup steps, then cosine; batch 256, 140
  epochs (the zoo's digits convention). 214 s on a 2-core CPU; seed 0: few-label 0.869
  (random init 0.744), kNN 0.986 (0.880), linear 0.992 (0.961).

cifar10 — amdim-public's CIFAR-10 defaults (``train.py``: ``--ndf 128 --n_rkhs 1024
  --n_depth 3 --tclip 20 --batch_size 200 --learning_rate 0.0002``; ``task_self_supervised.py``:
  Adam betas (0.8, 0.999), weight decay 1e-5, 500 warmup steps, 300 epochs with the lr x 0.2
  at epochs 250 and 280; ``datasets.py`` ``TransformsC10``): batch 200, lr 2e-4, 500 warmup
  steps, 300 epochs, ``n_rkhs`` 1024, tclip 20. Not the reference's: the encoder is the
  ConvNet (128, 256, 512, 512) of 3x3 convolutions (strides 1, 2, 2, 2; the reference's
  32x32 encoder is ndf=128 residual blocks of depth 3 down to its 7x7, 5x5 and 1x1 maps), "7"
  its 8x8 map and "5" its 4x4 map; cosine decay instead of the step schedule; AdamW's
  decoupled weight decay 1e-5 instead of Adam's L2 term; the views: the reference flips the
  image once for both views (here each view flips on its own, p=0.5) and translates it by
  up to 4 pixels with reflection padding (p=0.8; here a random crop of scale (0.75, 1),
  ratio 1, resized, stands in), then colour jitter (0.4, 0.4, 0.4, 0.2) p=0.8 and grayscale
  p=0.25, as the reference. Not run here (the paper's CIFAR-10 results were not checked
  against this preset).
    python -m cl_jax.main --config=configs/amdim.py:cifar10 --workdir=runs/amdim_cifar10
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10")


def get_config(preset=PRESETS[0]):
    if preset not in PRESETS:
        raise config_lib.ConfigError(f"Unknown amdim preset {preset!r}; choose one of "
                                     f"{', '.join(PRESETS)}.")
    c = config_lib.base_config()
    c.method.update(dict(name="amdim", n_rkhs=1024, tclip=20.0, score_penalty=0.05,
                         scale5_stage=-1, scale7_stage=-2,
                         weight_1t5=1.0, weight_1t7=1.0, weight_5t5=1.0))
    config_lib.set_data_preset(c, preset)
    c.optim.update(name="adamw", b1=0.8, b2=0.999, weight_decay=1e-5, lr_scaling="none",
                   warmup_epochs=0)
    jitter = dict(jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2,
                  blur_prob=0.0, solarize_prob=0.0)
    if preset == "digits":
        c.method.n_rkhs = 128
        view = config_lib.view(8, crop_scale=(0.3, 1.0), flip_prob=0.0, grayscale_prob=0.0,
                               **jitter)
        c.batch_size, c.num_epochs = 256, 140
        c.optim.update(base_lr=1e-3, warmup_steps=50)
    else:
        c.model.update(encoder="convnet", widths=(128, 256, 512, 512))
        view = config_lib.view(32, crop_scale=(0.75, 1.0), crop_ratio=(1.0, 1.0),
                               flip_prob=0.5, grayscale_prob=0.25, **jitter)
        c.batch_size, c.num_epochs = 200, 300
        c.optim.update(base_lr=2e-4, warmup_steps=500)
    c.augment.view1 = view
    c.augment.view2 = config_lib.view(**view.to_dict())
    return c
