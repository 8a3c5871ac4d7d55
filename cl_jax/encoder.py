"""A trained run's image encoder, anywhere: ``encode = cl_jax.load_encoder("runs/byol")``.

``encode(images)`` takes NumPy images (N, H, W, C), uint8 or floats in [0, 1], and returns
the features the run's evaluators score (``method.image_features``: the backbone's pooled
output, or what the method declares) as a NumPy (N, D) array. The images go through the
run's own evaluation preprocessing (``data.pipeline.eval_dataset``: the central square of
side ``eval.crop_fraction * min(H, W)``, bilinear antialiased resize to ``eval.image_size``,
the run's colour space and normalisation), written here in JAX so that no TensorFlow is
needed, and fused with the encoder into one compilation per input shape. Batches of
``batch_size`` are split over the local devices.

``encode.module`` (the method's network), ``encode.variables``, ``encode.method``,
``encode.config`` and ``encode.step`` are there for those who want them.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from cl_jax import config_lib, methods, parallel
from cl_jax.colour import rgb_to_lab
from cl_jax.errors import UserError
from cl_jax.state import create_method


def merge(config, saved):
    """``saved`` (a run's config.json) over ``config``: fields added since the run keep their
    defaults; the run's evaluators replace the defaults."""
    for key, value in saved.items():
        if key == "evals":
            config[key] = ml_collections.ConfigDict(value)
        elif isinstance(value, dict) and isinstance(config.get(key), ml_collections.ConfigDict):
            merge(config[key], value)
        else:
            config[key] = value
    return config


def run_config(workdir):
    """The resolved config of the run in ``workdir`` (its config.json)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise UserError(f"No config.json in {workdir!r}: is it the --workdir of a training run?")
    with open(path) as f:
        return merge(config_lib.base_config(), json.load(f))


def saved_variables(workdir, step=None):
    """(step, {"params", "batch_stats"}) of a checkpoint of the run in ``workdir`` (the
    latest unless ``step``), as saved: no train state needs to be built to read them."""
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    manager = ocp.CheckpointManager(directory) if os.path.isdir(directory) else None
    steps = sorted(manager.all_steps()) if manager else []
    try:
        if not steps:
            raise UserError(f"No checkpoint in {directory}; train the run first.")
        step = steps[-1] if step is None else step
        if step not in steps:
            raise UserError(f"The run in {workdir} has no checkpoint at step {step}; it has "
                            f"{', '.join(map(str, steps))}.")
        saved = manager.restore(step, args=ocp.args.StandardRestore())
    finally:
        if manager:
            manager.close()
    return step, {"params": saved["params"], "batch_stats": saved.get("batch_stats") or {}}


def preprocess(images, *, size, crop_fraction, mean, std, color_space="rgb"):
    """``data.pipeline.eval_dataset``'s transform of float images in [0, 1] (N, H, W, C)."""
    n, h, w, c = images.shape
    side = int(np.round(np.float32(crop_fraction) * np.float32(min(h, w))))
    top, left = (h - side) // 2, (w - side) // 2
    x = images[:, top:top + side, left:left + side]
    x = jnp.clip(jax.image.resize(x, (n, size, size, c), "linear", antialias=True), 0.0, 1.0)
    if color_space == "lab":
        x = rgb_to_lab(x)
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def as_float_images(images, channels):
    """``images`` as float32 in [0, 1] (uint8 scaled as ``tf.image.convert_image_dtype``
    does), or one clear error naming what to change."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != channels:
        raise UserError(f"Expected images of shape (N, H, W, {channels}) (the run trained on "
                        f"{channels}-channel images), got {images.shape}.")
    if images.dtype == np.uint8:
        return images.astype(np.float32) * np.float32(1.0 / 255.0)
    if not np.issubdtype(images.dtype, np.floating):
        raise UserError(f"Images must be uint8 or floats in [0, 1], not {images.dtype}.")
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise UserError(f"Float images must be in [0, 1]; these span [{images.min():.3g}, "
                        f"{images.max():.3g}]. Divide 0-255 values by 255, or pass uint8.")
    return images.astype(np.float32)


class Encoder:
    """``encode(images) -> features``; see the module docstring."""

    def __init__(self, config, method, variables, step, batch_size=None, devices=None):
        self.config, self.method, self.step = config, method, step
        self.module = method.network
        mesh = parallel.create_mesh(jax.local_devices() if devices is None else devices)
        size = batch_size or config.eval.batch_size
        self.batch_size = -(-size // mesh.size) * mesh.size  # whole rows per device
        self._batch = parallel.batch_sharding(mesh)
        self.variables = jax.device_put(variables, parallel.replicated(mesh))
        e, d = config.eval, config.data
        transform = dict(size=e.image_size, crop_fraction=e.crop_fraction, mean=d.mean,
                         std=d.std, color_space=d.get("color_space", "rgb"))
        self._features = jax.jit(
            lambda v, x: method.image_features(v, preprocess(x, **transform)),
            out_shardings=self._batch)

    def __call__(self, images):
        images = as_float_images(images, self.config.data.channels)
        n, size = len(images), self.batch_size
        out = []
        for start in range(0, n, size):
            batch = images[start:start + size]
            batch = np.pad(batch, ((0, size - len(batch)),) + ((0, 0),) * 3)
            features = self._features(self.variables, jax.device_put(batch, self._batch))
            out.append(np.asarray(jax.device_get(features), np.float32))
        dim = out[0].shape[-1] if out else 0
        return np.concatenate(out)[:n] if out else np.zeros((0, dim), np.float32)


def load_encoder(workdir, step=None, batch_size=None, devices=None):
    """The image encoder of the run in ``workdir`` at its latest checkpoint (or ``step``):
    an ``Encoder``, called as ``encode(images)``. ``batch_size`` defaults to the run's
    ``eval.batch_size``; ``devices`` to this process's devices."""
    config = run_config(workdir)
    method_cls = methods.METHODS[config.method.name]
    if "sentences" in method_cls.inputs:
        raise UserError(f"The run in {workdir} ({config.method.name}) encodes sentences, not "
                        "images; load_encoder is for image encoders.")
    step, variables = saved_variables(workdir, step)
    total = max(config.total_steps, 1)  # only schedules inside the loss use these
    method = create_method(config, 0, total, 1)
    return Encoder(config, method, variables, step, batch_size, devices)
