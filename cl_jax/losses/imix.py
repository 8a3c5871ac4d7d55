"""i-Mix's contrastive loss on mixed queries (Lee, Zhu, Sohn, Li, Shin & Lee 2021, "i-Mix: A
Domain-Agnostic Strategy for Contrastive Representation Learning", ICLR 2021,
arXiv:2010.08887).

i-Mix gives each of the N examples of a batch its own "virtual class" and mixes inputs and
virtual labels together: query ``i`` comes from ``lam * x_i + (1 - lam) * x_perm(i)`` (see
``cl_jax.mixing``), and its target is ``lam`` on key ``i`` and ``1 - lam`` on key ``perm(i)``.
"""

import chex
import jax.numpy as jnp

from cl_jax.losses._utils import check_pair, l2_normalize
from cl_jax.losses.blockwise import logsumexp_rows


def imix_info_nce(query, key, perm, lam, temperature=0.2, block_size=None, negatives=None):
    """i-Mix applied to the N-pair (SimCLR-style) contrastive loss (Lee et al. 2021).

    ``query`` (N, D): embeddings of the mixed inputs ``lam * x_i + (1 - lam) * x_perm(i)``;
    ``key`` (N, D): embeddings of the clean second views; ``perm`` (N,) int: the mixing
    permutation; ``lam``: a scalar or (N,) per-example mixing weights. With
    ``s_i = log softmax_j(cos(q_i, k_j) / T)`` over the N keys of the batch:
    ``l_i = -[lam_i * s_i[i] + (1 - lam_i) * s_i[perm(i)]]``; the loss is the mean over the N
    queries. ``lam = 1`` gives ``info_nce(query, key)`` (batch keys, no queue).

    Convention: kibok90/imix ``builder.py``, ``method='npair'`` with ``imix='imixup'`` or
    ``'icutmix'``: queries and keys L2-normalised (``nn.functional.normalize``), logits
    ``q k^T / temp``, ``(lam * CE(logits, arange) + (1 - lam) * CE(logits, randind)).mean()``;
    the default ``T = 0.2`` is its ``--temp`` default and the CIFAR-10/100 N-pair setting of
    its ``run.sh``. Its ``mixup`` draws one ``lam`` per example and takes
    ``max(lam, 1 - lam)`` (``cl_jax.mixing.mixup(..., per_example=True,
    lam_at_least_half=True)``). With ``--sym`` (off in the paper's CIFAR runs) it adds both
    directions, ``imix_info_nce(q1, k2, ...) + imix_info_nce(q2, k1, ...)``. Nothing here stops
    a gradient: in the N-pair setting queries and keys are both trained, as there.

    ``negatives`` (M, D): more candidates in every query's softmax, never targets: MoCo's
    queue. i-Mix on MoCo is kibok90/imix ``method='mocon'`` (its "revised" MoCo, the one
    i-Mix mixes): logits ``q [k; queue]^T / T`` over the N batch keys then the M queued ones,
    targets ``i`` and ``perm(i)`` among the batch keys. Normalised as the keys.

    ``block_size``: as in ``info_nce``, streams the softmax normaliser over blocks of keys
    (``N x block_size`` temporaries instead of ``N x N``); static under ``jit``.
    """
    check_pair(query, key)
    n = query.shape[0]
    chex.assert_shape(perm, (n,))
    lam = jnp.broadcast_to(jnp.asarray(lam, jnp.float32), (n,))
    q = l2_normalize(query) / temperature
    k = l2_normalize(key)
    own = jnp.sum(q * k, axis=1)
    mixed_in = jnp.sum(q * k[perm], axis=1)
    lse = logsumexp_rows(q, k, block_size=block_size)
    if negatives is not None:
        lse = jnp.logaddexp(lse, logsumexp_rows(q, l2_normalize(negatives),
                                                block_size=block_size))
    return jnp.mean(lse - lam * own - (1.0 - lam) * mixed_in)
