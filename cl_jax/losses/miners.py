"""Miners: which pairs, triplets and negatives a loss looks at, with static shapes.

Every miner returns fixed-size masks or index arrays plus a validity mask (no data-dependent
shapes), so it runs under ``jit``, ``vmap`` and on a batch sharded across devices. Indices
come from ``argmin``/``argmax`` and carry no gradient; losses gather the (differentiable)
distances at them. Labels are integer arrays of shape ``(N,)``; ``distances`` is an
``(N, N)`` matrix of anchor-to-candidate distances (e.g. ``euclidean_distances(x, x)``).

Triplet miners follow Schroff et al. 2015, "FaceNet" (all / semi-hard) and Hermans et al.
2017, "In Defense of the Triplet Loss for Person Re-Identification" (batch-hard); pytorch-
metric-learning calls them ``TripletMarginMiner`` and ``BatchHardMiner`` (its "semihard" is a
different rule: all negatives with ``d_ap < d_an < d_ap + margin``). ``mochi_negatives`` is
Kalantidis et al. 2020, "Hard Negative Mixing for Contrastive Learning" (MoCHi).
"""

import jax
import jax.numpy as jnp

from cl_jax.losses._utils import l2_normalize


def positive_mask(labels):
    """``[a, p]``: ``p`` has ``a``'s label and ``p != a``. Shape ``(N, N)``, bool."""
    same = labels[:, None] == labels[None, :]
    return same & ~jnp.eye(labels.shape[0], dtype=bool)


def negative_mask(labels):
    """``[a, n]``: ``n`` has a label different from ``a``'s. Shape ``(N, N)``, bool."""
    return labels[:, None] != labels[None, :]


def pair_masks(labels=None, positives=None, negatives=None):
    """``(positives, negatives)``, ``(N, N)`` bool ``[a, x]``: the given masks, or those of
    ``labels`` (``positive_mask``, ``negative_mask``) where one is not given. Masks say which
    pairs are positive and negative when labels cannot (TCN: frames near and far in time)."""
    if labels is None and (positives is None or negatives is None):
        raise ValueError("give labels, or both the positives and the negatives masks")
    pos = positive_mask(labels) if positives is None else jnp.asarray(positives, bool)
    neg = negative_mask(labels) if negatives is None else jnp.asarray(negatives, bool)
    return pos, neg


def triplet_mask_all(labels=None, *, positives=None, negatives=None):
    """``[a, p, n]``: a valid triplet (``p != a`` shares ``a``'s label, ``n`` does not; or
    ``positives[a, p]`` and ``negatives[a, n]``, see ``pair_masks``).

    Shape ``(N, N, N)``, bool: memory grows as ``N^3``.
    """
    pos, neg = pair_masks(labels, positives, negatives)
    return pos[:, :, None] & neg[:, None, :]


def batch_hard_indices(distances, labels=None, *, positives=None, negatives=None):
    """Batch-hard mining (Hermans et al. 2017): per anchor its farthest positive and nearest
    negative (positives and negatives by ``labels`` or the masks, see ``pair_masks``).

    Returns ``(pos_idx, neg_idx, valid)``, each of shape ``(N,)``: ``valid[a]`` is False when
    anchor ``a`` has no positive or no negative (its indices are then meaningless).
    """
    pos, neg = pair_masks(labels, positives, negatives)
    pos_idx = jnp.argmax(jnp.where(pos, distances, -jnp.inf), axis=1)
    neg_idx = jnp.argmin(jnp.where(neg, distances, jnp.inf), axis=1)
    return pos_idx, neg_idx, pos.any(axis=1) & neg.any(axis=1)


def semihard_negative_indices(distances, labels=None, *, positives=None, negatives=None):
    """Semi-hard negative per anchor-positive pair, as tensorflow-addons'
    ``triplet_semihard_loss`` (positives and negatives by ``labels`` or the masks, see
    ``pair_masks``).

    For each ``(a, p)``: the nearest negative strictly farther than the positive
    (``d[a, n] > d[a, p]``); if there is none, the farthest negative of ``a``. (No upper bound
    ``d_ap + margin`` on the negative, exactly as tensorflow-addons.)

    Returns ``(neg_idx, valid)``, each of shape ``(N, N)`` indexed ``[a, p]``: ``valid`` is
    True where ``(a, p)`` is a positive pair and ``a`` has at least one negative. Memory grows
    as ``N^3``.
    """
    pos, neg = pair_masks(labels, positives, negatives)
    farther = neg[:, None, :] & (distances[:, None, :] > distances[:, :, None])  # [a, p, n]
    nearest_farther = jnp.argmin(jnp.where(farther, distances[:, None, :], jnp.inf), axis=2)
    farthest = jnp.argmax(jnp.where(neg, distances, -jnp.inf), axis=1)
    neg_idx = jnp.where(farther.any(axis=2), nearest_farther, farthest[:, None])
    return neg_idx, pos & neg.any(axis=1)[:, None]


def mochi_negatives(query, queue, rng, *, num_hard, num_mix, num_mix_query, beta_max=0.5):
    """MoCHi hard-negative mixing (Kalantidis et al. 2020, "Hard Negative Mixing for
    Contrastive Learning", section 4): synthetic negatives per query.

    With ``q`` the L2-normalised query and ``Q~^N`` its ``N = num_hard`` negatives of the
    (L2-normalised) queue with the highest ``q . n``:

    - ``num_mix`` (the paper's ``s``) negatives ``h = h~ / |h~|``,
      ``h~ = alpha n_i + (1 - alpha) n_j``, with ``n_i, n_j`` two distinct members of
      ``Q~^N`` drawn uniformly (the paper says "randomly chosen"; distinct so that no mix
      is a mere copy) and ``alpha ~ U(0, 1)``;
    - ``num_mix_query`` (``s'``) negatives ``h' = h~' / |h~'|``,
      ``h~' = beta q + (1 - beta) n_j``, with ``n_j`` drawn uniformly from ``Q~^N`` and
      ``beta ~ U(0, beta_max)`` on the query (the paper: ``beta in (0, 0.5)``, so the query
      never dominates the mix).

    Everything is drawn independently per query and per synthetic feature. The paper
    appends these as extra negative logits for that query only (not to the queue) and does
    not backpropagate through them: the result is stop-gradient'd. The paper writes a
    configuration as MoCHi (N, s, s'); there is no official code release.

    Args:
      query: ``(B, D)`` query features.
      queue: ``(L, D)`` negative features (MoCo's queue), ``L >= num_hard``.
      rng: a ``jax.random`` key.
      num_hard, num_mix, num_mix_query: ``N``, ``s``, ``s'``; Python ints (static under jit),
        ``num_hard >= 2`` when ``num_mix > 0``.
      beta_max: upper bound of the query's mixing coefficient, in ``(0, 0.5]``; a Python
        float (static under jit).

    Returns:
      ``(B, num_mix + num_mix_query, D)`` float32 unit-norm negatives: the ``num_mix``
      pairwise mixes first, then the ``num_mix_query`` query mixes.
    """
    if not 0 < num_hard <= queue.shape[0]:
        raise ValueError(f"num_hard={num_hard} must be in [1, queue size {queue.shape[0]}]")
    if num_mix > 0 and num_hard < 2:
        raise ValueError("mixing two hard negatives needs num_hard >= 2")
    if not 0.0 < beta_max <= 0.5:
        raise ValueError(f"beta_max={beta_max} must be in (0, 0.5]")
    q, n = l2_normalize(query), l2_normalize(queue)
    _, top = jax.lax.top_k(q @ n.T, num_hard)
    hard = n[top]  # (B, N, D)
    batch = q.shape[0]
    k_i, k_j, k_alpha, k_q, k_beta = jax.random.split(rng, 5)

    def pick(idx):
        return jnp.take_along_axis(hard, idx[..., None], axis=1)

    i = jax.random.randint(k_i, (batch, num_mix), 0, num_hard)
    j = (i + jax.random.randint(k_j, (batch, num_mix), 1, num_hard)) % num_hard
    alpha = jax.random.uniform(k_alpha, (batch, num_mix, 1))
    mixed = l2_normalize(alpha * pick(i) + (1.0 - alpha) * pick(j))

    jq = jax.random.randint(k_q, (batch, num_mix_query), 0, num_hard)
    beta = jax.random.uniform(k_beta, (batch, num_mix_query, 1), maxval=beta_max)
    mixed_query = l2_normalize(beta * q[:, None, :] + (1.0 - beta) * pick(jq))
    return jax.lax.stop_gradient(jnp.concatenate([mixed, mixed_query], axis=1))
