"""Per-view image augmentation in tf.data, stateless: every random draw comes from a seed.

Images are float32 in [0, 1], (H, W, C) with C = 1 or 3, until ``normalize``. The ops
follow torchvision's definitions (the convention of solo-learn, lightly and the BYOL/SimCLR
PyTorch ports): RandomResizedCrop (area scale and log-uniform aspect ratio, 10 attempts,
centre-crop fallback), horizontal flip, ColorJitter (multiplicative brightness, contrast
and saturation blended with the grey image, hue rotation; the four in random order, all
applied with probability ``jitter_prob``), RandomGrayscale, GaussianBlur (sigma uniform,
kernel 10% of the image side, reflect padding) and solarize at 0.5.

BYOL's views (Grill et al. 2020, table 6): crop scale (0.08, 1), flip 0.5, jitter
(0.4, 0.4, 0.2, 0.1) with p=0.8, grayscale 0.2, blur 1.0 / 0.1, solarize 0.0 / 0.2.
SimCLR's (Chen et al. 2020, appendix A): the same crop and flip, jitter (0.8, 0.8, 0.8, 0.2)
x strength with p=0.8, grayscale 0.2, blur 0.5 on both views (ImageNet only), no solarize.
"""

import math

import tensorflow as tf

from cl_jax.colour import D65_WHITE, SRGB_TO_XYZ
from cl_jax.views import ViewAugment


def split_seed(seed, num):
    """``num`` independent stateless seeds (each shape [2]) from one."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def uniform(seed, minval=0.0, maxval=1.0, shape=()):
    return tf.random.stateless_uniform(shape, seed, minval=minval, maxval=maxval)


def with_probability(prob, seed, op, image):
    """``op(image)`` with probability ``prob``, else ``image``."""
    if prob <= 0.0:
        return image
    if prob >= 1.0:
        return op(image)
    return tf.cond(uniform(seed) < prob, lambda: op(image), lambda: image)


# --- geometry -----------------------------------------------------------------------------


def crop_window(height, width, seed, scale, ratio, attempts=10):
    """torchvision's ``RandomResizedCrop.get_params``: (top, left, crop_h, crop_w).

    Draws ``attempts`` (area, aspect) candidates at once and takes the first that fits;
    if none fits, a centre crop with the aspect ratio clamped to ``ratio``.
    """
    area_seed, ratio_seed, top_seed, left_seed = split_seed(seed, 4)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    area = h * w * uniform(area_seed, scale[0], scale[1], [attempts])
    aspect = tf.exp(uniform(ratio_seed, math.log(ratio[0]), math.log(ratio[1]), [attempts]))
    crop_w = tf.round(tf.sqrt(area * aspect))
    crop_h = tf.round(tf.sqrt(area / aspect))
    fits = (crop_w > 0) & (crop_h > 0) & (crop_w <= w) & (crop_h <= h)
    first = tf.argmax(tf.cast(fits, tf.int32))
    in_ratio = w / h
    fallback_w = tf.where(in_ratio < ratio[0], w,
                          tf.where(in_ratio > ratio[1], tf.round(h * ratio[1]), w))
    fallback_h = tf.where(in_ratio < ratio[0], tf.round(w / ratio[0]), h)
    any_fits = tf.reduce_any(fits)
    crop_h = tf.cast(tf.where(any_fits, crop_h[first], fallback_h), tf.int32)
    crop_w = tf.cast(tf.where(any_fits, crop_w[first], fallback_w), tf.int32)
    top = tf.where(any_fits, tf.random.stateless_uniform(
        [], top_seed, 0, height - crop_h + 1, dtype=tf.int32), (height - crop_h) // 2)
    left = tf.where(any_fits, tf.random.stateless_uniform(
        [], left_seed, 0, width - crop_w + 1, dtype=tf.int32), (width - crop_w) // 2)
    return top, left, crop_h, crop_w


def resize(image, size):
    """Bilinear resize to ``size`` x ``size`` with antialiasing (torchvision v2 default)."""
    resized = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 1.0)


def random_crop(image, seed, scale, ratio):
    """The ``crop_window`` of a decoded image (any dtype)."""
    shape = tf.shape(image)
    top, left, crop_h, crop_w = crop_window(shape[0], shape[1], seed, scale, ratio)
    return tf.image.crop_to_bounding_box(image, top, left, crop_h, crop_w)


def decode_random_crop(encoded, seed, scale, ratio, channels):
    """``random_crop`` of an encoded image, uint8 [h, w, channels]. A JPEG is decoded only
    inside the window (``tf.image.decode_and_crop_jpeg``, as the BYOL and SimCLR TF
    references do); other formats are decoded whole, then cropped. The window is the one
    ``random_crop`` takes on the decoded image, so both give the same pixels."""

    def jpeg():
        shape = tf.image.extract_jpeg_shape(encoded)
        window = tf.stack(crop_window(shape[0], shape[1], seed, scale, ratio))
        return tf.image.decode_and_crop_jpeg(encoded, window, channels=channels)

    def other():
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        return random_crop(image, seed, scale, ratio)

    crop = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
    crop.set_shape([None, None, channels])
    return crop


def center_crop(image, size, crop_fraction=1.0):
    """Eval transform: the central square of side ``crop_fraction * min(h, w)``, resized.

    ``crop_fraction=0.875`` is the usual ImageNet "resize 256, centre-crop 224".
    """
    shape = tf.shape(image)
    side = tf.cast(tf.round(crop_fraction * tf.cast(tf.minimum(shape[0], shape[1]),
                                                      tf.float32)), tf.int32)
    image = tf.image.crop_to_bounding_box(image, (shape[0] - side) // 2,
                                          (shape[1] - side) // 2, side, side)
    return resize(image, size)


# --- colour -------------------------------------------------------------------------------


def grayscale(image):
    """ITU-R 601 luma (tf.image and torchvision: 0.2989, 0.587, 0.114), kept at the input's
    channel count."""
    if image.shape[-1] == 1:
        return image
    return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


def adjust_brightness(image, factor):
    return tf.clip_by_value(image * factor, 0.0, 1.0)


def adjust_contrast(image, factor):
    mean = tf.reduce_mean(grayscale(image)[..., :1])
    return tf.clip_by_value(factor * image + (1.0 - factor) * mean, 0.0, 1.0)


def adjust_saturation(image, factor):
    return tf.clip_by_value(factor * image + (1.0 - factor) * grayscale(image), 0.0, 1.0)


def adjust_hue(image, delta):
    return tf.clip_by_value(tf.image.adjust_hue(image, delta), 0.0, 1.0)


def color_jitter(image, seed, brightness, contrast, saturation, hue):
    """torchvision ColorJitter: factors drawn uniformly, the four ops in random order."""
    order_seed, b_seed, c_seed, s_seed, h_seed = split_seed(seed, 5)
    factor = lambda s, x: uniform(s, max(0.0, 1.0 - x), 1.0 + x)
    ops = [
        lambda im: adjust_brightness(im, factor(b_seed, brightness)) if brightness else im,
        lambda im: adjust_contrast(im, factor(c_seed, contrast)) if contrast else im,
    ]
    if image.shape[-1] == 3:  # saturation and hue are undefined for one-channel images
        ops += [
            lambda im: adjust_saturation(im, factor(s_seed, saturation)) if saturation else im,
            lambda im: adjust_hue(im, uniform(h_seed, -hue, hue)) if hue else im,
        ]
    order = tf.argsort(uniform(order_seed, shape=[len(ops)]))
    for position in range(len(ops)):
        image = tf.switch_case(order[position], [lambda op=op, im=image: op(im) for op in ops])
    return image


def gaussian_blur(image, seed, sigma_range, kernel_size=None):
    """Separable Gaussian blur, sigma ~ U(sigma_range), kernel ~10% of the image side.

    The kernel has ``2 * (side // 20) + 1`` taps (23 at 224 pixels, as in BYOL and SimCLR),
    with reflect padding as torchvision's GaussianBlur.
    """
    side = image.shape[0]
    radius = (kernel_size // 2) if kernel_size else max(side // 20, 1)
    sigma = uniform(seed, sigma_range[0], sigma_range[1])
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(x / sigma))
    kernel /= tf.reduce_sum(kernel)
    channels = image.shape[-1]
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]],
                    mode="REFLECT")
    vertical = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
    horizontal = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(padded, vertical, [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, horizontal, [1, 1, 1, 1], "VALID")
    return blurred[0]


def solarize(image, threshold=0.5):
    return tf.where(image < threshold, image, 1.0 - image)


def normalize(image, mean, std):
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


COLOR_SPACES = ("rgb", "lab")


def rgb_to_lab(image):
    """sRGB in [0, 1] (..., 3) -> CIE L*a*b* (D65): L in [0, 100], a and b about [-100, 100].

    Gamma-expand (``c / 12.92`` up to 0.04045, else ``((c + 0.055) / 1.055) ** 2.4``), to XYZ
    by ``SRGB_TO_XYZ``, divide by the white, ``f(t) = t ** (1/3)`` above ``(6/29) ** 3`` else
    ``t / (3 (6/29) ** 2) + 4/29``; ``L = 116 f(Y) - 16``, ``a = 500 (f(X) - f(Y))``,
    ``b = 200 (f(Y) - f(Z))`` (CIE 15:2004, as scikit-image computes it).
    """
    image = tf.convert_to_tensor(image, tf.float32)
    linear = tf.where(image <= 0.04045, image / 12.92,
                      tf.pow((tf.maximum(image, 0.04045) + 0.055) / 1.055, 2.4))
    xyz = tf.tensordot(linear, tf.constant(SRGB_TO_XYZ, tf.float32), [[-1], [1]])
    xyz = xyz / tf.constant(D65_WHITE, tf.float32)
    delta = 6.0 / 29.0
    f = tf.where(xyz > delta**3, tf.pow(tf.maximum(xyz, delta**3), 1.0 / 3.0),
                 xyz / (3.0 * delta**2) + 4.0 / 29.0)
    fx, fy, fz = tf.unstack(f, axis=-1)
    return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def to_color_space(image, color_space):
    """``image`` (RGB in [0, 1]) in ``color_space``: ``"rgb"`` (unchanged) or ``"lab"``."""
    if color_space == "rgb":
        return image
    if color_space == "lab":
        return rgb_to_lab(image)
    raise ValueError(f"color space must be one of {COLOR_SPACES}, got {color_space!r}")


# --- a whole view -------------------------------------------------------------------------


def policy_augment(image, seed, view: ViewAugment):
    """``view``'s RandAugment (``randaugment_num_ops`` > 0) or AutoAugment policy, if any."""
    from cl_jax.data import randaugment

    if view.randaugment_num_ops > 0:
        ops = randaugment.OP_LISTS[view.randaugment_ops]
        return randaugment.randaugment(image, seed, view.randaugment_num_ops,
                                       view.randaugment_magnitude, ops=ops)
    if view.autoaugment:
        return randaugment.autoaugment(image, seed, view.autoaugment)
    return image


def augment_view(image, seed, view: ViewAugment, colour=True, channels=None):
    """One augmented view of a uint8 image, float32 in [0, 1] (not yet normalised).

    ``image`` may also be the encoded bytes (a scalar string) of an image with ``channels``
    channels: a JPEG is then decoded only inside the crop window. ``colour=False`` stops
    after the crop and flip: the colour ops then run on the accelerator
    (``cl_jax.device_augment``).
    """
    crop_s, flip_s, jit_p, jit_s, gray_s, blur_p, blur_s, sol_s = split_seed(seed, 8)
    if image.dtype == tf.string:
        crop = decode_random_crop(image, crop_s, view.crop_scale, view.crop_ratio, channels)
    else:
        crop = random_crop(image, crop_s, view.crop_scale, view.crop_ratio)
    image = resize(tf.image.convert_image_dtype(crop, tf.float32), view.size)
    image = with_probability(view.flip_prob, flip_s, tf.image.flip_left_right, image)
    image = policy_augment(image, tf.random.experimental.stateless_fold_in(seed, 8), view)
    if not colour:
        return image
    jitter = lambda im: color_jitter(im, jit_s, view.brightness, view.contrast,
                                     view.saturation, view.hue)
    image = with_probability(view.jitter_prob, jit_p, jitter, image)
    image = with_probability(view.grayscale_prob, gray_s, grayscale, image)
    blur = lambda im: gaussian_blur(im, blur_s, view.blur_sigma)
    image = with_probability(view.blur_prob, blur_p, blur, image)
    return with_probability(view.solarize_prob, sol_s, solarize, image)
