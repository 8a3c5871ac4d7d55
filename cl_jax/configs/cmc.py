"""Contrastive Multiview Coding (Tian, Krishnan & Isola 2020, ECCV, arXiv:1906.05849;
reference code HobbitLong/CMC).

One augmented image (random-resized crop, scale 0.2-1, horizontal flip, no colour jitter, as
``train_CMC.py``), split into views, one encoder per view; memory banks with NCE
(``method.objective="nce"``), or the reference's softmax over the sampled rows
(``"softmax"``), or in-batch InfoNCE (``"in_batch"``). See ``cl_jax/methods/cmc.py``.

Presets (``--config=configs/cmc.py:<preset>``), each with its source and result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/cmc.py --workdir=runs/cmc
  The digits are greyscale, so there is no L / ab split: the views are the top and the bottom
  half of the image (``split="rows"``), not a view of the paper. Two ConvNets of half width
  (16, 32, 64), their features concatenated (128-d, as the other methods' ConvNet);
  ``objective="softmax"`` over 1024 sampled rows of the 1295-row banks (NCE with 4096 noise
  rows and ``Z`` estimated once needs the paper's long schedule), T = 0.07, 128-d.
  About 2 minutes on a 2-core CPU; numbers in the README.

cifar10, stl10 — L against ab (``data.color_space="lab"``, CMC's Lab normalisation), NCE
  with K = 4096 noise rows (the reference README's default), 128-d, bank momentum 0.5,
  T = 0.07 (the README's ImageNet value; 0.1 for STL-10, its STL-10 value); SGD (momentum
  0.9, lr 0.03 at batch 128, weight decay 1e-4), 240 epochs (``train_CMC.py``'s defaults,
  whose steps x0.1 at epochs 120, 160, 200 are a cosine decay here). One ResNet-18 (CIFAR
  stem at 32 px, ImageNet stem at 96 px) per view at full width: the reference's
  "2xResNet50half" halves the width per view, which the ResNet here cannot. The paper's
  STL-10 encoders and numbers are its own (AlexNet-style, section 4.1); the reference code
  has no CIFAR setting. Neither preset was run here (no data sets offline).
    python -m cl_jax.main --config=configs/cmc.py:cifar10 --workdir=runs/cmc_cifar10
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "stl10")


def cmc_view(size, **overrides):
    """``train_CMC.py``'s view: crop scale 0.2-1, flip; no colour ops (the views are colours)."""
    fields = dict(crop_scale=(0.2, 1.0), jitter_prob=0.0, grayscale_prob=0.0)
    return config_lib.view(size, **{**fields, **overrides})


def get_config(preset=PRESETS[0]):
    if preset not in PRESETS:
        raise config_lib.ConfigError(f"Unknown cmc preset {preset!r}; choose one of "
                                     f"{', '.join(PRESETS)}.")
    c = config_lib.base_config()
    c.method.update(dict(name="cmc", split="channels", channel_groups=((0,), (1, 2)),
                         num_bands=2, graph="core", objective="nce", proj_dim=128,
                         temperature=0.07, num_noise=4096, bank_momentum=0.5,
                         num_examples=0))
    c.augment.num_global_views = 1
    config_lib.set_data_preset(c, preset)
    c.optim.update(name="sgd", base_lr=0.06, warmup_epochs=0, momentum=0.9,  # 0.03 at 128
                   weight_decay=1e-4)
    if preset == "digits":
        c.method.update(split="rows", channel_groups=(), objective="softmax", num_noise=1024)
        c.model.widths = (16, 32, 64)
        c.augment.view1 = cmc_view(8, crop_scale=(0.3, 1.0), flip_prob=0.0)
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=0.3, weight_decay=5e-4)
    else:
        size = 32 if preset == "cifar10" else 96
        c.data.update(color_space="lab", mean=config_lib.LAB_MEAN, std=config_lib.LAB_STD)
        c.augment.view1 = cmc_view(size)
        c.batch_size, c.num_epochs = 128, 240
        if preset == "stl10":
            c.method.temperature = 0.1
    return c
