"""Contrastive losses: NT-Xent, InfoNCE, SupCon, debiased and hard-negative NT-Xent, DCL.

Common conventions: embeddings are rows, L2-normalised inside each loss
(``x / max(|x|, 1e-12)``, torch's ``F.normalize``), so ``cos(a, b)`` is a dot product of
normalised rows and ``T`` is the temperature. Everything is computed in float32 (bfloat16
inputs are upcast first) and every loss is a float32 scalar, a mean over the anchors named in
its docstring. The losses are pure ``jax.numpy`` (``jit``, ``grad``, ``vmap``); under ``jit``
with the batch sharded across devices they see the global batch, so negatives come from all
devices (what the references get from an all-gather). Two-view losses order the 2N views as
``z1`` then ``z2``: the positive of view ``i`` is view ``(i + N) mod 2N``, its negatives the
other ``2N - 2``.

None of the losses stops a gradient: pass ``jax.lax.stop_gradient(key)`` (and a stopped queue)
for MoCo's momentum-encoder keys.
"""

import jax
import jax.numpy as jnp

from cl_jax.losses._utils import check_pair, l2_normalize
from cl_jax.losses.blockwise import logsumexp_rows


def nt_xent(z1, z2, temperature=0.1, block_size=None):
    """NT-Xent, SimCLR's loss (Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework
    for Contrastive Learning of Visual Representations").

    ``z1``, ``z2``: (N, D), two views of the same N examples. Each of the 2N views is an
    anchor: ``l_i = -log( exp(cos(i, pos(i))/T) / sum_{k != i} exp(cos(i, k)/T) )``, the sum
    over the other ``2N - 1`` views (the positive and ``2N - 2`` negatives); the loss is the
    mean of ``l_i`` over the 2N anchors.

    Convention: google-research/simclr ``add_contrastive_loss`` (``hidden_norm=True``: the
    ``logits_ab``/``logits_aa`` cross-entropy with the self-similarity masked out) except
    for the reduction: that code returns ``mean(loss_a + loss_b)``, twice this mean over 2N
    anchors. Equal to solo-learn ``simclr_loss_func`` (two views), lightly ``NTXentLoss``
    (no memory bank), HobbitLong/SupContrast ``SupConLoss(labels=None)`` with
    ``temperature == base_temperature``, and pytorch-metric-learning ``NTXentLoss`` with
    the two views labelled by example (``tests/test_peers.py`` checks lightly and PML).

    ``block_size``: ``None`` builds the ``2N x 2N`` similarity matrix; an int computes the
    same value and gradient streaming over blocks of that many keys (see ``blockwise``), so
    temporary memory is ``2N x block_size``. Reverse-mode differentiation only then.
    ``block_size`` is static: ``jax.jit(nt_xent, static_argnames="block_size")``.
    """
    check_pair(z1, z2)
    n = z1.shape[0]
    z = l2_normalize(jnp.concatenate([z1, z2]))
    positive = jnp.sum(z[:n] * z[n:], axis=1) / temperature
    lse = logsumexp_rows(z / temperature, z, exclude_diagonal=True, block_size=block_size)
    return jnp.mean(lse - jnp.tile(positive, 2))


def info_nce(query, key, negatives=None, temperature=0.1, block_size=None,
             query_negatives=None):
    """InfoNCE (van den Oord, Li & Vinyals 2018, "Representation Learning with Contrastive
    Predictive Coding") as used by MoCo (He, Fan, Wu, Xie & Girshick 2020, "Momentum
    Contrast for Unsupervised Visual Representation Learning"; Chen, Xie & He 2021, "An
    Empirical Study of Training Self-Supervised Vision Transformers" for v3).

    ``query``, ``key``: (N, D); the positive of query ``i`` is key ``i``. The loss is the
    mean over the N queries of ``-log softmax(logits_i)[positive]``, with

    * ``negatives`` (M, D), e.g. MoCo's queue: ``logits_i = [cos(q_i, k_i), cos(q_i, n_1),
      ..., cos(q_i, n_M)] / T``. Convention: facebookresearch/moco (v1/v2, ``l_pos``,
      ``l_neg`` against the queue, ``CrossEntropyLoss`` with label 0, mean over queries);
      equal to solo-learn ``mocov2plus_loss_func`` (which takes the queue as D x M and
      expects normalised inputs, which this function normalises itself) and
      lightly ``NTXentLoss(memory_bank_size=(M, D))`` (lightly 1.6 raises for a bare ``M``;
      its bank holds the negatives as stored, unit rows).
    * ``negatives=None``: ``logits_i = [cos(q_i, k_1), ..., cos(q_i, k_N)] / T``, the other
      keys of the batch being the negatives. Convention: facebookresearch/moco-v3
      ``ctr_loss`` (keys gathered from all devices, label ``i``) without its final factor
      ``2 T``; solo-learn ``mocov3_loss_func`` has that factor too. MoCo v3 symmetrises,
      ``info_nce(q1, k2) + info_nce(q2, k1)``. Equal to pytorch-metric-learning
      ``SelfSupervisedLoss(NTXentLoss(T), symmetric=False)``.

    ``query_negatives`` (N, S, D), optional: S more negatives for each query, its own (MoCHi's
    synthetic hard negatives, Kalantidis et al. 2020, see ``miners.mochi_negatives``):
    ``logits_i`` gains ``cos(q_i, h_i1) / T, ..., cos(q_i, h_iS) / T``; query ``i`` never sees
    another query's rows. As with ``negatives``, pass them stop-gradient'd if they must not be
    trained through (``mochi_negatives`` already is).

    ``block_size``: as in ``nt_xent``, streams over blocks of keys (or of negatives): memory
    ``N x block_size`` instead of ``N x N`` (``N x M``); static under ``jit``.
    """
    if query.shape != key.shape:
        raise ValueError(
            f"query and key must have the same shape, got {query.shape} and {key.shape}"
        )
    q = l2_normalize(query) / temperature
    k = l2_normalize(key)
    positive = jnp.sum(q * k, axis=1)
    if negatives is None:
        lse = logsumexp_rows(q, k, block_size=block_size)
    else:
        lse_negatives = logsumexp_rows(q, l2_normalize(negatives), block_size=block_size)
        lse = jnp.logaddexp(positive, lse_negatives)
    if query_negatives is not None:
        if query_negatives.ndim != 3 or query_negatives.shape[::2] != query.shape:
            raise ValueError(f"query_negatives must be (N, S, D) = ({query.shape[0]}, S, "
                             f"{query.shape[1]}), got shape {query_negatives.shape}")
        own = jnp.einsum("nd,nsd->ns", q, l2_normalize(query_negatives))
        lse = jnp.logaddexp(lse, jax.nn.logsumexp(own, axis=1))
    return jnp.mean(lse - positive)


def supcon(features, labels=None, temperature=0.07, targets=None):
    """Supervised contrastive loss L_out (Khosla, Teterwak, Wang, Sarna, Tian, Isola,
    Maschinot, Liu & Krishnan 2020, "Supervised Contrastive Learning", eq. 2).

    ``features``: (N, V, D), V views of N examples; ``labels``: (N,) integer classes, or
    ``None`` for "each example its own class" (SimCLR; with V = 2 this is ``nt_xent``). All
    N*V views are anchors; the positives ``P(i)`` of anchor ``i`` are the other views with
    its label:
    ``l_i = -(1/|P(i)|) sum_{p in P(i)} log( exp(cos(i,p)/T) / sum_{k != i} exp(cos(i,k)/T) )``.
    The loss is the mean of ``l_i`` over the anchors with ``|P(i)| >= 1`` (0 if there are none).

    Convention: HobbitLong/SupContrast ``SupConLoss`` (``contrast_mode='all'``), with three
    differences: that code scales the loss by ``temperature / base_temperature`` (1 with its
    defaults, both 0.07; multiply by it to reproduce a run at another temperature), expects
    normalised features (its model normalises), and gives an anchor without positives a NaN
    (first release) or a loss of 0 that still counts in the mean (current code). Here such
    anchors are left out of the mean, as in pytorch-metric-learning ``SupConLoss`` (its
    ``AvgNonZeroReducer`` averages the nonzero per-anchor losses), which this equals on the
    ``N * V`` rows in view-major order with the labels tiled. solo-learn ``simclr_loss_func``
    with class labels as ``indexes`` is another loss (the positives are summed inside the
    log). lightly 1.6.0 has no ``SupConLoss``.

    ``targets`` (N, K), in place of ``labels``: soft class distributions, e.g. the mixed
    targets of mixup / CutMix inputs (``cl_jax.mixing.mix_labels``). View ``b`` is then a
    positive of anchor ``a`` with weight ``w_ab = <t_a, t_b>``, the chance that the two share
    a class, and ``l_a = -sum_{b != a} w_ab log p_ab / sum_{b != a} w_ab`` (anchors with no
    weight left out). One-hot targets give the loss above exactly. This soft form is this
    library's (SupCon's paper has mixup and CutMix only for its cross-entropy baselines).
    """
    if features.ndim != 3:
        raise ValueError(f"features must be (N, V, D), got shape {features.shape}")
    n, v, _ = features.shape
    z = l2_normalize(jnp.swapaxes(features, 0, 1).reshape(n * v, -1))  # view-major
    self_mask = jnp.eye(n * v, dtype=bool)
    if targets is not None:
        if labels is not None or jnp.ndim(targets) != 2 or targets.shape[0] != n:
            raise ValueError(f"targets must be (N={n}, K), in place of labels; got "
                             f"{jnp.shape(targets)}")
        t = jnp.tile(jnp.asarray(targets, jnp.float32), (v, 1))
        weight = jnp.where(self_mask, 0.0, t @ t.T)
    else:
        classes = jnp.arange(n) if labels is None else jnp.asarray(labels)
        if classes.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {classes.shape}")
        classes = jnp.tile(classes, v)
        weight = ((classes[:, None] == classes[None, :]) & ~self_mask).astype(jnp.float32)
    logits = jnp.where(self_mask, -jnp.inf, z @ z.T / temperature)
    log_prob = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)
    total_weight = weight.sum(axis=1)
    per_anchor = -jnp.where(weight > 0, weight * log_prob, 0.0).sum(axis=1) / jnp.maximum(
        total_weight, 1e-12)
    return per_anchor.sum() / jnp.maximum((total_weight > 0).sum(), 1)


def _positive_and_negative_logits(z1, z2, temperature):
    """For each of the 2N views: its positive's logit (2N,) and its 2N - 2 negatives' logits
    (2N, 2N - 2), i.e. ``cos / T`` with the view itself and its positive left out."""
    check_pair(z1, z2)
    n = z1.shape[0]
    z = l2_normalize(jnp.concatenate([z1, z2]))
    logits = z @ z.T / temperature
    anchor = jnp.arange(2 * n)[:, None]
    positive = jnp.take_along_axis(logits, (anchor + n) % (2 * n), axis=1)[:, 0]
    # Column t of row i is the t-th index of range(2N) without i mod N and i mod N + N.
    t = jnp.arange(2 * n - 2)[None, :]
    columns = t + (t >= anchor % n) + (t >= anchor % n + n - 1)
    return positive, jnp.take_along_axis(logits, columns, axis=1)


def _debiased_loss(z1, z2, temperature, tau_plus, beta):
    positive, negative = _positive_and_negative_logits(z1, z2, temperature)
    m = negative.shape[1]
    # exp(logit - shift) instead of exp(logit): the shift cancels in the loss, and small
    # temperatures do not overflow.
    shift = jax.lax.stop_gradient(jnp.maximum(positive, negative.max(axis=1)))
    pos = jnp.exp(positive - shift)
    neg = jnp.exp(negative - shift[:, None])
    if beta is None:
        neg_sum = neg.sum(axis=1)
    else:
        # neg ** beta up to a per-anchor factor, which cancels in the ratio.
        weights = jnp.exp(
            beta * (negative - jax.lax.stop_gradient(negative.max(axis=1, keepdims=True)))
        )
        neg_sum = m * jnp.sum(weights * neg, axis=1) / jnp.sum(weights, axis=1)
    ng = jnp.maximum(
        (neg_sum - tau_plus * m * pos) / (1.0 - tau_plus), m * jnp.exp(-1.0 / temperature - shift)
    )
    return jnp.mean(jnp.log(pos + ng) - (positive - shift))


def debiased_nt_xent(z1, z2, temperature=0.5, tau_plus=0.1):
    """Debiased contrastive loss (Chuang, Robinson, Lin, Torralba & Jegelka 2020, "Debiased
    Contrastive Learning").

    Per anchor of the 2N views, with ``M = 2N - 2`` negatives, ``pos = exp(cos(i,pos)/T)``,
    ``neg_k = exp(cos(i,n_k)/T)``:
    ``Ng = max((sum_k neg_k - tau_plus * M * pos) / (1 - tau_plus), M * exp(-1/T))`` and
    ``l_i = -log(pos / (pos + Ng))``; mean over the 2N anchors. ``tau_plus`` is the class
    prior (probability that a "negative" shares the anchor's class); ``tau_plus = 0`` gives
    ``nt_xent`` (the clamp is then inactive).

    Convention: chingyaoc/DCL ``main.py`` (``debiased=True``; defaults T = 0.5,
    ``tau_plus`` = 0.1; mean over 2N anchors). That code exponentiates the raw logits; here
    the row's largest logit is factored out first (the same value, without overflow for small
    T).
    """
    return _debiased_loss(z1, z2, temperature, tau_plus, beta=None)


def hard_negative_nt_xent(z1, z2, temperature=0.5, tau_plus=0.1, beta=1.0):
    """Hard-negative contrastive loss, HCL (Robinson, Chuang, Sra & Jegelka 2021,
    "Contrastive Learning with Hard Negative Samples").

    ``debiased_nt_xent`` with the negatives' sum replaced by an importance-weighted one:
    ``sum_k neg_k -> M * sum_k w_k neg_k / sum_k w_k``, ``w_k = neg_k ** beta``, i.e.
    ``Ng = max((M * sum_k w_k neg_k / sum_k w_k - tau_plus * M * pos) / (1 - tau_plus),
    M * exp(-1/T))``, ``l_i = -log(pos / (pos + Ng))``, mean over the 2N anchors. The weights
    are differentiated through, as in the reference. ``beta = 0`` gives ``debiased_nt_xent``.

    Convention: joshr17/HCL ``image/main.py`` ``criterion`` (``estimator='hard'``:
    ``imp = exp(beta * log neg)``, ``reweight_neg = sum(imp * neg) / mean(imp)``; defaults
    T = 0.5, ``tau_plus`` = 0.1, ``beta`` = 1.0). Overflow-safe as ``debiased_nt_xent``.
    """
    return _debiased_loss(z1, z2, temperature, tau_plus, beta=beta)


def dcl(z1, z2, temperature=0.1):
    """Decoupled contrastive loss (Yeh, Hong, Hsu, Liu, Chen & LeCun 2022, "Decoupled
    Contrastive Learning", eq. 6).

    NT-Xent with the positive removed from the denominator: per anchor of the 2N views,
    ``l_i = -cos(i, pos(i))/T + log sum_{k in negatives(i)} exp(cos(i, k)/T)`` over its
    ``2N - 2`` negatives (both views of the other examples); mean over the 2N anchors.

    Convention: raminnakhli/Decoupled-Contrastive-Learning ``DCL`` (unofficial; the one
    lightly's is derived from), except that it returns the sum of the two directions' means
    (twice this) and masks with a logit offset of ``log(1e-45)`` instead of removing the
    terms. Equal to lightly ``DCLLoss`` since lightly 1.5.21 (one ``logsumexp`` over all
    ``2N - 2`` negatives, the directions averaged); lightly 1.5.20 and older took separate
    ``logsumexp`` terms over the same-view and the cross-view negatives and added the two
    logs, which is not eq. 6.
    """
    positive, negative = _positive_and_negative_logits(z1, z2, temperature)
    return jnp.mean(jax.nn.logsumexp(negative, axis=1) - positive)


def dclw(z1, z2, temperature=0.1, sigma=0.5):
    """Weighted decoupled contrastive loss, DCLW (Yeh et al. 2022, as ``dcl``).

    ``dcl`` with the positive term of each pair weighted by the negative von Mises-Fisher
    weight ``w_i = 2 - N * softmax_i(cos(z1_i, z2_i) / sigma)`` (softmax over the N pairs,
    no gradient through ``w``): ``l_i = -w_i cos(i, pos(i))/T + log sum_k exp(cos(i, k)/T)``,
    mean over the 2N anchors.

    Convention: lightly ``DCLWLoss`` (``negative_mises_fisher_weights``, detached, defaults
    T = 0.1, sigma = 0.5), equal to it since lightly 1.5.21 (negatives as in ``dcl``).
    """
    positive, negative = _positive_and_negative_logits(z1, z2, temperature)
    n = z1.shape[0]
    cos = jax.lax.stop_gradient(positive[:n]) * temperature
    weight = 2.0 - n * jax.nn.softmax(cos / sigma)
    return jnp.mean(jax.nn.logsumexp(negative, axis=1) - jnp.tile(weight, 2) * positive)
