"""Deep InfoMax (Hjelm et al. 2019, ICLR, arXiv:1808.06670; reference code rdevon/DIM).

DIM(L) by default: local-global mutual information (``method.beta`` 1; estimator
``method.measure``: JSD in cifar10, the reference's, NCE in digits), prior matching against
``U[0, 1]^64`` (``gamma`` 0.1), no global MI (``alpha`` 0); DIM(G) is
``--config.method.alpha=1 --config.method.beta=0 --config.method.gamma=1``. See
``cl_jax/methods/dim.py``.

Presets (``--config=configs/dim.py:<preset>``), each with its source and result:

digits (default) — scikit-learn's 8x8 handwritten digits, shipped with the install:
    python -m cl_jax.main --config=configs/dim.py --workdir=runs/dim
  The shared ConvNet (32, 64, 128); the local features are its 4x4 stage-2 map (the
  reference's second conv map), the infoNCE estimator (the reference's default is JSD; on
  seeds 0 and 1 NCE gave few-label 0.753 and 0.763, JSD 0.785 and 0.722, the same mean, but
  JSD's seed 1 fell below random init), ``mi_units`` 512 instead of 2048 (a CPU budget), one
  8x8 view with a light random crop; Adam (lr 1e-3, betas 0.5 / 0.999). About 2 minutes
  on a 2-core CPU; numbers in the README.

cifar10 — the reference's CIFAR-10 command (README: ``--d.source CIFAR10 --encoder_config
  basic32x32 --local.measure JSD``, DIM(L)): batch 64, Adam (lr 1e-4, betas 0.5 / 0.999, the
  cortex defaults), 1000 epochs, no augmentation, 2048 MI units, ``Y`` 64-d after an FC 1024.
  The encoder here is the ConvNet (64, 128, 256) of 3x3 convolutions (strides 1, 2, 2) with
  the 8x8x256 map as the local features; the reference's ``basic32x32`` has 4x4 stride-2
  convolutions (64, 128, 256) and takes its 8x8x128 map. The reference README reports
  about 72-74% top-1 for its classifiers on the frozen encoder; not run here.
    python -m cl_jax.main --config=configs/dim.py:cifar10 --workdir=runs/dim_cifar10
"""

from cl_jax import config_lib

PRESETS = ("digits", "cifar10")


def get_config(preset=PRESETS[0]):
    if preset not in PRESETS:
        raise config_lib.ConfigError(f"Unknown dim preset {preset!r}; choose one of "
                                     f"{', '.join(PRESETS)}.")
    c = config_lib.base_config()
    c.method.update(dict(name="dim", alpha=0.0, beta=1.0, gamma=0.1, measure="jsd",
                         local_stage=1, global_hidden_dims=(1024,), global_dim=64,
                         mi_units=2048))
    c.augment.num_global_views = 1
    config_lib.set_data_preset(c, preset)
    c.optim.update(name="adamw", weight_decay=0.0, b1=0.5, b2=0.999, warmup_epochs=0,
                   lr_scaling="none")
    if preset == "digits":
        c.method.update(mi_units=512, global_hidden_dims=(256,), measure="nce")
        c.augment.view1 = config_lib.view(8, crop_scale=(0.6, 1.0), flip_prob=0.0,
                                          jitter_prob=0.0, grayscale_prob=0.0)
        c.batch_size, c.num_epochs = 256, 140
        c.optim.base_lr = 1e-3
    else:
        c.model.update(encoder="convnet", widths=(64, 128, 256))
        c.method.local_stage = 2
        c.augment.view1 = config_lib.view(32, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                                          flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0)
        c.batch_size, c.num_epochs = 64, 1000
        c.optim.base_lr = 1e-4
    return c
