"""RGB -> CIE L*a*b* (CMC's views) against the standard formula in float64 NumPy and known
colours, and through the host pipeline's training and evaluation paths."""

import numpy as np
import pytest
import tensorflow as tf

from cl_jax import config_lib
from cl_jax.data import augment, pipeline
from cl_jax.views import ViewAugment

# CIE 15:2004 in the form Bruce Lindbloom's tables give it: epsilon and kappa, not 6/29.
EPSILON, KAPPA = 216 / 24389, 24389 / 27
M = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
              [0.019334, 0.119193, 0.950227]])
WHITE = np.array([0.95047, 1.0, 1.08883])


def lab_numpy(rgb):
    rgb = np.asarray(rgb, np.float64)
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ M.T / WHITE
    f = np.where(xyz > EPSILON, np.cbrt(xyz), (KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def test_matches_the_standard_formula_and_known_colours():
    rng = np.random.default_rng(0)
    rgb = rng.random((7, 5, 3)).astype(np.float32)
    rgb[0, :3] = [[0.0, 0.0, 0.0], [0.01, 0.02, 0.03], [0.04, 0.05, 0.5]]  # the linear parts
    np.testing.assert_allclose(augment.rgb_to_lab(rgb).numpy(), lab_numpy(rgb), atol=2e-3)
    known = {(1.0, 1.0, 1.0): (100.0, 0.0, 0.0), (0.0, 0.0, 0.0): (0.0, 0.0, 0.0),
             (1.0, 0.0, 0.0): (53.2408, 80.0925, 67.2032),
             (0.0, 1.0, 0.0): (87.7347, -86.1827, 83.1793),
             (0.0, 0.0, 1.0): (32.2970, 79.1875, -107.8602)}
    lab = augment.rgb_to_lab(np.array(list(known), np.float32)).numpy()
    np.testing.assert_allclose(lab, np.array(list(known.values())), atol=2e-2)
    with pytest.raises(ValueError, match="color space"):
        augment.to_color_space(rgb, "hsv")


def test_the_pipeline_normalises_lab_for_training_and_evaluation():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (6, 6, 3), np.uint8)
    view = ViewAugment(size=6, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
                       jitter_prob=0.0, grayscale_prob=0.0)
    mean, std = config_lib.LAB_MEAN, config_lib.LAB_STD
    made = pipeline.make_views({"image": tf.constant(image), "label": tf.constant(0)},
                               tf.constant([1, 2], tf.int64), [view], mean, std,
                               color_space="lab")
    expected = (lab_numpy(image / 255.0) - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(made["views"][0].numpy(), expected, atol=1e-4)
    assert np.abs(expected).max() <= 1.0 + 1e-6  # CMC's constants span the Lab gamut

    class OneImage:  # the fields of a random-access Split that eval_dataset reads
        random_access, num_examples = True, 1

        @staticmethod
        def read(index):
            return {"image": tf.constant(image), "label": tf.constant(0)}

    ds, _ = pipeline.eval_dataset(OneImage, size=6, crop_fraction=1.0, mean=mean, std=std,
                                  global_batch=1, color_space="lab")
    np.testing.assert_allclose(next(iter(ds))["image"][0].numpy(), expected, atol=1e-4)
