"""Barlow Twins (Zbontar, Jing, Misra, LeCun & Deny 2021, "Barlow Twins: Self-Supervised
Learning via Redundancy Reduction", arXiv:2103.03230).

Presets (``--config=configs/barlow_twins.py:<preset>``), each with its source and expected
result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/barlow_twins.py --workdir=runs/barlow_twins
  Small ConvNet, 8x8 views, projector 512-512-512, scale_loss 0.1 (as solo-learn), LARS lr
  1.0 x batch/256. About 3 minutes on a 2-core CPU; numbers in the README.

cifar10, cifar100 — solo-learn's CIFAR recipe (scripts/pretrain/cifar/barlow.yaml and
  augmentations/asymmetric.yaml): ResNet-18 with the 3x3 stem and no max-pool, batch 256,
  LARS (lr 0.3 x batch/256, eta 0.02 with LARC clipping, weight decay 1e-4, biases and norms
  excluded), 10 warmup epochs then cosine, 1000 epochs, projector 2048-2048-2048,
  lambda 0.0051, scale_loss 0.1, views: crop 32 scale (0.08, 1), jitter (0.4, 0.4, 0.2, 0.1)
  p=0.8, grayscale 0.2, no blur, solarize 0.0 / 0.2.
    python -m cl_jax.main --config=configs/barlow_twins.py:cifar10 --workdir=runs/bt_cifar10
  solo-learn reports 92.10% (CIFAR-10) and 70.90% (CIFAR-100) online linear top-1.

stl10 — the folder recipe below at 96 px on the 100k unlabelled images. No paper reports
  this exact setting; treat it as a starting point.

imagenet — the paper (implementation details): ResNet-50 (last BatchNorm of each residual
  block initialised to zero, as in facebookresearch/barlowtwins), batch 2048, LARS with lr
  0.2 x batch/256 (= 1.6), eta 1e-3, weight decay 1.5e-6, biases and BatchNorm excluded from
  both, 10 warmup epochs then cosine decay to 1/1000 of the peak, 1000 epochs, projector
  8192-8192-8192, lambda 0.0051, BYOL's views (crop 224, blur 1.0 / 0.1, solarize 0.0 / 0.2).
    python -m cl_jax.main --config=configs/barlow_twins.py:imagenet --workdir=gs://.../bt
  The paper reports 73.2% top-1 (linear evaluation); 71.4% after 300 epochs (ablations).
  Its linear classifier (facebookresearch/barlowtwins evaluate.py) trains 100 epochs on
  random crops and flips by SGD (lr 0.3, batch 256, weight decay 1e-6, cosine).
  ``evals.linear`` here is logistic regression (AdamW, cosine) on precomputed,
  standardised centre-crop features without augmentation, 100 epochs at batch 4096:
  expect a somewhat lower number.
  Biases and BatchNorm parameters train at 0.0048 x batch/256, 0.024 x the weights' rate
  (``optim.bias_lr_factor``), as in the paper and facebookresearch/barlowtwins.

folder — an image folder with solo-learn's ImageNet-100 recipe (scripts/pretrain/
  imagenet-100/barlow.yaml): ResNet-18, 224 px, batch 256, LARS lr 0.3 x batch/256, eta 0.02
  clipped, weight decay 1e-4, 400 epochs, projector 2048-2048-2048, scale_loss 0.1, BYOL's
  asymmetric views. On ImageNet-100, solo-learn reports 80.38% online / 80.16% offline
  linear top-1.
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "cifar100", "stl10", "imagenet", "folder")


def get_config(preset=PRESETS[0]):
    c = config_lib.base_config()
    c.method.update(dict(name="barlow_twins", proj_hidden_dims=(8192, 8192), proj_dim=8192,
                         lambda_=0.0051, scale_loss=1.0))
    config_lib.set_data_preset(c, preset)
    if preset == "digits":
        c.method.update(proj_hidden_dims=(512, 512), proj_dim=512, scale_loss=0.1)
        c.augment.view1, c.augment.view2 = config_lib.byol_views(
            8, crop_scale=(0.3, 1.0), flip_prob=0.0, blur=(0.5, 0.1), solarize=(0.0, 0.0))
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=1.0, warmup_epochs=10, weight_decay=1e-5)
    elif preset in ("cifar10", "cifar100"):
        c.method.update(proj_hidden_dims=(2048, 2048), proj_dim=2048, scale_loss=0.1)
        c.augment.view1, c.augment.view2 = config_lib.byol_views(32, blur=(0.0, 0.0))
        c.batch_size, c.num_epochs = 256, 1000
        c.optim.update(base_lr=0.3, warmup_epochs=10, weight_decay=1e-4,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset in ("stl10", "folder"):
        size = 96 if preset == "stl10" else 224
        c.method.update(proj_hidden_dims=(2048, 2048), proj_dim=2048, scale_loss=0.1)
        c.augment.view1, c.augment.view2 = config_lib.byol_views(size)
        c.batch_size, c.num_epochs = 256, 400
        c.optim.update(base_lr=0.3, warmup_epochs=10, weight_decay=1e-4,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset == "imagenet":
        c.model.zero_init_residual = True
        c.augment.view1, c.augment.view2 = config_lib.byol_views(224)
        c.batch_size, c.num_epochs = 2048, 1000
        c.optim.update(base_lr=0.2, warmup_epochs=10, weight_decay=1.5e-6,
                       trust_coefficient=1e-3, end_lr_factor=1e-3, bias_lr_factor=0.0048 / 0.2)
        c.evals.linear.update(epochs=100, batch_size=4096)
    return c
