"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations", arXiv:2002.05709).

Presets (``--config=configs/simclr.py:<preset>``), each with its source and expected result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/simclr.py --workdir=runs/simclr
  Small ConvNet, 8x8 views, about 3 minutes on a 2-core CPU; numbers in the README.

cifar10, cifar100 — solo-learn's CIFAR recipe (scripts/pretrain/cifar/simclr.yaml and
  augmentations/symmetric.yaml): ResNet-18 with the 3x3 stem and no max-pool, batch 256,
  LARS (lr 0.4 x batch/256, eta 0.02 with LARC clipping, weight decay 1e-4), 10 warmup
  epochs then cosine, 1000 epochs, projector 2048-256, temperature 0.2, symmetric views:
  crop 32 scale (0.08, 1), jitter (0.8, 0.8, 0.8, 0.2) p=0.8, grayscale 0.2, no blur (as
  solo-learn's earlier scripts/pretrain/cifar/simclr.sh; the current symmetric.yaml blurs
  with p=0.5).
    python -m cl_jax.main --config=configs/simclr.py:cifar10 --workdir=runs/simclr_cifar10
  solo-learn reports 90.74% (CIFAR-10) and 65.78% (CIFAR-100) online linear top-1.

stl10 — the ImageNet-100 recipe below at 96 px on the 100k unlabelled images. No paper
  reports this exact setting; treat it as a starting point.

imagenet — the paper (section 2.3, appendix B.1) and google-research/simclr (README, run.py
  flags): ResNet-50, batch 4096, LARS with lr 0.3 x batch/256 (= 4.8), weight decay 1e-6,
  eta 1e-3, 10 warmup epochs then cosine, temperature 0.1, projector 2048-128, colour
  strength 1.0, blur p=0.5 on both views, crop 224 scale (0.08, 1). 1000 epochs here (the
  paper's longest run). The loss is doubled (``method.loss_scale=2``): the reference's
  objective, ``mean(loss_a + loss_b)``, is twice ``nt_xent``, and under LARS that factor sets
  the balance of gradient and weight decay and the step of biases and BatchNorm parameters
  (outside the trust ratio), so the paper's learning rate and weight decay need it. Needs
  ``tfds build imagenet2012`` first.
    python -m cl_jax.main --config=configs/simclr.py:imagenet --workdir=gs://.../simclr
  The paper reports 69.3% top-1 after 1000 epochs at batch 4096, from a linear classifier
  trained 90 epochs by SGD with Nesterov momentum (lr 0.1 x batch/256, batch 4096) on random
  crops and flips (the reference's README). ``evals.linear`` here is logistic regression
  (AdamW, cosine), 90 epochs at batch 4096, on precomputed, standardised centre-crop
  features without augmentation: expect a somewhat lower number.

folder — an image folder with solo-learn's ImageNet-100 recipe (scripts/pretrain/
  imagenet-100/simclr.yaml): ResNet-18, 224 px, LARS lr 0.3 x batch/256 (batch 256 here),
  eta 0.02 clipped, weight decay 1e-4, 400 epochs, projector 4096-512, temperature 0.2.
  On ImageNet-100, solo-learn reports 77.64% online linear top-1.

The contrastive loss (``--config.method.loss=...``; formulas and papers in
``cl_jax/methods/simclr.py`` and ``cl_jax.losses``), times ``method.loss_scale`` (1; 2 in
the imagenet preset):
  nt_xent (default)  SimCLR's NT-Xent; ``method.block_size`` > 0 streams it over blocks of
                     keys (same value and gradient, less memory).
  dcl                decoupled contrastive loss (Yeh et al. 2022); ``configs/dcl.py`` has
                     the paper's ImageNet setting.
  dclw               DCL with von Mises-Fisher weighted positives, ``method.dclw_sigma``.
  debiased           debiased contrastive loss (Chuang et al. 2020), class prior
                     ``method.tau_plus``; the paper uses temperature 0.5.
  hard_negative      HCL (Robinson et al. 2021), ``method.tau_plus`` and concentration
                     ``method.beta``; the paper uses temperature 0.5.
  e.g. python -m cl_jax.main --config=configs/simclr.py --workdir=runs/hcl \
         --config.method.loss=hard_negative --config.method.temperature=0.5
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "cifar100", "stl10", "imagenet", "folder")


def get_config(preset=PRESETS[0]):
    c = config_lib.base_config()
    c.method.update(dict(name="simclr", proj_hidden_dims=(2048,), proj_dim=128,
                         temperature=0.1, block_size=0, loss="nt_xent", tau_plus=0.1,
                         beta=1.0, dclw_sigma=0.5, loss_scale=1.0))
    config_lib.set_data_preset(c, preset)
    if preset == "digits":
        c.method.update(proj_hidden_dims=(512,), proj_dim=128, temperature=0.2)
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(
            8, strength=0.5, blur_prob=0.3, crop_scale=(0.3, 1.0), flip_prob=0.0)
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=1.0, warmup_epochs=10, weight_decay=1e-5)
    elif preset in ("cifar10", "cifar100"):
        c.method.update(proj_dim=256, temperature=0.2)
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(32, blur_prob=0.0)
        c.batch_size, c.num_epochs = 256, 1000
        c.optim.update(base_lr=0.4, warmup_epochs=10, weight_decay=1e-4,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset in ("stl10", "folder"):
        size = 96 if preset == "stl10" else 224
        c.method.update(proj_hidden_dims=(4096,), proj_dim=512, temperature=0.2)
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(size)
        c.batch_size, c.num_epochs = 256, 400
        c.optim.update(base_lr=0.3, warmup_epochs=10, weight_decay=1e-4,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset == "imagenet":
        c.method.loss_scale = 2.0  # google-research/simclr's sum of the two directions
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(224)
        c.batch_size, c.num_epochs = 4096, 1000
        c.optim.update(base_lr=0.3, warmup_epochs=10, weight_decay=1e-6,
                       trust_coefficient=1e-3)
        c.evals.linear.update(epochs=90, batch_size=4096)
    return c
