"""The sharded step equals the single-device step on the same global batch."""

import functools

import jax
import numpy as np
import pytest
from conftest import tiny_config

from cl_jax import data, parallel, train
from cl_jax.state import loss_and_grads, make_train_step


def digits_batch(config):
    split = data.load_split(config.data, "train")
    ds = data.train_dataset(split, data.view_augments(config.augment), seed=0,
                            global_batch=config.batch_size, mean=config.data.mean,
                            std=config.data.std)
    return next(ds.as_numpy_iterator())


def run_on(devices, config, host_batch):
    mesh = parallel.create_mesh(devices)
    exp = train.create_experiment(config, mesh)
    state = train.initial_state(exp)
    batch = parallel.to_global(host_batch, mesh)
    rng = jax.random.key(0)
    metrics, _, grads = jax.jit(functools.partial(loss_and_grads, exp.method))(state, batch, rng)
    step = jax.jit(make_train_step(exp.method, exp.tx, exp.schedule, config.seed))
    new_state, _ = step(state, batch)
    return jax.device_get((metrics, grads, new_state.params, new_state.extra))


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_eight_devices_match_one(method):
    assert jax.device_count() == 8
    config = tiny_config(method)
    host_batch = digits_batch(config)
    one = run_on(jax.devices()[:1], config, host_batch)
    eight = run_on(jax.devices(), config, host_batch)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_batch_not_divisible_by_devices_is_a_clear_error():
    config = tiny_config("simclr")
    config.batch_size = 12
    with pytest.raises(Exception, match="multiple of the number of devices"):
        train.create_experiment(config)


def test_simclr_grad_cache_with_one_chunk_is_the_plain_step_and_runs_with_more():
    config = tiny_config("simclr")
    host_batch = digits_batch(config)
    plain = run_on(jax.devices(), config, host_batch)
    config.grad_cache_chunk = 16  # one chunk: the same program, BatchNorm over the batch
    one_chunk = run_on(jax.devices(), config, host_batch)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(one_chunk), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    config.grad_cache_chunk = 8  # two ghost batches: finite, and not the full-batch numbers
    metrics, grads, _, _ = run_on(jax.devices(), config, host_batch)
    assert np.isfinite(metrics["loss"]) and metrics["loss"] != plain[0]["loss"]
