"""Blockwise (memory-efficient) log-sum-exp, NT-Xent and InfoNCE against the dense versions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cl_jax.losses import contrastive as C
from cl_jax.losses.blockwise import logsumexp_rows

nt_xent = jax.jit(C.nt_xent, static_argnames="block_size")
info_nce = jax.jit(C.info_nce, static_argnames="block_size")


def normal(seed, *shape):
    return np.random.RandomState(seed).normal(size=shape).astype(np.float32)


def assert_grads_close(actual, desired):
    for a, d in zip(actual, desired, strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-6 * np.abs(d).max())


# ---- the primitive against float64 NumPy ----


def ref_logsumexp_rows(q, k, exclude_diagonal):
    """Per row: lse and d lse / d q (the softmax-weighted keys), with explicit loops."""
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    lse, dq = np.zeros(len(q)), np.zeros_like(q)
    for i in range(len(q)):
        cols = [j for j in range(len(k)) if not (exclude_diagonal and j == i)]
        logits = np.array([q[i] @ k[j] for j in cols])
        lse[i] = logits.max() + np.log(np.sum(np.exp(logits - logits.max())))
        dq[i] = sum(np.exp(logits[c] - lse[i]) * k[j] for c, j in enumerate(cols))
    return lse, dq


@pytest.mark.parametrize(
    "n, m, block_size, exclude_diagonal",
    [
        (7, 7, None, True),
        (7, 7, 3, True),
        (7, 7, 1, True),
        (8, 8, 4, True),
        (8, 8, 64, True),
        (5, 9, None, False),
        (5, 9, 4, False),
        (5, 9, 2, False),
        (5, 9, 9, False),
    ],
)
def test_logsumexp_rows_matches_reference(n, m, block_size, exclude_diagonal):
    q, k = 3.0 * normal(0, n, 4), normal(1, m, 4)  # logits up to ~20: the shift matters
    lse, dq = ref_logsumexp_rows(q, k, exclude_diagonal)
    f = jax.jit(lambda a, b: logsumexp_rows(a, b, exclude_diagonal, block_size))
    np.testing.assert_allclose(f(q, k), lse, rtol=1e-5)
    # Cotangent 1 on row i alone: the gradient w.r.t. q_i is row i of the reference's dq.
    np.testing.assert_allclose(jax.grad(lambda a: f(a, k).sum())(q), dq, rtol=1e-4, atol=1e-5)


def test_logsumexp_rows_extreme_logits_and_errors():
    q, k = 1000.0 * normal(2, 6, 3), normal(3, 6, 3)  # logits of +-thousands
    blockwise = jax.jit(lambda a: logsumexp_rows(a, k, True, block_size=4))
    np.testing.assert_allclose(blockwise(q), ref_logsumexp_rows(q, k, True)[0], rtol=1e-6)
    assert np.all(np.isfinite(jax.jit(jax.grad(lambda a: blockwise(a).sum()))(q)))
    assert logsumexp_rows(jnp.asarray(q, jnp.bfloat16), k, block_size=2).dtype == jnp.float32
    with pytest.raises(ValueError, match="block_size"):
        logsumexp_rows(q, k, block_size=0)
    with pytest.raises(ValueError, match="exclude_diagonal"):
        logsumexp_rows(q, k[:4], True, block_size=2)


# ---- the losses: blockwise equals dense, values and gradients ----


@pytest.mark.parametrize("n", [7, 8])
@pytest.mark.parametrize("block_size", [1, 3, 4, 16, 64])
def test_nt_xent_blockwise_equals_dense(n, block_size):
    z1, z2 = normal(n, n, 6), normal(n + 1, n, 6)
    for t in (0.05, 0.5):
        grad = jax.value_and_grad(nt_xent, argnums=(0, 1, 2))
        value, grads = grad(z1, z2, t, block_size=block_size)
        dense_value, dense_grads = grad(z1, z2, t)
        np.testing.assert_allclose(value, dense_value, rtol=1e-5)
        assert_grads_close(grads, dense_grads)  # z1, z2 and the temperature


@pytest.mark.parametrize("block_size", [1, 3, 5, 16])
def test_info_nce_blockwise_equals_dense(block_size):
    q, k, queue = normal(10, 6, 5), normal(11, 6, 5), normal(12, 11, 5)
    for negatives, argnums in ((None, (0, 1)), (queue, (0, 1, 2))):
        grad = jax.value_and_grad(info_nce, argnums=argnums)
        value, grads = grad(q, k, negatives, 0.1, block_size=block_size)
        dense_value, dense_grads = grad(q, k, negatives, 0.1)
        np.testing.assert_allclose(value, dense_value, rtol=1e-5)
        assert_grads_close(grads, dense_grads)


def test_blockwise_vmap_and_bfloat16():
    z1, z2 = normal(20, 3, 6, 4), normal(21, 3, 6, 4)
    batched = jax.jit(jax.vmap(lambda a, b: C.nt_xent(a, b, block_size=4)))(z1, z2)
    np.testing.assert_allclose(
        batched, [nt_xent(a, b) for a, b in zip(z1, z2, strict=True)], rtol=1e-5
    )
    grad = jax.grad(lambda a, b: C.info_nce(a, b, b[::-1], block_size=5))
    dense_grad = jax.jit(jax.grad(lambda a, b: C.info_nce(a, b, b[::-1])))
    assert_grads_close(
        jax.jit(jax.vmap(grad))(z1, z2), [dense_grad(a, b) for a, b in zip(z1, z2, strict=True)]
    )

    a16, b16 = jnp.asarray(z1[0], jnp.bfloat16), jnp.asarray(z2[0], jnp.bfloat16)
    low = nt_xent(a16, b16, block_size=5)
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, nt_xent(a16, b16), rtol=1e-5)
    assert info_nce(a16, b16, a16, block_size=5).dtype == jnp.float32


def test_blockwise_sharded_equals_unsharded():
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
    z1, z2, queue = normal(30, 16, 5), normal(31, 16, 5), normal(32, 24, 5)

    @jax.jit
    def values_and_grads(z1, z2, queue):
        grad = jax.value_and_grad
        return (
            grad(lambda a, b: C.nt_xent(a, b, block_size=6), (0, 1))(z1, z2),
            grad(lambda a, b, c: C.info_nce(a, b, c, block_size=5), (0, 1, 2))(z1, z2, queue),
        )

    sharded = [jax.device_put(x, sharding) for x in (z1, z2, queue)]
    results = values_and_grads(*sharded)
    expected = (
        jax.value_and_grad(nt_xent, (0, 1))(z1, z2),
        jax.value_and_grad(info_nce, (0, 1, 2))(z1, z2, queue),
    )  # dense, one device
    for (value, grads), (dense_value, dense_grads) in zip(results, expected, strict=True):
        np.testing.assert_allclose(value, dense_value, rtol=1e-5)
        assert_grads_close(grads, dense_grads)


def temp_bytes(f, *args):
    return jax.jit(f).lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_blockwise_never_materialises_the_similarity_matrix():
    z = jnp.zeros((2048, 32))  # 2N = 4096 views: the dense matrix is 64 MiB
    matrix_bytes = 4096**2 * 4
    grad = lambda **kw: jax.grad(lambda a, b: C.nt_xent(a, b, **kw), (0, 1))
    assert temp_bytes(grad(), z, z) >= matrix_bytes
    assert temp_bytes(grad(block_size=128), z, z) < matrix_bytes / 8
    queue = jnp.zeros((8192, 32))  # N x M = 64 MiB
    grad = lambda **kw: jax.grad(lambda a, b, c: C.info_nce(a, b, c, **kw), (0, 1, 2))
    assert temp_bytes(grad(), z, z, queue) >= 2048 * 8192 * 4
    assert temp_bytes(grad(block_size=256), z, z, queue) < 2048 * 8192 * 4 / 8
