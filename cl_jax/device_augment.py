"""The colour part of the view augmentation as pure, jittable JAX, run on the accelerator.

The host crops, resizes and flips (``cl_jax.data.augment``, tf.data); the train step then
applies colour jitter, grayscale, Gaussian blur, solarize and normalisation here, on a batch
[B, H, W, C] of float32 in [0, 1] with independent random draws per example. The ops match
``cl_jax.data.augment``'s definitions (torchvision's): multiplicative brightness, contrast
and saturation blended with the grey image, hue rotation in HSV, the four in random order
per example, each clipped to [0, 1]; luma (0.2989, 0.587, 0.114) as tf.image and
torchvision; blur with 2 * max(side // 20, 1) + 1 taps and reflect padding; solarize at 0.5.

Reference: BYOL (Grill et al. 2020), which applies its colour augmentation on the
accelerator (deepmind-research/byol/utils/augmentations.py). No TensorFlow here.
"""

import functools

import jax
import jax.numpy as jnp

from cl_jax.views import view_augments as views_of

LUMA = (0.2989, 0.587, 0.114)  # tf.image.rgb_to_grayscale and torchvision's weights


def _per_example(values):
    """A per-example factor, shape [B] (or a scalar), broadcast against [B, H, W, C]."""
    return jnp.reshape(jnp.asarray(values, jnp.float32), (-1, 1, 1, 1))


# --- deterministic ops, on a batch [B, H, W, C] with per-example factors [B] ---------------


def grayscale(images):
    """ITU-R 601 luma, kept at the input's channel count (identity for one channel)."""
    if images.shape[-1] == 1:
        return images
    # A weighted sum, not a matmul: GPUs may run float32 matmuls in TF32 by default.
    luma = sum(weight * images[..., c] for c, weight in enumerate(LUMA))
    return jnp.repeat(luma[..., None], images.shape[-1], axis=-1)


def adjust_brightness(images, factor):
    return jnp.clip(images * _per_example(factor), 0.0, 1.0)


def adjust_contrast(images, factor):
    mean = jnp.mean(grayscale(images)[..., :1], axis=(1, 2, 3), keepdims=True)
    factor = _per_example(factor)
    return jnp.clip(factor * images + (1.0 - factor) * mean, 0.0, 1.0)


def adjust_saturation(images, factor):
    factor = _per_example(factor)
    return jnp.clip(factor * images + (1.0 - factor) * grayscale(images), 0.0, 1.0)


def rgb_to_hsv(images):
    """[..., 3] RGB in [0, 1] to HSV, hue in [0, 1) (tf.image's convention)."""
    r, g, b = images[..., 0], images[..., 1], images[..., 2]
    value = jnp.max(images, axis=-1)
    spread = value - jnp.min(images, axis=-1)
    saturation = jnp.where(value > 0, spread / jnp.where(value > 0, value, 1.0), 0.0)
    safe = jnp.where(spread > 0, spread, 1.0)
    hue = jnp.where(r == value, (g - b) / safe,
                    jnp.where(g == value, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) / 6.0
    hue = jnp.where(spread > 0, hue % 1.0, 0.0)
    return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(images):
    hue, saturation, value = images[..., 0], images[..., 1], images[..., 2]
    sixths = hue * 6.0
    red = jnp.clip(jnp.abs(sixths - 3.0) - 1.0, 0.0, 1.0)
    green = jnp.clip(2.0 - jnp.abs(sixths - 2.0), 0.0, 1.0)
    blue = jnp.clip(2.0 - jnp.abs(sixths - 4.0), 0.0, 1.0)
    rgb = jnp.stack([red, green, blue], axis=-1)
    return value[..., None] * (1.0 - saturation[..., None] * (1.0 - rgb))


def adjust_hue(images, delta):
    """tf.image.adjust_hue (hue rotated by ``delta`` turns), then clipped to [0, 1]."""
    hsv = rgb_to_hsv(images)
    hue = (hsv[..., 0] + _per_example(delta)[..., 0]) % 1.0
    return jnp.clip(hsv_to_rgb(hsv.at[..., 0].set(hue)), 0.0, 1.0)


def gaussian_blur(images, sigma, radius=None):
    """Separable Gaussian blur with per-example ``sigma`` [B] and reflect padding.

    ``2 * radius + 1`` taps, by default ``radius = max(side // 20, 1)`` (23 taps at 224).
    """
    height, width = images.shape[1:3]
    radius = radius or max(height // 20, 1)
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    kernel = jnp.exp(-0.5 * jnp.square(taps / jnp.reshape(sigma, (-1, 1))))
    kernel = kernel / jnp.sum(kernel, axis=1, keepdims=True)  # [B, taps]
    weight = lambda k: kernel[:, k, None, None, None]
    padded = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), "reflect")
    vertical = sum(weight(k) * padded[:, k:k + height] for k in range(2 * radius + 1))
    return sum(weight(k) * vertical[:, :, k:k + width] for k in range(2 * radius + 1))


def solarize(images, threshold=0.5):
    return jnp.where(images < threshold, images, 1.0 - images)


def normalize(images, mean, std):
    return (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


# --- random ops -----------------------------------------------------------------------------


def _uniform(key, batch, low, high):
    return jax.random.uniform(key, (batch,), jnp.float32, low, high)


def _with_probability(prob, key, op, images):
    """``op(images)`` for a random ``prob`` fraction of the examples; no work if prob is 0."""
    if prob <= 0.0:
        return images
    if prob >= 1.0:
        return op(images)
    apply = _uniform(key, images.shape[0], 0.0, 1.0) < prob
    return jnp.where(apply[:, None, None, None], op(images), images)


def color_jitter(images, key, brightness, contrast, saturation, hue):
    """torchvision ColorJitter: factors drawn uniformly, the ops in a random order per
    example; an op of strength 0 is skipped, saturation and hue on one channel too."""
    batch = images.shape[0]
    order_key, *keys = jax.random.split(key, 5)
    factor = lambda k, x: _uniform(k, batch, max(0.0, 1.0 - x), 1.0 + x)
    ops = [(brightness, adjust_brightness, factor(keys[0], brightness)),
           (contrast, adjust_contrast, factor(keys[1], contrast))]
    if images.shape[-1] == 3:
        ops += [(saturation, adjust_saturation, factor(keys[2], saturation)),
                (hue, adjust_hue, _uniform(keys[3], batch, -hue, hue))]
    ops = [(op, values) for strength, op, values in ops if strength]
    if not ops:
        return images
    # Each example's own permutation (the ranks of uniform draws). At each position every op
    # runs on the whole batch and each example keeps its own, as lax.switch under vmap would.
    order = jnp.argsort(jax.random.uniform(order_key, (batch, len(ops))), axis=1)

    def apply_position(position, images):
        chosen = _per_example(order[:, position])
        out = images
        for index, (op, values) in enumerate(ops):
            out = jnp.where(chosen == index, op(images, values), out)
        return out

    return jax.lax.fori_loop(0, len(ops), apply_position, images)


def augment_colour(images, key, view, mean, std):
    """The colour part of one view, then normalised, every example with its own draws.

    images: float32 [B, H, W, C] in [0, 1], already cropped, resized and flipped on the
    host. key: a jax PRNG key. view: a ``ViewAugment`` (or any object, e.g. a ConfigDict,
    with its colour fields: ``jitter_prob``, ``brightness``, ``contrast``, ``saturation``,
    ``hue``, ``grayscale_prob``, ``blur_prob``, ``blur_sigma``, ``solarize_prob``).
    Returns float32 [B, H, W, C], ``(x - mean) / std``.
    """
    images = jnp.asarray(images, jnp.float32)
    jitter_p, jitter_k, gray_p, blur_p, blur_k, sol_p = jax.random.split(key, 6)
    jitter = lambda im: color_jitter(im, jitter_k, view.brightness, view.contrast,
                                     view.saturation, view.hue)
    images = _with_probability(view.jitter_prob, jitter_p, jitter, images)
    if images.shape[-1] == 3:
        images = _with_probability(view.grayscale_prob, gray_p, grayscale, images)
    low, high = view.blur_sigma
    blur = lambda im: gaussian_blur(im, _uniform(blur_k, im.shape[0], low, high))
    images = _with_probability(view.blur_prob, blur_p, blur, images)
    images = _with_probability(view.solarize_prob, sol_p, solarize, images)
    return normalize(images, mean, std)


def augment_views(views, key, view_augments, mean, std):
    """Each view through ``augment_colour`` with its own augment and a key folded from
    ``key`` by the view's position. Returns a tuple."""
    return tuple(augment_colour(images, jax.random.fold_in(key, i), view, mean, std)
                 for i, (images, view) in enumerate(zip(views, view_augments, strict=True)))


def from_config(config):
    """``(views, key) -> views`` for the train step if ``config.augment.colour_on_device``,
    else None (the host pipeline does the colour ops)."""
    if not config.augment.colour_on_device:
        return None
    return functools.partial(augment_views, view_augments=views_of(config.augment),
                             mean=tuple(config.data.mean), std=tuple(config.data.std))
