"""MoCo v2 (+ MoCHi), MoCo v3 and NNCLR through the real train step on 8 devices: queues,
EMA targets and losses against float64 NumPy recomputations from the network outputs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch, tiny_config, train_steps

from cl_jax import losses, parallel, train
from cl_jax.errors import ConfigError
from cl_jax.methods._target import momentum_schedule

# ---- float64 NumPy references ----


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def ref_info_nce(q, k, t, negatives=None, own=None):
    """-log softmax over [q.k_i, q.negatives..., q.own_i...] (queue) or q.k_j (in-batch)."""
    q, k = unit(q), unit(k)
    total = 0.0
    for i in range(len(q)):
        if negatives is None:
            logits, label = list(k @ q[i]), i
        else:
            logits, label = [k[i] @ q[i], *(unit(negatives) @ q[i])], 0
        if own is not None:
            logits += list(unit(own[i]) @ q[i])
        logits = np.array(logits) / t
        total += np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[label]
    return total / len(q)


def forward(network, params, batch_stats, x):
    """Train-mode outputs of one view (its own BatchNorm batch), as float64 NumPy."""
    out, _ = network.apply({"params": params, "batch_stats": batch_stats}, jnp.asarray(x),
                           train=True, mutable=["batch_stats"])
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def target_outputs(exp, state, x):
    e = state.extra
    return forward(exp.method.target_network, e["target_params"], e["target_batch_stats"], x)


def assert_ema(old_target, new_online, new_target, tau):
    expected = jax.tree.map(lambda t, o: tau * t + (1 - tau) * o, old_target,
                            {k: new_online[k] for k in old_target})
    chex.assert_trees_all_close(new_target, expected, rtol=1e-6, atol=1e-7)


def cosine_ramp(step, total, base, final):
    return final - (final - base) * (np.cos(np.pi * step / total) + 1) / 2


def views_of(exp, step):
    return [np.asarray(v) for v in random_batch(exp.config, exp.config.batch_size, seed=step)
            ["views"]]


# ---- MoCo v2 ----


def mocov2_keys(exp, state, step):
    """(2, B, D): normalised target projections of view 1 and view 2 of batch ``step``."""
    return np.stack([unit(target_outputs(exp, state, v)["projection"])
                     for v in views_of(exp, step)])


def test_mocov2_two_steps_queue_ema_and_loss():
    # The digits preset (symmetric: two queues), with global BatchNorm for the keys so that
    # they can be recomputed exactly (shuffled BatchNorm has its own test below).
    c = tiny_config("mocov2")
    c.method.shuffle_bn_groups = 1
    assert c.method.symmetric
    exp, states, metrics = train_steps("mocov2", 2, config=c)
    b, k, t = c.batch_size, c.method.queue_size, c.method.temperature
    queue0 = np.asarray(states[0].extra["queue"])
    assert queue0.shape == (2, k, c.method.proj_dim)
    np.testing.assert_allclose(np.linalg.norm(queue0, axis=-1), 1.0, rtol=1e-5)
    assert set(states[0].extra["target_params"]) == {"encoder", "projector"}
    for step in (0, 1):
        old, new = states[step], states[step + 1]
        assert np.isfinite(float(metrics[step]["loss"]))
        # FIFO: the batch's keys (per view) replace the oldest B rows; the pointer moves B.
        keys = mocov2_keys(exp, old, step)
        assert int(new.extra["queue_ptr"]) == (step + 1) * b % k
        rows = slice(step * b, (step + 1) * b)
        np.testing.assert_allclose(new.extra["queue"][:, rows], keys, atol=2e-5)
        untouched = np.ones(k, bool)
        untouched[rows] = False
        np.testing.assert_array_equal(new.extra["queue"][:, untouched],
                                      old.extra["queue"][:, untouched])
        # The key network moves by exactly (1 - m) toward the updated query network.
        tau = cosine_ramp(step, exp.total_steps, c.method.tau_base, c.method.tau_final)
        assert float(metrics[step]["tau"]) == pytest.approx(tau)
        assert_ema(old.extra["target_params"], new.params, new.extra["target_params"], tau)
        # Symmetric loss: each view's queries against the other view's keys and queue.
        q1, q2 = (forward(exp.method.network, old.params, old.batch_stats, v)["projection"]
                  for v in views_of(exp, step))
        queue = np.asarray(old.extra["queue"], np.float64)
        expected = (ref_info_nce(q1, keys[1], t, queue[1])
                    + ref_info_nce(q2, keys[0], t, queue[0])) / 2
        assert float(metrics[step]["loss"]) == pytest.approx(expected, rel=1e-5)


def small_mocov2(**method):
    """A MoCo v2 method on the tiny digits config, with fresh state, and a batch (no train
    step: calls the method's functions directly)."""
    from cl_jax import train

    c = tiny_config("mocov2")
    c.method.update(method)
    exp = train.create_experiment(c)
    state = train.initial_state(exp)
    return exp, jax.device_get(state), random_batch(c, c.batch_size)


def test_shuffle_bn_is_per_group_batchnorm_on_a_random_partition():
    exp, state, batch = small_mocov2(shuffle_bn_groups=4)
    method, e, x = exp.method, state.extra, batch["views"][1]
    rng = jax.random.key(3)
    keys, stats = jax.jit(method.key_projections)(e["target_params"], e["target_batch_stats"],
                                                  x, rng)
    perm = np.asarray(jax.random.permutation(rng, len(x)))
    expected = np.zeros(keys.shape)
    group_stats = []
    for group in np.split(perm, 4):  # each group normalised with its own statistics alone
        out, updates = method.target_network.apply(
            {"params": e["target_params"], "batch_stats": e["target_batch_stats"]}, x[group],
            train=True, mutable=["batch_stats"])
        expected[group] = unit(out["projection"])
        group_stats.append(updates["batch_stats"])
    np.testing.assert_allclose(keys, expected, atol=2e-5)
    mean_stats = jax.tree.map(lambda *s: np.mean(s, axis=0), *group_stats)
    for got, want in zip(jax.tree.leaves(stats), jax.tree.leaves(mean_stats), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The same computation on the batch sharded over the 8 devices.
    sharded = jax.device_put(x, parallel.batch_sharding(parallel.create_mesh()))
    keys_sharded, _ = jax.jit(method.key_projections)(e["target_params"],
                                                      e["target_batch_stats"], sharded, rng)
    np.testing.assert_allclose(keys_sharded, keys, atol=1e-5)
    # The groups matter: global BatchNorm gives other keys.
    global_keys, _ = method.target_network.apply(
        {"params": e["target_params"], "batch_stats": e["target_batch_stats"]}, x, train=True,
        mutable=["batch_stats"])
    assert not np.allclose(keys, unit(global_keys["projection"]), atol=1e-3)


def test_mochi_adds_per_query_synthetic_negatives_after_warmup():
    exp, state, batch = small_mocov2(symmetric=False, shuffle_bn_groups=1, mochi=True,
                                     mochi_num_hard=8, mochi_num_mix=6, mochi_num_mix_query=3,
                                     mochi_warmup_epochs=1.0)
    method, c = exp.method, exp.config.method
    rng = jax.random.key(5)
    warmup = round(exp.steps_per_epoch)

    @jax.jit
    def loss_at(step):
        return method.loss(state.params, state.batch_stats, state.extra,
                           {"views": batch["views"]}, rng, step)[0]

    v1, v2 = (np.asarray(v) for v in batch["views"])
    q = forward(method.network, state.params, state.batch_stats, v1)["projection"]
    k = unit(target_outputs(exp, state, v2)["projection"])
    queue = np.asarray(state.extra["queue"][0], np.float64)
    plain = ref_info_nce(q, k, c.temperature, queue)
    assert float(loss_at(warmup - 1)) == pytest.approx(plain, rel=1e-5)
    # After warm-up: the same synthetic negatives the miner draws with the method's key.
    synthetic = losses.mochi_negatives(
        jnp.asarray(q, jnp.float32), state.extra["queue"][0],
        jax.random.fold_in(jax.random.split(rng)[1], 0), num_hard=8, num_mix=6,
        num_mix_query=3, beta_max=c.mochi_beta_max)
    assert synthetic.shape == (len(q), 9, c.proj_dim)
    mixed = ref_info_nce(q, k, c.temperature, queue, own=np.asarray(synthetic))
    assert float(loss_at(warmup)) == pytest.approx(mixed, rel=1e-5)
    assert mixed > plain  # more negatives, higher loss


def test_queue_size_and_shuffle_groups_must_fit_the_batch():
    c = tiny_config("mocov2")
    c.update(batch_size=256)
    c.method.queue_size = 500
    with pytest.raises(ConfigError, match=r"queue_size=500 .* multiple .* 256.*queue_size=512"):
        train.validate(c)
    c.method.update(queue_size=512, shuffle_bn_groups=3)
    with pytest.raises(ConfigError, match="shuffle_bn_groups=3 must divide"):
        train.validate(c)


def test_momentum_schedule():
    assert float(momentum_schedule(0, 100, 0.99)) == pytest.approx(0.99)
    assert float(momentum_schedule(50, 100, 0.99)) == pytest.approx(0.995)
    assert float(momentum_schedule(100, 100, 0.99)) == pytest.approx(1.0)
    assert float(momentum_schedule(70, 100, 0.999, 0.999)) == pytest.approx(0.999)
    # BYOL's target decay: 1 - (1 - base) (cos(pi k / K) + 1) / 2 (Grill et al. 2020, 3.2).
    assert float(momentum_schedule(50, 100, 0.996)) == pytest.approx(0.998)


# ---- MoCo v3 ----


def test_mocov3_two_steps_ema_and_loss():
    exp, states, metrics = train_steps("mocov3", 2)
    t = exp.config.method.temperature
    assert "predictor" not in states[0].extra["target_params"]
    for step in (0, 1):
        old, new = states[step], states[step + 1]
        tau = cosine_ramp(step, exp.total_steps, exp.config.method.tau_base, 1.0)
        assert float(metrics[step]["tau"]) == pytest.approx(tau)
        assert_ema(old.extra["target_params"], new.params, new.extra["target_params"], tau)
        v1, v2 = views_of(exp, step)
        q1, q2 = (forward(exp.method.network, old.params, old.batch_stats, v)["prediction"]
                  for v in (v1, v2))
        k1, k2 = (target_outputs(exp, old, v)["projection"] for v in (v1, v2))
        expected = 2 * t * (ref_info_nce(q1, k2, t) + ref_info_nce(q2, k1, t))
        assert float(metrics[step]["loss"]) == pytest.approx(expected, rel=1e-5)
    # The projector ends in BatchNorm without scale and bias: standardised features.
    assert set(states[0].params["projector"]) == {"mlp"}
    np.testing.assert_allclose(k1.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(k1.var(axis=0), 1.0, rtol=1e-2)


# ---- NNCLR ----


def test_nnclr_two_steps_support_set_and_loss():
    exp, states, metrics = train_steps("nnclr", 2)
    b, size = exp.config.batch_size, exp.config.method.support_size
    t = exp.config.method.temperature
    for step in (0, 1):
        old, new = states[step], states[step + 1]
        out = [forward(exp.method.network, old.params, old.batch_stats, v)
               for v in views_of(exp, step)]
        labels = random_batch(exp.config, b, seed=step)["label"]
        # FIFO of the first view's normalised projections and their labels.
        assert int(new.extra["support_ptr"]) == (step + 1) * b % size
        rows = slice(step * b, (step + 1) * b)
        np.testing.assert_allclose(new.extra["support_set"][rows], unit(out[0]["projection"]),
                                   atol=2e-5)
        np.testing.assert_array_equal(new.extra["support_labels"][rows], labels)
        np.testing.assert_array_equal(new.extra["support_set"][rows.stop:],
                                      old.extra["support_set"][rows.stop:])
        # Loss: each view's nearest neighbour against the other view's predictions.
        support = np.asarray(old.extra["support_set"], np.float64)
        idx = [np.argmax(unit(o["projection"]) @ support.T, axis=1) for o in out]
        expected = (ref_info_nce(support[idx[0]], out[1]["prediction"], t)
                    + ref_info_nce(support[idx[1]], out[0]["prediction"], t)) / 2
        assert float(metrics[step]["loss"]) == pytest.approx(expected, rel=1e-5)
        nn_acc = np.mean(np.asarray(old.extra["support_labels"])[idx[0]] == labels)
        assert float(metrics[step]["nn_acc"]) == pytest.approx(nn_acc)
