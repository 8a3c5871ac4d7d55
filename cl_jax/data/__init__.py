"""The tf.data host pipeline: sources, augmentation, sharded batching. Needs TensorFlow."""

import tensorflow as tf

from cl_jax.data.augment import COLOR_SPACES
from cl_jax.data.pipeline import HostBatches, eval_dataset, prefetch_to_device, train_dataset
from cl_jax.data.sources import Split, load_split, subset_split, with_tokens
from cl_jax.views import ViewAugment, view_augments

# tf.data runs on the host CPU only; keep TensorFlow away from any accelerator.
tf.config.set_visible_devices([], "GPU")


__all__ = ["COLOR_SPACES", "HostBatches", "Split", "ViewAugment", "eval_dataset", "load_split",
           "prefetch_to_device", "subset_split", "train_dataset", "view_augments", "with_tokens"]
