"""The tf.data host pipeline: sources, augmentation, sharded batching. Needs TensorFlow."""

import tensorflow as tf

from cl_jax.data.augment import ViewAugment
from cl_jax.data.pipeline import HostBatches, eval_dataset, prefetch_to_device, train_dataset
from cl_jax.data.sources import Split, load_split

# tf.data runs on the host CPU only; keep TensorFlow away from any accelerator.
tf.config.set_visible_devices([], "GPU")


def view_augments(augment_config):
    """The views of one example: ``view1``, ``view2`` (``num_global_views`` of them), then
    ``num_local_views`` copies of ``local`` (multi-crop, Caron et al. 2020)."""
    c = augment_config
    views = [c.view1, c.view2][: c.num_global_views] + [c.local] * c.num_local_views
    return [ViewAugment.from_config(v) for v in views]


__all__ = ["HostBatches", "Split", "ViewAugment", "eval_dataset", "load_split",
           "prefetch_to_device", "train_dataset", "view_augments"]
