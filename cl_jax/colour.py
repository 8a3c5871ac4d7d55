"""Colour spaces without TensorFlow: the constants ``data.augment.rgb_to_lab`` uses, and the
same conversion in JAX (for ``cl_jax.load_encoder``)."""

import jax.numpy as jnp
import numpy as np

# sRGB (D65) -> CIE XYZ, and the D65 white point: IEC 61966-2-1, the matrix and white of
# scikit-image's ``color.rgb2lab`` (which CMC's reference uses).
SRGB_TO_XYZ = ((0.412453, 0.357580, 0.180423),
               (0.212671, 0.715160, 0.072169),
               (0.019334, 0.119193, 0.950227))
D65_WHITE = (0.95047, 1.0, 1.08883)


def rgb_to_lab(image):
    """``data.augment.rgb_to_lab`` in JAX: sRGB in [0, 1] (..., 3) -> CIE L*a*b* (D65)."""
    linear = jnp.where(image <= 0.04045, image / 12.92,
                       ((jnp.maximum(image, 0.04045) + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.asarray(SRGB_TO_XYZ, np.float32).T / np.asarray(D65_WHITE, np.float32)
    delta = 6.0 / 29.0
    f = jnp.where(xyz > delta**3, jnp.maximum(xyz, delta**3) ** (1.0 / 3.0),
                  xyz / (3.0 * delta**2) + 4.0 / 29.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return jnp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)
