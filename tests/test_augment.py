"""Augmentation ops: shapes, ranges, determinism, and the torchvision definitions."""

import numpy as np
import pytest
import tensorflow as tf

from cl_jax.data import augment
from cl_jax.data.augment import ViewAugment


def seed(i):
    return tf.constant([7, i], tf.int64)


def random_image(shape=(20, 24, 3), s=0):
    return tf.constant(np.random.RandomState(s).randint(0, 256, shape, np.uint8))


@pytest.mark.parametrize("channels", [1, 3])
def test_view_shape_range_and_determinism(channels):
    image = random_image((20, 24, channels))
    view = ViewAugment(size=12, blur_prob=0.5, solarize_prob=0.5)
    a = augment.augment_view(image, seed(1), view).numpy()
    b = augment.augment_view(image, seed(1), view).numpy()
    c = augment.augment_view(image, seed(2), view).numpy()
    assert a.shape == (12, 12, channels) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_crop_window_follows_torchvision_definition():
    h, w, scale, ratio = 40, 60, (0.2, 0.6), (3 / 4, 4 / 3)
    areas, aspects = [], []
    for i in range(300):
        top, left, ch, cw = (int(v) for v in augment.crop_window(h, w, seed(i), scale, ratio))
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w
        areas.append(ch * cw / (h * w))
        aspects.append(cw / ch)
    # Rounding the side lengths moves area and aspect slightly past the nominal ranges.
    assert 0.18 <= min(areas) and max(areas) <= 0.63
    assert 0.7 <= min(aspects) and max(aspects) <= 1.43
    assert np.std(areas) > 0.08  # spread over the range, not stuck at one value


def test_crop_window_falls_back_to_centre_crop():
    # No crop of area >= 0.99 with aspect in [2, 3] fits a square image: centre crop, ratio 2.
    top, left, ch, cw = (int(v) for v in augment.crop_window(30, 30, seed(0), (0.99, 1.0),
                                                            (2.0, 3.0)))
    assert (top, left, ch, cw) == (7, 0, 15, 30)  # top = (30 - 15) // 2


def test_colour_ops_match_torchvision_formulas():
    x = np.random.RandomState(0).uniform(size=(5, 6, 3)).astype(np.float32)
    gray = x @ np.array([0.2989, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(augment.grayscale(tf.constant(x))[..., 0], gray, atol=1e-3)
    np.testing.assert_allclose(augment.adjust_brightness(tf.constant(x), 1.3),
                               np.clip(1.3 * x, 0, 1), atol=1e-6)
    np.testing.assert_allclose(augment.adjust_contrast(tf.constant(x), 0.6),
                               np.clip(0.6 * x + 0.4 * gray.mean(), 0, 1), atol=1e-3)
    np.testing.assert_allclose(augment.adjust_saturation(tf.constant(x), 0.5),
                               np.clip(0.5 * x + 0.5 * gray[..., None], 0, 1), atol=1e-3)
    np.testing.assert_allclose(augment.solarize(tf.constant(x)), np.where(x < 0.5, x, 1 - x))


def test_hue_rotation_keeps_value_and_full_turn_is_identity():
    x = tf.constant(np.random.RandomState(1).uniform(size=(4, 4, 3)).astype(np.float32))
    shifted = augment.adjust_hue(x, 0.25).numpy()
    np.testing.assert_allclose(shifted.max(-1), x.numpy().max(-1), atol=1e-5)
    np.testing.assert_allclose(augment.adjust_hue(x, 0.5), augment.adjust_hue(x, -0.5),
                               atol=1e-5)


def test_gaussian_blur_preserves_constant_image_and_smooths():
    flat = tf.fill([16, 16, 3], 0.3)
    np.testing.assert_allclose(augment.gaussian_blur(flat, seed(0), (1.0, 2.0)), 0.3, atol=1e-6)
    noise = tf.constant(np.random.RandomState(2).uniform(size=(32, 32, 1)).astype(np.float32))
    blurred = augment.gaussian_blur(noise, seed(0), (1.5, 2.0)).numpy()
    assert blurred.shape == (32, 32, 1)
    assert blurred.std() < 0.5 * noise.numpy().std()


def test_probabilities_zero_and_one_are_exact():
    image = random_image((16, 16, 3))
    identity = ViewAugment(size=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
                           jitter_prob=0.0, grayscale_prob=0.0)
    out = augment.augment_view(image, seed(3), identity).numpy()
    np.testing.assert_allclose(out, image.numpy() / 255.0, atol=1e-6)
    flipped = ViewAugment(**{**identity.__dict__, "flip_prob": 1.0, "grayscale_prob": 1.0,
                             "solarize_prob": 1.0})
    out = augment.augment_view(image, seed(3), flipped).numpy()
    expected = augment.solarize(augment.grayscale(tf.constant(image.numpy()[:, ::-1] / 255.0,
                                                              tf.float32))).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert np.allclose(out[..., 0], out[..., 1])


def test_solarize_probability_is_respected():
    image = tf.fill([8, 8, 1], tf.constant(230, tf.uint8))
    view = ViewAugment(size=8, crop_scale=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0,
                       grayscale_prob=0.0, solarize_prob=0.2)
    solarized = [augment.augment_view(image, seed(i), view).numpy().mean() < 0.5
                 for i in range(400)]
    assert 0.14 < np.mean(solarized) < 0.26


def test_center_crop():
    image = tf.constant(np.arange(8 * 10, dtype=np.float32).reshape(8, 10, 1) / 80.0)
    out = augment.center_crop(image, 4, crop_fraction=0.5).numpy()
    assert out.shape == (4, 4, 1)
    np.testing.assert_allclose(out[..., 0], image.numpy()[2:6, 3:7, 0], atol=1e-6)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_fused_decode_and_crop_gives_the_decoded_image_crop(fmt):
    """Decoding only the crop window of a JPEG gives the pixels of crop-after-decode."""
    rng = np.random.RandomState(0)
    smooth = tf.image.resize(rng.randint(0, 256, (6, 7, 3)).astype(np.float32), (48, 56))
    pixels = tf.cast(tf.clip_by_value(smooth + rng.randn(48, 56, 3) * 8, 0, 255), tf.uint8)
    encoded = tf.io.encode_jpeg(pixels, quality=90) if fmt == "jpeg" else tf.io.encode_png(pixels)
    decoded = tf.io.decode_image(encoded, channels=3)
    for s in range(5):
        seed = tf.constant([s, 7], tf.int64)
        fused = augment.decode_random_crop(encoded, seed, (0.08, 1.0), (3 / 4, 4 / 3), 3)
        whole = augment.random_crop(decoded, seed, (0.08, 1.0), (3 / 4, 4 / 3))
        assert fused.shape == whole.shape and fused.dtype == tf.uint8
        difference = np.abs(fused.numpy().astype(int) - whole.numpy().astype(int))
        # Equal inside; at the window's edge libjpeg upsamples chroma without the pixels
        # beyond it, so the outermost pixels may differ a little.
        assert difference[1:-1, 1:-1].max() == 0
        assert difference.mean() < 0.5
    view = ViewAugment(size=16)
    seed = tf.constant([3, 1], tf.int64)
    views = [augment.augment_view(encoded, seed, view, channels=3),
             augment.augment_view(decoded, seed, view)]
    assert np.abs(views[0] - views[1]).mean() < 2e-3
