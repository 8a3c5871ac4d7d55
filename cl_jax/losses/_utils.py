"""Shared numerics for the losses: float32 upcast, normalisation, pairwise geometry."""

import chex
import jax.numpy as jnp


def to_float32(x):
    """Upcasts low-precision floats (bfloat16, float16) to float32; leaves others alone."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
        return x.astype(jnp.float32)
    return x


def check_pair(a, b):
    """Two (N, D) batches of one shape, as every paired loss takes; ``chex`` checks the static
    shapes, so a mismatch fails when the loss is traced, under ``jit`` too."""
    chex.assert_rank([a, b], 2)
    chex.assert_equal_shape([a, b])


def l2_normalize(x, axis=-1, eps=1e-12):
    """``x / max(||x||, eps)`` along ``axis`` (the convention of torch's F.normalize)."""
    x = to_float32(x)
    norm = jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True))
    return x / jnp.maximum(norm, eps)


def cosine_similarity_matrix(a, b):
    """``[i, j] = cos(a_i, b_j)`` for row vectors ``a`` (N x D) and ``b`` (M x D)."""
    return l2_normalize(a) @ l2_normalize(b).T


def squared_distances(a, b):
    """``[i, j] = |a_i - b_j|^2``, computed as ``|a|^2 + |b|^2 - 2 a.b`` and clipped at 0."""
    a, b = to_float32(a), to_float32(b)
    sq = jnp.sum(a * a, axis=-1)[:, None] + jnp.sum(b * b, axis=-1)[None, :] - 2.0 * a @ b.T
    return jnp.maximum(sq, 0.0)


def euclidean_distances(a, b):
    """``[i, j] = |a_i - b_j|`` with a zero (not NaN) gradient where the distance is 0."""
    sq = squared_distances(a, b)
    positive = sq > 0.0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
