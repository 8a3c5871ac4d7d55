"""``cl_jax.load_encoder``: its JAX preprocessing against the loop's TensorFlow one, and
its errors. (Its features equal the loop's evaluation features: test_train.py.)"""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, tiny_config

import cl_jax
from cl_jax import config_lib, encoder
from cl_jax.data import augment
from cl_jax.errors import UserError


def tf_eval_transform(image, size, crop_fraction, mean, std, color_space):
    """``data.pipeline.eval_dataset``'s ``preprocess`` of one uint8 image."""
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = augment.to_color_space(augment.center_crop(image, size, crop_fraction), color_space)
    return augment.normalize(image, mean, std).numpy()


@pytest.mark.parametrize("shape, size, crop_fraction, color_space", [
    ((8, 8), 8, 1.0, "rgb"),  # the digits: no resize
    ((40, 30), 16, 0.875, "rgb"),  # an off-centre crop of a wide image, downsampled
    ((20, 27), 32, 1.0, "lab"),  # upsampled, in CMC's colour space
])
def test_preprocessing_is_the_loops(shape, size, crop_fraction, color_space):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (3, *shape, 3)).astype(np.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    want = np.stack([tf_eval_transform(x, size, crop_fraction, mean, std, color_space)
                     for x in images])
    got = encoder.preprocess(encoder.as_float_images(images, 3), size=size,
                             crop_fraction=crop_fraction, mean=mean, std=std,
                             color_space=color_space)
    assert got.shape == want.shape == (3, size, size, 3)
    np.testing.assert_allclose(got, want, atol=2e-3 if color_space == "lab" else 1e-5)


def test_module_does_not_import_tensorflow():
    code = ("import sys, cl_jax; cl_jax.load_encoder; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def write_config(workdir, config):
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps(config.to_dict()))


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(UserError, match="No config.json in .*training run"):
        cl_jax.load_encoder(str(tmp_path))
    write_config(tmp_path / "untrained", tiny_config("byol"))
    with pytest.raises(UserError, match="No checkpoint in .*train the run first"):
        cl_jax.load_encoder(str(tmp_path / "untrained"))
    write_config(tmp_path / "sentences", config_lib.load_config_file(
        f"{REPO}/configs/simcse.py:wordnet"))
    with pytest.raises(UserError, match=r"\(simcse\) encodes sentences, not images"):
        cl_jax.load_encoder(str(tmp_path / "sentences"))
    with pytest.raises(UserError, match="uint8 or floats in \\[0, 1\\], not int64"):
        encoder.as_float_images(np.zeros((1, 8, 8, 1), np.int64), 1)
