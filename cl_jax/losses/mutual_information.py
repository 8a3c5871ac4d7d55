"""Local-global mutual-information estimators of Deep InfoMax, shared by IS-BERT (local = the
n-gram features of a sentence's tokens) and DIM / AMDIM (local = the locations of a feature
map).

Pure ``jax.numpy``: ``jit``, ``grad``; on a batch sharded across devices the negatives are the
whole global batch.
"""

import math

import chex
import jax
import jax.numpy as jnp

from cl_jax.losses._utils import to_float32

MEASURES = ("jsd", "nce")


def dim_local_global(local, global_, mask=None, measure="jsd"):
    """Deep InfoMax's local-global objective (Hjelm et al. 2019, "Learning deep representations
    by mutual information estimation and maximization", ICLR: the JSD and infoNCE estimators
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
    divided by ``N (B - 1)`` (a long sentence weighs more than a short one).

    ``measure="nce"``, InfoNCE: each valid local position must pick its own example's global
    out of the candidates that are every valid local position of the other examples, scored
    against that same global::

        loss = (1 / N) sum_{valid (b, m)} ( log( exp T[b, m, b]
               + sum_{c != b, valid (c, n)} exp T[c, n, b] ) - T[b, m, b] )

    Convention: rdevon/DIM ``infonce_loss`` (the positive ``l[b, m] . g[b]`` concatenated before
    the negatives ``g[b] . l[c, n]``, ``c != b``, log-softmax, mean), except that DIM leaves the
    example's own M positions among the candidates as constant logits -10 (its stand-in for
    masking them out); here they are left out.

    ``measure`` is a Python string (static under ``jit``). Invalid positions change nothing:
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
    if measure == "jsd":
        return _jsd(scores, valid, own)
    return _nce(scores, valid, own)


def _jsd(scores, valid, own):
    b = scores.shape[0]
    log2 = math.log(2.0)
    count = jnp.maximum(jnp.sum(valid), 1)
    pairs = valid[..., None]
    e_pos = jnp.sum(jnp.where(pairs & own, log2 - jax.nn.softplus(-scores), 0.0)) / count
    # softplus(-T) + T = softplus(T)
    e_neg = jnp.sum(jnp.where(pairs & ~own, jax.nn.softplus(scores) - log2, 0.0))
    return e_neg / (count * max(b - 1, 1)) - e_pos


def _nce(scores, valid, own):
    positive = jnp.sum(jnp.where(own, scores, 0.0), axis=2)  # (B, M): T[b, m, b]
    negative = valid[..., None] & ~own  # [c, n, b]: (c, n) is a candidate of b's positions
    negatives = jax.nn.logsumexp(jnp.where(negative, scores, -jnp.inf), axis=(0, 1))  # (B,)
    per_position = jnp.logaddexp(positive, negatives[:, None]) - positive
    return jnp.sum(jnp.where(valid, per_position, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
