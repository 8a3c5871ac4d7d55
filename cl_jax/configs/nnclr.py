"""NNCLR (Dwibedi, Aytar, Tompson, Sermanet & Zisserman 2021, "With a Little Help from My
Friends: Nearest-Neighbor Contrastive Learning of Visual Representations", arXiv:2104.14548).

Presets (``--config=configs/nnclr.py:<preset>``), each with its source and expected result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/nnclr.py --workdir=runs/nnclr
  Small ConvNet, 8x8 views, projector 512-512-128, predictor 512, support set of 512
  projections (two batches: a larger share of the 1437 training images would make an
  image's own stale projection its nearest neighbour), T = 0.2. About 3 minutes on a 2-core
  CPU; see the README for the numbers it reaches.

cifar10, cifar100 — solo-learn's recipe (scripts/pretrain/cifar/nnclr.yaml,
  augmentations/asymmetric.yaml): ResNet-18 with the 3x3 stem, batch 256, LARS (lr 0.4 x
  batch/256, eta 0.02 with LARC clipping, weight decay 1e-5), 10 warmup epochs then cosine,
  1000 epochs, projector 2048-2048-256, predictor 4096, support set 65536, T = 0.2, BYOL's
  asymmetric views at 32 px without blur.
    python -m cl_jax.main --config=configs/nnclr.py:cifar10 --workdir=runs/nnclr_cifar10
  solo-learn reports 91.88% (CIFAR-10) and 69.62% (CIFAR-100) online linear top-1.

stl10, folder — solo-learn's ImageNet-100 recipe (scripts/pretrain/imagenet-100/nnclr.yaml)
  at 96 / 224 px: ResNet-18, batch 128, LARS lr 0.4 x batch/256, eta 0.02 clipped, weight
  decay 1e-5, 400 epochs, support set 65536 (16384 for STL-10), T = 0.2, BYOL's views. On
  ImageNet-100 solo-learn reports 79.80% online linear top-1; no paper reports STL-10. The
  yaml's batch is 128 per GPU on 2 GPUs, 256 in all (here 128, so half the peak rate).

imagenet — the paper (section 4.1): ResNet-50, batch 4096, 1000 epochs, projector
  2048-2048-256, predictor 4096-256, support set 98,304, T = 0.1, BYOL's augmentations
  (crop 224, blur 1.0 / 0.1, solarize 0.0 / 0.2); LARS with SimCLR's ImageNet values (base
  lr 0.3 x batch/256, weight decay 1e-6, biases and norms excluded, 10 warmup epochs then
  cosine). Needs ``tfds build imagenet2012`` first.
    python -m cl_jax.main --config=configs/nnclr.py:imagenet --workdir=gs://.../nnclr
  The paper reports 75.6% top-1 (linear evaluation; its abstract). Its linear-evaluation
  protocol was not checked here (no official code found); ``evals.linear`` uses SimCLR's
  length: 90 epochs at batch 4096 of logistic regression (AdamW, cosine) on precomputed,
  standardised centre-crop features without augmentation, so expect a somewhat lower number.
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "cifar100", "stl10", "folder", "imagenet")


def get_config(preset=PRESETS[0]):
    c = config_lib.base_config()
    c.method.update(dict(name="nnclr", proj_hidden_dims=(2048, 2048), proj_dim=256,
                         pred_hidden_dims=(4096,), temperature=0.1, support_size=98304))
    config_lib.set_data_preset(c, preset)
    if preset == "digits":
        c.method.update(proj_hidden_dims=(512, 512), proj_dim=128, pred_hidden_dims=(512,),
                        temperature=0.2, support_size=512)
        c.augment.view1, c.augment.view2 = config_lib.byol_views(
            8, crop_scale=(0.3, 1.0), flip_prob=0.0, blur=(0.5, 0.1), solarize=(0.0, 0.0))
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=1.0, warmup_epochs=10, weight_decay=1e-5)
    elif preset in ("cifar10", "cifar100"):
        c.method.update(temperature=0.2, support_size=65536)
        c.augment.view1, c.augment.view2 = config_lib.byol_views(32, blur=(0.0, 0.0))
        c.batch_size, c.num_epochs = 256, 1000
        c.optim.update(base_lr=0.4, warmup_epochs=10, weight_decay=1e-5,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset in ("stl10", "folder"):
        size = 96 if preset == "stl10" else 224
        c.method.update(temperature=0.2, support_size=16384 if preset == "stl10" else 65536)
        c.augment.view1, c.augment.view2 = config_lib.byol_views(size)
        c.batch_size, c.num_epochs = 128, 400
        c.optim.update(base_lr=0.4, warmup_epochs=10, weight_decay=1e-5,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset == "imagenet":
        c.augment.view1, c.augment.view2 = config_lib.byol_views(224)
        c.batch_size, c.num_epochs = 4096, 1000
        c.optim.update(base_lr=0.3, warmup_epochs=10, weight_decay=1e-6,
                       trust_coefficient=1e-3)
        c.evals.linear.update(epochs=90, batch_size=4096)
    return c
