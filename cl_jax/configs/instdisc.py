"""Instance discrimination with a memory bank (Wu, Xiong, Yu & Lin 2018, "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination", arXiv:1805.01978; reference code
zhirongw/lemniscate.pytorch).

One augmented view per image. The memory bank has one row per training example
(``method.num_examples``: 0 takes the training split's size) and is keyed on each example's
index, which the data pipeline hands to the loss. ``method.num_noise=0`` is the exact
non-parametric softmax over the bank, ``> 0`` NCE with that many noise samples;
``method.proximal`` the paper's proximal term.

The reference decays the learning rate in steps, x0.1 at epochs 120 and 160 of 200 (main.py
for ImageNet; cifar.py's ``0.1 ** ((epoch - 80) // 40)`` gives the same steps); the presets
use the shared warmup-free cosine decay.
The paper's kNN numbers use the 128-d bank features; the evaluation here uses the encoder's.

Presets (``--config=configs/instdisc.py:<preset>``), each with its source and result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/instdisc.py --workdir=runs/instdisc
  Small ConvNet, one 8x8 view, exact softmax over the 1438-row bank, T = 0.1, SGD lr 0.3.
  About 2 minutes on a 2-core CPU; numbers in the README.

cifar10, cifar100 — the reference's CIFAR command (``cifar.py --nce-k 0 --nce-t 0.1 --lr
  0.03``): ResNet-18 with the 3x3 stem, one view (random-resized crop 32 scale 0.2-1, colour
  jitter 0.4/0.4/0.4/0.4 always, grayscale 0.2, no flip), exact softmax, T = 0.1, bank
  momentum 0.5, SGD (momentum 0.9, lr 0.03 at batch 128, weight decay 5e-4), 200 epochs.
    python -m cl_jax.main --config=configs/instdisc.py:cifar10 --workdir=runs/instdisc_c10
  The paper (table 1) reports about 80% kNN top-1 on CIFAR-10 with ResNet-18.

stl10, folder — the ImageNet recipe below with a ResNet-18 (96 px / 224 px), exact softmax
  when the bank is small enough, batch 256. No paper reports these settings.

imagenet — the paper's ImageNet setting (section 4, reference ``main.py``): ResNet-50, one
  view (random-resized crop 224 scale 0.2-1, grayscale 0.2, colour jitter 0.4 x 4, flip),
  NCE with m = 4096 noise samples, T = 0.07, bank momentum 0.5, SGD (momentum 0.9, lr 0.03,
  batch 256, weight decay 1e-4), 200 epochs. Needs ``tfds build imagenet2012`` first;
  the streamed records' bank rows come from their ``tfds_id``.
    python -m cl_jax.main --config=configs/instdisc.py:imagenet --workdir=gs://.../instdisc
  The paper reports 54.0% top-1 for a linear classifier on conv5 features and 46.5% kNN
  top-1 on the 128-d features with ResNet-50 (the reference README: 58.5% linear for its
  updated checkpoint). That classifier's training recipe was not checked here;
  ``evals.linear`` trains logistic regression (AdamW, cosine) on precomputed, standardised
  centre-crop features of the pooled encoder output, without augmentation, for 90 epochs at
  batch 4096 (the length most presets' papers use), so the numbers are not directly
  comparable.
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10", "cifar100", "stl10", "folder", "imagenet")


def instdisc_view(size, **overrides):
    """The reference's single view: crop scale 0.2-1, jitter 0.4 x 4 always, grayscale 0.2."""
    fields = dict(crop_scale=(0.2, 1.0), jitter_prob=1.0, brightness=0.4, contrast=0.4,
                  saturation=0.4, hue=0.4, grayscale_prob=0.2)
    return config_lib.view(size, **{**fields, **overrides})


def get_config(preset=PRESETS[0]):
    c = config_lib.base_config()
    c.method.update(dict(name="instdisc", proj_dim=128, temperature=0.07, num_noise=0,
                         bank_momentum=0.5, proximal=0.0, block_size=0,
                         num_examples=0))
    c.augment.num_global_views = 1
    config_lib.set_data_preset(c, preset)
    c.data.fused_crop = True  # one view per image: decode only its crop window of a JPEG
    c.optim.update(name="sgd", base_lr=0.03, warmup_epochs=0, momentum=0.9)
    if preset == "digits":
        c.method.update(temperature=0.1)
        c.augment.view1 = instdisc_view(8, crop_scale=(0.3, 1.0), hue=0.1, flip_prob=0.0)
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=0.3, weight_decay=5e-4)
    elif preset in ("cifar10", "cifar100"):
        c.method.update(temperature=0.1)
        c.augment.view1 = instdisc_view(32, flip_prob=0.0)
        c.batch_size, c.num_epochs = 128, 200
        c.optim.update(base_lr=0.06, weight_decay=5e-4)  # 0.03 at batch 128
    elif preset in ("stl10", "folder"):
        size = 96 if preset == "stl10" else 224
        c.augment.view1 = instdisc_view(size)
        c.batch_size, c.num_epochs = 256, 200
        c.optim.update(weight_decay=1e-4)
    elif preset == "imagenet":
        c.method.update(num_noise=4096)
        c.augment.view1 = instdisc_view(224)
        c.batch_size, c.num_epochs = 256, 200
        c.optim.update(weight_decay=1e-4)
        c.evals.linear.update(epochs=90, batch_size=4096)
    return c
