"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", arXiv:2006.07733).

Presets (``--config=configs/byol.py:<preset>``), each with its source and expected result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/byol.py --workdir=runs/byol
  Small ConvNet, 8x8 views. Runs in about 3 minutes on a 2-core CPU; see the README for the
  kNN / linear / few-label numbers it reaches and the random-init baseline
  (``--config.total_steps=0``).

cifar10, cifar100 — solo-learn's CIFAR recipe (scripts/pretrain/cifar/byol.yaml and
  augmentations/asymmetric.yaml): ResNet-18 with the 3x3 stem and no max-pool, batch 256,
  LARS (lr 1.0 x batch/256, eta 0.02 with LARC clipping, weight decay 1e-5, biases and norms
  excluded), 10 warmup epochs then cosine, 1000 epochs, projector 4096-256, predictor 4096,
  tau 0.99 -> 1, views: crop 32 scale (0.08, 1), jitter (0.4, 0.4, 0.2, 0.1) p=0.8,
  grayscale 0.2, no blur, solarize 0.0 / 0.2.
    python -m cl_jax.main --config=configs/byol.py:cifar10 --workdir=runs/byol_cifar10
  solo-learn reports 92.58% (CIFAR-10) and 70.46% (CIFAR-100) online linear top-1.

stl10 — the ImageNet-100 recipe below at 96 px on the 100k unlabelled images, probes on the
  5k labelled ones. No paper reports this exact setting; treat it as a starting point.

imagenet — the paper (section 3.3, appendix C): ResNet-50, batch 4096, LARS with base lr
  0.2 x batch/256 (= 3.2), weight decay 1.5e-6, eta 1e-3, biases and BatchNorm excluded,
  10 warmup epochs then cosine, 1000 epochs, projector and predictor 4096-256, tau 0.996
  with the cosine increase to 1, views of table 6 (crop 224, blur 1.0 / 0.1, solarize
  0.0 / 0.2). Needs ``tfds build imagenet2012`` first.
    python -m cl_jax.main --config=configs/byol.py:imagenet --workdir=gs://.../byol
  The paper reports 74.3% top-1 from a linear classifier trained on random crops and flips
  by SGD with Nesterov momentum (base lr 0.2, no weight decay) for 80 epochs
  (deepmind-research byol/configs/eval.py; batch 4096 by default in main_loop.py).
  ``evals.linear`` here is logistic regression (AdamW, cosine) on precomputed,
  standardised centre-crop features without augmentation, 80 epochs at batch 4096:
  expect a somewhat lower number.

folder — an image folder (``--config.data.train_dir=...``; class subfolders or flat;
  ``eval_test_dir`` for held-out labelled images) with solo-learn's ImageNet-100 recipe
  (scripts/pretrain/imagenet-100/byol.yaml): ResNet-18, 224 px, batch 256, LARS lr 0.5 x
  batch/256, eta 0.02 clipped, weight decay 1e-6, 400 epochs, predictor 8192, tau 0.99.
  On ImageNet-100, solo-learn reports 80.16% online / 80.32% offline linear top-1.
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "cifar100", "stl10", "imagenet", "folder")


def get_config(preset=PRESETS[0]):
    c = config_lib.base_config()
    c.method.update(dict(name="byol", proj_hidden_dims=(4096,), proj_dim=256,
                         pred_hidden_dims=(4096,), tau_base=0.996))
    config_lib.set_data_preset(c, preset)
    if preset == "digits":
        c.method.update(proj_hidden_dims=(512,), proj_dim=128, pred_hidden_dims=(512,),
                        tau_base=0.99)
        c.augment.view1, c.augment.view2 = config_lib.byol_views(
            8, crop_scale=(0.3, 1.0), flip_prob=0.0, blur=(0.5, 0.1), solarize=(0.0, 0.0))
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=2.0, warmup_epochs=10, weight_decay=1e-5)
    elif preset in ("cifar10", "cifar100"):
        c.method.tau_base = 0.99
        c.augment.view1, c.augment.view2 = config_lib.byol_views(32, blur=(0.0, 0.0))
        c.batch_size, c.num_epochs = 256, 1000
        c.optim.update(base_lr=1.0, warmup_epochs=10, weight_decay=1e-5,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset in ("stl10", "folder"):
        size = 96 if preset == "stl10" else 224
        c.method.update(tau_base=0.99, pred_hidden_dims=(8192,))
        c.augment.view1, c.augment.view2 = config_lib.byol_views(size)
        c.batch_size, c.num_epochs = 256, 400
        c.optim.update(base_lr=0.5, warmup_epochs=10, weight_decay=1e-6,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset == "imagenet":
        c.augment.view1, c.augment.view2 = config_lib.byol_views(224)
        c.batch_size, c.num_epochs = 4096, 1000
        c.optim.update(base_lr=0.2, warmup_epochs=10, weight_decay=1.5e-6,
                       trust_coefficient=1e-3)
        c.evals.linear.update(epochs=80, batch_size=4096)
    return c
