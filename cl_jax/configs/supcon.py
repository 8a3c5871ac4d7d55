"""Supervised contrastive learning, SupCon (Khosla et al. 2020, "Supervised Contrastive
Learning", arXiv:2004.11362).

Needs labelled training data. The recipe has two stages: pre-training with the SupCon loss
on labelled views, then a linear classifier on the frozen encoder features — here the
end-of-run linear evaluation (``linear_top1``), which is the number the paper reports.
Mixup / CutMix of the views (not the paper's SupCon runs): ``--config.method.mix=mixup`` or
``cutmix`` with ``method.mix_alpha`` (see ``cl_jax/methods/supcon.py``).

Presets (``--config=configs/supcon.py:<preset>``), each with its source and expected result:

digits (default) — scikit-learn's 8x8 handwritten digits (labelled), shipped with the install:
    python -m cl_jax.main --config=configs/supcon.py --workdir=runs/supcon
  Small ConvNet, 8x8 views, projector 512-128, temperature 0.1, LARS. About 3 minutes on a
  2-core CPU; numbers in the README (it uses the labels, so compare it with a supervised
  model, not with the self-supervised methods).

cifar10, cifar100 — HobbitLong/SupContrast, the paper's CIFAR code (README and
  ``main_supcon.py``): ResNet-50 with the 3x3 stem and no max-pool, batch 1024, SGD (lr 0.5
  = 0.125 x batch/256, momentum 0.9, weight decay 1e-4), 10 warmup epochs then cosine, 1000
  epochs, projector 2048-128 without BatchNorm, temperature 0.1 with that code's loss factor
  ``temperature / base_temperature`` (``loss_scale`` = 0.1 / 0.07), views: crop 32 scale
  (0.2, 1), jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale 0.2, no blur.
    python -m cl_jax.main --config=configs/supcon.py:cifar10 --workdir=runs/supcon_cifar10
  The paper reports 96.0% (CIFAR-10) and 76.5% (CIFAR-100) top-1 (table 2, ResNet-50).
  SupContrast applies weight decay to every parameter; this optimiser leaves out biases and
  BatchNorm.

stl10 — the folder recipe below at 96 px, pre-trained on the 5k labelled training images
  (``data.train_split=train``; the 100k-image split is unlabelled: its labels are all -1,
  which would make every example its own class, i.e. SimCLR). No paper reports this setting.

imagenet — the paper (sections 3.1 and 4.5): ResNet-50, batch 6144, LARS, temperature 0.1,
  350 epochs, projector 2048-128. The paper's main text gives no learning rate: this preset
  uses SimCLR's LARS recipe (lr 0.3 x batch/256, eta 1e-3, weight decay 1e-6, 10 warmup
  epochs then cosine) and SimCLR's views (the paper's "SimAugment"; its best ResNet-50
  result uses AutoAugment, which this library does not implement).
    python -m cl_jax.main --config=configs/supcon.py:imagenet --workdir=gs://.../supcon
  The paper reports 78.7% top-1 with AutoAugment (table 3). The official script
  (google-research/google-research supcon/scripts/supcon_imagenet_resnet50.sh with
  configs.sh) differs from this preset: LARS base lr 0.4, weight decay 1e-3 (biases
  included), a linear 128-d projection without BatchNorm, the loss multiplied by the
  temperature (``scale_by_temperature``: 0.1 x this library's mean, i.e. ``loss_scale``
  0.1), AutoAugment, and a second stage that trains the classifier for 90 epochs with
  RMSProp (lr 0.05, x0.97 every half epoch, weight decay 1e-6). ``evals.linear`` runs 90
  epochs at batch 4096 of logistic regression (AdamW, cosine) on precomputed, standardised
  centre-crop features without augmentation: expect a somewhat lower number.

folder — a labelled image folder (class subfolders) with solo-learn's ImageNet-100 recipe
  (scripts/pretrain/imagenet-100/supcon.yaml): ResNet-18, 224 px, batch 256, SGD lr 0.5 x
  batch/256, weight decay 1e-5, 400 epochs, projector 2048-512, temperature 0.2, SimCLR's
  views. solo-learn reports 84.40% online linear top-1 on ImageNet-100, but its loss puts
  the positives inside the log (the paper's L_in, see ``cl_jax.losses.supcon``).
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "cifar100", "stl10", "imagenet", "folder")


def get_config(preset=PRESETS[0]):
    c = config_lib.base_config()
    c.method.update(dict(name="supcon", proj_hidden_dims=(2048,), proj_dim=128,
                         proj_batch_norm=False, temperature=0.1, loss_scale=1.0,
                         mix="none", mix_alpha=1.0))
    config_lib.set_data_preset(c, preset)
    if preset == "digits":
        c.method.update(proj_hidden_dims=(512,), proj_dim=128)
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(
            8, strength=0.5, blur_prob=0.3, crop_scale=(0.3, 1.0), flip_prob=0.0)
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=1.0, warmup_epochs=10, weight_decay=1e-5)
    elif preset in ("cifar10", "cifar100"):
        c.model.encoder = "resnet50"
        c.method.loss_scale = 0.1 / 0.07
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(
            32, strength=0.5, blur_prob=0.0, crop_scale=(0.2, 1.0))
        c.batch_size, c.num_epochs = 1024, 1000
        c.optim.update(name="sgd", base_lr=0.125, warmup_epochs=10, weight_decay=1e-4)
    elif preset in ("stl10", "folder"):
        size = 96 if preset == "stl10" else 224
        c.method.update(proj_dim=512, temperature=0.2)
        if preset == "stl10":
            c.data.train_split = "train"
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(size)
        c.batch_size, c.num_epochs = 256, 400
        c.optim.update(name="sgd", base_lr=0.5, warmup_epochs=10, weight_decay=1e-5)
    elif preset == "imagenet":
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(224)
        c.batch_size, c.num_epochs = 6144, 350
        c.optim.update(base_lr=0.3, warmup_epochs=10, weight_decay=1e-6,
                       trust_coefficient=1e-3)
        c.evals.linear.update(epochs=90, batch_size=4096)
    return c
