"""Row-wise log-sum-exp of a similarity matrix, optionally without materialising it.

``logsumexp_rows(q, k)[i] = log sum_j exp(q_i . k_j)`` is the normaliser of every softmax
contrastive loss (NT-Xent, InfoNCE). Dense, it builds the ``N x M`` matrix ``q k^T``; with a
``block_size`` it streams over blocks of ``block_size`` keys with a running (max, sum), and a
``jax.custom_vjp`` recomputes each block in the backward pass instead of storing it, so forward
and backward need temporaries of ``N x block_size`` (plus the ``O((N + M) D)`` inputs and
gradients) rather than ``N x M``. The query rows are not blocked: they stay one data-parallel
axis, so under ``jit`` with the batch sharded over devices each device works on its own rows
against the gathered keys, and the ``N x block_size`` temporaries are split across devices.
"""

import functools

import jax
import jax.numpy as jnp

from cl_jax.losses._utils import to_float32


def logsumexp_rows(q, k, exclude_diagonal=False, block_size=None):
    """``lse_i = log sum_j exp(q_i . k_j)`` for ``q`` (N x D) and ``k`` (M x D).

    ``exclude_diagonal`` drops the ``j == i`` term (needs ``N == M``: contrasting a batch with
    itself). ``block_size=None`` computes the dense matrix; an int streams over blocks of that
    many keys (any ``M``: the last block is padded and masked). Values and gradients (reverse
    mode only, for the blockwise path) agree with the dense computation to float32 rounding.
    Inputs are upcast to float32 (bfloat16 in, float32 out).
    """
    q, k = to_float32(q), to_float32(k)
    if exclude_diagonal and q.shape[0] != k.shape[0]:
        raise ValueError(
            f"exclude_diagonal needs as many keys as queries, got {q.shape} and {k.shape}"
        )
    if block_size is None:
        logits = q @ k.T
        if exclude_diagonal:
            logits = jnp.where(jnp.eye(q.shape[0], dtype=bool), -jnp.inf, logits)
        return jax.nn.logsumexp(logits, axis=1)
    if block_size < 1:
        raise ValueError(f"block_size must be a positive int or None, got {block_size}")
    return _blockwise_lse(q, k, min(int(block_size), k.shape[0]), exclude_diagonal)


def _key_blocks(k, block_size):
    """``k`` padded with zero rows to a multiple of ``block_size``: (num_blocks, block, D)."""
    k = jnp.pad(k, ((0, -k.shape[0] % block_size), (0, 0)))
    return k.reshape(-1, block_size, k.shape[1])


def _block_logits(q, k_block, start, num_keys, exclude_diagonal):
    """``q k_block^T`` with ``-inf`` at padded keys (and at ``j == i`` if excluded)."""
    cols = start + jnp.arange(k_block.shape[0])
    keep = (cols < num_keys)[None, :]
    if exclude_diagonal:
        keep = keep & (cols[None, :] != jnp.arange(q.shape[0])[:, None])
    return jnp.where(keep, q @ k_block.T, -jnp.inf)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _blockwise_lse(q, k, block_size, exclude_diagonal):
    return _blockwise_lse_fwd(q, k, block_size, exclude_diagonal)[0]


def _blockwise_lse_fwd(q, k, block_size, exclude_diagonal):
    blocks = _key_blocks(k, block_size)
    starts = block_size * jnp.arange(blocks.shape[0])

    def step(carry, block):
        running_max, running_sum = carry
        start, k_block = block
        logits = _block_logits(q, k_block, start, k.shape[0], exclude_diagonal)
        new_max = jnp.maximum(running_max, logits.max(axis=1))
        # A row whose keys so far were all masked has max -inf: shift by 0 instead.
        shift = jnp.where(jnp.isneginf(new_max), 0.0, new_max)
        block_sum = jnp.exp(logits - shift[:, None]).sum(axis=1)
        return (new_max, running_sum * jnp.exp(running_max - shift) + block_sum), None

    init = (jnp.full(q.shape[0], -jnp.inf), jnp.zeros(q.shape[0]))
    (running_max, running_sum), _ = jax.lax.scan(step, init, (starts, blocks))
    lse = running_max + jnp.log(running_sum)
    return lse, (q, k, lse)


def _blockwise_lse_bwd(block_size, exclude_diagonal, residuals, g):
    q, k, lse = residuals
    blocks = _key_blocks(k, block_size)
    starts = block_size * jnp.arange(blocks.shape[0])

    def step(dq, block):
        start, k_block = block
        logits = _block_logits(q, k_block, start, k.shape[0], exclude_diagonal)
        weights = g[:, None] * jnp.exp(logits - lse[:, None])  # g_i * softmax_ij
        return dq + weights @ k_block, weights.T @ q

    dq, dk = jax.lax.scan(step, jnp.zeros_like(q), (starts, blocks))
    return dq, dk.reshape(-1, k.shape[1])[: k.shape[0]]


_blockwise_lse.defvjp(_blockwise_lse_fwd, _blockwise_lse_bwd)
