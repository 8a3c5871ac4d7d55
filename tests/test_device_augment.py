"""On-device colour augmentation: each op equals the tf.data one, and the whole colour
pipeline draws from the same distribution as ``cl_jax.data.augment.augment_view``."""

import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf

from cl_jax import device_augment as da
from cl_jax.data import augment
from cl_jax.data.augment import ViewAugment

BYOL_VIEW2 = dict(jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                  grayscale_prob=0.2, blur_prob=0.1, solarize_prob=0.2)
NO_AUGMENT = dict(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)


def images(batch=6, size=12, channels=3, seed=0):
    """uint8-valued float images: ties between channels, grey, black and white pixels."""
    pixels = np.random.RandomState(seed).randint(0, 256, (batch, size, size, channels))
    pixels[:, 0, 0] = 0
    pixels[:, 0, 1] = 255
    pixels[:, 1, :] = pixels[:, 1, :, :1]  # grey row
    pixels[:, 2, :, :2] = pixels[:, 2, :, -1:]  # two equal channels
    return (pixels / 255.0).astype(np.float32)


def view(size, **kwargs):
    """A ViewAugment whose geometry is the identity on a ``size`` x ``size`` image."""
    return ViewAugment(size=size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
                       **kwargs)


def tf_per_image(op, x, factors=None):
    """The TF op image by image (with each image's factor, if any)."""
    if factors is None:
        return np.stack([op(tf.constant(im)).numpy() for im in x])
    pairs = zip(x, factors, strict=True)
    return np.stack([op(tf.constant(im), float(f)).numpy() for im, f in pairs])


@pytest.mark.parametrize("name, factors", [
    ("adjust_brightness", [0.0, 0.6, 1.0, 1.3, 1.8, 0.9]),
    ("adjust_contrast", [0.0, 0.6, 1.0, 1.3, 1.8, 0.9]),
    ("adjust_saturation", [0.0, 0.6, 1.0, 1.3, 1.8, 0.9]),
    ("adjust_hue", [-0.5, -0.1, 0.0, 0.05, 0.3, 0.49]),
])
def test_jitter_ops_match_tf(name, factors):
    x = images()
    factors = np.asarray(factors, np.float32)
    expected = tf_per_image(getattr(augment, name), x, factors)
    got = np.asarray(getattr(da, name)(x, factors))
    np.testing.assert_allclose(got, expected, atol=1e-4 if name == "adjust_hue" else 1e-5)


def test_hsv_round_trip():
    x = images()
    np.testing.assert_allclose(da.hsv_to_rgb(da.rgb_to_hsv(x)), x, atol=1e-5)
    np.testing.assert_allclose(da.rgb_to_hsv(x), tf.image.rgb_to_hsv(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_grayscale_solarize_and_blur_match_tf(channels):
    x = images(channels=channels, size=24)
    np.testing.assert_allclose(da.grayscale(x), tf_per_image(augment.grayscale, x), atol=1e-5)
    np.testing.assert_allclose(da.solarize(x), tf_per_image(augment.solarize, x), atol=1e-6)
    sigma = np.asarray([0.1, 0.5, 1.0, 1.5, 2.0, 3.0], np.float32)
    seed = tf.constant([1, 2], tf.int64)
    blurred = tf_per_image(lambda im, s: augment.gaussian_blur(im, seed, (s, s)), x, sigma)
    np.testing.assert_allclose(da.gaussian_blur(x, sigma), blurred, atol=1e-5)


def test_no_augmentation_is_identity_and_normalises():
    x = images()
    out = jax.jit(lambda x, k: da.augment_colour(x, k, view(12, **NO_AUGMENT), 0.0, 1.0))(
        x, jax.random.key(0))
    np.testing.assert_array_equal(out, x)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    out = da.augment_colour(x, jax.random.key(0), view(12, **NO_AUGMENT), mean, std)
    np.testing.assert_allclose(out, (x - np.array(mean)) / np.array(std), atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_keys_shapes_and_jit(channels):
    x = images(batch=8, channels=channels)
    v = view(12, **{**BYOL_VIEW2, "blur_prob": 0.5})
    aug = jax.jit(lambda x, k: da.augment_colour(x, k, v, 0.5, 0.25))
    a, b, c = (np.asarray(aug(x, jax.random.key(k))) for k in (1, 1, 2))
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # The examples are the same image but get independent draws.
    same = np.asarray(aug(np.repeat(x[:1], 8, axis=0), jax.random.key(3)))
    assert len({same[i].tobytes() for i in range(8)}) > 1
    unnormalised = a * 0.25 + 0.5
    assert unnormalised.min() >= -1e-6 and unnormalised.max() <= 1 + 1e-6


def test_augment_views_folds_key_per_view():
    x = images(batch=4)
    brightness = view(12, jitter_prob=1.0, brightness=0.4, contrast=0.0, saturation=0.0, hue=0.0,
                      grayscale_prob=0.0)
    views = (brightness, brightness)
    key = jax.random.key(5)
    out = jax.jit(lambda x, k: da.augment_views((x, x), k, views, 0.0, 1.0))(x, key)
    assert isinstance(out, tuple) and len(out) == 2
    assert not np.array_equal(out[0], out[1])
    second = jax.jit(lambda x, k: da.augment_colour(x, k, views[1], 0.0, 1.0))
    np.testing.assert_allclose(out[1], second(x, jax.random.fold_in(key, 1)), atol=1e-6)


def test_config_dict_view():
    from ml_collections import ConfigDict

    config = ConfigDict(dict(BYOL_VIEW2, blur_sigma=[0.1, 2.0]))
    out = da.augment_colour(images(), jax.random.key(0), config, 0.0, 1.0)
    np.testing.assert_array_equal(out, da.augment_colour(
        images(), jax.random.key(0), view(12, **BYOL_VIEW2), 0.0, 1.0))


def test_module_does_not_import_tensorflow():
    code = "import sys, cl_jax.device_augment; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def summaries(outputs):
    """Per-output statistics [N, k]: channel means and stds, max, chroma, whether it is grey.

    Rounded, so that the point masses (e.g. the unchanged image) coincide across TF and JAX.
    """
    n, channels = outputs.shape[0], outputs.shape[-1]
    flat = outputs.reshape(n, -1, channels)
    chroma = np.ptp(flat, axis=-1)
    grey = chroma.max(axis=1) < 1e-6
    stats = [flat.mean(1), flat.std(1), flat.max((1, 2)), chroma.mean(1), grey]
    return np.column_stack(stats).round(5)


@pytest.mark.parametrize("channels, settings", [
    (3, BYOL_VIEW2),
    (1, dict(BYOL_VIEW2, blur_prob=0.5)),
])
def test_colour_pipeline_distribution_matches_tf(channels, settings):
    n, size = 3000, 12
    # An orange image with noise and a few black and white pixels: hue and saturation move
    # its channel means and chroma.
    noise = images(batch=1, size=size, channels=channels)[0] - 0.5
    image = np.clip(np.array([200, 90, 40][:channels]) + 100 * noise, 0, 255).astype(np.uint8)
    image[0, :2] = [[0], [255]]
    v = view(size, **settings)

    def tf_view(i):
        return augment.augment_view(tf.constant(image), tf.stack([tf.constant(9, tf.int64), i]),
                                    v)

    tf_out = next(iter(tf.data.Dataset.range(n).map(tf_view, num_parallel_calls=2).batch(n)))
    floats = tf.image.convert_image_dtype(image, tf.float32).numpy()
    augment_jax = jax.jit(lambda x, k: da.augment_colour(x, k, v, 0.0, 1.0))
    jax_out = augment_jax(np.repeat(floats[None], n, 0), jax.random.key(9))
    expected, got = summaries(tf_out.numpy()), summaries(np.asarray(jax_out))
    # Each statistic's mean agrees within 4.5 standard errors, and its distribution by a
    # Kolmogorov-Smirnov distance below the 0.1% critical value.
    stderr = np.sqrt((expected.var(0) + got.var(0)) / n)
    np.testing.assert_array_less(np.abs(expected.mean(0) - got.mean(0)), 4.5 * stderr + 1e-6)
    for column in range(expected.shape[1]):
        a, b = np.sort(expected[:, column]), np.sort(got[:, column])
        grid = np.concatenate([a, b])
        ks = np.abs(np.searchsorted(a, grid, "right") - np.searchsorted(b, grid, "right")) / n
        assert ks.max() < 1.95 * np.sqrt(2 / n), (column, ks.max())
    if channels == 3:  # grey: a grayscale draw (0.2), never from jitter alone
        assert abs(got[:, -1].mean() - 0.2) < 0.03
