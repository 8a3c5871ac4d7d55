"""RandAugment / AutoAugment ops against hand-worked numbers, NumPy and PIL; seeds; tf.data."""

import numpy as np
import pytest
import tensorflow as tf

from cl_jax.data import randaugment as ra

FILL = 128


def u8(values):
    return tf.constant(np.asarray(values, np.uint8))


def seed(i):
    return tf.constant([5, i], tf.int64)


def column(values):
    """A (1, n, 1) uint8 image."""
    return u8(np.asarray(values)[None, :, None])


def np_blend(degenerate, image, factor):
    """PIL ImageEnhance's blend in the reference's float32: trunc(clip(d + f (x - d)))."""
    d = np.asarray(degenerate, np.float32)
    out = d + np.float32(factor) * (np.asarray(image, np.float32) - d)
    return np.clip(out, 0, 255).astype(np.uint8)


def np_grey(image):
    """tf.image's uint8 luma: floor(601 luma / 255 * 255.5), for pixels away from rounding."""
    luma = image.astype(np.float64) @ np.array([0.2989, 0.587, 0.114]) / 255.0 * 255.5
    assert np.all(np.abs(luma - np.round(luma)) > 1e-3)
    return np.floor(luma).astype(np.int64)[..., None]


def safe_colour_image(shape, rng):
    """RGB pixels whose luma is not within 1e-2 of an integer (no float32 rounding ties)."""
    pixels = rng.integers(0, 256, (40 * shape[0] * shape[1], 3))
    luma = pixels @ np.array([0.2989, 0.587, 0.114]) / 255.0 * 255.5
    keep = pixels[np.abs(luma - np.round(luma)) > 1e-2]
    return keep[: shape[0] * shape[1]].reshape(*shape, 3).astype(np.uint8)


# --- pixel ops ----------------------------------------------------------------------------

VALUES = [0, 15, 16, 100, 127, 128, 200, 255]


def test_posterize_solarize_invert_by_hand():
    x = column(VALUES)
    out = lambda image: image.numpy()[0, :, 0].tolist()
    assert out(ra.posterize(x, 4)) == [0, 0, 16, 96, 112, 128, 192, 240]
    assert out(ra.posterize(x, 0)) == [0, 0, 0, 0, 0, 128, 128, 128]  # TF's clamped shift 7
    assert out(ra.posterize(x, 8)) == VALUES and out(ra.posterize(x, 12)) == VALUES
    assert out(ra.solarize(x, 128)) == [0, 15, 16, 100, 127, 127, 55, 0]
    assert out(ra.solarize(x, 256)) == VALUES
    assert out(ra.solarize(x, 0)) == [255 - v for v in VALUES]
    assert out(ra.solarize_add(x, 50)) == [50, 65, 66, 150, 177, 128, 200, 255]
    assert out(ra.solarize_add(x, 200)) == [200, 215, 216, 255, 255, 128, 200, 255]
    assert out(ra.invert(x)) == [255, 240, 239, 155, 128, 127, 55, 0]


def test_autocontrast_per_channel_by_hand_and_pil():
    image_module = pytest.importorskip("PIL.Image")
    ops = pytest.importorskip("PIL.ImageOps")
    red = np.array([[51, 60, 136], [100, 51, 90]])  # span 85: scale 3 exactly
    green = np.full((2, 3), 77)  # constant: unchanged
    blue = np.array([[10, 95, 40], [11, 12, 13]])
    image = np.stack([red, green, blue], -1).astype(np.uint8)
    expected = np.stack([(red - 51) * 3, green, (blue - 10) * 3], -1)
    np.testing.assert_array_equal(ra.autocontrast(u8(image)).numpy(), expected)
    pil = np.asarray(ops.autocontrast(image_module.fromarray(image)))
    np.testing.assert_array_equal(ra.autocontrast(u8(image)).numpy(), pil)
    np.testing.assert_array_equal(ra.autocontrast(u8(red[..., None])).numpy()[..., 0],
                                  (red - 51) * 3)


@pytest.mark.parametrize("channels", [1, 3])
def test_equalize_matches_pil(channels):
    image_module = pytest.importorskip("PIL.Image")
    ops = pytest.importorskip("PIL.ImageOps")
    rng = np.random.default_rng(channels)
    skewed = (rng.random((32, 32, channels)) ** 3 * 200).astype(np.uint8)  # step 3 or 4
    tiny = rng.integers(0, 256, (4, 4, channels)).astype(np.uint8)  # step 0: unchanged
    for image in (skewed, tiny):
        pil_in = image_module.fromarray(image[..., 0] if channels == 1 else image)
        pil = np.asarray(ops.equalize(pil_in)).reshape(image.shape)
        out = ra.equalize(u8(image)).numpy()
        np.testing.assert_array_equal(out, pil)
    assert not np.array_equal(ra.equalize(u8(skewed)).numpy(), skewed)
    np.testing.assert_array_equal(ra.equalize(u8(tiny)).numpy(), tiny)


@pytest.mark.parametrize("factor", [0.37, 1.9])
def test_brightness_contrast_color_blends(factor):
    rng = np.random.default_rng(1)
    rgb = safe_colour_image((4, 5), rng)
    grey = rng.integers(0, 256, (4, 5, 1)).astype(np.uint8)
    np.testing.assert_array_equal(ra.brightness(u8(rgb), factor).numpy(),
                                  np_blend(np.zeros_like(rgb), rgb, factor))
    for image, luma in ((rgb, np_grey(rgb)), (grey, grey.astype(np.int64))):
        mean = np.floor(luma.mean() + 0.5)
        np.testing.assert_array_equal(ra.contrast(u8(image), factor).numpy(),
                                      np_blend(np.full(image.shape, mean), image, factor))
    np.testing.assert_array_equal(ra.color(u8(rgb), factor).numpy(),
                                  np_blend(np.repeat(np_grey(rgb), 3, -1), rgb, factor))
    np.testing.assert_array_equal(ra.color(u8(grey), factor).numpy(), grey)


def np_smooth(image):
    """PIL's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]] / 13 (floored), border unchanged."""
    x = image.astype(np.int64)
    out = x.copy()
    for i in range(1, x.shape[0] - 1):
        for j in range(1, x.shape[1] - 1):
            out[i, j] = (x[i - 1:i + 2, j - 1:j + 2].sum(axis=(0, 1)) + 4 * x[i, j]) // 13
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_sharpness_blends_with_smoothed_interior(channels):
    image = np.random.default_rng(channels).integers(0, 256, (5, 6, channels)).astype(np.uint8)
    for factor in (0.37, 1.9):
        np.testing.assert_array_equal(ra.sharpness(u8(image), factor).numpy(),
                                      np_blend(np_smooth(image), image, factor))
    flat = np.full((4, 4, channels), 3, np.uint8)  # float32 weights of 1/13 would give 2
    np.testing.assert_array_equal(ra.sharpness(u8(flat), 0.5).numpy(), flat)


# --- geometric ops ------------------------------------------------------------------------


def test_rotate_whole_quarter_turns():
    square = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
    for degrees, turns in ((90.0, 1), (-90.0, -1), (180.0, 2)):  # counter-clockwise
        np.testing.assert_array_equal(ra.rotate(u8(square), degrees).numpy(),
                                      np.rot90(square, turns))
    # 3 x 5 about its centre (x, y) = (2, 1): output (x, y) <- input (3 - y, x - 1).
    wide = np.arange(45, dtype=np.uint8).reshape(3, 5, 3)
    expected = np.full_like(wide, FILL)
    for y in range(3):
        for x in range(1, 4):
            expected[y, x] = wide[x - 1, 3 - y]
    np.testing.assert_array_equal(ra.rotate(u8(wide), 90.0).numpy(), expected)


def test_shear_and_translate_whole_pixels():
    image = np.arange(1, 61, dtype=np.uint8).reshape(4, 5, 3)

    def shifted(dy, dx):
        """out[y, x] = image[y + dy(y, x), x + dx(y, x)], grey outside."""
        out = np.full_like(image, FILL)
        for y in range(4):
            for x in range(5):
                sy, sx = y + dy(y, x), x + dx(y, x)
                if 0 <= sy < 4 and 0 <= sx < 5:
                    out[y, x] = image[sy, sx]
        return out

    zero = lambda y, x: 0
    cases = [
        (ra.shear_x(u8(image), 1.0), shifted(zero, lambda y, x: y)),
        (ra.shear_x(u8(image), -1.0), shifted(zero, lambda y, x: -y)),
        (ra.shear_y(u8(image), 1.0), shifted(lambda y, x: x, zero)),
        (ra.translate_x(u8(image), 2.0), shifted(zero, lambda y, x: 2)),
        (ra.translate_x(u8(image), -1.0), shifted(zero, lambda y, x: -1)),
        (ra.translate_y(u8(image), 1.0), shifted(lambda y, x: 1, zero)),
        (ra.translate_y(u8(image), -2.0), shifted(lambda y, x: -2, zero)),
    ]
    for out, expected in cases:
        np.testing.assert_array_equal(out.numpy(), expected)
    assert ra.translate_x(u8(image), 2.0).numpy()[0, 0, 0] == image[0, 2, 0]  # moves left


def test_cutout_grey_square_clipped_to_image():
    image = np.zeros((4, 5, 3), np.uint8)
    expected = image.copy()
    expected[0:2, 0:2] = FILL
    np.testing.assert_array_equal(ra.cutout(u8(image), 1, 1, 1).numpy(), expected)
    expected = image.copy()
    expected[0:2, 2:5] = FILL  # rows [-2, 2), cols [2, 6), clipped
    np.testing.assert_array_equal(ra.cutout(u8(image), 2, 0, 4).numpy(), expected)


# --- level -> argument ------------------------------------------------------------------


def test_level_to_arg_follows_big_vision():
    args = lambda name, level, i=0: ra.level_to_arg(name, level, seed(i), 8, 16, 0.25, 0.25)
    value = lambda name, level, i: float(args(name, level, i)[0])
    for name, level, magnitude in (("Rotate", 5, 15.0), ("Rotate", 30, 90.0),
                                   ("ShearX", 10, 0.3), ("ShearY", 5, 0.15),
                                   ("TranslateX", 5, 2.0), ("TranslateY", 5, 1.0)):
        values = [value(name, level, i) for i in range(16)]
        np.testing.assert_allclose(np.abs(values), magnitude, rtol=1e-6)
        assert min(values) < 0 < max(values)  # random sign
    ints = lambda name, levels: [int(args(name, level)[0]) for level in levels]
    for name in ("Color", "Contrast", "Brightness", "Sharpness"):
        factors = [float(args(name, level)[0]) for level in (0, 5, 10)]
        assert factors == pytest.approx([0.1, 1.0, 1.9], rel=1e-6)
    assert ints("Posterize", (0, 5, 9, 10, 30)) == [0, 2, 3, 4, 12]
    assert ints("Solarize", (0, 3, 5, 10)) == [0, 76, 128, 256]
    # Python's int() of float64 products: float32 would give 230 and 253 at levels 21, 23.
    assert ints("SolarizeAdd", (0, 3, 5, 10, 21, 23)) == [0, 33, 55, 110, 231, 252]
    assert args("Identity", 7) == () and args("Equalize", 7) == ()
    pad, row, col = args("Cutout", 5)
    assert int(pad) == 1 and 0 <= int(row) < 8 and 0 <= int(col) < 16
    with pytest.raises(ValueError, match="unknown augmentation op"):
        args("Blur", 5)


# --- randaugment --------------------------------------------------------------------------


def test_randaugment_applies_every_selected_op():
    x = np.array([0.0, 0.1, 0.5, 0.77, 1.0], np.float32).reshape(1, 5, 1)
    values = np.round(x * 255)
    for num_ops in (1, 3):
        out = ra.randaugment(tf.constant(x), seed(0), num_ops, 9, ops=("Invert",)).numpy()
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, (255 - values) / 255, atol=1e-7)
    out = ra.randaugment(tf.constant(x), seed(0), 1, 10, ops=("Posterize",)).numpy()
    np.testing.assert_allclose(out, (values.astype(np.uint8) & 0xF0) / 255, atol=1e-7)
    with pytest.raises(ValueError, match="unknown augmentation ops"):
        ra.randaugment(tf.constant(x), seed(0), 2, 9, ops=("Invert", "Blur"))
    with pytest.raises(ValueError, match="magnitude"):
        ra.randaugment(tf.constant(x), seed(0), 2, 31)


def map_over(fn, image, seeds):
    """``fn(image, seed)`` for each seed, in one tf.data map (graph mode, one trace)."""
    images = np.repeat(image[None], len(seeds), 0)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.asarray(seeds, np.int64))).map(fn)
    assert dataset.element_spec.shape == image.shape  # static shape kept
    return np.stack([out.numpy() for out in dataset])


def test_randaugment_deterministic_in_tf_data():
    image = np.random.default_rng(0).random((6, 6, 3)).astype(np.float32)
    seeds = [[0, 0], [0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [0, 5]]
    out = map_over(lambda x, s: ra.randaugment(x, s, 2, 15), image, seeds)
    assert out.shape == (7, 6, 6, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out[0], out[1])
    assert len({o.tobytes() for o in out[1:]}) >= 5  # distinct seeds mostly differ
    eager = ra.randaugment(image, tf.constant(seeds[0], tf.int64), 2, 15)
    np.testing.assert_array_equal(eager.numpy(), out[0])  # eager and graph agree


def test_randaugment_greyscale_deterministic_eager():
    image = tf.constant(np.random.default_rng(1).random((5, 5, 1)).astype(np.float32))
    out = [ra.randaugment(image, seed(i), 2, 9).numpy() for i in (0, 0, 1, 2, 3, 4, 5)]
    assert out[0].shape == (5, 5, 1) and out[0].dtype == np.float32
    assert min(o.min() for o in out) >= 0.0 and max(o.max() for o in out) <= 1.0
    np.testing.assert_array_equal(out[0], out[1])
    assert len({o.tobytes() for o in out[1:]}) >= 5


# --- autoaugment --------------------------------------------------------------------------


def test_imagenet_policy_is_big_vision_v0():
    policy = ra.IMAGENET_POLICY
    assert len(policy) == 25 and all(len(sub) == 2 for sub in policy)
    assert policy[0] == (("Equalize", 0.8, 1), ("ShearY", 0.8, 4))
    assert policy[6] == (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3))
    assert policy[-1] == (("Color", 0.8, 6), ("Rotate", 0.4, 5))
    names = {name for sub in policy for name, _, _ in sub}
    assert "Cutout" not in names and names <= set(ra.OPS)
    assert all(0 <= p <= 1 and 0 <= level <= 10 for sub in policy for _, p, level in sub)
    with pytest.raises(ValueError, match="unknown AutoAugment policy 'cifar'"):
        ra.autoaugment(tf.zeros((4, 4, 3)), seed(0), policy="cifar")


def test_autoaugment_imagenet_in_tf_data():
    image = np.random.default_rng(2).random((6, 6, 1)).astype(np.float32)
    seeds = [[1, 0], [1, 0]] + [[1, i] for i in range(1, 11)]
    out = map_over(lambda x, s: ra.autoaugment(x, s), image, seeds)
    assert out.shape == (12, 6, 6, 1) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out[0], out[1])
    assert len({o.tobytes() for o in out[1:]}) >= 5


def test_autoaugment_draws_one_subpolicy_and_applies_with_its_probs():
    values = np.array([17, 100, 200, 250])
    policy = [[("Invert", 1.0, 0)], [("Posterize", 0.5, 10), ("Invert", 0.0, 0)]]
    outcomes = {"invert": 255 - values, "posterize": values & 0xF0, "none": values}
    n = 400
    out = map_over(lambda x, s: ra.autoaugment(x, s, policy=policy),
                   (values / 255).astype(np.float32).reshape(1, 4, 1), [[2, i] for i in range(n)])
    pixels = np.round(out[:, 0, :, 0] * 255)
    counts = {name: int(np.all(pixels == v, axis=1).sum()) for name, v in outcomes.items()}
    assert sum(counts.values()) == n  # every output is one of the three outcomes
    # Expected 1/2, 1/4, 1/4; binomial sd ~ 10 and 9: 4.5 sd.
    assert abs(counts["invert"] - n / 2) < 45
    assert abs(counts["posterize"] - n / 4) < 40 and abs(counts["none"] - n / 4) < 40
