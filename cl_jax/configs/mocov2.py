"""MoCo v2 (Chen, Fan, Girshick & He 2020, "Improved Baselines with Momentum Contrastive
Learning", arXiv:2003.04297; MoCo: He et al. 2020, arXiv:1911.05722), optionally with MoCHi
(Kalantidis et al. 2020, arXiv:2010.01028): ``--config.method.mochi=True``.

Presets (``--config=configs/mocov2.py:<preset>``), each with its source and expected result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/mocov2.py --workdir=runs/mocov2
  Small ConvNet, 8x8 views, queue of 512 keys (two batches: a queue much larger than a
  fraction of the 1437 training images would hold keys of the query's own image), momentum
  0.99 -> 0.999, symmetric loss, shuffle BN over 8 groups of 32. About 3 minutes on a
  2-core CPU; see the README for the numbers it reaches.

cifar10, cifar100 — solo-learn's ``mocov2plus`` recipe (scripts/pretrain/cifar/
  mocov2plus.yaml, augmentations/symmetric_weak.yaml): ResNet-18 with the 3x3 stem, batch
  256, SGD (lr 0.3 x batch/256, momentum 0.9, weight decay 1e-4), 10 warmup epochs then
  cosine, 1000 epochs, projector 2048-256 without BatchNorm, queue 32768, T = 0.2,
  momentum 0.99 -> 0.999 (cosine), symmetric loss, SyncBN (``shuffle_bn_groups=1``); views
  crop 32 scale (0.08, 1), jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale 0.2, blur 0.5.
    python -m cl_jax.main --config=configs/mocov2.py:cifar10 --workdir=runs/mocov2_cifar10
  solo-learn reports 92.94% (CIFAR-10) and 69.89% (CIFAR-100) online linear top-1.

imagenet — the MoCo v2 paper (section 2, table 2; facebookresearch/moco ``main_moco.py``
  with ``--mlp --moco-t 0.2 --aug-plus --cos``): ResNet-50, batch 256, SGD lr 0.03 x
  batch/256, momentum 0.9, weight decay 1e-4, cosine schedule without warmup, 800 epochs,
  head 2048-128 without BatchNorm, queue 65536, T = 0.2, momentum m = 0.999 (constant),
  asymmetric loss, shuffle BN over 8 groups (the reference's 8 GPUs, 32 images each);
  "aug+" views: crop 224 scale (0.2, 1), jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale 0.2,
  blur p=0.5. Needs ``tfds build imagenet2012`` first.
    python -m cl_jax.main --config=configs/mocov2.py:imagenet --workdir=gs://.../mocov2
  The paper reports 71.1% top-1 (linear evaluation) after 800 epochs (67.5% after 200,
  ``--config.num_epochs=200``), from main_lincls.py: 100 epochs on random crops and flips,
  SGD (lr 30, dropped x0.1 at epochs 60 and 80, no weight decay), batch 256.
  ``evals.linear`` here is logistic regression (AdamW, cosine) on precomputed, standardised
  centre-crop features without augmentation, 100 epochs at batch 4096: expect a
  somewhat lower number.
  MoCHi: ``--config.method.mochi=True``, MoCHi (N, s, s') = (1024, 1024, 128) by default
  (``method.mochi_num_hard``, ``mochi_num_mix``, ``mochi_num_mix_query``), beta in (0, 0.5),
  no mixing in the first 10 epochs; the paper compares several (N, s, s') on ImageNet-100
  and ImageNet-1k against MoCo v2 trained the same way.
  i-Mix: ``--config.method.imix=mixup`` (or ``cutmix``; ``imix_alpha`` 1.0, the paper's):
  mixed queries against the batch's keys and the queue (kibok90/imix ``method='mocon'``).

stl10, folder — solo-learn's ImageNet-100 ``mocov2plus`` recipe (scripts/pretrain/
  imagenet-100/mocov2plus.yaml) at 96 px (STL-10's 100k unlabelled images, queue 16384) or
  224 px (an image folder, queue 65536): ResNet-18, batch 128, SGD lr 0.3 x batch/256,
  weight decay 1e-4, 10 warmup epochs then cosine, 400 epochs, T = 0.2, momentum 0.99 -> 1,
  symmetric loss, SyncBN, symmetric_weak views. On ImageNet-100 solo-learn reports 78.20%
  online linear top-1; no paper reports the STL-10 setting. Deviations from the yaml
  (docs/recipes.md): its batch is 128 per GPU on 2 GPUs, 256 in all (here 128, so half the
  peak rate), its momentum ends at 0.999, and its SGD decays biases and norms too.
"""

import ml_collections

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "cifar100", "imagenet", "stl10", "folder")


def aug_plus_views(size, crop_scale=(0.2, 1.0), blur_prob=0.5):
    """MoCo v2's "aug+": crop, jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale 0.2, blur, flip."""
    v = config_lib.view(size, crop_scale=crop_scale, saturation=0.4, blur_prob=blur_prob)
    return v, ml_collections.ConfigDict(v.to_dict())


def get_config(preset=PRESETS[0]):
    c = config_lib.base_config()
    c.method.update(dict(
        name="mocov2", proj_hidden_dims=(2048,), proj_dim=128, temperature=0.2,
        queue_size=65536, tau_base=0.999, tau_final=0.999, symmetric=False,
        shuffle_bn_groups=8, mochi=False, mochi_num_hard=1024, mochi_num_mix=1024,
        mochi_num_mix_query=128, mochi_beta_max=0.5, mochi_warmup_epochs=10.0,
        imix="none", imix_alpha=1.0))
    config_lib.set_data_preset(c, preset)
    if preset == "digits":
        c.method.update(proj_hidden_dims=(512,), queue_size=512, tau_base=0.99,
                        tau_final=0.999, symmetric=True, mochi_num_hard=256,
                        mochi_num_mix=256, mochi_num_mix_query=64)
        c.augment.view1, c.augment.view2 = aug_plus_views(8, crop_scale=(0.3, 1.0),
                                                          blur_prob=0.3)
        c.augment.view1.flip_prob = c.augment.view2.flip_prob = 0.0
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=1.0, warmup_epochs=10, weight_decay=1e-5)
    elif preset in ("cifar10", "cifar100"):
        c.method.update(proj_dim=256, queue_size=32768, tau_base=0.99, tau_final=0.999,
                        symmetric=True, shuffle_bn_groups=1)
        c.augment.view1, c.augment.view2 = aug_plus_views(32, crop_scale=(0.08, 1.0))
        c.batch_size, c.num_epochs = 256, 1000
        c.optim.update(name="sgd", base_lr=0.3, warmup_epochs=10, weight_decay=1e-4)
    elif preset in ("stl10", "folder"):
        size = 96 if preset == "stl10" else 224
        c.method.update(proj_dim=256, queue_size=16384 if preset == "stl10" else 65536,
                        tau_base=0.99, tau_final=1.0, symmetric=True, shuffle_bn_groups=1)
        c.augment.view1, c.augment.view2 = aug_plus_views(size, crop_scale=(0.08, 1.0))
        c.batch_size, c.num_epochs = 128, 400
        c.optim.update(name="sgd", base_lr=0.3, warmup_epochs=10, weight_decay=1e-4)
    elif preset == "imagenet":
        c.augment.view1, c.augment.view2 = aug_plus_views(224)
        c.batch_size, c.num_epochs = 256, 800
        c.optim.update(name="sgd", base_lr=0.03, warmup_epochs=0, weight_decay=1e-4)
        c.evals.linear.update(epochs=100, batch_size=4096)
    return c
