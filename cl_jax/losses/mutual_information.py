"""Mutual-information estimators: Deep InfoMax's local-global objective, shared by IS-BERT
(local = the n-gram features of a sentence's tokens) and DIM / AMDIM (local = the locations of a
feature map), and CURL's bilinear InfoNCE.

Pure ``jax.numpy``: ``jit``, ``grad``; on a batch sharded across devices the negatives are the
whole global batch.
"""

import math

import chex
import jax
import jax.numpy as jnp

from cl_jax.losses._utils import to_float32

MEASURES = ("jsd", "dv", "nce")


def dim_local_global(local, global_, mask=None, measure="jsd", tanh_clip=None, score_penalty=0.0):
    """Deep InfoMax's local-global objective (Hjelm et al. 2019, "Learning deep representations
    by mutual information estimation and maximization", ICLR: the JSD, DV and infoNCE estimators
    of section 3.1 between local and global features, section 3.2), as IS-BERT uses it (Zhang
    et al. 2020, "An Unsupervised Sentence Embedding Method by Mutual Information
    Maximization", EMNLP, eq. 2). A loss to minimise (the negated MI estimate).

    ``local``: (B, M, D), M local features per example (token positions, or the H W locations
    of a feature map); ``global_``: (B, D); ``mask``: (B, M) bool, the valid local positions
    (None: all). The critic is the dot product ``T[b, m, c] = local[b, m] . global_[c]``; the
    pairs with ``c = b`` are samples of the joint, those with ``c != b`` of the product of
    marginals. With ``N`` the number of valid positions:

    ``measure="jsd"``, the Fenchel dual of the Jensen-Shannon divergence (f-GAN's, shifted by
    ``log 2`` so that a score of 0 contributes 0)::

        E_pos = (1 / N) sum_{valid (b, m)} (log 2 - softplus(-T[b, m, b]))
        E_neg = (1 / (N (B - 1))) sum_{valid (b, m), c != b}
                (softplus(-T[b, m, c]) + T[b, m, c] - log 2)
        loss = E_neg - E_pos

    Convention: rdevon/DIM ``cortex_DIM/functions/dim_losses.py`` ``fenchel_dual_loss`` with
    ``measure='JSD'`` (``get_positive_expectation`` / ``get_negative_expectation`` of
    ``gan_losses.py``), which averages over all M positions (the same when every position is
    valid); with a mask, yanzhangnlp/IS-BERT ``losses/MutualInformationLoss.py``
    ``local_global_loss_``: the scores of the valid tokens of the whole batch, ``E_pos`` summed
    over the positive pairs and divided by ``N``, ``E_neg`` summed over the negative pairs and
    divided by ``N (B - 1)`` (a long sentence weighs more than a short one). The ``log 2``
    shifts are kept: the loss is the issue's ``mean softplus(-T_pos) + mean softplus(T_neg)``
    minus the constant ``2 log 2`` (gradients are the same).

    ``measure="dv"``, the Donsker-Varadhan bound (DIM section 3.1, eq. 2)::

        loss = -(1 / N) sum_{valid (b, m)} T[b, m, b]
               + log( (1 / (N (B - 1))) sum_{valid (b, m), c != b} exp T[b, m, c] )

    (rdevon/DIM's ``fenchel_dual_loss`` with ``'DV'`` takes the log-mean-exp of each
    position's negatives separately, then averages; here it is one log-mean-exp over all the
    negative pairs, the bound as the paper writes it.)

    ``measure="nce"``, InfoNCE: each valid local position must pick its own example's global
    out of the candidates that are every valid local position of the other examples, scored
    against that same global::

        loss = (1 / N) sum_{valid (b, m)} ( log( exp T[b, m, b]
               + sum_{c != b, valid (c, n)} exp T[c, n, b] ) - T[b, m, b] )

    Convention: rdevon/DIM ``infonce_loss`` (the positive ``l[b, m] . g[b]`` concatenated before
    the negatives ``g[b] . l[c, n]``, ``c != b``, log-softmax, mean), except that DIM leaves the
    example's own M positions among the candidates as constant logits -10 (its stand-in for
    masking them out); here they are left out.

    AMDIM's stabilisers (Bachman et al. 2019, section 3.3; Philip-Bachman/amdim-public
    ``costs.py`` ``NCE_MI_MULTI._model_scores``), both applied to the scores ``T`` of every
    (valid position, global) pair before the estimator: ``score_penalty`` adds
    ``score_penalty * mean(T ** 2)`` (AMDIM: 0.05, computed before the clipping), and
    ``tanh_clip=c`` (None or 0: off) replaces ``T`` by ``c * tanh(T / c)`` (AMDIM: 20, its
    ``train.py`` default).
    AMDIM's own ``1 / sqrt(n_rkhs)`` scaling of the scores is the caller's.

    ``measure`` and ``tanh_clip`` are static under ``jit``. Invalid positions change nothing:
    their features are never read (NaN or inf there included) and get a zero gradient.
    Everything is computed in float32; returns a float32 scalar.
    """
    chex.assert_rank([local, global_], [3, 2])
    b, m, d = local.shape
    chex.assert_shape(global_, (b, d))
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    valid = jnp.ones((b, m), bool) if mask is None else jnp.asarray(mask, bool)
    chex.assert_shape(valid, (b, m))
    local = jnp.where(valid[..., None], to_float32(local), 0.0)
    scores = jnp.einsum("bmd,cd->bmc", local, to_float32(global_))
    own = jnp.eye(b, dtype=bool)[:, None, :]  # [b, 0, c]: c is b's own global
    squares = jnp.where(valid[..., None], scores**2, 0.0)
    penalty = score_penalty * jnp.sum(squares) / (jnp.maximum(jnp.sum(valid), 1) * b)
    if tanh_clip:
        scores = tanh_clip * jnp.tanh(scores / tanh_clip)
    estimator = {"jsd": _jsd, "dv": _dv, "nce": _nce}[measure]
    return estimator(scores, valid, own) + penalty


def _jsd(scores, valid, own):
    b = scores.shape[0]
    log2 = math.log(2.0)
    count = jnp.maximum(jnp.sum(valid), 1)
    pairs = valid[..., None]
    e_pos = jnp.sum(jnp.where(pairs & own, log2 - jax.nn.softplus(-scores), 0.0)) / count
    # softplus(-T) + T = softplus(T)
    e_neg = jnp.sum(jnp.where(pairs & ~own, jax.nn.softplus(scores) - log2, 0.0))
    return e_neg / (count * max(b - 1, 1)) - e_pos


def _dv(scores, valid, own):
    b = scores.shape[0]
    count = jnp.maximum(jnp.sum(valid), 1)
    pairs = valid[..., None]
    e_pos = jnp.sum(jnp.where(pairs & own, scores, 0.0)) / count
    negatives = jnp.where(pairs & ~own, scores, -jnp.inf)
    e_neg = jax.nn.logsumexp(negatives) - jnp.log(count * max(b - 1, 1))
    return e_neg - e_pos


def _nce(scores, valid, own):
    positive = jnp.sum(jnp.where(own, scores, 0.0), axis=2)  # (B, M): T[b, m, b]
    negative = valid[..., None] & ~own  # [c, n, b]: (c, n) is a candidate of b's positions
    negatives = jax.nn.logsumexp(jnp.where(negative, scores, -jnp.inf), axis=(0, 1))  # (B,)
    per_position = jnp.logaddexp(positive, negatives[:, None]) - positive
    return jnp.sum(jnp.where(valid, per_position, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def bilinear_info_nce(anchors, positives, w):
    """InfoNCE with a learned bilinear critic (van den Oord et al. 2018, "Representation
    Learning with Contrastive Predictive Coding", eq. 3's ``f(x, c) = exp(z^T W c)``), as CURL
    uses it (Srinivas, Laskin & Abbeel 2020, "CURL: Contrastive Unsupervised Representations
    for Reinforcement Learning", ICML, section 4.4).

    ``anchors`` (N, D): the queries; ``positives`` (N, D): the keys, key ``i`` the positive of
    query ``i`` and the other keys its negatives; ``w`` (D, D). With
    ``logits[i, j] = anchors_i^T W positives_j``::

        loss = (1 / N) sum_i ( log sum_j exp(logits[i, j]) - logits[i, i] )

    Convention: MishaLaskin/curl ``curl_sac.py`` ``CURL.compute_logits`` (``z_a W z_pos^T``,
    each row shifted by its max, which changes nothing here) and ``nn.CrossEntropyLoss`` with
    labels ``arange(N)``, mean over the anchors. No normalisation and no temperature: the
    scale is in ``W``. CURL passes the keys from its momentum encoder, stop-gradient'd; that
    is the caller's. Computed in float32; returns a float32 scalar.
    """
    chex.assert_rank([anchors, positives, w], 2)
    chex.assert_equal_shape([anchors, positives])
    d = anchors.shape[1]
    chex.assert_shape(w, (d, d))
    projected, keys = to_float32(anchors) @ to_float32(w), to_float32(positives)
    # The positives row by row, not as the logits' diagonal: on a sharded batch the diagonal
    # lowers to a gather whose collectives XLA:CPU can run out of order with the others.
    positive = jnp.sum(projected * keys, axis=1)
    return jnp.mean(jax.nn.logsumexp(projected @ keys.T, axis=1) - positive)


def cpc_info_nce(predictions, latents):
    """CPC's InfoNCE over a grid of latents (van den Oord, Li & Vinyals 2018, eq. 4; for
    images, section 3.3 and Hénaff et al. 2020, "Data-Efficient Image Recognition with
    Contrastive Predictive Coding", section 3.1).

    ``latents`` (B, R, C, D): ``z[b, i, j]``, the latent of patch (i, j) of image b;
    ``predictions`` (K, B, R, C, D): ``predictions[k - 1, b, i, j]`` predicts ``z[b, i + k, j]``
    (from the context of row i), used where ``i + k < R``. Each prediction is scored by dot
    product against every latent of the batch (all images, all positions), the one it
    predicts the positive::

        loss = mean over (k, b, i, j) with i + k < R of
               log sum_{b', i', j'} exp(p_k[b, i, j] . z[b', i', j'])
               - p_k[b, i, j] . z[b, i + k, j]

    No normalisation and no temperature (the scale is the prediction's). Computed in
    float32; returns a float32 scalar.
    """
    chex.assert_rank([predictions, latents], [5, 4])
    k_max, b, r, c, d = predictions.shape
    chex.assert_shape(latents, (b, r, c, d))
    if not 1 <= k_max < r:
        raise ValueError(f"predictions for 1..{k_max} rows ahead need a grid of more than "
                         f"{k_max} rows, got {r}")
    candidates = to_float32(latents).reshape(b * r * c, d)
    index = jnp.arange(b * r * c).reshape(b, r, c)
    total, count = 0.0, 0
    for k in range(1, k_max + 1):
        p = to_float32(predictions[k - 1][:, :r - k]).reshape(-1, d)
        target = index[:, k:].reshape(-1)
        logits = p @ candidates.T
        positive = jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]
        total = total + jnp.sum(jax.nn.logsumexp(logits, axis=1) - positive)
        count += p.shape[0]
    return total / count
