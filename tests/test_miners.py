"""Miners against NumPy loops, and MoCHi's synthetic negatives checked geometrically."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_jax.losses import miners

LABELS = np.array([0, 0, 1, 1, 1, 2, 3, 3])  # class 2: an anchor without positive


def random_distances(seed, n=8):
    x = np.random.RandomState(seed).normal(size=(n, 3))
    return np.linalg.norm(x[:, None] - x[None], axis=-1).astype(np.float32)


def test_pair_and_triplet_masks():
    n = len(LABELS)
    pos, neg = miners.positive_mask(LABELS), miners.negative_mask(LABELS)
    triplets = miners.triplet_mask_all(jnp.asarray(LABELS))
    assert triplets.shape == (n, n, n) and triplets.dtype == jnp.bool_
    for a, b in itertools.product(range(n), repeat=2):
        assert pos[a, b] == (a != b and LABELS[a] == LABELS[b])
        assert neg[a, b] == (LABELS[a] != LABELS[b])
    expected = {
        (a, p, k)
        for a, p, k in itertools.product(range(n), repeat=3)
        if a != p and LABELS[p] == LABELS[a] and LABELS[k] != LABELS[a]
    }
    assert set(zip(*np.nonzero(np.asarray(triplets)), strict=True)) == expected


@pytest.mark.parametrize("seed", range(3))
def test_batch_hard_indices(seed):
    dist = random_distances(seed)
    pos_idx, neg_idx, valid = jax.jit(miners.batch_hard_indices)(dist, LABELS)
    for a in range(len(LABELS)):
        positives = [p for p in range(len(LABELS)) if p != a and LABELS[p] == LABELS[a]]
        negatives = [k for k in range(len(LABELS)) if LABELS[k] != LABELS[a]]
        assert valid[a] == bool(positives and negatives)
        if valid[a]:
            assert pos_idx[a] == max(positives, key=lambda p: dist[a, p])
            assert neg_idx[a] == min(negatives, key=lambda k: dist[a, k])


@pytest.mark.parametrize("seed", range(3))
def test_semihard_negative_indices(seed):
    dist = random_distances(seed)
    neg_idx, valid = jax.jit(miners.semihard_negative_indices)(dist, LABELS)
    assert neg_idx.shape == valid.shape == (8, 8)
    used_fallback = False
    for a, p in itertools.product(range(8), repeat=2):
        is_pair = a != p and LABELS[a] == LABELS[p]
        assert valid[a, p] == is_pair
        if not is_pair:
            continue
        negatives = [k for k in range(8) if LABELS[k] != LABELS[a]]
        farther = [k for k in negatives if dist[a, k] > dist[a, p]]
        if farther:
            assert neg_idx[a, p] == min(farther, key=lambda k: dist[a, k])
        else:
            used_fallback = True
            assert neg_idx[a, p] == max(negatives, key=lambda k: dist[a, k])
    if seed == 0:
        assert used_fallback  # the fallback branch is exercised


def test_vmap_over_batches():
    dist = np.stack([random_distances(4), random_distances(5)])
    labels = np.stack([LABELS, LABELS[::-1]])
    for miner in (miners.batch_hard_indices, miners.semihard_negative_indices):
        batched = jax.vmap(miner)(dist, labels)
        for g in range(2):
            for got, want in zip(batched, miner(dist[g], labels[g]), strict=True):
                np.testing.assert_array_equal(got[g], want)


def test_miners_without_negatives_are_invalid():
    dist = random_distances(0, 4)
    same = np.zeros(4, np.int32)
    assert not np.any(miners.batch_hard_indices(dist, same)[2])
    assert not np.any(miners.semihard_negative_indices(dist, same)[1])


# ---- MoCHi ----

B, L, D, N_HARD, S, S_PRIME, BETA_MAX = 3, 20, 8, 5, 6, 4, 0.3
ARGS = dict(num_hard=N_HARD, num_mix=S, num_mix_query=S_PRIME, beta_max=BETA_MAX)
mochi = jax.jit(
    miners.mochi_negatives, static_argnames=("num_hard", "num_mix", "num_mix_query", "beta_max")
)


def mochi_inputs(seed=0):
    rng = np.random.RandomState(seed)
    return rng.normal(size=(B, D)).astype(np.float32), rng.normal(size=(L, D)).astype(np.float32)


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def mix_coefficients(target, u, v):
    """Least-squares (c_u, c_v) with target ~ c_u u + c_v v, and the residual."""
    basis = np.stack([u, v], axis=1)
    coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
    return coef, np.linalg.norm(basis @ coef - target)


def test_mochi_shapes_norms_and_geometry():
    query, queue = mochi_inputs()
    out = np.asarray(mochi(query, queue, jax.random.PRNGKey(0), **ARGS), np.float64)
    assert out.shape == (B, S + S_PRIME, D)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-5)
    q, n = unit(query.astype(np.float64)), unit(queue.astype(np.float64))
    for b in range(B):
        hard = np.argsort(-(n @ q[b]))[:N_HARD]
        for h in out[b, :S]:  # alpha n_i + (1 - alpha) n_j, two distinct hard negatives
            fits = []
            for i, j in itertools.combinations(hard, 2):
                coef, residual = mix_coefficients(h, n[i], n[j])
                if residual < 1e-4 and np.all(coef > -1e-6):
                    fits.append((i, j))
            assert fits, "not a convex mix of two of the query's hardest negatives"
        for h in out[b, S:]:  # beta q + (1 - beta) n_j with beta < beta_max
            fits = []
            for j in hard:
                (c_q, c_n), residual = mix_coefficients(h, q[b], n[j])
                if residual < 1e-4 and c_q > 0 and c_n > 0:
                    fits.append(c_q / (c_q + c_n))
            assert fits and min(fits) < BETA_MAX + 1e-5, "not a query mix with beta < beta_max"


def test_mochi_determinism_and_randomness():
    query, queue = mochi_inputs(2)
    a = mochi(query, queue, jax.random.PRNGKey(7), **ARGS)
    b = mochi(query, queue, jax.random.PRNGKey(7), **ARGS)
    c = mochi(query, queue, jax.random.PRNGKey(8), **ARGS)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_mochi_stop_gradient_dtype_and_validation():
    query, queue = mochi_inputs(3)
    key = jax.random.PRNGKey(0)

    def cubed(q):  # bfloat16 in, float32 out, no gradient to the query
        out = mochi(q, queue.astype(jnp.bfloat16), key, **ARGS)
        return jnp.sum(out**3), out

    (_, out), grad = jax.value_and_grad(cubed, has_aux=True)(query.astype(jnp.bfloat16))
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(grad, 0.0)
    with pytest.raises(ValueError, match="num_hard"):
        miners.mochi_negatives(query, queue, key, num_hard=L + 1, num_mix=1, num_mix_query=1)
    with pytest.raises(ValueError, match="beta_max"):
        miners.mochi_negatives(
            query, queue, key, num_hard=4, num_mix=1, num_mix_query=1, beta_max=0.7
        )
