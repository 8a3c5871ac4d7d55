"""MoCo v3 (Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision
Transformers", arXiv:2104.02057; facebookresearch/moco-v3).

Presets (``--config=configs/mocov3.py:<preset>``), each with its source and expected result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/mocov3.py --workdir=runs/mocov3
  Small ConvNet, 8x8 views, heads 512-128, T = 0.2, momentum 0.99 -> 1. About 3 minutes on a
  2-core CPU; see the README for the numbers it reaches.

cifar10, cifar100 — solo-learn's recipe (scripts/pretrain/cifar/mocov3.yaml,
  augmentations/asymmetric.yaml): ResNet-18 with the 3x3 stem, batch 256, LARS (lr 0.3 x
  batch/256, eta 0.02 with LARC clipping, weight decay 1e-6), 10 warmup epochs then cosine,
  1000 epochs, projector 4096-256 (2 layers), predictor 4096-256, T = 0.2, momentum
  0.99 -> 1, BYOL's asymmetric views at 32 px without blur.
    python -m cl_jax.main --config=configs/mocov3.py:cifar10 --workdir=runs/mocov3_cifar10
  solo-learn reports 93.10% (CIFAR-10) and 68.83% (CIFAR-100) online linear top-1.

stl10, folder — solo-learn's ImageNet-100 recipe (scripts/pretrain/imagenet-100/
  mocov3.yaml) at 96 / 224 px: ResNet-18, batch 256, LARS lr 0.3 x batch/256, eta 0.02
  clipped, weight decay 1e-6, 400 epochs, T = 0.2, momentum 0.99 -> 1, BYOL's views. On
  ImageNet-100 solo-learn reports 80.36% online linear top-1; no paper reports STL-10.

imagenet — the official ResNet-50 1000-epoch recipe (CONFIG.md: ``--lr=.3 --wd=1.5e-6
  --epochs=1000 --moco-m=0.996 --moco-m-cos --crop-min=.2``; main_moco.py defaults): batch
  4096, LARS lr 0.3 x batch/256 (= 4.8), eta 1e-3, weight decay 1.5e-6 (biases and norms
  excluded), 10 warmup epochs then cosine, projector 4096-256 (2 layers), predictor
  4096-256 (no output BatchNorm), T = 1.0, momentum 0.996 -> 1, ``zero_init_residual``,
  BYOL's views with crop scale (0.2, 1). Needs ``tfds build imagenet2012`` first.
    python -m cl_jax.main --config=configs/mocov3.py:imagenet --workdir=gs://.../mocov3
  CONFIG.md reports 74.6% linear top-1 for this recipe (68.9% at 100 epochs, 72.8% at 300),
  from main_lincls.py: 90 epochs on random crops and flips, SGD (lr 0.1 x batch/256, no
  weight decay, cosine), batch 1024. ``evals.linear`` here is logistic regression (AdamW,
  cosine) on precomputed, standardised centre-crop features without augmentation, 90 epochs
  at batch 4096: expect a somewhat lower number.

imagenet_vit — the official ViT-Small recipe (CONFIG.md, "ViT-Small, 4-node (32-GPU)":
  ``-a vit_small --optimizer=adamw --lr=1.5e-4 --weight-decay=.1 --epochs=300
  --warmup-epochs=40 --stop-grad-conv1 --moco-m-cos --moco-t=.2``, batch 4096): ViT-S/16
  (width 384, depth 12, 12 heads as moco-v3's ``vits.py``, 2-D sin-cos position embedding,
  frozen random patch projection), AdamW lr 1.5e-4 x batch/256 (= 2.4e-3), weight decay
  0.1, 40 warmup epochs then cosine, 300 epochs, projector 4096-4096-256 (3 layers),
  predictor 4096-256 with output BatchNorm, T = 0.2, momentum 0.99 -> 1, BYOL's views with
  crop scale (0.08, 1).
    python -m cl_jax.main --config=configs/mocov3.py:imagenet_vit --workdir=gs://.../mocov3_vit
  CONFIG.md reports 73.2% linear top-1 (ViT-S, 300 epochs), from main_lincls.py with
  ``--lr=3`` (90 epochs, batch 1024, as above); ``evals.linear`` as for imagenet (90
  epochs at batch 4096 on precomputed centre-crop features). The ViT options travel in
  ``model.patch_size``, ``model.num_heads``, ``model.posemb`` and
  ``model.frozen_patch_embedding``.
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "cifar100", "stl10", "imagenet", "folder", "imagenet_vit")


def get_config(preset=PRESETS[0]):
    c = config_lib.base_config()
    c.method.update(dict(name="mocov3", proj_hidden_dims=(4096,), proj_dim=256,
                         pred_hidden_dims=(4096,), pred_output_norm=False, temperature=1.0,
                         tau_base=0.99))
    config_lib.set_data_preset(c, "imagenet" if preset == "imagenet_vit" else preset)
    if preset == "digits":
        c.method.update(proj_hidden_dims=(512,), proj_dim=128, pred_hidden_dims=(512,),
                        temperature=0.2)
        c.augment.view1, c.augment.view2 = config_lib.byol_views(
            8, crop_scale=(0.3, 1.0), flip_prob=0.0, blur=(0.5, 0.1), solarize=(0.0, 0.0))
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=2.0, warmup_epochs=10, weight_decay=1e-5)
    elif preset in ("cifar10", "cifar100"):
        c.method.temperature = 0.2
        c.augment.view1, c.augment.view2 = config_lib.byol_views(32, blur=(0.0, 0.0))
        c.batch_size, c.num_epochs = 256, 1000
        c.optim.update(base_lr=0.3, warmup_epochs=10, weight_decay=1e-6,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset in ("stl10", "folder"):
        # solo-learn's ImageNet-100 recipe (scripts/pretrain/imagenet-100/mocov3.yaml).
        size = 96 if preset == "stl10" else 224
        c.method.temperature = 0.2
        c.augment.view1, c.augment.view2 = config_lib.byol_views(size)
        c.batch_size, c.num_epochs = 256, 400
        c.optim.update(base_lr=0.3, warmup_epochs=10, weight_decay=1e-6,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset == "imagenet":
        c.method.tau_base = 0.996
        c.model.zero_init_residual = True
        c.augment.view1, c.augment.view2 = config_lib.byol_views(224, crop_scale=(0.2, 1.0))
        c.batch_size, c.num_epochs = 4096, 1000
        c.optim.update(base_lr=0.3, warmup_epochs=10, weight_decay=1.5e-6,
                       trust_coefficient=1e-3)
        c.evals.linear.update(epochs=90, batch_size=4096)
    elif preset == "imagenet_vit":
        c.method.update(proj_hidden_dims=(4096, 4096), pred_output_norm=True, temperature=0.2)
        c.model.update(dict(encoder="vit_small", patch_size=16, num_heads=12,
                            posemb="sincos2d", frozen_patch_embedding=True))
        c.augment.view1, c.augment.view2 = config_lib.byol_views(224)
        c.batch_size, c.num_epochs = 4096, 300
        c.optim.update(name="adamw", base_lr=1.5e-4, warmup_epochs=40, weight_decay=0.1)
        c.evals.linear.update(epochs=90, batch_size=4096)
    return c
