"""FIFO queues of past embeddings (MoCo's negatives, NNCLR's support set)."""

import math

import jax

from cl_jax.errors import ConfigError
from cl_jax.losses._utils import l2_normalize


def check_queue_size(queue_size, batch_size, field="method.queue_size"):
    """The queue advances by whole global batches: ``queue_size`` must be a multiple."""
    if queue_size < batch_size or queue_size % batch_size:
        fix = max(1, math.ceil(queue_size / batch_size)) * batch_size
        raise ConfigError(f"{field}={queue_size} must be a multiple of the global batch size "
                          f"{batch_size} (the queue advances by whole batches); set "
                          f"--config.{field}={fix} or change --config.batch_size.")


def random_unit_rows(rng, shape):
    """Random L2-normalised rows: the reference queues' initial content."""
    return l2_normalize(jax.random.normal(rng, shape))


def enqueue(queue, ptr, rows):
    """Writes ``rows`` (..., B, D) at ``ptr`` along the queue's second-to-last axis (K) and
    advances the pointer by B modulo K: FIFO, the oldest B rows are replaced."""
    index = (0,) * (queue.ndim - 2) + (ptr, 0)
    queue = jax.lax.dynamic_update_slice(queue, rows.astype(queue.dtype), index)
    return queue, (ptr + rows.shape[-2]) % queue.shape[-2]
