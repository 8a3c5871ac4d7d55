"""Image-text contrastive losses: CLIP's symmetric softmax and SigLIP's pairwise sigmoid.

Both losses take N (image, text) pairs of embeddings, ``image_emb`` and ``text_emb`` (N, D),
L2-normalise them inside (``x / max(|x|, 1e-12)``) and score every pair with
``logit_scale * cos(img_i, txt_j)``; image ``i`` and text ``i`` are the only positive pair.
``logit_scale`` (and SigLIP's ``logit_bias``) are the values themselves, scalar arrays (shape
``()`` or ``(1,)``, as big_vision keeps them) that get a gradient; a model that learns the log
of the scale passes ``jnp.exp(log_scale)``. Everything is computed in float32 (bfloat16 in,
float32 out).

Each loss comes in three forms with the same value and gradient:

* dense (``block_size=None``): the ``N x N`` logits are built.
* blockwise (``block_size=B``): a ``lax.scan`` over blocks of ``B`` texts (the last one padded
  and masked), so the logits exist one ``N x B`` block at a time. A ``jax.custom_vjp`` keeps
  only the inputs and per-row statistics (CLIP's row and column log-sum-exps) for the backward
  pass, which scans over the blocks again and recomputes each one.
* ring (``clip_ring``, ``siglip_ring``): called inside ``jax.shard_map`` on each device's shard
  of ``n = N / d`` pairs. The text shards travel around the ring of devices with
  ``lax.ppermute``, so a device holds one ``n x n`` block of logits at a time and no device
  ever gathers the batch; every device returns the loss of the whole global batch. The
  backward pass is a ``jax.custom_vjp`` that sends the texts around the ring once more,
  recomputes each block and passes the gradient of the visiting texts along with them, so it
  arrives back at the texts' own device after the last step: memory stays ``O(n x n + n x D)``
  in both passes. Ideas from the SigLIP paper's chunked implementation (Zhai et al. 2023,
  Sec. 3.3), Ring Attention (Liu, Zaharia & Abbeel 2023, arXiv:2310.01889) and Inf-CL (Cheng et
  al. 2024, "Breaking the Memory Barrier", arXiv:2410.17243, tile-wise CLIP log-sum-exps).

``block_size`` and ``axis_name`` are static under ``jit``; the blockwise and ring forms support
reverse-mode differentiation only.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from cl_jax.losses._utils import l2_normalize, to_float32
from cl_jax.losses.blockwise import _key_blocks


def clip(image_emb, text_emb, logit_scale, block_size=None):
    """CLIP's symmetric cross-entropy (Radford et al. 2021, "Learning Transferable Visual Models
    From Natural Language Supervision", arXiv:2103.00020, Fig. 3).

    With ``L_ij = logit_scale * cos(img_i, txt_j)`` over the N pairs:
    ``loss = ( (1/N) sum_i -log softmax_j(L_ij)[i] + (1/N) sum_j -log softmax_i(L_ij)[j] ) / 2``,
    the mean cross-entropy of the images over the texts (rows) and of the texts over the images
    (columns), the positive on the diagonal.

    Convention: open_clip ``ClipLoss`` (``local_loss=False``, ``gather_with_grad=True``: every
    rank sees the global ``N x N`` logits, so the loss is the global one), which takes
    normalised features (its models normalise); here they are normalised inside.

    ``block_size``: ``None`` builds the ``N x N`` logits; an int streams over blocks of that many
    texts (temporaries ``N x block_size``, see the module docstring).
    """
    a, b = _pairs(image_emb, text_emb)
    q = _scalar(logit_scale, "logit_scale") * a
    if block_size is None:
        logits = q @ b.T
        row_lse, col_lse = jax.nn.logsumexp(logits, axis=1), jax.nn.logsumexp(logits, axis=0)
    else:
        row_lse, col_lse = _clip_lse_blockwise(q, b, _block_size(block_size, b.shape[0]))
    return _clip_terms(q, b, row_lse, col_lse) / (2 * a.shape[0])


def clip_ring(image_emb, text_emb, logit_scale, axis_name):
    """``clip`` of the global batch, computed inside ``jax.shard_map`` with a ring of devices.

    ``image_emb``, ``text_emb``: this device's shard (n, D) of the N pairs, split along the mesh
    axis ``axis_name`` (``in_specs=P(axis_name)``); ``logit_scale`` replicated (``P()``). The
    texts go around the ring; each device accumulates the row log-sum-exps of its images and,
    for the visiting texts, their partial column log-sum-exps over its images, which travel with
    the texts and are complete when they return home. Returns the global loss, the same float32
    scalar on every device (``out_specs=P()``), equal in value and gradient to ``clip`` of the
    gathered batch; the backward pass is a second trip around the ring (module docstring).
    Gradients are right with ``shard_map``'s ``check_vma`` on (the default) or off.
    """
    a, b = _pairs(image_emb, text_emb)
    q = _scalar(logit_scale, "logit_scale") * a
    row_lse, col_lse = _clip_lse_ring(q, b, axis_name)
    total = lax.psum(_clip_terms(q, b, row_lse, col_lse), axis_name)
    return total / (2 * a.shape[0] * lax.axis_size(axis_name))


def siglip(image_emb, text_emb, logit_scale, logit_bias, block_size=None):
    """SigLIP's pairwise sigmoid loss (Zhai, Mustafa, Kolesnikov & Beyer 2023, "Sigmoid Loss
    for Language Image Pre-Training", arXiv:2303.15343, Algorithm 1).

    With ``L_ij = logit_scale * cos(img_i, txt_j) + logit_bias`` and ``z_ij = 1`` if ``i == j``,
    ``-1`` otherwise: ``loss = -(1/N) sum_i sum_j log sigmoid(z_ij L_ij)``, a binary
    classification of every one of the ``N^2`` pairs, summed over texts, mean over images.

    Convention: big_vision ``trainers/proj/image_text/siglip.py`` (``t`` is ``logit_scale``
    after its ``exp``, ``b`` is ``logit_bias``; the paper initialises them to 10 and -10).
    open_clip ``SigLipLoss`` divides each rank's sum by the local batch size; its gradient,
    averaged over ranks by DDP, is this loss's.

    ``block_size``: as in ``clip``. The blockwise form sums ``softplus(L_ij)`` over all pairs
    and subtracts ``sum_i L_ii``, the same loss since ``-log sigmoid(x) = softplus(x) - x``.
    """
    a, b = _pairs(image_emb, text_emb)
    scale, bias = _scalar(logit_scale, "logit_scale"), _scalar(logit_bias, "logit_bias")
    if block_size is None:
        labels = 2.0 * jnp.eye(a.shape[0]) - 1.0
        return -jnp.sum(jax.nn.log_sigmoid(labels * (scale * a @ b.T + bias))) / a.shape[0]
    q, k = _siglip_operands(a, b, scale, bias)
    total = _softplus_sum_blockwise(q, k, _block_size(block_size, b.shape[0]))
    return (total - jnp.sum(q * k)) / a.shape[0]


def siglip_ring(image_emb, text_emb, logit_scale, logit_bias, axis_name):
    """``siglip`` of the global batch, computed inside ``jax.shard_map`` with a ring of devices.

    Sharded as ``clip_ring`` (embeddings ``P(axis_name)``, scale and bias ``P()``). As in the
    paper's chunked implementation (Sec. 3.3), each device scores its images against every
    text shard as the shards go round: it sums ``softplus(L_ij)`` over those pairs and
    subtracts its own ``L_ii`` (see ``siglip``), and the sums are ``psum``'d. Returns the
    global loss on every device, equal in value and gradient to ``siglip`` of the gathered
    batch. Backward pass and ``check_vma`` as in ``clip_ring``.
    """
    a, b = _pairs(image_emb, text_emb)
    scale, bias = _scalar(logit_scale, "logit_scale"), _scalar(logit_bias, "logit_bias")
    q, k = _siglip_operands(a, b, scale, bias)
    total = lax.psum(_softplus_sum_ring(q, k, axis_name) - jnp.sum(q * k), axis_name)
    return total / (a.shape[0] * lax.axis_size(axis_name))


# ---- shared pieces ----


def _pairs(image_emb, text_emb):
    """Checks that both are (N, D) with the same shape; returns them L2-normalised."""
    if jnp.ndim(image_emb) != 2 or jnp.shape(image_emb) != jnp.shape(text_emb):
        raise ValueError(
            "image_emb and text_emb must both be (N, D) with the same shape, got shapes "
            f"{jnp.shape(image_emb)} and {jnp.shape(text_emb)}"
        )
    return l2_normalize(image_emb), l2_normalize(text_emb)


def _scalar(x, name):
    x = to_float32(x)
    if jnp.size(x) != 1:
        raise ValueError(f"{name} must be a scalar (shape () or (1,)), got shape {jnp.shape(x)}")
    return jnp.reshape(x, ())


def _block_size(block_size, num_texts):
    if block_size < 1:
        raise ValueError(f"block_size must be a positive int or None, got {block_size}")
    return min(int(block_size), num_texts)


def _blocks(x, block_size):
    """``x`` (M, ...) zero-padded along axis 0 to whole blocks: (num_blocks, block_size, ...)."""
    blocks = _key_blocks(x.reshape(x.shape[0], -1), block_size)
    return blocks.reshape(-1, block_size, *x.shape[1:])


def _valid_blocks(num_texts, block_size):
    """Which columns of each block are real texts rather than padding."""
    return _blocks(jnp.ones(num_texts, bool), block_size)


def _ring(step, carry, fixed, moving, axis_name):
    """Runs ``carry, moving = step(carry, fixed, moving)`` on every device's block in turn.

    ``fixed`` (a device's texts and what belongs to them) and ``moving`` (what they collect)
    start on their own device and pass to the next one after each of the d steps (``fixed``
    only after the first d - 1), so ``moving`` is back home, summed over all devices, at the end.
    """
    d = lax.axis_size(axis_name)
    perm = [(i, (i + 1) % d) for i in range(d)]

    def rotate(x):
        return lax.ppermute(x, axis_name, perm)

    def body(state, _):
        carry, fixed, moving = state
        carry, moving = step(carry, fixed, moving)
        return (carry, rotate(fixed), rotate(moving)), None

    (carry, fixed, moving), _ = lax.scan(body, (carry, fixed, moving), length=d - 1)
    carry, moving = step(carry, fixed, moving)
    return carry, rotate(moving)


# ---- CLIP: row and column log-sum-exps ----


def _clip_terms(q, k, row_lse, col_lse):
    """``sum_i (row_lse_i - L_ii) + sum_j (col_lse_j - L_jj)``, ``L_ii = q_i . k_i``."""
    return jnp.sum(row_lse + col_lse - 2.0 * jnp.sum(q * k, axis=1))


def _empty_lse(like):
    """Running ``(max, sum of exp(x - max))`` of no terms, one per entry of the vector ``like``
    (built from the data, so that inside ``shard_map`` a ``scan`` carry varies as the data)."""
    return jnp.full_like(like, -jnp.inf), jnp.zeros_like(like)


def _lse_update(stats, logits, axis):
    """Folds ``logits`` along ``axis`` into the running ``(max, sum)`` ``stats``."""
    running_max, running_sum = stats
    new_max = jnp.maximum(running_max, logits.max(axis=axis))
    block_sum = jnp.exp(logits - jnp.expand_dims(new_max, axis)).sum(axis=axis)
    return new_max, running_sum * jnp.exp(running_max - new_max) + block_sum


def _lse(stats):
    running_max, running_sum = stats
    return running_max + jnp.log(running_sum)


def _clip_lse_step(q, k_block, rows, cols, valid=None):
    """Folds the block ``q k_block^T`` into the images' row and the texts' column statistics;
    padded texts (``valid`` False) are left out of the rows."""
    logits = q @ k_block.T
    row_logits = logits if valid is None else jnp.where(valid, logits, -jnp.inf)
    return _lse_update(rows, row_logits, axis=1), _lse_update(cols, logits, axis=0)


def _clip_grad_step(q, k_block, row_lse, g_row, col_lse, g_col, valid=None):
    """Gradients of ``sum_i g_row_i row_lse_i + sum_j g_col_j col_lse_j`` through one block:
    ``dL_ij = g_row_i softmax_j(L)_ij + g_col_j softmax_i(L)_ij``; (dq, dk_block)."""
    logits = q @ k_block.T
    row_softmax = jnp.exp(logits - row_lse[:, None])
    if valid is not None:  # a padded text's logit 0 can overflow here when row_lse << 0
        row_softmax = jnp.where(valid, row_softmax, 0.0)
    weights = g_row[:, None] * row_softmax + g_col * jnp.exp(logits - col_lse)
    return weights @ k_block, weights.T @ q


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _clip_lse_blockwise(q, k, block_size):
    return _clip_lse_blockwise_fwd(q, k, block_size)[0]


def _clip_lse_blockwise_fwd(q, k, block_size):
    def step(rows, block):
        k_block, valid = block
        rows, cols = _clip_lse_step(q, k_block, rows, _empty_lse(k_block[:, 0]), valid)
        return rows, _lse(cols)

    xs = (_blocks(k, block_size), _valid_blocks(k.shape[0], block_size))
    rows, col_lse = lax.scan(step, _empty_lse(q[:, 0]), xs)
    row_lse = _lse(rows)
    return (row_lse, col_lse.reshape(-1)[: k.shape[0]]), (q, k, row_lse, col_lse)


def _clip_lse_blockwise_bwd(block_size, residuals, cotangents):
    q, k, row_lse, col_lse = residuals  # col_lse per block, padding included
    g_row, g_col = cotangents

    def step(dq, block):
        k_block, lse_block, g_block, valid = block
        dq_block, dk_block = _clip_grad_step(q, k_block, row_lse, g_row, lse_block, g_block, valid)
        return dq + dq_block, dk_block

    g_col = _blocks(g_col, block_size)  # 0 at padded texts
    xs = (_blocks(k, block_size), col_lse, g_col, _valid_blocks(k.shape[0], block_size))
    dq, dk = lax.scan(step, jnp.zeros_like(q), xs)
    return dq, dk.reshape(-1, k.shape[1])[: k.shape[0]]


_clip_lse_blockwise.defvjp(_clip_lse_blockwise_fwd, _clip_lse_blockwise_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _clip_lse_ring(q, k, axis_name):
    return _clip_lse_ring_fwd(q, k, axis_name)[0]


def _clip_lse_ring_fwd(q, k, axis_name):
    def step(rows, k_block, cols):
        return _clip_lse_step(q, k_block, rows, cols)

    rows, cols = _ring(step, _empty_lse(q[:, 0]), k, _empty_lse(k[:, 0]), axis_name)
    row_lse, col_lse = _lse(rows), _lse(cols)
    return (row_lse, col_lse), (q, k, row_lse, col_lse)


def _clip_lse_ring_bwd(axis_name, residuals, cotangents):
    q, k, row_lse, col_lse = residuals
    g_row, g_col = cotangents

    def step(dq, texts, dk_block):
        k_block, lse_block, g_block = texts
        dq_block, dk_part = _clip_grad_step(q, k_block, row_lse, g_row, lse_block, g_block)
        return dq + dq_block, dk_block + dk_part

    return _ring(step, jnp.zeros_like(q), (k, col_lse, g_col), jnp.zeros_like(k), axis_name)


_clip_lse_ring.defvjp(_clip_lse_ring_fwd, _clip_lse_ring_bwd)


# ---- SigLIP: a sum of softplus over all pairs ----


def _siglip_operands(a, b, scale, bias):
    """``q = [scale * a, bias]``, ``k = [b, 1]``: ``q_i . k_j = scale cos_ij + bias``."""
    bias_column = jnp.broadcast_to(bias, (a.shape[0], 1))
    ones = jnp.ones((b.shape[0], 1))
    return jnp.concatenate([scale * a, bias_column], 1), jnp.concatenate([b, ones], 1)


def _softplus_step(q, k_block, valid=None):
    terms = jax.nn.softplus(q @ k_block.T)
    return jnp.sum(terms if valid is None else jnp.where(valid, terms, 0.0))


def _softplus_grad_step(q, k_block, g):
    """Gradients of ``g * _softplus_step``: ``dL_ij = g sigmoid(L_ij)``; (dq, dk_block).
    Padded texts need no mask: their rows of ``k_block`` are 0 and their ``dk`` is dropped."""
    weights = g * jax.nn.sigmoid(q @ k_block.T)
    return weights @ k_block, weights.T @ q


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _softplus_sum_blockwise(q, k, block_size):
    return _softplus_sum_blockwise_fwd(q, k, block_size)[0]


def _softplus_sum_blockwise_fwd(q, k, block_size):
    def step(total, block):
        return total + _softplus_step(q, *block), None

    xs = (_blocks(k, block_size), _valid_blocks(k.shape[0], block_size))
    total, _ = lax.scan(step, jnp.zeros_like(q[0, 0]), xs)
    return total, (q, k)


def _softplus_sum_blockwise_bwd(block_size, residuals, g):
    q, k = residuals

    def step(dq, k_block):
        dq_block, dk_block = _softplus_grad_step(q, k_block, g)
        return dq + dq_block, dk_block

    dq, dk = lax.scan(step, jnp.zeros_like(q), _blocks(k, block_size))
    return dq, dk.reshape(-1, k.shape[1])[: k.shape[0]]


_softplus_sum_blockwise.defvjp(_softplus_sum_blockwise_fwd, _softplus_sum_blockwise_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _softplus_sum_ring(q, k, axis_name):
    return _softplus_sum_ring_fwd(q, k, axis_name)[0]


def _softplus_sum_ring_fwd(q, k, axis_name):
    def step(total, k_block, nothing):
        return total + _softplus_step(q, k_block), nothing

    total, _ = _ring(step, jnp.zeros_like(q[0, 0]), k, (), axis_name)
    return total, (q, k)


def _softplus_sum_ring_bwd(axis_name, residuals, g):
    q, k = residuals

    def step(dq, k_block, dk_block):
        dq_block, dk_part = _softplus_grad_step(q, k_block, g)
        return dq + dq_block, dk_block + dk_part

    return _ring(step, jnp.zeros_like(q), k, jnp.zeros_like(k), axis_name)


_softplus_sum_ring.defvjp(_softplus_sum_ring_fwd, _softplus_sum_ring_bwd)
