"""Sentence-embedding losses against float64 NumPy references written one example at a time
from the papers' formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import numeric_grad

from cl_jax.losses import sentence as S

RTOL, ATOL = 2e-5, 2e-5

# Jitted once each (hyper-parameters traced, Python options static) to keep the tests fast.
simcse = jax.jit(S.simcse)
mnrl = jax.jit(S.multiple_negatives_ranking, static_argnames="symmetric")
cosent = jax.jit(S.cosent)
cosine_similarity_mse = jax.jit(S.cosine_similarity_mse)
sentence_triplet = jax.jit(S.sentence_triplet, static_argnames="distance")


def batch(seed, n=5, d=4, columns=3):
    """``columns`` (n, d) arrays: the second and later ones near the first, rows of different
    norms."""
    rng = np.random.RandomState(seed)
    base = rng.normal(size=(n, d)) * rng.uniform(0.3, 3.0, size=(n, 1))
    arrays = [base] + [base + rng.normal(size=(n, d)) for _ in range(columns - 1)]
    return [a.astype(np.float32) for a in arrays]


# ---- references: float64, one anchor / pair / triplet at a time ----


def cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a @ b / max(np.linalg.norm(a), 1e-12) / max(np.linalg.norm(b), 1e-12)


def ref_simcse(z1, z2, z3, t, weight):
    """The paper's loss with hard negatives weighted by alpha (its hard-negative ablation):
    -log e^{s(h_i, h_i+)/t} / sum_j (e^{s(h_i, h_j+)/t} + alpha^{[i=j]} e^{s(h_i, h_j-)/t})."""
    alpha = np.exp(weight)
    losses = []
    for i in range(len(z1)):
        denom = 0.0
        for j in range(len(z1)):
            denom += np.exp(cos(z1[i], z2[j]) / t)
            if z3 is not None:
                denom += alpha ** (i == j) * np.exp(cos(z1[i], z3[j]) / t)
        losses.append(-np.log(np.exp(cos(z1[i], z2[i]) / t) / denom))
    return np.mean(losses)


def ranking_loss(query, candidates, positive_index, scale):
    logits = np.array([scale * cos(query, c) for c in candidates])
    return np.log(np.sum(np.exp(logits))) - logits[positive_index]


def ref_mnrl(anchor, positive, negatives, scale, symmetric):
    candidates = list(positive) + ([] if negatives is None else list(negatives))
    n = len(anchor)
    forward = np.mean([ranking_loss(anchor[i], candidates, i, scale) for i in range(n)])
    if not symmetric:
        return forward
    backward = np.mean([ranking_loss(positive[i], list(anchor), i, scale) for i in range(n)])
    return (forward + backward) / 2


def ref_cosent(u, v, scores, scale):
    c = [cos(a, b) for a, b in zip(u, v, strict=True)]
    total = 1.0
    for i in range(len(u)):
        for j in range(len(u)):
            if scores[i] > scores[j]:
                total += np.exp(scale * (c[j] - c[i]))
    return np.log(total)


def ref_distance(a, b, distance):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if distance == "euclidean":
        return np.sqrt(np.sum((a - b) ** 2))
    if distance == "manhattan":
        return np.sum(np.abs(a - b))
    return 1.0 - cos(a, b)


def ref_triplet(a, p, n, margin, distance):
    return np.mean([max(ref_distance(a[i], p[i], distance) - ref_distance(a[i], n[i], distance)
                        + margin, 0.0) for i in range(len(a))])




# ---- SimCSE ----


@pytest.mark.parametrize("with_negatives", [False, True])
@pytest.mark.parametrize("temperature,weight", [(0.05, 0.0), (0.2, 1.5), (0.5, -2.0)])
def test_simcse_matches_paper_formula(with_negatives, temperature, weight):
    z1, z2, z3 = batch(0)
    z3 = z3 if with_negatives else None
    value = simcse(z1, z2, z3, temperature=temperature, hard_negative_weight=weight)
    # Without negatives the weight is ignored, as in SimCSE's code.
    expected = ref_simcse(z1, z2, z3, temperature, weight if with_negatives else 0.0)
    np.testing.assert_allclose(value, expected, rtol=RTOL, atol=ATOL)


def test_simcse_weight_only_on_own_hard_negative():
    """Raising the weight raises the loss (more mass on each row's own hard negative), and a
    weight of -inf is the same as dropping each row's own hard negative."""
    z1, z2, z3 = batch(1)
    losses = [float(simcse(z1, z2, z3, hard_negative_weight=w)) for w in (-3.0, 0.0, 3.0)]
    assert losses[0] < losses[1] < losses[2]
    t = 0.05
    expected = np.mean([
        -np.log(np.exp(cos(z1[i], z2[i]) / t) / (
            sum(np.exp(cos(z1[i], z2[j]) / t) for j in range(5))
            + sum(np.exp(cos(z1[i], z3[j]) / t) for j in range(5) if j != i)))
        for i in range(5)])
    for loss in (S.simcse, simcse):  # eager too: XLA may fold a NaN from -inf * 0 away
        np.testing.assert_allclose(loss(z1, z2, z3, hard_negative_weight=-np.inf), expected,
                                   rtol=RTOL, atol=ATOL)


def test_simcse_gradient_matches_reference():
    z1, z2, z3 = batch(2, n=4, d=3)
    grads = jax.grad(S.simcse, argnums=(0, 1, 2))(z1, z2, z3, 0.1, 0.7)
    arrays = [z1, z2, z3]
    for k, g in enumerate(grads):
        def f(x, k=k):
            args = [x if m == k else arrays[m] for m in range(3)]
            return ref_simcse(*args, 0.1, 0.7)
        np.testing.assert_allclose(g, numeric_grad(f, arrays[k]), rtol=1e-3, atol=1e-4)


def test_simcse_rejects_negatives_of_another_shape():
    z1, z2, z3 = batch(3)
    with pytest.raises(AssertionError):
        S.simcse(z1, z2, z3[:-1])


# ---- multiple negatives ranking ----


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("negatives", ["none", "pool", "per_anchor"])
def test_multiple_negatives_ranking_matches_reference(symmetric, negatives):
    anchor, positive, _ = batch(4)
    rng = np.random.RandomState(5)
    neg = {"none": None, "pool": rng.normal(size=(3, 4)),
           "per_anchor": rng.normal(size=(5, 2, 4))}[negatives]
    value = mnrl(anchor, positive, None if neg is None else neg.astype(np.float32), scale=7.0,
                 symmetric=symmetric)
    flat = None if neg is None else neg.reshape(-1, 4)
    np.testing.assert_allclose(value, ref_mnrl(anchor, positive, flat, 7.0, symmetric),
                               rtol=RTOL, atol=ATOL)


def test_multiple_negatives_ranking_default_scale():
    anchor, positive, negative = batch(6)
    np.testing.assert_allclose(mnrl(anchor, positive, negative),
                               ref_mnrl(anchor, positive, negative, 20.0, False),
                               rtol=RTOL, atol=ATOL)


# ---- CoSENT ----


@pytest.mark.parametrize("scores", [[0.1, 0.5, 0.5, 0.9, 0.2, 0.5], [3, 1, 2, 1, 0, 3]])
def test_cosent_matches_reference_with_ties(scores):
    u, v = batch(7, n=6, columns=2)
    value = cosent(u, v, jnp.asarray(scores), scale=20.0)
    np.testing.assert_allclose(value, ref_cosent(u, v, scores, 20.0), rtol=RTOL, atol=ATOL)


def test_cosent_gradient_matches_reference():
    u, v = batch(8, n=5, d=3, columns=2)
    scores = np.array([0.3, 0.3, 0.8, 0.1, 0.5])
    grads = jax.grad(S.cosent, argnums=(0, 1))(u, v, scores, 5.0)
    np.testing.assert_allclose(grads[0], numeric_grad(lambda x: ref_cosent(x, v, scores, 5.0), u),
                               rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(grads[1], numeric_grad(lambda x: ref_cosent(u, x, scores, 5.0), v),
                               rtol=1e-3, atol=1e-4)


def test_cosent_all_tied_is_zero_with_zero_gradient():
    u, v = batch(9, columns=2)
    scores = jnp.full(5, 0.4)
    assert float(cosent(u, v, scores)) == 0.0
    grads = jax.grad(S.cosent, argnums=(0, 1))(u, v, scores)
    for g in grads:
        assert np.all(np.asarray(g) == 0.0)


# ---- Sentence-BERT objectives ----


def test_cosine_similarity_mse_matches_reference():
    u, v = batch(10, columns=2)
    scores = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    expected = np.mean([(cos(a, b) - s) ** 2 for a, b, s in zip(u, v, scores, strict=True)])
    np.testing.assert_allclose(cosine_similarity_mse(u, v, scores), expected, rtol=RTOL,
                               atol=ATOL)


@pytest.mark.parametrize("distance", S.TRIPLET_DISTANCES)
@pytest.mark.parametrize("margin", [0.5, 5.0])
def test_sentence_triplet_matches_reference(distance, margin):
    a, p, n = batch(11)
    n[0] = a[0] + 0.01  # an easy-to-violate triplet and, with margin 0.5, inactive ones
    value = sentence_triplet(a, p, n, margin=margin, distance=distance)
    np.testing.assert_allclose(value, ref_triplet(a, p, n, margin, distance), rtol=RTOL,
                               atol=ATOL)


def test_sentence_triplet_coincident_positive_has_finite_gradient():
    a, p, n = batch(12)
    p[1] = a[1]
    for distance in S.TRIPLET_DISTANCES:
        grads = jax.grad(S.sentence_triplet, argnums=(0, 1, 2))(a, p, n, 5.0, distance)
        assert all(np.isfinite(np.asarray(g)).all() for g in grads)
    with pytest.raises(ValueError, match="distance"):
        S.sentence_triplet(a, p, n, distance="dot")


def test_sbert_softmax_features():
    u, v = batch(13, columns=2)
    features = S.sbert_softmax_features(u, v)
    np.testing.assert_array_equal(features[:, :4], u)
    np.testing.assert_array_equal(features[:, 4:8], v)
    np.testing.assert_allclose(features[:, 8:], np.abs(u.astype(np.float64) - v), rtol=1e-6)
    assert features.shape == (5, 12) and features.dtype == jnp.float32


# ---- all losses: finite gradients, float32 from bfloat16 ----


def all_losses(a, b, c):
    scores = jnp.array([0.2, 0.9, 0.2, 0.4, 0.7])
    return {
        "simcse": S.simcse(a, b, c, temperature=0.02, hard_negative_weight=2.0),
        "mnrl": S.multiple_negatives_ranking(a, b, c, scale=50.0, symmetric=True),
        "cosent": S.cosent(a, b, scores, scale=50.0),
        "mse": S.cosine_similarity_mse(a, b, scores),
        "triplet": S.sentence_triplet(a, b, c, margin=1.0),
    }


def test_gradients_finite_and_float32():
    arrays = [jnp.asarray(x) for x in batch(14)]
    for name in all_losses(*arrays):
        grads = jax.grad(lambda *x, name=name: all_losses(*x)[name], argnums=(0, 1, 2))(*arrays)
        assert all(np.isfinite(np.asarray(g)).all() for g in grads), name
    low = all_losses(*(x.astype(jnp.bfloat16) for x in arrays))
    assert all(v.dtype == jnp.float32 for v in low.values())
