"""SwAV (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", arXiv:2006.09882), with multi-crop.

Presets (``--config=configs/swav.py:<preset>``), each with its source and expected result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/swav.py --workdir=runs/swav
  Small ConvNet, multi-crop with two 8x8 global crops and two 6x6 local crops (30-70% of
  the image), 64 prototypes for 32-d embeddings, prototypes frozen for 20 epochs, no queue
  (batch 256 equipartitions 64 prototypes well). Four crops per image: about 5 minutes on a
  2-core CPU; numbers in the README.

cifar10, cifar100 — solo-learn's CIFAR recipe (scripts/pretrain/cifar/swav.yaml with
  augmentations/symmetric.yaml): ResNet-18 with the 3x3 stem and no max-pool, two 32x32
  views (no multi-crop), projector 2048-128, 3000 prototypes, temperature 0.1, queue 3840
  from epoch 50, prototypes frozen for 2 epochs, batch 256, LARS (lr 0.6 x batch/256, eta
  0.02 with LARC clipping, weight decay 1e-6), 10 warmup epochs then cosine, 1000 epochs.
    python -m cl_jax.main --config=configs/swav.py:cifar10 --workdir=runs/swav_cifar10
  solo-learn reports 89.17% (CIFAR-10) and 64.88% (CIFAR-100) top-1 (linear).

stl10 — the ImageNet-100 recipe below at 96 px on the 100k unlabelled images. No paper
  reports this exact setting; treat it as a starting point.

folder — an image folder with solo-learn's ImageNet-100 recipe (scripts/pretrain/
  imagenet-100/swav.yaml): ResNet-18, two 224 px crops, batch 256, LARS lr 0.6 x batch/256,
  eta 0.02 clipped, weight decay 1e-6, 400 epochs, queue 3840 from epoch 50, prototypes
  frozen for 2 epochs. On ImageNet-100, solo-learn reports 74.04% online / 74.28% offline
  linear top-1.

imagenet — the paper's best ResNet-50 run (facebookresearch/swav
  scripts/swav_800ep_pretrain.sh): multi-crop 2x224 (scale 0.14-1) + 6x96 (0.05-0.14), each
  crop with flip, colour distortion (jitter 0.8/0.8/0.8/0.2 p=0.8, grayscale 0.2) and blur
  p=0.5; 3000 prototypes, temperature 0.1, epsilon 0.05, 3 Sinkhorn iterations, no queue,
  prototypes frozen for the first epoch (313 iterations at batch 4096), batch 4096, LARS
  (lr 4.8 = 0.3 x 4096/256, eta 1e-3, no clipping, weight decay 1e-6), 10 warmup epochs
  (from 0; the reference starts at 0.3), cosine to 4.8e-3, 800 epochs. Needs
  ``tfds build imagenet2012`` first.
    python -m cl_jax.main --config=configs/swav.py:imagenet --workdir=gs://.../swav
  The paper (and README) report 75.3% top-1 linear evaluation. For batch 256, the reference
  (swav_400ep_bs256_pretrain.sh) adds ``--config.method.queue_length=3840
  --config.method.queue_start_epoch=15`` with lr 0.6 and reaches 74.3% in 400 epochs.
  Those numbers come from eval_linear.py: 100 epochs on random crops and flips, SGD (lr 0.3,
  weight decay 1e-6, cosine), batch 256 (32 per GPU on 8). ``evals.linear`` here is
  logistic regression (AdamW, cosine) on precomputed, standardised centre-crop features
  without augmentation, 100 epochs at batch 4096: expect a somewhat lower number.
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "cifar100", "stl10", "folder", "imagenet")


def get_config(preset=PRESETS[0]):
    c = config_lib.base_config()
    c.method.update(dict(name="swav", proj_hidden_dims=(2048,), proj_dim=128,
                         num_prototypes=3000, temperature=0.1, epsilon=0.05,
                         sinkhorn_iterations=3, crops_for_assign=(0, 1),
                         freeze_prototypes_epochs=1.0, queue_length=0,
                         queue_start_epoch=15.0))
    config_lib.set_data_preset(c, preset)
    if preset == "digits":
        # More prototypes than embedding dimensions, and the prototypes frozen for 20 of
        # the 140 epochs (~110 steps; the reference freezes 313-5005 iterations).
        c.method.update(proj_hidden_dims=(512,), proj_dim=32, num_prototypes=64,
                        freeze_prototypes_epochs=20)
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(
            8, strength=0.5, blur_prob=0.3, crop_scale=(0.3, 1.0), flip_prob=0.0)
        c.augment.num_local_views = 2
        # Local crops of 30-70% of an 8x8 digit: smaller ones carry too little to predict
        # the global crops' codes from, and the loss then settles at log(K).
        c.augment.local = config_lib.view(6, crop_scale=(0.3, 0.7), flip_prob=0.0,
                                          brightness=0.4, contrast=0.4, saturation=0.4,
                                          hue=0.1, blur_prob=0.3)
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=1.0, warmup_epochs=10, weight_decay=1e-5)
    elif preset in ("cifar10", "cifar100"):
        c.method.update(queue_length=3840, queue_start_epoch=50, freeze_prototypes_epochs=2)
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(32)
        c.batch_size, c.num_epochs = 256, 1000
        c.optim.update(base_lr=0.6, warmup_epochs=10, weight_decay=1e-6,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset in ("stl10", "folder"):
        size = 96 if preset == "stl10" else 224
        c.method.update(queue_length=3840, queue_start_epoch=50, freeze_prototypes_epochs=2)
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(size)
        c.batch_size, c.num_epochs = 256, 400
        c.optim.update(base_lr=0.6, warmup_epochs=10, weight_decay=1e-6,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset == "imagenet":
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(224, crop_scale=(0.14, 1.0))
        c.augment.num_local_views = 6
        c.augment.local = config_lib.view(96, crop_scale=(0.05, 0.14), brightness=0.8,
                                          contrast=0.8, saturation=0.8, hue=0.2,
                                          blur_prob=0.5)
        c.batch_size, c.num_epochs = 4096, 800
        c.optim.update(base_lr=0.3, warmup_epochs=10, end_lr_factor=1e-3, weight_decay=1e-6,
                       trust_coefficient=1e-3)
        c.evals.linear.update(epochs=100, batch_size=4096)
    return c
