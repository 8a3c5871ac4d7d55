"""i-Mix (Lee et al. 2021, "i-Mix: A Domain-Agnostic Strategy for Contrastive Representation
Learning", ICLR 2021, arXiv:2010.08887): SimCLR's N-pair loss on mixed queries.

Presets (``--config=imix:<preset>``):

digits (default) — the embedded 8x8 digits, SimCLR's digits preset (ConvNet, batch 256,
  LARS, 140 epochs, projector 512-128, the same views) with i-Mix's input mixup, alpha 1
  and temperature 0.2; numbers in the README.
    python -m cl_jax.main --config=imix --workdir=runs/imix

cifar10, cifar100 — the reference's CIFAR N-pair runs (kibok90/imix ``run.sh`` and
  ``main_pretext.py`` defaults): ResNet-50 with the CIFAR stem, batch 256, SGD with momentum
  0.9, lr 0.125 x batch/256, weight decay 1e-4, 10 warmup epochs then cosine, 4000 epochs
  (i-Mix needs longer than the 2000 of its baseline), projector with BatchNorm
  (``mlpbn``: 2048-128, BatchNorm after both layers), temperature 0.2, mixup alpha 1, the
  cosine down to 0.001 x lr, SimCLR's CIFAR views. One difference: weight decay skips
  biases and BatchNorm parameters here (the reference's SGD decays every parameter).
    python -m cl_jax.main --config=imix:cifar10 --workdir=runs/imix_cifar10

``--config.method.mix=cutmix`` mixes with CutMix boxes (the paper's ``icutmix``);
``--config.method.sym=True`` adds the other direction.
"""

from cl_jax import config_lib
from cl_jax.errors import ConfigError

PRESETS = ("digits", "cifar10", "cifar100")


def get_config(preset=PRESETS[0]):
    if preset not in PRESETS:
        raise ConfigError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    c = config_lib.base_config()
    c.method.update(dict(name="imix", proj_hidden_dims=(2048,), proj_dim=128, temperature=0.2,
                         proj_output_norm=False, mix="mixup", alpha=1.0, sym=False))
    config_lib.set_data_preset(c, preset)
    if preset == "digits":
        c.method.proj_hidden_dims = (512,)
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(
            8, strength=0.5, blur_prob=0.3, crop_scale=(0.3, 1.0), flip_prob=0.0)
        c.batch_size = 256
        c.num_epochs = 140
        c.optim.update(base_lr=1.0, warmup_epochs=10, weight_decay=1e-5)
    else:
        c.model.encoder = "resnet50"
        c.method.proj_output_norm = True
        c.augment.view1, c.augment.view2 = config_lib.simclr_views(32, blur_prob=0.0)
        c.batch_size, c.num_epochs = 256, 4000
        c.optim.update(name="sgd", base_lr=0.125, momentum=0.9, weight_decay=1e-4,
                       warmup_epochs=10, end_lr_factor=1e-3)
    return c
