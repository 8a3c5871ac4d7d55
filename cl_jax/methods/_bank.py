"""Memory banks keyed by example index (instance discrimination, DeepCluster-v2)."""

import jax.numpy as jnp

from cl_jax.errors import ConfigError


def checked_index(method, index):
    """``index`` as int32, or a clear error if the caller did not pass one."""
    if index is None:
        raise ConfigError(
            f"{method.name} keeps a memory bank row per training example and needs each "
            "example's index in the training set: batch['index'], passed to the method's loss "
            "as index=.")
    return jnp.asarray(index, jnp.int32)


def bank_size(config):
    """``config.num_examples``, the rows of a memory bank: the training set's size."""
    if config.num_examples <= 0:
        raise ConfigError(f"{config.name} keeps a memory bank row per training example: set "
                          "--config.method.num_examples to the training set's size.")
    return config.num_examples
