"""Metric-learning losses on labelled embeddings: pairs, triplets, lifted structure, N-pair,
NCE and the soft nearest neighbour loss.

All return a float32 scalar, compute in float32 (bfloat16 inputs are upcast first) and are
pure ``jax.numpy``: they run under ``jit``, ``grad``, ``vmap`` and on a batch sharded across
devices. ``d`` is the Euclidean (not squared) distance on the raw embeddings; its gradient is
zero where two embeddings coincide. Labels are integer arrays of shape ``(N,)``.

pytorch-metric-learning (PML) defaults differ from these in two ways worth knowing: its
distance L2-normalises the embeddings (``LpDistance(normalize_embeddings=True)``, and
``DotProductSimilarity()`` too; miners have their own distance with the same default) and many
of its losses average over the non-zero terms only (``AvgNonZeroReducer``).
"""

import jax
import jax.numpy as jnp

from cl_jax.losses import miners
from cl_jax.losses._utils import euclidean_distances, squared_distances, to_float32


def _masked_logsumexp(x, mask, axis=-1):
    """``log(sum(where(mask, exp(x), 0)))`` along ``axis``; ``-inf`` where nothing is kept,
    with finite (zero) gradients there."""
    x_max = jax.lax.stop_gradient(jnp.max(jnp.where(mask, x, -jnp.inf), axis, keepdims=True))
    x_max = jnp.where(jnp.isfinite(x_max), x_max, 0.0)
    total = jnp.sum(jnp.exp(jnp.where(mask, x - x_max, -jnp.inf)), axis)
    safe = jnp.where(total > 0, total, 1.0)
    return jnp.where(total > 0, jnp.log(safe) + jnp.squeeze(x_max, axis), -jnp.inf)


def _masked_mean(values, mask):
    """Mean of ``values`` where ``mask``; 0 when the mask is empty."""
    count = jnp.sum(mask)
    return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(count, 1)


def contrastive_margin(embeddings, labels, margin=1.0):
    """Contrastive (margin) loss on pairs.

    ``mean_{i<j} [ same_ij d_ij^2 + (1 - same_ij) max(0, margin - d_ij)^2 ]`` over all
    ``N (N - 1) / 2`` unordered pairs.

    Paper: Chopra, Hadsell & LeCun 2005, "Learning a Similarity Metric Discriminatively, with
    Application to Face Verification"; Hadsell, Chopra & LeCun 2006, "Dimensionality
    Reduction by Learning an Invariant Mapping" (eq. 4, whose factors 1/2 are dropped here).
    Convention: Hadsell et al.'s squared form, a plain mean over every unordered pair. PML's
    ``ContrastiveLoss(pos_margin=0, neg_margin=margin)`` differs: unsquared terms, and
    separate averages of the non-zero positive and negative terms.
    """
    x = to_float32(embeddings)
    n = x.shape[0]
    same = labels[:, None] == labels[None, :]
    dist = euclidean_distances(x, x)
    per_pair = jnp.where(same, squared_distances(x, x), jnp.maximum(margin - dist, 0.0) ** 2)
    upper = jnp.triu(jnp.ones((n, n), dtype=bool), k=1)
    return _masked_mean(per_pair, upper)


def triplet_margin(embeddings, labels=None, margin=0.2, mining="all", *, positives=None,
                   negatives=None):
    """Triplet loss ``max(0, d(a, p) - d(a, n) + margin)`` (Schroff, Kalenichenko & Philbin
    2015, "FaceNet: A Unified Embedding for Face Recognition and Clustering").

    ``mining`` (a Python string; static under jit) picks the triplets and the average:

    - ``'all'``: every valid triplet (``p != a`` with ``a``'s label, ``n`` with another
      label), zeros included, mean over them. Memory ``O(N^3)``. Matches PML's
      ``TripletMarginLoss(triplets_per_anchor="all", reducer=MeanReducer())`` with
      ``LpDistance(normalize_embeddings=False)`` (PML's default reducer averages the
      non-zero triplets only).
    - ``'hard'``: batch-hard (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss
      for Person Re-Identification"): per anchor its farthest positive and nearest negative,
      mean over the anchors that have both (PML's ``TripletMarginLoss`` as for ``'all'``, on
      the triplets of ``BatchHardMiner(distance=LpDistance(normalize_embeddings=False))``;
      the default miner ranks normalised distances and picks other triplets);
      tensorflow-addons' ``triplet_hard_loss`` averages over every anchor instead.
    - ``'semihard'``: per ``(a, p)`` pair the nearest negative with ``d(a, n) > d(a, p)``,
      else ``a``'s farthest negative; mean over the ``(a, p)`` pairs (ordered, ``a != p``)
      whose anchor has a negative. This is exactly tensorflow-addons'
      ``triplet_semihard_loss`` (``distance_metric="L2"``, zeros included), except that
      tensorflow-addons also counts pairs whose anchor has no negative at all (only possible
      when the whole batch is one class; here the loss is then 0).

    Instead of ``labels``, ``positives`` and ``negatives`` ((N, N) bool, ``[a, p]`` and
    ``[a, n]``) may say which pairs are positive and negative (TCN's frames near and far in
    time, ``cl_jax.methods.tcn``); ``p = a`` is never a positive.

    Built on :mod:`cl_jax.losses.miners`; returns 0 when there is no valid triplet.
    """
    x = to_float32(embeddings)
    dist = euclidean_distances(x, x)
    if positives is not None:
        positives = jnp.asarray(positives, bool) & ~jnp.eye(x.shape[0], dtype=bool)
    masks = dict(positives=positives, negatives=negatives)
    if mining == "all":
        violation = dist[:, :, None] - dist[:, None, :] + margin  # [a, p, n]
        return _masked_mean(jnp.maximum(violation, 0.0), miners.triplet_mask_all(labels,
                                                                                 **masks))
    if mining == "hard":
        pos_idx, neg_idx, valid = miners.batch_hard_indices(dist, labels, **masks)
        d_ap = jnp.take_along_axis(dist, pos_idx[:, None], axis=1)[:, 0]
        d_an = jnp.take_along_axis(dist, neg_idx[:, None], axis=1)[:, 0]
        return _masked_mean(jnp.maximum(d_ap - d_an + margin, 0.0), valid)
    if mining == "semihard":
        neg_idx, valid = miners.semihard_negative_indices(dist, labels, **masks)
        d_an = jnp.take_along_axis(dist, neg_idx, axis=1)  # [a, p]
        return _masked_mean(jnp.maximum(dist - d_an + margin, 0.0), valid)
    raise ValueError(f"mining must be 'all', 'hard' or 'semihard', got {mining!r}")


def lifted_structured(embeddings, labels, margin=1.0):
    """Lifted structured loss (Song, Xiang, Jegelka & Savarese 2016, "Deep Metric Learning via
    Lifted Structured Feature Embedding", eq. 4).

    For each positive pair ``i < j``:
    ``J_ij = log(sum_{k neg of i} exp(margin - d_ik) + sum_{l neg of j} exp(margin - d_jl))
    + d_ij``; loss ``sum_{i<j positive} max(0, J_ij)^2 / (2 |P|)`` with ``|P|`` the number of
    positive pairs ``i < j`` (a pair with no negatives contributes 0 but is counted).

    Convention: exactly tensorflow-addons' ``lifted_struct_loss`` (which sums over ordered
    pairs with a factor 1/4), and PML's ``LiftedStructureLoss(neg_margin=margin)`` with
    ``LpDistance(normalize_embeddings=False)``. The inner sum is a stable log-sum-exp.
    """
    x = to_float32(embeddings)
    n = x.shape[0]
    dist = euclidean_distances(x, x)
    neg = miners.negative_mask(labels)
    row_lse = _masked_logsumexp(margin - dist, neg, axis=1)
    has_neg = neg.any(axis=1)
    pairs = miners.positive_mask(labels) & jnp.triu(jnp.ones((n, n), dtype=bool), k=1)
    active = pairs & has_neg[:, None]
    safe_lse = jnp.where(has_neg, row_lse, 0.0)
    j = jnp.logaddexp(safe_lse[:, None], safe_lse[None, :]) + dist
    total = jnp.sum(jnp.where(active, jnp.maximum(j, 0.0) ** 2, 0.0))
    return total / (2.0 * jnp.maximum(jnp.sum(pairs), 1))


def n_pair(anchors, positives):
    """Multi-class N-pair loss (Sohn 2016, "Improved Deep Metric Learning with Multi-class
    N-pair Loss Objective").

    ``mean_i log(1 + sum_{j != i} exp(a_i . p_j - a_i . p_i))`` with plain dot products (no
    normalisation), i.e. the cross-entropy of the logits ``a @ p.T`` against the diagonal.
    The paper adds an optional L2 regulariser on the embeddings (tf.contrib's
    ``npairs_loss`` uses ``reg_lambda * 0.25 * (mean|a|^2 + mean|p|^2)``); it is not included.
    Convention: PML's ``NPairsLoss(distance=DotProductSimilarity(normalize_embeddings=False))``
    on ``anchors`` then ``positives`` labelled ``0..N-1`` twice (mean over anchors); its default
    ``DotProductSimilarity()`` normalises the embeddings, which gives cosine logits instead.
    """
    a, p = to_float32(anchors), to_float32(positives)
    # The positives row by row, not the logits' diagonal (a gather on a sharded batch).
    return jnp.mean(jax.nn.logsumexp(a @ p.T, axis=1) - jnp.sum(a * p, axis=1))


def nce(scores_data, scores_noise, log_noise_prob_data, log_noise_prob_noise, num_noise):
    """Binary noise-contrastive estimation (Gutmann & Hyvärinen 2010, "Noise-contrastive
    estimation: A new estimation principle for unnormalized statistical models"; 2012, JMLR).

    With ``s`` the model's unnormalised log-density, ``p_n`` the noise density and
    ``k = num_noise`` noise samples per data point,
    ``G(u) = s(u) - log(k p_n(u))`` and
    ``loss = -(1/N) sum_i [ log sigmoid(G(x_i)) + sum_{j=1..k} log(1 - sigmoid(G(y_ij))) ]``:
    a mean over the ``N`` data points of the data term plus the *sum* over that point's ``k``
    noise terms (the classic objective ``J_T`` with ``T_d = N``, ``T_n = k N``, negated).

    Args:
      scores_data: ``(N,)`` model log-scores ``s(x_i)`` of the data.
      scores_noise: ``(N, k)`` model log-scores ``s(y_ij)`` of each point's noise samples.
      log_noise_prob_data: ``(N,)`` ``log p_n(x_i)``.
      log_noise_prob_noise: ``(N, k)`` ``log p_n(y_ij)``.
      num_noise: ``k``, a Python int (static under jit) equal to ``scores_noise.shape[-1]``.
    """
    if scores_noise.shape[-1] != num_noise:
        raise ValueError(
            f"scores_noise has {scores_noise.shape[-1]} noise samples per data "
            f"point, num_noise={num_noise}"
        )
    log_k = jnp.log(jnp.float32(num_noise))
    g_data = to_float32(scores_data) - to_float32(log_noise_prob_data) - log_k
    g_noise = to_float32(scores_noise) - to_float32(log_noise_prob_noise) - log_k
    per_point = jax.nn.log_sigmoid(g_data) + jnp.sum(jax.nn.log_sigmoid(-g_noise), axis=-1)
    return -jnp.mean(per_point)


def soft_nearest_neighbor(embeddings, labels, temperature=1.0):
    """Soft nearest neighbour loss (Frosst, Papernot & Hinton 2019, "Analyzing and Improving
    Representations with the Soft Nearest Neighbor Loss"), on squared Euclidean distances.

    ``mean_i -log( sum_{j != i, y_j = y_i} exp(-|x_i - x_j|^2 / T)
    / sum_{k != i} exp(-|x_i - x_k|^2 / T) )`` over the anchors ``i`` that have a same-label
    neighbour, computed with log-sum-exps. Convention: the paper's formula exactly, with no
    stabilising epsilon (the authors' cleverhans ``SNNLCrossEntropy`` adds 1e-5 inside the
    ratio and averages over every anchor); 0 when no anchor has a positive. Equal to PML's
    ``NCALoss(softmax_scale=1/T, distance=LpDistance(normalize_embeddings=False, power=2))``.
    """
    x = to_float32(embeddings)
    logits = -squared_distances(x, x) / temperature
    pos = miners.positive_mask(labels)
    others = ~jnp.eye(x.shape[0], dtype=bool)
    log_ratio = _masked_logsumexp(logits, pos, axis=1) - _masked_logsumexp(logits, others, 1)
    return _masked_mean(-log_ratio, pos.any(axis=1))
