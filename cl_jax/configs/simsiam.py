"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning",
arXiv:2011.10566).

Presets (``--config=configs/simsiam.py:<preset>``), each with its source and expected result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/simsiam.py --workdir=runs/simsiam
  Small ConvNet, 8x8 views, projector 512-512-512, predictor bottleneck 128, SGD. About 3
  minutes on a 2-core CPU; numbers in the README.

cifar10, cifar100 — solo-learn's CIFAR recipe (scripts/pretrain/cifar/simsiam.yaml and
  augmentations/symmetric_weak.yaml): ResNet-18 with the 3x3 stem and no max-pool, batch 256,
  SGD (lr 0.5 x batch/256, momentum 0.9, weight decay 1e-5), 10 warmup epochs then cosine,
  1000 epochs, projector 2048-2048-2048, predictor 512, views: crop 32 scale (0.08, 1),
  jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale 0.2, blur 0.5, no solarize.
    python -m cl_jax.main --config=configs/simsiam.py:cifar10 --workdir=runs/simsiam_cifar10
  solo-learn reports 90.51% (CIFAR-10) and 66.04% (CIFAR-100) online linear top-1 (with a
  constant predictor learning rate, see below). The paper's own CIFAR-10 run (appendix D:
  2-layer projector, SGD base lr 0.03, batch 512, weight decay 5e-4, 800 epochs) gives 91.8%.

stl10 — the folder recipe below at 96 px on the 100k unlabelled images. No paper reports
  this exact setting; treat it as a starting point.

imagenet — the paper's baseline (section 3 and appendix A): ResNet-50 (last BatchNorm of
  each residual block initialised to zero), batch 512, SGD with lr 0.05 x batch/256 (= 0.1),
  momentum 0.9, weight decay 1e-4, cosine decay without warmup, 100 epochs, projector
  2048-2048-2048 with BatchNorm on every layer, predictor 2048-512-2048, MoCo v2 views: crop
  224 scale (0.2, 1), jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale 0.2, blur p=0.5.
    python -m cl_jax.main --config=configs/simsiam.py:imagenet --workdir=gs://.../simsiam
  The paper reports 68.1% top-1 (linear evaluation) with the predictor's learning rate
  constant (table 1c, what this preset does) and 67.7% with it decayed like the rest
  (``--config.optim.constant_lr_modules="()"``);
  table 4 (batch 256): 68.1 / 70.0 / 70.8 / 71.3% after 100 / 200 / 400 / 800 epochs
  (``--config.num_epochs=800``). The paper applies weight decay to BatchNorm parameters and
  biases too; this optimiser leaves them out. The linear numbers come from main_lincls.py
  ``--lars``: 90 epochs on random crops and flips, LARS (lr 0.1 x batch/256, no weight
  decay, cosine), batch 4096. ``evals.linear`` here is logistic regression (AdamW, cosine)
  on precomputed, standardised centre-crop features without augmentation, 90 epochs at batch
  4096: expect a somewhat lower number.

folder — an image folder with solo-learn's ImageNet-100 recipe (scripts/pretrain/
  imagenet-100/simsiam.yaml, augmentations/asymmetric.yaml): ResNet-18, 224 px, batch 256,
  SGD lr 0.5 x batch/256, weight decay 1e-5, 400 epochs, BYOL's asymmetric views. On
  ImageNet-100, solo-learn reports 74.54% online / 78.72% offline linear top-1.

As the official code (``--fix-pred-lr``, recommended in its README) and solo-learn
(``static_lr``), every preset keeps the predictor's learning rate at the peak, without warmup
or decay (``optim.constant_lr_modules``).
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "cifar100", "stl10", "imagenet", "folder")


def simsiam_views(size, **common):
    """MoCo v2 / SimSiam views (paper appendix A): jitter (0.4, 0.4, 0.4, 0.1), blur 0.5."""
    make = lambda: config_lib.view(size, saturation=0.4, blur_prob=0.5, **common)
    return make(), make()


def get_config(preset=PRESETS[0]):
    c = config_lib.base_config()
    c.method.update(dict(name="simsiam", proj_hidden_dims=(2048, 2048), proj_dim=2048,
                         pred_hidden_dims=(512,)))
    c.optim.update(name="sgd", momentum=0.9, nesterov=False, constant_lr_modules=("predictor",))
    config_lib.set_data_preset(c, preset)
    if preset == "digits":
        c.method.update(proj_hidden_dims=(512, 512), proj_dim=512, pred_hidden_dims=(128,))
        c.augment.view1, c.augment.view2 = simsiam_views(8, crop_scale=(0.3, 1.0),
                                                         flip_prob=0.0)
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=0.5, warmup_epochs=10, weight_decay=1e-5)
    elif preset in ("cifar10", "cifar100"):
        c.augment.view1, c.augment.view2 = simsiam_views(32, crop_scale=(0.08, 1.0))
        c.batch_size, c.num_epochs = 256, 1000
        c.optim.update(base_lr=0.5, warmup_epochs=10, weight_decay=1e-5)
    elif preset in ("stl10", "folder"):
        size = 96 if preset == "stl10" else 224
        c.augment.view1, c.augment.view2 = config_lib.byol_views(size)
        c.batch_size, c.num_epochs = 256, 400
        c.optim.update(base_lr=0.5, warmup_epochs=10, weight_decay=1e-5)
    elif preset == "imagenet":
        c.model.zero_init_residual = True
        c.augment.view1, c.augment.view2 = simsiam_views(224, crop_scale=(0.2, 1.0))
        c.batch_size, c.num_epochs = 512, 100
        c.optim.update(base_lr=0.05, warmup_epochs=0, weight_decay=1e-4)
        c.evals.linear.update(epochs=90, batch_size=4096)
    return c
