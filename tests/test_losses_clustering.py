"""SwAV (Sinkhorn-Knopp, swapped prediction) and DINO against float64 NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cl_jax.losses import clustering

B, K = 16, 6
sinkhorn = jax.jit(clustering.sinkhorn_knopp, static_argnames="num_iters")
swav = jax.jit(clustering.swav, static_argnames=("codes_from", "num_iters"))
dino = jax.jit(clustering.dino)
dino_center_update = jax.jit(clustering.dino_center_update)


def crop_scores(seed, n_crops=5, b=B, k=K):
    """Cosine-like scores in [-1, 1], one (b, k) array per crop."""
    rng = np.random.RandomState(seed)
    return [np.tanh(rng.normal(size=(b, k))).astype(np.float32) for _ in range(n_crops)]


# ---- references (written from the official PyTorch code, in float64 with loops) ----


def ref_sinkhorn(scores, epsilon, num_iters):
    q = np.exp(np.asarray(scores, np.float64) / epsilon).T  # K x B, no max-subtraction
    k, b = q.shape
    q /= q.sum()
    for _ in range(num_iters):
        for row in range(k):
            q[row] /= q[row].sum() * k
        for col in range(b):
            q[:, col] /= q[:, col].sum() * b
    return (q * b).T


def log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def ref_swav(scores, codes_from, temperature, epsilon, num_iters, queue=None):
    n_crops, loss = len(scores), 0.0
    for slot, i in enumerate(codes_from):
        out = scores[i] if queue is None else np.concatenate([queue[slot], scores[i]])
        q = ref_sinkhorn(out, epsilon, num_iters)[-len(scores[i]) :]
        subloss = 0.0
        for v in range(n_crops):
            if v != i:
                log_p = log_softmax(np.asarray(scores[v], np.float64) / temperature)
                subloss -= np.mean([np.sum(q[b] * log_p[b]) for b in range(len(q))])
        loss += subloss / (n_crops - 1)
    return loss / len(codes_from)


def ref_dino(student, teacher, center, student_temp, teacher_temp):
    total, terms = 0.0, 0
    for iq, t in enumerate(teacher):
        q = np.exp(log_softmax((np.asarray(t, np.float64) - center) / teacher_temp))
        for v, s in enumerate(student):
            if v == iq:
                continue
            log_p = log_softmax(np.asarray(s, np.float64) / student_temp)
            total += np.mean([-np.sum(q[b] * log_p[b]) for b in range(len(q))])
            terms += 1
    return total / terms


# ---- Sinkhorn ----


@pytest.mark.parametrize("epsilon,num_iters", [(0.05, 3), (0.1, 1), (0.5, 10)])
def test_sinkhorn_matches_official_algorithm(epsilon, num_iters):
    scores = crop_scores(0, 1)[0]
    got = sinkhorn(scores, epsilon, num_iters)
    assert got.shape == (B, K) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, ref_sinkhorn(scores, epsilon, num_iters), rtol=1e-4, atol=1e-6)


def test_sinkhorn_marginals():
    scores = crop_scores(1, 1)[0]
    q = np.asarray(sinkhorn(scores, 0.05, 3))
    np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)  # each sample's codes sum to 1
    converged = np.asarray(sinkhorn(scores, 0.3, 200))
    np.testing.assert_allclose(converged.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(converged.sum(0), B / K, rtol=1e-3)  # equipartition


def test_sinkhorn_stable_for_large_scores_and_shift_invariant():
    scores = crop_scores(2, 1)[0] + 10  # exp(11 / 0.05) overflows float32 without the shift
    got = sinkhorn(scores, 0.05, 3)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref_sinkhorn(scores, 0.05, 3), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(sinkhorn(scores - 10.0, 0.05, 3), got, rtol=1e-4, atol=1e-6)


def test_sinkhorn_has_no_gradient():
    scores = crop_scores(3, 1)[0]
    weights = np.random.RandomState(0).normal(size=(B, K)).astype(np.float32)
    grad = jax.grad(lambda s: jnp.sum(clustering.sinkhorn_knopp(s) * weights))(scores)
    np.testing.assert_array_equal(grad, 0.0)


# ---- SwAV ----


@pytest.mark.parametrize(
    "n_crops,codes_from,temperature",
    [(2, (0, 1), 0.1), (5, (0, 1), 0.1), (5, (0, 1), 0.5), (4, (1,), 0.2)],
)
def test_swav_matches_official_loop(n_crops, codes_from, temperature):
    scores = crop_scores(4, n_crops)
    got = swav(scores, codes_from, temperature, 0.05, 3)
    np.testing.assert_allclose(got, ref_swav(scores, codes_from, temperature, 0.05, 3), rtol=1e-5)
    stacked = swav(jnp.stack(scores), codes_from, temperature, 0.05, 3)
    np.testing.assert_allclose(stacked, got, rtol=1e-6)


def test_swav_with_queue():
    scores = crop_scores(5, 4)
    queue = crop_scores(6, 2, b=24)
    got = swav(scores, (0, 1), queue_scores=queue)
    np.testing.assert_allclose(got, ref_swav(scores, (0, 1), 0.1, 0.05, 3, queue), rtol=1e-5)
    assert not np.isclose(got, swav(scores, (0, 1)), rtol=1e-4)
    with pytest.raises(ValueError, match="queue_scores"):
        clustering.swav(scores, (0, 1), queue_scores=queue[:1])


def test_swav_gradient_only_through_predictions():
    # With the codes as constants, d loss / d scores_v =
    # 1/|C| 1/(n-1) sum_{i in C, i != v} (softmax(scores_v / T) - q_i) / (T B).
    scores, codes_from, t = crop_scores(7, 4), (0, 1), 0.1
    grads = jax.jit(jax.grad(lambda s: clustering.swav(s, codes_from, t)))(scores)
    codes = {i: ref_sinkhorn(scores[i], 0.05, 3) for i in codes_from}
    for v, grad in enumerate(grads):
        p = np.exp(log_softmax(np.asarray(scores[v], np.float64) / t))
        expected = sum((p - codes[i]) / (t * B) for i in codes_from if i != v)
        expected = expected / (len(codes_from) * (len(scores) - 1))
        np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-6)


def test_swav_batch_permutation_invariance():
    scores = crop_scores(8, 4)
    perm = np.random.RandomState(0).permutation(B)
    np.testing.assert_allclose(
        swav(scores, (0, 1)), swav([s[perm] for s in scores], (0, 1)), rtol=1e-5
    )


# ---- DINO ----


@pytest.mark.parametrize("student_temp,teacher_temp", [(0.1, 0.04), (0.2, 0.07), (1.0, 1.0)])
def test_dino_matches_official_loop(student_temp, teacher_temp):
    rng = np.random.RandomState(9)
    student = [rng.normal(size=(B, K)).astype(np.float32) for _ in range(5)]
    teacher = [rng.normal(size=(B, K)).astype(np.float32) for _ in range(2)]
    center = rng.normal(size=K).astype(np.float32) * 0.3
    got = dino(student, teacher, center, student_temp, teacher_temp)
    expected = ref_dino(student, teacher, center, student_temp, teacher_temp)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(
        dino(jnp.stack(student), jnp.stack(teacher), center[None], student_temp, teacher_temp),
        expected,
        rtol=1e-5,
    )


def test_dino_gradient_flows_to_student_only():
    rng = np.random.RandomState(10)
    student = rng.normal(size=(4, B, K)).astype(np.float32)
    teacher = rng.normal(size=(2, B, K)).astype(np.float32)
    center = np.zeros(K, np.float32)
    g_s, g_t, g_c = jax.jit(jax.grad(clustering.dino, argnums=(0, 1, 2)))(student, teacher, center)
    assert np.all(np.isfinite(g_s)) and np.any(g_s != 0)
    np.testing.assert_array_equal(g_t, 0.0)
    np.testing.assert_array_equal(g_c, 0.0)


def test_dino_center_update():
    rng = np.random.RandomState(11)
    teacher = [rng.normal(size=(B, K)).astype(np.float32) for _ in range(2)]
    center = rng.normal(size=(1, K)).astype(np.float32)
    rows = np.concatenate(teacher).astype(np.float64)
    expected = center * 0.9 + 0.1 * np.array([rows[:, k].sum() / len(rows) for k in range(K)])
    got = dino_center_update(center, teacher, 0.9)
    assert got.shape == (1, K)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(
        dino_center_update(center[0], jnp.stack(teacher), 0.9), expected[0], rtol=1e-5
    )


# ---- transforms, dtypes, sharding ----


def test_vmap():
    scores = np.stack([np.stack(crop_scores(12, 3)), np.stack(crop_scores(13, 3))])
    np.testing.assert_allclose(
        jax.jit(jax.vmap(lambda s: clustering.swav(s, (0, 1))))(scores),
        [swav(scores[0], (0, 1)), swav(scores[1], (0, 1))],
        rtol=1e-5,
    )
    center = np.zeros(K, np.float32)
    np.testing.assert_allclose(
        jax.jit(jax.vmap(lambda s: clustering.dino(s, s[:2], center)))(scores),
        [dino(scores[0], scores[0][:2], center), dino(scores[1], scores[1][:2], center)],
        rtol=1e-5,
    )


def test_bfloat16_input_gives_float32():
    scores = crop_scores(14, 3)
    low = [jnp.asarray(s, jnp.bfloat16) for s in scores]
    center = np.zeros(K, np.float32)
    for got, want in [
        (sinkhorn(low[0], 0.05, 3), sinkhorn(scores[0], 0.05, 3)),
        (swav(low, (0, 1)), swav(scores, (0, 1))),
        (dino(low, low[:2], center), dino(scores, scores[:2], center)),
        (dino_center_update(center, low[:2]), dino_center_update(center, scores[:2])),
    ]:
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(got, want, rtol=5e-2, atol=5e-2)


def test_sharded_batch_matches_unsharded():
    sharding = NamedSharding(Mesh(jax.devices(), ("data",)), P("data"))
    scores = crop_scores(15, 3)
    sharded = [jax.device_put(s, sharding) for s in scores]
    np.testing.assert_allclose(
        sinkhorn(sharded[0], 0.05, 3), sinkhorn(scores[0], 0.05, 3), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(swav(sharded, (0, 1)), swav(scores, (0, 1)), rtol=1e-5)
    center = np.zeros(K, np.float32)
    np.testing.assert_allclose(
        dino(sharded, sharded[:2], center), dino(scores, scores[:2], center), rtol=1e-5
    )
    np.testing.assert_allclose(
        dino_center_update(center, sharded[:2]), dino_center_update(center, scores[:2]), rtol=1e-5
    )
