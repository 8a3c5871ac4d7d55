"""Memory banks keyed by example index (instance discrimination, CMC, DeepCluster-v2)."""

import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.losses._utils import l2_normalize


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


def random_unit_vectors(rng, shape):
    return l2_normalize(jax.random.normal(rng, shape, jnp.float32))


def noise_contrastive(positive_logits, noise_logits, log_z, has_z, num_examples):
    """Binary NCE (``losses.nce``) of ``exp(logit) / Z`` against uniform noise over a bank of
    ``num_examples`` rows, ``P_n = 1 / N``, as lemniscate's ``NCEAverage`` / CMC's
    ``NCEAverage`` with ``NCECriterion``. ``Z`` is a constant: while ``has_z`` is False it is
    estimated on this batch as ``N * mean(exp(logits))`` over the positives and noise rows
    (their first batch); returns ``(loss, log_z)``, the ``log_z`` to keep.
    """
    k = noise_logits.shape[-1]
    log_n = jnp.log(jnp.float32(num_examples))
    everything = jnp.concatenate([positive_logits[:, None], noise_logits], axis=1)
    estimate = jax.nn.logsumexp(everything) - jnp.log(everything.size) + log_n
    log_z = jnp.where(has_z, log_z, jax.lax.stop_gradient(estimate))
    loss = losses.nce(positive_logits - log_z, noise_logits - log_z,
                      -log_n * jnp.ones_like(positive_logits),
                      -log_n * jnp.ones_like(noise_logits), k)
    return loss, log_z


def momentum_rows(bank, index, features, momentum):
    """``bank`` with rows ``index`` moved towards ``features``:
    ``v_i <- normalize(m v_i + (1 - m) f_i)`` (lemniscate / CMC, after each step)."""
    rows = l2_normalize(momentum * bank[index] + (1.0 - momentum) * features)
    return bank.at[index].set(rows)
