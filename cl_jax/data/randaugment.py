"""RandAugment and AutoAugment as stateless tf.data ops: every random draw comes from a seed.

RandAugment (Cubuk et al. 2019, arXiv:1909.13719) applies ``num_ops`` ops drawn uniformly with
replacement, all at one magnitude; AutoAugment (Cubuk et al. 2019, arXiv:1805.09501) applies
one of a list of learned sub-policies, each a short sequence of (op, probability, level).

The ops, their level-to-argument mappings, the op lists and the ImageNet policy follow ONE
reference, big_vision's ``big_vision/pp/autoaugment.py`` (a fork of tensorflow/tpu's
``models/official/efficientnet/autoaugment.py``):

- Images are converted to uint8 values (``round(255 x)``) on entry and back to float32 in
  [0, 1] on exit; the ops work on uint8 tensors.
- ``level`` runs over [0, _MAX_LEVEL = 10] in the policies; RandAugment's magnitude M is the
  level itself (0..30 allowed here, big_vision's convention). Arguments: rotate
  ``30 level / 10`` degrees, shear ``0.3 level / 10``, translate ``level / 10`` times a
  constant, each negated with probability 1/2; enhance factors (color, contrast,
  brightness, sharpness) ``0.1 + 1.8 level / 10``; posterize ``int(4 level / 10)`` bits;
  solarize threshold ``int(256 level / 10)``; solarize-add ``int(110 level / 10)`` below 128;
  cutout half-side ``int(level / 10 * constant)``.
- Geometric ops sample with nearest neighbour (the projective transform of tf.image / tfa)
  and fill uncovered pixels with grey 128; positive rotation is counter-clockwise about the
  image centre, positive translation moves the content left / up.
- Enhance ops blend with a degenerate image as PIL's ImageEnhance does:
  ``trunc(clip(degenerate + factor (image - degenerate), 0, 255))`` with the float32
  arithmetic of the reference. Degenerate images: grey (color), constant mean grey
  (contrast), black (brightness), PIL's SMOOTH filter ``[[1,1,1],[1,5,1],[1,1,1]] / 13``
  with the one-pixel border left unchanged (sharpness).
- Equalize (PIL's ImageOps.equalize) and autocontrast work per channel. Equalize leaves a
  channel unchanged when ``(pixels - count of its brightest value) // 255 == 0``, so it is the
  identity on any image with fewer than 256 pixels (the 8 x 8 digits).
- Greyscale (C = 1): grey is the image itself, so ``color`` is the identity; the rest works
  per channel.
- RandAugment op list: big_vision's 16 (``RANDAUGMENT_OPS``: the paper's list without
  Identity, plus Invert, Cutout and SolarizeAdd); ``PAPER_OPS`` is the paper's 14. A selected
  op is always applied (big_vision draws a probability but never uses it).
- AutoAugment "imagenet": tensorflow/tpu's ``policy_v0`` (25 sub-policies of two ops; no
  Cutout), with translate constant 250 px at 224 px (``distort_image_with_autoaugment``).
  This is the policy big_vision and tensorflow/tpu ship as the paper's; it is not the table
  printed in the paper's appendix (timm keeps both, as "v0" and "original").

Deviations from the reference:

- Translate and cutout constants are fractions of the image side (translate: width for x,
  height for y; cutout: the shorter side): RandAugment 100 / 224 and 40 / 224, AutoAugment
  250 / 224 and 100 / 224, which give the reference's pixels at 224 px.
- Contrast's degenerate value is the mean grey level rounded half up (PIL's ImageEnhance);
  the reference sums the histogram instead, getting ``pixels / 256`` whatever the image
  (big_vision issue #109, tensorflow/tpu issue #1057).
- Solarize thresholds are compared in int32, so a threshold >= 256 leaves the image as it is
  (PIL); the reference casts the threshold to uint8, so level 10 (threshold 256 -> 0)
  inverts the image.
- Posterize keeps ``8 - bits`` in [0, 7] explicitly: bits = 0 keeps one bit (what TF's
  clamped shift gives the reference), bits >= 8 is the identity (the reference casts the
  negative shift to uint8, which keeps one bit).
- Sharpness's smoothed pixel is the exact ``floor(sum / 13)``; the reference's float32
  weights of 1/13 land one below that on flat patches of some grey levels (e.g. 3, 6, 12).
- Greyscale images (the reference assumes RGB), and magnitudes above 10 for posterize and
  solarize, are defined by the rules above.
"""

import functools
import math

import tensorflow as tf

from cl_jax.data.augment import split_seed, uniform

_MAX_LEVEL = 10.0
_MAX_MAGNITUDE = 30.0
_FILL = 128.0

RANDAUGMENT_TRANSLATE = 100 / 224
RANDAUGMENT_CUTOUT = 40 / 224
AUTOAUGMENT_TRANSLATE = 250 / 224
AUTOAUGMENT_CUTOUT = 100 / 224


# --- uint8 ops ----------------------------------------------------------------------------


def to_uint8(image):
    """Float [0, 1] -> uint8 values ``round(255 x)``."""
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)


def to_float(image):
    return tf.cast(image, tf.float32) / 255.0


def identity(image):
    return image


def blend(degenerate, image, factor):
    """``trunc(clip(degenerate + factor (image - degenerate), 0, 255))`` in float32."""
    degenerate = tf.cast(degenerate, tf.float32)
    blended = degenerate + factor * (tf.cast(image, tf.float32) - degenerate)
    return tf.cast(tf.clip_by_value(blended, 0.0, 255.0), tf.uint8)


def grey(image):
    """tf.image's uint8 luma (0.2989, 0.587, 0.114), one channel; a greyscale image as is."""
    return image if image.shape[-1] == 1 else tf.image.rgb_to_grayscale(image)


def autocontrast(image):
    """Per channel, maps [min, max] linearly onto [0, 255] (unchanged where min == max)."""
    values = tf.cast(image, tf.float32)
    lo = tf.reduce_min(values, axis=[0, 1], keepdims=True)
    hi = tf.reduce_max(values, axis=[0, 1], keepdims=True)
    scale = 255.0 / tf.maximum(hi - lo, 1.0)
    stretched = tf.cast(tf.clip_by_value(values * scale - lo * scale, 0.0, 255.0), tf.uint8)
    return tf.where(hi > lo, stretched, image)


def equalize(image):
    """PIL's ImageOps.equalize per channel: ``lut[v] = (#{x < v} + step // 2) // step`` with
    ``step = (#pixels - #{x == max}) // 255``; a channel with step 0 is left unchanged."""
    height, width, channels = image.shape
    values = tf.reshape(tf.cast(image, tf.int32), [-1, channels])
    channels_first = tf.transpose(values)
    histogram = tf.reshape(
        tf.math.bincount(channels_first, minlength=256, maxlength=256, axis=-1), [channels, 256])
    brightest = tf.gather(histogram, tf.reduce_max(values, axis=0), batch_dims=1)
    step = (height * width - brightest) // 255
    below = tf.cumsum(histogram, axis=1, exclusive=True)
    lut = tf.clip_by_value((below + step[:, None] // 2) // tf.maximum(step, 1)[:, None], 0, 255)
    equalized = tf.gather(lut, channels_first, batch_dims=1)
    equalized = tf.reshape(tf.transpose(equalized), image.shape)
    return tf.where(step > 0, tf.cast(equalized, tf.uint8), image)


def invert(image):
    return 255 - image


def posterize(image, bits):
    """Keeps the top ``bits`` bits; ``8 - bits`` is clamped to [0, 7] (see module notes)."""
    shift = tf.cast(tf.clip_by_value(8 - bits, 0, 7), tf.uint8)
    return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def solarize(image, threshold):
    """Inverts the pixels >= ``threshold``."""
    return tf.where(tf.cast(image, tf.int32) < threshold, image, 255 - image)


def solarize_add(image, addition, threshold=128):
    """Adds ``addition`` (clipped to [0, 255]) to the pixels below ``threshold``."""
    values = tf.cast(image, tf.int32)
    added = tf.cast(tf.clip_by_value(values + addition, 0, 255), tf.uint8)
    return tf.where(values < threshold, added, image)


def color(image, factor):
    if image.shape[-1] == 1:
        return image
    return blend(tf.tile(grey(image), [1, 1, 3]), image, factor)


def contrast(image, factor):
    """Blend with the mean grey level, rounded half up (PIL's ImageEnhance.Contrast)."""
    total = tf.reduce_sum(tf.cast(grey(image), tf.int32))
    pixels = image.shape[0] * image.shape[1]
    mean = (2 * total + pixels) // (2 * pixels)
    return blend(tf.fill(tf.shape(image), mean), image, factor)


def brightness(image, factor):
    return blend(tf.zeros_like(image), image, factor)


def sharpness(image, factor):
    """Blend with PIL's SMOOTH filter, ``floor(sum(k x) / 13)`` with
    ``k = [[1, 1, 1], [1, 5, 1], [1, 1, 1]]``, the border pixels kept."""
    channels = image.shape[-1]
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]])
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    sums = tf.nn.depthwise_conv2d(tf.cast(image, tf.float32)[None], kernel, [1, 1, 1, 1],
                                  "VALID")[0]
    smooth = tf.cast(tf.cast(sums, tf.int32) // 13, tf.uint8)
    interior = tf.pad(tf.ones_like(smooth, tf.bool), [[1, 1], [1, 1], [0, 0]])
    degenerate = tf.where(interior, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), image)
    return blend(degenerate, image, factor)


def _transform(image, params):
    """Output pixel (x, y) <- input pixel round((a0 x + a1 y + a2, b0 x + b1 y + b2)), with
    ``params = (a0, a1, a2, b0, b1, b2)``; pixels from outside the image are grey."""
    transforms = tf.cast(tf.stack(list(params) + [0.0, 0.0]), tf.float32)[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transforms, output_shape=image.shape[:2],
        fill_value=_FILL, interpolation="NEAREST", fill_mode="CONSTANT")
    return out[0]


def rotate(image, degrees):
    """Counter-clockwise about the centre ((W - 1) / 2, (H - 1) / 2), as tfa.image.rotate."""
    height, width = image.shape[0] - 1.0, image.shape[1] - 1.0
    radians = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(radians), tf.sin(radians)
    x_offset = (width - (cos * width - sin * height)) / 2.0
    y_offset = (height - (sin * width + cos * height)) / 2.0
    return _transform(image, (cos, -sin, x_offset, sin, cos, y_offset))


def shear_x(image, level):
    """Output (x, y) <- input (x + level y, y)."""
    return _transform(image, (1.0, level, 0.0, 0.0, 1.0, 0.0))


def shear_y(image, level):
    """Output (x, y) <- input (x, level x + y)."""
    return _transform(image, (1.0, 0.0, 0.0, level, 1.0, 0.0))


def translate_x(image, pixels):
    """Output (x, y) <- input (x + pixels, y): the content moves left."""
    return _transform(image, (1.0, 0.0, pixels, 0.0, 1.0, 0.0))


def translate_y(image, pixels):
    """Output (x, y) <- input (x, y + pixels): the content moves up."""
    return _transform(image, (1.0, 0.0, 0.0, 0.0, 1.0, pixels))


def cutout(image, pad_size, row, col):
    """Grey square rows [row - pad, row + pad) x cols [col - pad, col + pad), clipped
    (DeVries & Taylor 2017, arXiv:1708.04552)."""
    rows = tf.range(image.shape[0])[:, None, None]
    cols = tf.range(image.shape[1])[None, :, None]
    inside = ((rows >= row - pad_size) & (rows < row + pad_size)
              & (cols >= col - pad_size) & (cols < col + pad_size))
    return tf.where(inside, tf.constant(int(_FILL), tf.uint8), image)


OPS = {
    "Identity": identity,
    "AutoContrast": autocontrast,
    "Equalize": equalize,
    "Invert": invert,
    "Rotate": rotate,
    "Posterize": posterize,
    "Solarize": solarize,
    "SolarizeAdd": solarize_add,
    "Color": color,
    "Contrast": contrast,
    "Brightness": brightness,
    "Sharpness": sharpness,
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateX": translate_x,
    "TranslateY": translate_y,
    "Cutout": cutout,
}

RANDAUGMENT_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                   "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
                   "TranslateX", "TranslateY", "Cutout", "SolarizeAdd")
PAPER_OPS = ("Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color",
             "Posterize", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
             "TranslateX", "TranslateY")

IMAGENET_POLICY = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)
POLICIES = {"imagenet": IMAGENET_POLICY, "v0": IMAGENET_POLICY}
# ``augment.randaugment_ops``: the paper's 14 ops, or big_vision's 16.
OP_LISTS = {"paper": PAPER_OPS, "big_vision": RANDAUGMENT_OPS}


# --- levels -------------------------------------------------------------------------------


def _random_sign(value, seed):
    return tf.where(uniform(seed) < 0.5, -value, value)


def level_to_arg(name, level, seed, height, width, translate_fraction, cutout_fraction):
    """The arguments of op ``name`` after the image, at ``level`` (big_vision's mapping).

    ``level`` is a number or a scalar tensor; the arithmetic is float64, so ``int(...)``
    truncations give Python's (the reference's) values. ``seed`` draws the sign of rotate /
    shear / translate and the centre of cutout.
    """
    fraction = tf.cast(level, tf.float64) / _MAX_LEVEL
    as_float = lambda x: tf.cast(x, tf.float32)
    as_int = lambda x: tf.cast(tf.floor(x), tf.int32)
    if name in ("Identity", "AutoContrast", "Equalize", "Invert"):
        return ()
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (as_float(fraction * 1.8 + 0.1),)
    if name == "Rotate":
        return (_random_sign(as_float(fraction * 30.0), seed),)
    if name in ("ShearX", "ShearY"):
        return (_random_sign(as_float(fraction * 0.3), seed),)
    if name in ("TranslateX", "TranslateY"):
        side = width if name == "TranslateX" else height
        return (_random_sign(as_float(fraction * translate_fraction * side), seed),)
    if name == "Posterize":
        return (as_int(fraction * 4),)
    if name == "Solarize":
        return (as_int(fraction * 256),)
    if name == "SolarizeAdd":
        return (as_int(fraction * 110),)
    if name == "Cutout":
        row_seed, col_seed = split_seed(seed, 2)
        row = tf.random.stateless_uniform([], row_seed, 0, height, dtype=tf.int32)
        col = tf.random.stateless_uniform([], col_seed, 0, width, dtype=tf.int32)
        return (as_int(fraction * cutout_fraction * min(height, width)), row, col)
    raise ValueError(f"unknown augmentation op {name!r}; known: {sorted(OPS)}")


def apply_op(image, name, level, seed, translate_fraction, cutout_fraction):
    """Op ``name`` at ``level`` on a uint8 image (H, W, C), the static shape kept."""
    args = level_to_arg(name, level, seed, image.shape[0], image.shape[1],
                        translate_fraction, cutout_fraction)
    return tf.ensure_shape(OPS[name](image, *args), image.shape)


def _check_ops(names):
    unknown = [name for name in names if name not in OPS]
    if unknown:
        raise ValueError(f"unknown augmentation ops {unknown}; known: {sorted(OPS)}")


# --- policies -----------------------------------------------------------------------------


def randaugment(image, seed, num_ops=2, magnitude=9, ops=RANDAUGMENT_OPS,
                translate_fraction=RANDAUGMENT_TRANSLATE, cutout_fraction=RANDAUGMENT_CUTOUT):
    """RandAugment (Cubuk et al. 2019): ``num_ops`` ops drawn uniformly with replacement from
    ``ops``, each always applied at level ``magnitude`` (0..30), as big_vision's
    ``distort_image_with_randaugment``. Float32 [0, 1] image (H, W, C), static shape."""
    _check_ops(ops)
    if not 0 <= magnitude <= _MAX_MAGNITUDE:
        raise ValueError(f"magnitude must lie in [0, {_MAX_MAGNITUDE:g}], got {magnitude}")
    if num_ops <= 0:
        return image
    image = to_uint8(image)
    for layer_seed in split_seed(seed, num_ops):
        choice_seed, arg_seed = split_seed(layer_seed, 2)
        choice = tf.random.stateless_uniform([], choice_seed, 0, len(ops), dtype=tf.int32)
        branches = [functools.partial(apply_op, image, name, magnitude, arg_seed,
                                      translate_fraction, cutout_fraction) for name in ops]
        image = tf.switch_case(choice, branches)
    return to_float(image)


def autoaugment_policy(policy):
    """The sub-policies named ``policy`` ("imagenet" = "v0"), or ``policy`` itself if it is a
    sequence of sub-policies of (op, prob, level)."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"unknown AutoAugment policy {policy!r}; known: {sorted(POLICIES)}")
        return POLICIES[policy]
    if not policy:
        raise ValueError("an AutoAugment policy needs at least one sub-policy")
    _check_ops([name for subpolicy in policy for name, _, _ in subpolicy])
    return policy


def _policy_step(image, entries, choice, seed, translate_fraction, cutout_fraction):
    """Entry ``choice`` of ``entries`` (op, prob, level), applied with probability prob.

    One branch per distinct op, its level gathered, keeps the graph small: the same as a
    branch per sub-policy with a cond per op.
    """
    names = list(dict.fromkeys(name for name, _, _ in entries))
    prob_seed, arg_seed = split_seed(seed, 2)
    op = tf.gather([names.index(name) for name, _, _ in entries], choice)
    prob = tf.gather(tf.constant([p for _, p, _ in entries], tf.float32), choice)
    level = tf.gather(tf.constant([level for _, _, level in entries], tf.float64), choice)
    branches = [functools.partial(apply_op, image, name, level, arg_seed, translate_fraction,
                                  cutout_fraction) for name in names]
    branch = tf.where(uniform(prob_seed) < prob, op, len(names))
    return tf.switch_case(branch, [*branches, lambda: image])


def autoaugment(image, seed, policy="imagenet", translate_fraction=AUTOAUGMENT_TRANSLATE,
                cutout_fraction=AUTOAUGMENT_CUTOUT):
    """AutoAugment (Cubuk et al. 2019): one sub-policy drawn uniformly per call, its ops
    applied in order, each with its probability, as big_vision's
    ``distort_image_with_autoaugment``. Float32 [0, 1] image (H, W, C), static shape."""
    subpolicies = autoaugment_policy(policy)
    steps = max(len(subpolicy) for subpolicy in subpolicies)
    choice_seed, steps_seed = split_seed(seed, 2)
    choice = tf.random.stateless_uniform([], choice_seed, 0, len(subpolicies), dtype=tf.int32)
    image = to_uint8(image)
    for step, step_seed in enumerate(split_seed(steps_seed, steps)):
        entries = [subpolicy[step] if step < len(subpolicy) else ("Identity", 0.0, 0)
                   for subpolicy in subpolicies]
        image = _policy_step(image, entries, choice, step_seed, translate_fraction,
                             cutout_fraction)
    return to_float(image)
