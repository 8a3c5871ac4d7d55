"""SwAV, DINO, DeepCluster-v2 and instance discrimination through the real train step.

Each method's extra state is checked against what the paper says it does, and each loss
against a float64 NumPy recomputation from the network's outputs.
"""

import copy
import math

import chex
import conftest
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config, train_steps

from cl_jax import train
from cl_jax.data import sources
from cl_jax.errors import ConfigError
from cl_jax.methods import deepclusterv2, dino

# ---- helpers ---------------------------------------------------------------------------


def run(method, num_steps=2, **method_overrides):
    """Real jitted steps on 8 devices; returns (exp, states, metrics, host batches)."""
    config = tiny_config(method)
    config.method.update(method_overrides)
    exp, states, metrics = train_steps(method, num_steps, config=config)
    batches = [conftest.random_batch(config, config.batch_size, seed=i)
               for i in range(num_steps)]
    return exp, states, metrics, batches


def apply_by_resolution(network, params, batch_stats, views):
    """The network in training mode on each group of same-size views: list of output dicts."""
    forward = jax.jit(lambda variables, x: network.apply(variables, x, train=True,
                                                         mutable=["batch_stats"])[0])
    outputs = [None] * len(views)
    for shape in dict.fromkeys(v.shape for v in views):
        members = [i for i, v in enumerate(views) if v.shape == shape]
        out = forward({"params": params, "batch_stats": batch_stats},
                      jnp.concatenate([views[i] for i in members]))
        size = len(views[members[0]])
        for j, i in enumerate(members):
            rows = slice(j * size, (j + 1) * size)
            outputs[i] = jax.tree.map(lambda a, rows=rows: np.asarray(a[rows], np.float64), out)
    return outputs


def views_of(batch):
    return [np.asarray(v) for v in batch["views"]]


def normalize(x, axis=-1):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def log_softmax(x):
    x = np.asarray(x, np.float64) - np.max(x, axis=-1, keepdims=True)
    return x - np.log(np.sum(np.exp(x), axis=-1, keepdims=True))


def softmax(x):
    return np.exp(log_softmax(x))


def sinkhorn(scores, epsilon, num_iters):
    """SwAV's ``distributed_sinkhorn`` on one device, float64."""
    q = np.exp(np.asarray(scores, np.float64) / epsilon).T
    k, b = q.shape
    q /= q.sum()
    for _ in range(num_iters):
        q /= q.sum(axis=1, keepdims=True) * k
        q /= q.sum(axis=0, keepdims=True) * b
    return (q * b).T


def compiled_loss(method, state, batch):
    """``(params, extra, step, key) -> ((loss, aux), grads)`` on ``batch``, compiled once."""
    views = tuple(jnp.asarray(v) for v in batch["views"])
    inputs = {"views": views, "index": jnp.asarray(batch["index"])}
    inputs = {k: inputs[k] for k in method.inputs}

    def loss(params, extra, step, key):
        return method.loss(params, state.batch_stats, extra, inputs, key, step)

    fn = jax.jit(jax.value_and_grad(loss, has_aux=True))
    return lambda extra, step, key=0: fn(state.params, extra, jnp.asarray(step, jnp.int32),
                                         jax.random.key(key))


# ---- SwAV ------------------------------------------------------------------------------


def swav_reference(scores, crops, temperature, epsilon, num_iters, queue_scores=None):
    loss = 0.0
    for slot, i in enumerate(crops):
        to_assign = scores[i] if queue_scores is None else np.concatenate(
            [queue_scores[slot], scores[i]])
        q = sinkhorn(to_assign, epsilon, num_iters)[-len(scores[i]):]
        sub = [-np.mean(np.sum(q * log_softmax(scores[v] / temperature), axis=1))
               for v in range(len(scores)) if v != i]
        loss += np.sum(sub) / (len(scores) - 1)
    return loss / len(crops)


def test_swav_multicrop_queue_frozen_prototypes_and_loss():
    exp, states, metrics, batches = run("swav", 3, queue_length=32, queue_start_epoch=0)
    c, method = exp.config.method, exp.method
    assert len(batches[0]["views"]) == 4  # two global and two local crops
    assert all(np.isfinite(float(m["loss"])) for m in metrics)

    # The queue: the newest global-crop embeddings, in Sinkhorn once full (third step).
    for t in range(2):
        old, new = states[t], states[t + 1]
        out = apply_by_resolution(method.network, old.params, old.batch_stats,
                                  views_of(batches[t]))
        rows = slice(16 * t, 16 * (t + 1))
        for i in (0, 1):
            np.testing.assert_allclose(new.extra["queue"][i, rows],
                                       normalize(out[i]["projection"]), atol=1e-5)
        assert int(new.extra["queue_ptr"]) == (16 * (t + 1)) % 32
        assert int(new.extra["queue_size"]) == 16 * (t + 1)
    assert not np.any(states[1].extra["queue"][:, 16:])
    assert [float(m["queue_used"]) for m in metrics] == [0.0, 0.0, 1.0]

    # The loss of the first step, from the network's projections and prototypes.
    state = states[0]
    out = apply_by_resolution(method.network, state.params, state.batch_stats,
                              views_of(batches[0]))
    prototypes = normalize(state.params["predictor"]["kernel"], axis=0)
    scores = [normalize(o["projection"]) @ prototypes for o in out]
    args = (tuple(c.crops_for_assign), c.temperature, c.epsilon, c.sinkhorn_iterations)
    assert float(metrics[0]["loss"]) == pytest.approx(swav_reference(scores, *args), rel=1e-5)

    # With a full queue Sinkhorn also assigns the queued embeddings; the prototypes get no
    # gradient in the first epoch and do after it.
    queue = normalize(np.random.RandomState(0).normal(size=(2, 32, c.proj_dim)))
    extra = dict(state.extra, queue=jnp.asarray(queue, jnp.float32),
                 queue_size=jnp.asarray(32, jnp.int32))
    loss_fn = compiled_loss(method, state, batches[0])
    (loss, aux), frozen = loss_fn(extra, 0)
    expected = swav_reference(scores, *args, queue_scores=[q @ prototypes for q in queue])
    assert float(aux.metrics["queue_used"]) == 1.0
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    first_free = round(c.freeze_prototypes_epochs * method.steps_per_epoch)
    _, free = loss_fn(extra, first_free)
    assert not np.any(frozen["predictor"]["kernel"]) and np.any(free["predictor"]["kernel"])
    assert np.any(frozen["encoder"]["Conv_0"]["kernel"])
    # In the real steps weight decay rescaled the kernel; the prototypes did not move.
    prototypes = [normalize(s.params["predictor"]["kernel"], axis=0) for s in states]
    np.testing.assert_allclose(prototypes[3], prototypes[0], atol=1e-6)


# ---- DINO ------------------------------------------------------------------------------

SMALL_DINO_HEAD = dict(head_hidden_dims=(32, 32), bottleneck_dim=16, out_dim=64)


def dino_reference(student, teacher, center, student_temp, teacher_temp):
    terms = [np.mean(np.sum(-softmax((t - center) / teacher_temp)
                            * log_softmax(s / student_temp), axis=1))
             for iq, t in enumerate(teacher) for v, s in enumerate(student) if v != iq]
    return np.mean(terms)


def test_dino_teacher_center_loss_and_frozen_last_layer():
    exp, states, metrics, batches = run("dino", 2, **SMALL_DINO_HEAD)
    c, method = exp.config.method, exp.method
    assert len(batches[0]["views"]) == 4  # two global and two local crops
    for t in range(2):
        old, new, views = states[t], states[t + 1], views_of(batches[t])
        # The teacher moves by (1 - m) toward the student, m from the cosine schedule.
        m = float(metrics[t]["momentum"])
        if t == 0:
            assert m == pytest.approx(c.momentum_teacher)
        expected = jax.tree.map(lambda a, b, m=m: m * a + (1 - m) * b,
                                old.extra["teacher_params"],
                                {k: new.params[k] for k in ("encoder", "projector")})
        chex.assert_trees_all_close(new.extra["teacher_params"], expected, rtol=1e-5, atol=1e-7)
        # The center moves by the EMA of the batch mean of the teacher's global-crop logits.
        student = apply_by_resolution(method.network, old.params, old.batch_stats, views)
        teacher = apply_by_resolution(method.target_network, old.extra["teacher_params"],
                                      old.extra["teacher_batch_stats"], views[:2])
        teacher = [o["projection"] for o in teacher]
        center = np.asarray(old.extra["center"], np.float64)
        np.testing.assert_allclose(
            new.extra["center"],
            c.center_momentum * center
            + (1 - c.center_momentum) * np.mean(np.concatenate(teacher), axis=0),
            rtol=1e-5, atol=1e-6)
        # The loss over (teacher crop, other student crop) pairs, epoch 0's temperature.
        temp = float(dino.teacher_temperature(0, c.warmup_teacher_temp, c.teacher_temp,
                                              c.warmup_teacher_temp_epochs))
        assert float(metrics[t]["teacher_temp"]) == pytest.approx(temp)
        expected = dino_reference([o["projection"] for o in student], teacher, center,
                                  c.student_temp, temp)
        assert float(metrics[t]["loss"]) == pytest.approx(expected, rel=1e-5)
    assert np.any(states[1].extra["center"])  # so the second loss used a non-zero center

    loss_fn = compiled_loss(method, states[0], batches[0])
    first_free = round(c.freeze_last_layer_epochs * method.steps_per_epoch)
    (_, frozen), (_, free) = loss_fn(states[0].extra, 0), loss_fn(states[0].extra, first_free)
    assert not np.any(frozen["projector"]["prototypes"])
    assert np.any(free["projector"]["prototypes"])
    assert np.any(frozen["projector"]["Dense_0"]["kernel"])


def test_dino_teacher_temperature_warmup():
    schedule = lambda epoch: float(dino.teacher_temperature(epoch, 0.04, 0.07, 30))
    expected = np.linspace(0.04, 0.07, 30)
    for epoch in (0, 1, 15, 29):
        assert schedule(epoch) == pytest.approx(expected[epoch])
    assert schedule(30) == pytest.approx(0.07) and schedule(500) == pytest.approx(0.07)
    assert float(dino.teacher_temperature(3, 0.04, 0.07, 0)) == pytest.approx(0.07)


# ---- DeepCluster-v2 --------------------------------------------------------------------


def kmeans_reference(embeddings, centroids, num_iters):
    """The reference's ``cluster_memory`` loop for one head, float64."""
    x, c = np.asarray(embeddings, np.float64), np.asarray(centroids, np.float64).copy()
    for _ in range(num_iters):
        assignments = np.argmax(x @ c.T, axis=1)
        for k in range(len(c)):
            if np.any(assignments == k):
                c[k] = x[assignments == k].mean(axis=0)
        c = normalize(c)
    return c, np.argmax(x @ c.T, axis=1)


def test_spherical_kmeans_is_the_reference_loop():
    rng = np.random.RandomState(0)
    x = normalize(rng.normal(size=(40, 8))).astype(np.float32)
    valid = np.ones(40, bool)
    valid[-5:] = False  # rows not yet in the bank
    x[-5:] = 0.0
    init = x[[0, 3, 7, 11, 20]]
    centroids, assignments = jax.jit(deepclusterv2.spherical_kmeans, static_argnums=(3, 4))(
        x, valid, init, 4, 16)
    want_centroids, want_assignments = kmeans_reference(x[:35], init, 4)
    np.testing.assert_allclose(centroids, want_centroids, atol=1e-5)
    np.testing.assert_array_equal(assignments[:35], want_assignments)
    np.testing.assert_array_equal(assignments[35:], -1)


def test_deepclusterv2_bank_and_clustering_at_epoch_starts():
    exp, states, metrics, batches = run("deepclusterv2", 2, num_prototypes=(4, 3))
    c, method = exp.config.method, exp.method
    # Epoch 0 fills the bank: no assignments yet, loss 0; the batch's rows are written.
    assert [float(m["loss"]) for m in metrics] == [0.0, 0.0]
    assert np.all(states[2].extra["assignments"] == -1)
    written = np.zeros(c.num_examples, bool)
    for t in range(2):
        old, index = states[t], batches[t]["index"]
        out = apply_by_resolution(method.network, old.params, old.batch_stats,
                                  views_of(batches[t]))
        for i in (0, 1):
            np.testing.assert_allclose(states[t + 1].extra["bank"][i, index],
                                       normalize(out[i]["projection"]), atol=1e-5)
        written[index] = True
    assert not np.any(states[2].extra["bank"][:, ~written])

    # The first step of epoch 1 clusters the bank: normalised centroids, every filled row
    # assigned to its nearest centroid, the rest unassigned.
    state = states[2]
    batch = conftest.random_batch(exp.config, exp.config.batch_size, seed=5)
    loss_fn = compiled_loss(method, state, batch)
    boundary = math.ceil(method.steps_per_epoch)
    (loss, aux), _ = loss_fn(state.extra, boundary, key=1)
    assert float(aux.metrics["clustered"]) == 1.0
    bank = np.asarray(state.extra["bank"], np.float64)
    filled = np.any(bank[0] != 0, axis=1)
    for h, centroids in enumerate(aux.extra["centroids"]):
        centroids = np.asarray(centroids, np.float64)
        assert centroids.shape == (c.num_prototypes[h], c.proj_dim)
        np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
        assignments = np.asarray(aux.extra["assignments"][h])
        np.testing.assert_array_equal(assignments[filled],
                                      np.argmax(bank[h % 2][filled] @ centroids.T, axis=1))
        assert np.all(assignments[~filled] == -1)
    # The loss: every crop's prototype scores against its example's cluster, per head.
    out = apply_by_resolution(method.network, state.params, state.batch_stats,
                              views_of(batch))
    z = np.concatenate([normalize(o["projection"]) for o in out])
    expected = []
    for h, centroids in enumerate(aux.extra["centroids"]):
        targets = np.tile(np.asarray(aux.extra["assignments"][h])[batch["index"]], len(out))
        log_p = log_softmax(z @ np.asarray(centroids, np.float64).T / c.temperature)
        known = targets >= 0
        expected.append(-np.mean(log_p[known, targets[known]]) if known.any() else 0.0)
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-5)
    # Later steps of the epoch keep the clusters.
    (_, aux), _ = loss_fn(state.extra, boundary + 1, key=1)
    assert float(aux.metrics["clustered"]) == 0.0
    chex.assert_trees_all_close(aux.extra["centroids"], state.extra["centroids"])


# ---- instance discrimination -----------------------------------------------------------


def test_instdisc_bank_update_and_softmax_loss():
    exp, states, metrics, batches = run("instdisc", 2)
    c, method = exp.config.method, exp.method
    for t in range(2):
        old, new, index = states[t], states[t + 1], batches[t]["index"]
        (out,) = apply_by_resolution(method.network, old.params, old.batch_stats,
                                     views_of(batches[t])[:1])
        f, bank = normalize(out["projection"]), np.asarray(old.extra["bank"], np.float64)
        # The exact non-parametric softmax over the bank.
        log_p = log_softmax(f @ bank.T / c.temperature)
        expected = -np.mean(log_p[np.arange(len(f)), index])
        assert float(metrics[t]["loss"]) == pytest.approx(expected, rel=1e-5)
        # The batch's rows take v <- normalize(m v + (1 - m) f); the others stay.
        m = c.bank_momentum
        np.testing.assert_allclose(new.extra["bank"][index],
                                   normalize(m * bank[index] + (1 - m) * f), atol=1e-5)
        others = np.setdiff1d(np.arange(len(bank)), index)
        np.testing.assert_array_equal(new.extra["bank"][others], old.extra["bank"][others])
    np.testing.assert_allclose(np.linalg.norm(states[2].extra["bank"], axis=1), 1.0, atol=1e-5)


def test_instdisc_nce_with_proximal_term():
    exp, states, _, batches = run("instdisc", 1)
    state, batch, index = states[0], batches[0], batches[0]["index"]
    method = copy.copy(exp.method)
    method.config = copy.deepcopy(exp.config.method)
    method.config.update(num_noise=8, proximal=30.0)
    c, n = method.config, method.config.num_examples
    extra = dict(jax.tree.map(jnp.asarray, state.extra), log_z=jnp.zeros(()),
                 has_z=jnp.zeros((), bool))
    loss_fn = compiled_loss(method, state, batch)
    (loss, aux), _ = loss_fn(extra, 0, key=7)
    # NCE with the noise rows the loss draws from its key, P_n = 1/N and Z from this batch.
    (out,) = apply_by_resolution(method.network, state.params, state.batch_stats,
                                 views_of(batch)[:1])
    f, bank = normalize(out["projection"]), np.asarray(state.extra["bank"], np.float64)
    noise = np.asarray(jax.random.randint(jax.random.key(7), (len(f), c.num_noise), 0, n))
    p_data = np.exp(np.sum(f * bank[index], axis=1) / c.temperature)
    p_noise = np.exp(np.einsum("bd,bkd->bk", f, bank[noise]) / c.temperature)
    z = np.mean(np.concatenate([p_data[:, None], p_noise], axis=1)) * n
    p_data, p_noise, k_pn = p_data / z, p_noise / z, c.num_noise / n
    nce = -np.mean(np.log(p_data / (p_data + k_pn))
                   + np.sum(np.log(k_pn / (p_noise + k_pn)), axis=1))
    proximal = c.proximal * np.mean(np.sum((f - bank[index]) ** 2, axis=1))
    assert float(aux.extra["log_z"]) == pytest.approx(np.log(z), rel=1e-5)
    assert float(loss) == pytest.approx(nce + proximal, rel=1e-5)
    # Z is fixed from then on.
    extra = method.update_extra(extra, state.params, aux, 0)
    assert bool(extra["has_z"]) and float(extra["log_z"]) == float(aux.extra["log_z"])
    (_, aux), _ = loss_fn(extra, 1, key=8)
    assert float(aux.extra["log_z"]) == float(extra["log_z"])


def test_memory_bank_methods_need_indices_and_the_right_bank_size():
    config = tiny_config("instdisc")
    exp = train.create_experiment(config)
    assert exp.config.method.num_examples == 1295  # 0 in the config: minitrain's size
    views = conftest.random_batch(config, config.batch_size)["views"]
    with pytest.raises(ConfigError, match="index"):
        exp.method.loss({}, {}, {}, {"views": views, "index": None}, jax.random.key(0), 0)
    config = tiny_config("deepclusterv2")
    config.method.num_examples = 5000
    with pytest.raises(ConfigError, match="num_examples=1295"):
        train.create_experiment(config)


def test_memory_bank_methods_refuse_a_split_without_indices():
    streamed = sources.Split("imagenet2012/train", 10, 0, stream=lambda *a: None,
                             decode=lambda r: r)
    with pytest.raises(ConfigError, match="needs example indices.*cache_in_memory=True"):
        train.check_indexable(tiny_config("instdisc"), streamed)
