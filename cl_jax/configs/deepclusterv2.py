"""DeepCluster-v2 (Caron et al. 2020, arXiv:2006.09882, appendix; facebookresearch/swav
``main_deepclusterv2.py``), with multi-crop.

The memory bank has one row per training example (``method.num_examples``: 0 takes the
training split's size) and is keyed on each example's index, which the data pipeline hands
to the loss.

Presets (``--config=configs/deepclusterv2.py:<preset>``), each with its source and result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/deepclusterv2.py --workdir=runs/deepclusterv2
  Small ConvNet, two 8x8 global and two 6x6 local crops, 3 x 30 prototypes. The first epoch
  only fills the memory bank. Four crops per image: about 4 minutes on a 2-core CPU;
  numbers in the README.

cifar10, cifar100 — solo-learn's CIFAR recipe (scripts/pretrain/cifar/deepclusterv2.yaml
  with augmentations/symmetric.yaml): ResNet-18 with the 3x3 stem and no max-pool, two
  32x32 views, projector 2048-128, 3 x 3000 prototypes, temperature 0.1, 10 k-means
  iterations, batch 256, LARS (lr 0.6 x batch/256, eta 0.02 with LARC clipping, weight decay
  1e-6), 11 warmup epochs, cosine to 6e-4, 1000 epochs.
    python -m cl_jax.main --config=configs/deepclusterv2.py:cifar10 --workdir=runs/dcv2_c10
  solo-learn reports 88.85% (CIFAR-10) and 63.61% (CIFAR-100) top-1 (linear).

stl10, folder — solo-learn's ImageNet-100 recipe (scripts/pretrain/imagenet-100/
  deepclusterv2.yaml): ResNet-18, two crops (96 px for stl10, 224 px for folder), batch
  256, LARS lr 0.6 x batch/256, eta 0.02 clipped, weight decay 1e-6, 400 epochs. On
  ImageNet-100 solo-learn reports 75.36% online / 75.40% offline linear top-1.

imagenet — the reference's best run (scripts/deepclusterv2_800ep_pretrain.sh): ResNet-50,
  multi-crop 2x224 (scale 0.14-1) + 6x96 (0.05-0.14) with flip, colour distortion
  (0.8/0.8/0.8/0.2 p=0.8, grayscale 0.2) and blur p=0.5, projector 2048-128, 3 x 3000
  prototypes, temperature 0.1, batch 4096, LARS (lr 4.8 = 0.3 x 4096/256, eta 1e-3, weight
  decay 1e-6), 10 warmup epochs (from 0; the reference starts at 0.3), cosine to 4.8e-3,
  800 epochs. Needs ``tfds build imagenet2012`` first;
  the streamed records' bank rows come from their ``tfds_id``.
    python -m cl_jax.main --config=configs/deepclusterv2.py:imagenet --workdir=gs://.../dcv2
  The reference README reports 75.2% top-1 linear evaluation, with the repository's
  eval_linear.py: 100 epochs on random crops and flips, SGD (lr 0.3, weight decay 1e-6,
  cosine), batch 256 (32 per GPU on 8). ``evals.linear`` here is logistic regression (AdamW,
  cosine) on precomputed, standardised centre-crop features without augmentation, 100 epochs
  at batch 4096: expect a somewhat lower number.
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "cifar100", "stl10", "folder", "imagenet")


def get_config(preset=PRESETS[0]):
    c = config_lib.base_config()
    c.method.update(dict(name="deepclusterv2", proj_hidden_dims=(2048,), proj_dim=128,
                         num_prototypes=(3000, 3000, 3000), temperature=0.1, kmeans_iters=10,
                         crops_for_assign=(0, 1), kmeans_block_size=16384,
                         num_examples=0))
    config_lib.set_data_preset(c, preset)
    if preset == "digits":
        c.method.update(proj_hidden_dims=(512,), proj_dim=64, num_prototypes=(30, 30, 30))
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(
            8, strength=0.5, blur_prob=0.3, crop_scale=(0.3, 1.0), flip_prob=0.0)
        c.augment.num_local_views = 2
        c.augment.local = config_lib.view(6, crop_scale=(0.15, 0.5), flip_prob=0.0,
                                          brightness=0.4, contrast=0.4, saturation=0.4,
                                          hue=0.1, blur_prob=0.3)
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=1.0, warmup_epochs=10, weight_decay=1e-5)
    elif preset in ("cifar10", "cifar100"):
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(32)
        c.batch_size, c.num_epochs = 256, 1000
        c.optim.update(base_lr=0.6, warmup_epochs=11, end_lr_factor=1e-3, weight_decay=1e-6,
                       trust_coefficient=0.02, clip_lr=True)
    elif preset in ("stl10", "folder"):
        size = 96 if preset == "stl10" else 224
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
