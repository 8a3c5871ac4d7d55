"""Sentence-embedding objectives: SimCSE, multiple-negatives ranking, CoSENT and the three
Sentence-BERT objectives (regression, triplet, softmax classifier features).

Conventions as in ``contrastive``: embeddings are rows (N, D); ``cos(a, b)`` is the dot
product of rows normalised with ``x / max(|x|, 1e-12)`` (torch's ``F.normalize``, which
sentence-transformers' ``cos_sim`` uses; torch's ``cosine_similarity``, used by SimCSE and
``CosineSimilarityLoss``, clamps the norms at 1e-8 instead, which only matters for rows of
norm below 1e-8). Everything is computed in float32 (bfloat16 inputs are upcast) and each loss
returns a float32 scalar with the reduction its docstring names. Pure ``jax.numpy``: ``jit``,
``grad``, ``vmap``; on a batch sharded across devices the in-batch losses see the global batch
(what SimCSE's all-gather and sentence-transformers' ``gather_across_devices`` give).
"""

import chex
import jax
import jax.numpy as jnp

from cl_jax.losses._utils import check_pair, l2_normalize, to_float32

TRIPLET_DISTANCES = ("euclidean", "cosine", "manhattan")


def _cross_entropy_diagonal(logits):
    """Mean over rows ``i`` of ``-log softmax(logits_i)[i]`` (the label of row ``i`` is ``i``)."""
    # The diagonal through a mask, not a gather: on a sharded batch a gather's collectives
    # can run out of order with the others on XLA:CPU and deadlock.
    diagonal = jnp.sum(jnp.where(jnp.eye(*logits.shape, dtype=bool), logits, 0.0), axis=1)
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - diagonal)


def _pairwise_cos(u, v):
    """``cos(u_i, v_i)`` for each row, shape (N,)."""
    return jnp.sum(l2_normalize(u) * l2_normalize(v), axis=1)


def simcse(z1, z2, negatives=None, temperature=0.05, hard_negative_weight=0.0):
    """SimCSE (Gao, Yao & Chen 2021, "SimCSE: Simple Contrastive Learning of Sentence
    Embeddings", eqs. 4 and 5).

    ``z1``, ``z2``: (N, D); ``z2_i`` is the positive of anchor ``z1_i`` (unsupervised: the same
    sentences under another dropout mask; supervised: the entailment hypotheses). ``negatives``
    (N, D), optional: one hard negative per anchor (the contradiction hypotheses, ``h_i^-``).
    Anchor ``i`` scores every ``z2_j`` and every ``negatives_j``:

    ``l_i = -log( exp(cos(z1_i, z2_i)/T) / sum_j (exp(cos(z1_i, z2_j)/T)
    + exp(cos(z1_i, n_j)/T + w [i = j])) )``,

    mean over the N anchors (only ``z1`` rows are anchors; the loss is not symmetrised), with
    ``w = hard_negative_weight`` added to the logit of each anchor's own hard negative only.

    Convention: princeton-nlp/SimCSE ``simcse/models.py`` ``cl_forward``: ``cos_sim`` =
    ``cos / temp`` between ``z1`` and ``z2`` with the ``z1``-``z3`` block concatenated as
    columns, the matrix ``weights`` (``hard_negative_weight`` at row ``i``, column ``N + i``)
    added to those logits, then ``CrossEntropyLoss`` with labels ``arange(N)``; defaults
    ``temp`` 0.05, weight 0. The weight is added after the division by ``T``: it is the
    logarithm of the paper's hard-negative weight ``alpha`` (its ablation of hard negatives,
    the term ``alpha^{1[i = j]} exp(sim(h_i, h_j^-)/T)``), i.e. ``alpha = exp(w)``; the best
    ``alpha = 1`` there is the code's default ``w = 0`` (README: "the logarithm of the weight").
    ``hard_negative_weight`` is ignored without ``negatives``, as in the code.
    """
    check_pair(z1, z2)
    anchors = l2_normalize(z1) / temperature
    logits = anchors @ l2_normalize(z2).T
    if negatives is not None:
        check_pair(z1, negatives)
        own_weight = jnp.where(jnp.eye(z1.shape[0], dtype=bool), hard_negative_weight, 0.0)
        logits = jnp.concatenate([logits, anchors @ l2_normalize(negatives).T + own_weight], 1)
    return _cross_entropy_diagonal(logits)


def multiple_negatives_ranking(anchor, positive, negatives=None, scale=20.0, symmetric=False):
    """Multiple negatives ranking loss (Henderson et al. 2017, "Efficient Natural Language
    Response Suggestion for Smart Reply", section 4.4), InfoNCE with in-batch negatives.

    ``anchor``, ``positive``: (N, D). ``negatives``: (M, D), or (N, K, D) for K hard
    negatives per anchor (flattened to (N K, D)); every anchor scores every negative. With the
    candidates ``c = [positive; negatives]`` and ``s_ij = scale * cos(anchor_i, c_j)``:

    ``forward = mean_i ( log sum_j exp(s_ij) - s_ii )``.

    ``symmetric=True`` also ranks the anchors for each positive,
    ``backward = mean_i ( log sum_j exp(s_ji) - s_ii )`` over the N anchors only (the negatives
    are not queries), and returns ``(forward + backward) / 2``.

    Convention: sentence-transformers ``MultipleNegativesRankingLoss`` (default ``cos_sim``,
    ``scale`` 20 = 1 / temperature 0.05; the negative columns concatenated after the
    positives) and ``MultipleNegativesSymmetricRankingLoss`` for ``symmetric=True``, which
    despite its docstring ("the negative entry will be ignored") keeps the negatives in the
    forward term; sentence-transformers 6 builds it as ``MultipleNegativesRankingLoss(
    directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")``, the same
    value. ``symmetric=False`` with one negative per anchor is ``simcse`` at
    ``T = 1 / scale`` and weight 0.
    """
    check_pair(anchor, positive)
    candidates = l2_normalize(positive)
    if negatives is not None:
        negatives = jnp.reshape(negatives, (-1, anchor.shape[1]))
        candidates = jnp.concatenate([candidates, l2_normalize(negatives)])
    logits = scale * l2_normalize(anchor) @ candidates.T
    forward = _cross_entropy_diagonal(logits)
    if not symmetric:
        return forward
    return (forward + _cross_entropy_diagonal(logits[:, : anchor.shape[0]].T)) / 2


def cosent(u, v, scores, scale=20.0):
    """CoSENT (Su 2022, blog post kexue.fm/archives/8847; Huang, Peng, ..., Su & Yu 2024,
    "CoSENT: Consistent Sentence Embedding via Similarity Ranking", IEEE/ACM TASLP), a ranking
    loss on the pairs' cosines.

    ``u``, ``v``: (N, D), N sentence pairs; ``scores``: (N,) gold similarities (any order-able
    numbers: STS scores, NLI labels). With ``c_i = cos(u_i, v_i)``:

    ``loss = log(1 + sum_{(i, j): s_i > s_j} exp(scale (c_j - c_i)))``

    over the ordered pairs with a strictly larger gold score (ties contribute nothing), one
    log-sum-exp over the whole batch (no mean; 0 when every score is tied).

    Convention: sentence-transformers ``CoSENTLoss`` (default ``pairwise_cos_sim``, scale 20,
    the 1 as a zero logit appended to the log-sum-exp); the same as the blog's formula with
    ``lambda = 20``. sentence-transformers 6 sorts the scores and uses a cumulative
    log-sum-exp instead of the N x N matrix; the value is the same.
    """
    check_pair(u, v)
    scores = jnp.asarray(scores)
    chex.assert_shape(scores, (u.shape[0],))
    c = scale * _pairwise_cos(u, v)
    ranked = scores[:, None] > scores[None, :]
    terms = jnp.where(ranked, c[None, :] - c[:, None], -jnp.inf).ravel()
    return jax.nn.logsumexp(jnp.concatenate([jnp.zeros(1, terms.dtype), terms]))


def cosine_similarity_mse(u, v, scores):
    """Sentence-BERT's regression objective (Reimers & Gurevych 2019, "Sentence-BERT: Sentence
    Embeddings using Siamese BERT-Networks", section 3): ``mean_i (cos(u_i, v_i) - s_i)^2``.

    ``u``, ``v``: (N, D); ``scores``: (N,) gold similarities (e.g. STS scores scaled to
    [0, 1]). Convention: sentence-transformers ``CosineSimilarityLoss`` with its defaults
    (``nn.MSELoss()``, mean over the pairs; identity score transformation).
    """
    check_pair(u, v)
    scores = to_float32(jnp.asarray(scores))
    chex.assert_shape(scores, (u.shape[0],))
    return jnp.mean((_pairwise_cos(u, v) - scores) ** 2)


def _triplet_distance(a, b, distance):
    if distance == "cosine":
        return 1.0 - _pairwise_cos(a, b)
    diff = to_float32(a) - to_float32(b)
    if distance == "manhattan":
        return jnp.sum(jnp.abs(diff), axis=1)
    sq = jnp.sum(diff * diff, axis=1)
    positive = sq > 0.0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def sentence_triplet(anchor, positive, negative, margin=5.0, distance="euclidean"):
    """Sentence-BERT's triplet objective (Reimers & Gurevych 2019, section 3):
    ``mean_i max(0, d(a_i, p_i) - d(a_i, n_i) + margin)`` over the N given triplets.

    ``anchor``, ``positive``, ``negative``: (N, D), raw (unnormalised) embeddings. ``distance``
    (a Python string, static under ``jit``): ``'euclidean'`` ``|a - p|_2`` (zero gradient where
    the two coincide), ``'manhattan'`` ``|a - p|_1``, ``'cosine'`` ``1 - cos(a, p)``.

    Convention: sentence-transformers ``TripletLoss`` with ``TripletDistanceMetric`` (default
    ``EUCLIDEAN``, ``triplet_margin`` 5, mean). The paper uses the Euclidean distance with
    margin 1. Versions differ in the details: sentence-transformers 4 used
    ``F.pairwise_distance``, which adds 1e-6 to the difference (``|a - p + 1e-6|``);
    5.0 to 5.1.2 build ``EUCLIDEAN`` / ``MANHATTAN`` from ``pairwise_euclidean_sim`` /
    ``pairwise_manhattan_sim`` without negating them, i.e. from the negated distances, which
    flips the loss (it then pushes positives away); 6.2 has the exact distances used here.
    For triplets mined from labels use ``metric.triplet_margin``.
    """
    chex.assert_rank([anchor, positive, negative], 2)
    chex.assert_equal_shape([anchor, positive, negative])
    if distance not in TRIPLET_DISTANCES:
        raise ValueError(f"distance must be one of {TRIPLET_DISTANCES}, got {distance!r}")
    d_ap = _triplet_distance(anchor, positive, distance)
    d_an = _triplet_distance(anchor, negative, distance)
    return jnp.mean(jnp.maximum(d_ap - d_an + margin, 0.0))


def sbert_softmax_features(u, v):
    """The classifier input of Sentence-BERT's classification objective (Reimers & Gurevych
    2019, section 3): ``[u; v; |u - v|]``, shape (N, 3 D), float32.

    The objective is ``CrossEntropy(W_t [u; v; |u - v|], label)`` with a trainable
    ``W_t`` of shape (3 D, k) (the paper's ``o = softmax(W_t (u, v, |u - v|))``); the
    features are the raw (unnormalised) embeddings. Convention: sentence-transformers
    ``SoftmaxLoss`` defaults (``concatenation_sent_rep=True``,
    ``concatenation_sent_difference=True``, ``concatenation_sent_multiplication=False``),
    concatenated in that order.
    """
    check_pair(u, v)
    u, v = to_float32(u), to_float32(v)
    return jnp.concatenate([u, v, jnp.abs(u - v)], axis=1)


def quick_thoughts(f, g, chunk):
    """Quick-Thoughts (Logeswaran & Lee 2018, "An efficient framework for learning sentence
    representations", eq. 1-2): each sentence picks its neighbours out of the batch.

    ``f``, ``g``: (N, D), the input and context encoders' embeddings of N sentences that are
    ``N / chunk`` runs of ``chunk`` consecutive sentences (row ``r * chunk + k`` is sentence
    ``k`` of run ``r``). Scores are inner products ``s_ij = f_i . g_j`` (not normalised, no
    temperature); a sentence is never its own candidate. The targets of sentence ``i`` are its
    neighbours ``i - 1`` and ``i + 1`` within its run, each with weight ``1 / (number of
    neighbours)``; the loss is the mean over the N sentences of the cross-entropy
    ``-sum_j t_ij log softmax_j(s_i)``. Convention: lajanugen/S2V ``s2v_model.py`` (the
    diagonal masked out, the context targets normalised to sum 1 in each row, softmax
    cross-entropy), with its context size 3 (previous and next sentence).
    """
    check_pair(f, g)
    n = f.shape[0]
    if n % chunk or chunk < 2:
        raise ValueError(f"quick_thoughts: {n} sentences are not runs of chunk={chunk} >= 2.")
    scores = to_float32(f) @ to_float32(g).T
    scores = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, scores)
    i = jnp.arange(n)
    same_run = (i[:, None] // chunk) == (i[None, :] // chunk)
    targets = (jnp.abs(i[:, None] - i[None, :]) == 1) & same_run
    targets = targets / jnp.sum(targets, axis=1, keepdims=True)
    log_p = jax.nn.log_softmax(scores, axis=1)
    return jnp.mean(-jnp.sum(jnp.where(targets > 0, targets * log_p, 0.0), axis=1))
