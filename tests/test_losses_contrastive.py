"""Contrastive losses against float64 NumPy references written with explicit loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import numeric_grad
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cl_jax.losses import contrastive as C

TEMPERATURES = [0.05, 0.2, 0.5, 1.0]

# Jitted once (temperature and the other hyper-parameters traced) to keep the tests fast.
nt_xent = jax.jit(C.nt_xent, static_argnames="block_size")
info_nce = jax.jit(C.info_nce, static_argnames="block_size")
supcon = jax.jit(C.supcon)
debiased_nt_xent = jax.jit(C.debiased_nt_xent)
hard_negative_nt_xent = jax.jit(C.hard_negative_nt_xent)
dcl = jax.jit(C.dcl)
dclw = jax.jit(C.dclw)


def pair(seed, n=6, d=5, noise=0.7):
    """Two views: the second is the first plus noise, so positives are more similar."""
    rng = np.random.RandomState(seed)
    z1 = rng.normal(size=(n, d)) * rng.uniform(0.3, 3.0, size=(n, 1))
    z2 = z1 + noise * rng.normal(size=(n, d)) * np.abs(z1).mean()
    return z1.astype(np.float32), z2.astype(np.float32)


# ---- references: float64, one anchor at a time ----


def cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a @ b / max(np.linalg.norm(a), 1e-12) / max(np.linalg.norm(b), 1e-12)


def two_view_terms(z1, z2, t):
    """Per anchor of the 2N views (z1 then z2): exp(cos/T) of its positive and negatives."""
    views, n = list(z1) + list(z2), len(z1)
    for i, anchor in enumerate(views):
        p = (i + n) % (2 * n)
        neg = [np.exp(cos(anchor, views[k]) / t) for k in range(2 * n) if k not in (i, p)]
        yield i, np.exp(cos(anchor, views[p]) / t), np.array(neg)


def ref_nt_xent(z1, z2, t):
    return np.mean([-np.log(pos / (pos + neg.sum())) for _, pos, neg in two_view_terms(z1, z2, t)])


def ref_debiased(z1, z2, t, tau_plus, beta=None):
    """The reference formulas; also returns how many anchors hit the clamp."""
    losses, clamped = [], 0
    for _, pos, neg in two_view_terms(z1, z2, t):
        m = len(neg)
        if beta is None:
            neg_sum = neg.sum()
        else:
            w = neg**beta
            neg_sum = m * (w * neg).sum() / w.sum()
        estimate = (neg_sum - tau_plus * m * pos) / (1 - tau_plus)
        clamped += estimate < m * np.exp(-1 / t)
        losses.append(-np.log(pos / (pos + max(estimate, m * np.exp(-1 / t)))))
    return np.mean(losses), clamped


def ref_dcl(z1, z2, t, sigma=None, weights_of=None):
    """DCL; DCLW with ``sigma``, its weights computed from ``weights_of`` (default: z1, z2)."""
    n = len(z1)
    w1, w2 = (z1, z2) if weights_of is None else weights_of
    pair_cos = np.array([cos(w1[j], w2[j]) for j in range(n)])
    weight = (
        np.ones(n)
        if sigma is None
        else 2 - n * np.exp(pair_cos / sigma) / np.sum(np.exp(pair_cos / sigma))
    )
    return np.mean(
        [
            -weight[i % n] * np.log(pos) + np.log(neg.sum())
            for i, pos, neg in two_view_terms(z1, z2, t)
        ]
    )


def ref_info_nce(q, k, negatives, t):
    losses = []
    for i in range(len(q)):
        if negatives is None:
            logits = np.array([cos(q[i], k[j]) for j in range(len(k))]) / t
            label = i
        else:
            logits = np.array([cos(q[i], k[i])] + [cos(q[i], n) for n in negatives]) / t
            label = 0
        losses.append(-logits[label] + np.log(np.sum(np.exp(logits))))
    return np.mean(losses)


def ref_supcon(features, labels, t):
    n, v = features.shape[:2]
    labels = range(n) if labels is None else labels
    views = [(features[a, b], y) for b in range(v) for a, y in zip(range(n), labels, strict=True)]
    losses = []
    for i, (zi, yi) in enumerate(views):
        positives = [p for p, (_, y) in enumerate(views) if p != i and y == yi]
        if not positives:
            continue
        denom = sum(np.exp(cos(zi, zk) / t) for k, (zk, _) in enumerate(views) if k != i)
        losses.append(
            -np.mean([np.log(np.exp(cos(zi, views[p][0]) / t) / denom) for p in positives])
        )
    return np.mean(losses)


# Two-view losses: name -> (jitted loss(z1, z2, t), reference(z1, z2, t)).
TWO_VIEW = {
    "nt_xent": (lambda a, b, t: nt_xent(a, b, temperature=t), ref_nt_xent),
    "nt_xent_blockwise": (lambda a, b, t: nt_xent(a, b, temperature=t, block_size=5), ref_nt_xent),
    "debiased": (
        lambda a, b, t: debiased_nt_xent(a, b, temperature=t, tau_plus=0.1),
        lambda a, b, t: ref_debiased(a, b, t, 0.1)[0],
    ),
    "hard_negative": (
        lambda a, b, t: hard_negative_nt_xent(a, b, temperature=t, tau_plus=0.1, beta=0.5),
        lambda a, b, t: ref_debiased(a, b, t, 0.1, beta=0.5)[0],
    ),
    "dcl": (lambda a, b, t: dcl(a, b, temperature=t), ref_dcl),
    "dclw": (
        lambda a, b, t: dclw(a, b, temperature=t, sigma=0.5),
        lambda a, b, t: ref_dcl(a, b, t, sigma=0.5),
    ),
    "supcon_no_labels": (
        lambda a, b, t: supcon(jnp.stack([a, b], 1), temperature=t),
        lambda a, b, t: ref_supcon(np.stack([a, b], 1), None, t),
    ),
}


@pytest.mark.parametrize("name", TWO_VIEW)
@pytest.mark.parametrize("t", TEMPERATURES)
def test_two_view_losses_match_reference(name, t):
    loss, ref = TWO_VIEW[name]
    for seed in (0, 1):
        z1, z2 = pair(seed, n=6 + seed)
        value = loss(z1, z2, t)
        assert value.dtype == jnp.float32 and value.shape == ()
        np.testing.assert_allclose(value, ref(z1, z2, t), rtol=2e-5)




@pytest.mark.parametrize("name", TWO_VIEW)
def test_two_view_gradients_match_reference(name):
    loss, ref = TWO_VIEW[name]
    z1, z2 = pair(2, n=4, d=3)
    if name == "dclw":  # no gradient through the weights
        ref = lambda a, b, t: ref_dcl(a, b, t, sigma=0.5, weights_of=(z1, z2))
    g1, g2 = jax.grad(loss, argnums=(0, 1))(z1, z2, 0.5)
    assert np.all(np.isfinite(g1)) and np.all(np.isfinite(g2))
    np.testing.assert_allclose(g1, numeric_grad(lambda x: ref(x, z2, 0.5), z1), atol=2e-5)
    np.testing.assert_allclose(g2, numeric_grad(lambda x: ref(z1, x, 0.5), z2), atol=2e-5)


@pytest.mark.parametrize("name", TWO_VIEW)
def test_two_view_invariances(name):
    loss = TWO_VIEW[name][0]
    z1, z2 = pair(3, n=8)
    rng = np.random.RandomState(3)
    perm = rng.permutation(8)
    scale1, scale2 = rng.uniform(0.1, 10.0, size=(2, 8, 1)).astype(np.float32)
    value = loss(z1, z2, 0.2)
    np.testing.assert_allclose(loss(z1[perm], z2[perm], 0.2), value, rtol=1e-5)
    np.testing.assert_allclose(loss(scale1 * z1, scale2 * z2, 0.2), value, rtol=1e-5)
    np.testing.assert_allclose(loss(z2, z1, 0.2), value, rtol=1e-5)  # views are symmetric
    # ...but pairing matters: shuffling one view alone changes the loss.
    assert abs(loss(z1, z2[perm], 0.2) - value) > 1e-2


@pytest.mark.parametrize("name", TWO_VIEW)
def test_two_view_vmap_and_bfloat16(name):
    loss = TWO_VIEW[name][0]
    z1, z2 = np.stack([pair(s, n=6) for s in range(3)], axis=1)  # (3, 6, 5) each
    batched = jax.vmap(lambda a, b: loss(a, b, 0.2))(z1, z2)
    np.testing.assert_allclose(
        batched, [loss(a, b, 0.2) for a, b in zip(z1, z2, strict=True)], rtol=1e-5
    )

    a16, b16 = jnp.asarray(z1[0], jnp.bfloat16), jnp.asarray(z2[0], jnp.bfloat16)
    low = loss(a16, b16, 0.2)
    assert low.dtype == jnp.float32
    rounded = loss(a16.astype(jnp.float32), b16.astype(jnp.float32), 0.2)
    np.testing.assert_allclose(low, rounded, rtol=1e-6)  # computed in float32 after upcast
    np.testing.assert_allclose(low, loss(z1[0], z2[0], 0.2), rtol=2e-2)


def test_nt_xent_is_supcon_without_labels_and_debiased_with_zero_prior():
    z1, z2 = pair(4, n=8)
    for t in TEMPERATURES:
        value = nt_xent(z1, z2, temperature=t)
        np.testing.assert_allclose(supcon(np.stack([z1, z2], 1), temperature=t), value, rtol=1e-5)
        np.testing.assert_allclose(
            debiased_nt_xent(z1, z2, temperature=t, tau_plus=0.0), value, rtol=1e-5
        )
        np.testing.assert_allclose(
            hard_negative_nt_xent(z1, z2, temperature=t, beta=0.0),
            debiased_nt_xent(z1, z2, temperature=t),
            rtol=1e-5,
        )


@pytest.mark.parametrize("beta", [None, 1.0, 2.0])
def test_debiased_clamp_and_small_temperature(beta):
    # Nearly identical views and a large prior: the estimate falls below M exp(-1/T).
    z1, z2 = pair(5, n=6, noise=0.05)
    loss = (
        debiased_nt_xent
        if beta is None
        else (lambda a, b, **kw: hard_negative_nt_xent(a, b, beta=beta, **kw))
    )
    ref, clamped = ref_debiased(z1, z2, 0.5, 0.3, beta)
    assert clamped > 0
    np.testing.assert_allclose(loss(z1, z2, temperature=0.5, tau_plus=0.3), ref, rtol=2e-5)
    # T = 0.01: exp(cos/T) overflows float32 (the reference's direct exp would give inf/nan).
    z1, z2 = pair(6, n=6, noise=3.0)
    value = loss(z1, z2, temperature=0.01, tau_plus=0.1)
    ref = ref_debiased(z1, z2, 0.01, 0.1, beta)[0]
    assert ref > 1.0
    np.testing.assert_allclose(value, ref, rtol=1e-4)
    grads = jax.grad(lambda a: loss(a, z2, temperature=0.01, tau_plus=0.1))(z1)
    assert np.all(np.isfinite(grads))


# ---- InfoNCE ----


def queries_keys_queue(seed, n=6, m=9, d=5):
    z1, z2 = pair(seed, n=n, d=d)
    negatives = np.random.RandomState(seed + 100).normal(size=(m, d)).astype(np.float32)
    return z1, z2, negatives


@pytest.mark.parametrize("t", TEMPERATURES)
@pytest.mark.parametrize("with_queue", [False, True])
def test_info_nce_matches_reference(t, with_queue):
    q, k, queue = queries_keys_queue(7)
    queue = queue if with_queue else None
    value = info_nce(q, k, queue, temperature=t)
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(value, ref_info_nce(q, k, queue, t), rtol=2e-5)


def test_info_nce_gradients_and_invariances():
    q, k, queue = queries_keys_queue(8, n=4, m=5, d=3)
    grads = jax.grad(lambda a, b, c: info_nce(a, b, c, temperature=0.5), (0, 1, 2))(q, k, queue)
    wrt = [
        lambda x: ref_info_nce(x, k, queue, 0.5),
        lambda x: ref_info_nce(q, x, queue, 0.5),
        lambda x: ref_info_nce(q, k, x, 0.5),
    ]
    for g, f, x in zip(grads, wrt, (q, k, queue), strict=True):
        np.testing.assert_allclose(g, numeric_grad(f, x), atol=2e-5)
    gq, gk = jax.grad(lambda a, b: info_nce(a, b, temperature=0.5), (0, 1))(q, k)
    np.testing.assert_allclose(
        gq, numeric_grad(lambda x: ref_info_nce(x, k, None, 0.5), q), atol=2e-5
    )
    np.testing.assert_allclose(
        gk, numeric_grad(lambda x: ref_info_nce(q, x, None, 0.5), k), atol=2e-5
    )

    q, k, queue = queries_keys_queue(9, n=8, m=7)
    rng = np.random.RandomState(9)
    perm, queue_perm = rng.permutation(8), rng.permutation(7)
    for negatives in (None, queue):
        value = info_nce(q, k, negatives)
        shuffled = None if negatives is None else 5.0 * negatives[queue_perm]
        np.testing.assert_allclose(
            info_nce(3.0 * q[perm], 0.2 * k[perm], shuffled), value, rtol=1e-5
        )
        assert abs(info_nce(q, k[perm], negatives) - value) > 1e-2


def test_info_nce_vmap_bfloat16_and_shape_check():
    q, k, queue = queries_keys_queue(10)
    stacked = [np.stack([x, 2 * x[::-1]]) for x in (q, k, queue)]
    batched = jax.vmap(info_nce)(*stacked)
    np.testing.assert_allclose(
        batched, [info_nce(*xs) for xs in zip(*stacked, strict=True)], rtol=1e-5
    )
    low = info_nce(*(jnp.asarray(x, jnp.bfloat16) for x in (q, k, queue)))
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, info_nce(q, k, queue), rtol=2e-2)
    with pytest.raises(ValueError, match="same shape"):
        info_nce(q, k[:-1])


def ref_info_nce_with_query_negatives(q, k, negatives, own, t):
    """InfoNCE where query i also contrasts with its own rows own[i] (MoCHi), float64."""
    losses = []
    for i in range(len(q)):
        shared = range(len(k)) if negatives is None else [None, *range(len(negatives))]
        logits = [
            cos(q[i], k[i] if j is None else (k[j] if negatives is None else negatives[j]))
            for j in shared
        ]
        logits = np.array(logits + [cos(q[i], h) for h in own[i]]) / t
        label = i if negatives is None else 0
        losses.append(-logits[label] + np.log(np.sum(np.exp(logits))))
    return np.mean(losses)


@pytest.mark.parametrize("t", [0.2, 1.0])
@pytest.mark.parametrize("with_queue", [False, True])
def test_info_nce_with_per_query_negatives_matches_reference(t, with_queue):
    q, k, queue = queries_keys_queue(15, n=6, m=9, d=5)
    own = np.random.RandomState(15).normal(size=(6, 4, 5)).astype(np.float32)
    queue = queue if with_queue else None
    value = info_nce(q, k, queue, temperature=t, query_negatives=own)
    expected = ref_info_nce_with_query_negatives(q, k, queue, own, t)
    np.testing.assert_allclose(value, expected, rtol=2e-5)
    # Row i of ``own`` is query i's alone: moving it to another query changes the loss.
    swapped = own[[1, 0, 2, 3, 4, 5]]
    assert abs(info_nce(q, k, queue, temperature=t, query_negatives=swapped) - value) > 1e-3
    # No extra rows: the plain loss.
    np.testing.assert_allclose(
        info_nce(q, k, queue, temperature=t, query_negatives=own[:, :0]),
        info_nce(q, k, queue, temperature=t),
        rtol=1e-6,
    )
    grad = jax.grad(lambda a: info_nce(a, k, queue, temperature=t, query_negatives=own))(q)
    np.testing.assert_allclose(
        grad,
        numeric_grad(lambda x: ref_info_nce_with_query_negatives(x, k, queue, own, t), q),
        atol=2e-5,
    )
    with pytest.raises(ValueError, match="query_negatives"):
        info_nce(q, k, queue, query_negatives=own[:-1])


# ---- SupCon ----


@pytest.mark.parametrize("t", TEMPERATURES)
def test_supcon_matches_reference_with_labels(t):
    rng = np.random.RandomState(11)
    features = rng.normal(size=(7, 3, 5)).astype(np.float32)
    labels = np.array([0, 1, 0, 2, 1, 0, 1])
    value = supcon(features, labels, temperature=t)
    np.testing.assert_allclose(value, ref_supcon(features, labels, t), rtol=2e-5)


def test_supcon_anchors_without_positives_are_left_out():
    rng = np.random.RandomState(12)
    features = rng.normal(size=(6, 1, 5)).astype(np.float32)  # one view: only labels pair up
    labels = np.array([0, 1, 0, 2, 3, 1])  # classes 2 and 3 have a single member
    value = supcon(features, labels, temperature=0.1)
    ref = ref_supcon(features, labels, 0.1)  # mean over the 4 anchors with a positive
    np.testing.assert_allclose(value, ref, rtol=2e-5)
    assert abs(value - ref * 4 / 6) > 1e-2  # not the mean over all 6 with zeros
    assert supcon(features, np.arange(6)) == 0.0  # no positives at all
    grads = jax.grad(lambda f: supcon(f, labels, temperature=0.1))(features)
    assert np.all(np.isfinite(grads))


def test_supcon_gradients_invariances_vmap_bfloat16():
    rng = np.random.RandomState(13)
    features = rng.normal(size=(4, 2, 3)).astype(np.float32)
    labels = np.array([1, 0, 1, 1])
    grads = jax.grad(lambda f: supcon(f, labels, temperature=0.5))(features)
    np.testing.assert_allclose(
        grads, numeric_grad(lambda f: ref_supcon(f, labels, 0.5), features), atol=2e-5
    )

    features = rng.normal(size=(8, 3, 5)).astype(np.float32)
    labels = np.array([0, 1, 0, 2, 1, 0, 3, 2])
    value = supcon(features, labels)
    perm = rng.permutation(8)
    scale = rng.uniform(0.1, 10.0, size=(8, 3, 1)).astype(np.float32)
    np.testing.assert_allclose(supcon(scale * features[perm], labels[perm]), value, rtol=1e-5)
    np.testing.assert_allclose(supcon(features[:, ::-1], labels), value, rtol=1e-5)
    assert abs(supcon(features, labels[perm]) - value) > 1e-2

    batched = jax.vmap(supcon)(np.stack([features, -features]), np.stack([labels, labels]))
    np.testing.assert_allclose(batched, [value, supcon(-features, labels)], rtol=1e-5)
    low = supcon(jnp.asarray(features, jnp.bfloat16), labels)
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, value, rtol=2e-2)
    with pytest.raises(ValueError, match="N, V, D"):
        supcon(features[:, 0])
    with pytest.raises(ValueError, match="labels"):
        supcon(features, labels[:-1])


# ---- sharding: the loss of the sharded global batch equals the unsharded loss ----


def test_losses_of_sharded_batch_equal_unsharded():
    assert jax.device_count() == 8
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
    z1, z2 = pair(14, n=16)
    queue = np.random.RandomState(14).normal(size=(24, 5)).astype(np.float32)
    labels = np.arange(16) % 5

    @jax.jit
    def values_and_grads(z1, z2, queue, labels):  # one program: one compilation
        cases = {
            "nt_xent": (C.nt_xent, (z1, z2)),
            "debiased": (C.debiased_nt_xent, (z1, z2)),
            "hard_negative": (C.hard_negative_nt_xent, (z1, z2)),
            "dcl": (C.dcl, (z1, z2)),
            "dclw": (C.dclw, (z1, z2)),
            "info_nce_batch": (C.info_nce, (z1, z2)),
            "info_nce_queue": (C.info_nce, (z1, z2, queue)),
            "supcon": (C.supcon, (jnp.stack([z1, z2], 1), labels)),
        }
        return {name: jax.value_and_grad(loss)(*args) for name, (loss, args) in cases.items()}

    args = (z1, z2, queue, labels)
    sharded = [jax.device_put(x, sharding) for x in args]
    assert all(len(x.sharding.device_set) == 8 for x in sharded)
    results, expected = values_and_grads(*sharded), values_and_grads(*args)
    for name, (value, grads) in results.items():
        np.testing.assert_allclose(value, expected[name][0], rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(grads, expected[name][1], rtol=1e-4, atol=1e-6, err_msg=name)


def ref_soft_supcon(features, targets, t):
    """Every view an anchor; view b weighs w_ab = <t_a, t_b> as a positive of anchor a."""
    n, v = features.shape[:2]
    views = [(features[a, b], targets[a]) for b in range(v) for a in range(n)]
    losses = []
    for i, (zi, ti) in enumerate(views):
        others = [k for k in range(len(views)) if k != i]
        weights = np.array([ti @ views[k][1] for k in others], np.float64)
        if weights.sum() <= 0:
            continue
        logits = np.array([cos(zi, views[k][0]) / t for k in others])
        log_p = logits - np.log(np.exp(logits).sum())
        losses.append(-(weights * log_p).sum() / weights.sum())
    return np.mean(losses)


def test_supcon_with_soft_targets():
    rng = np.random.RandomState(13)
    features = rng.normal(size=(6, 2, 5)).astype(np.float32)
    labels = np.array([0, 1, 0, 2, 1, 3])
    onehot = np.eye(4)[labels]
    # One-hot targets are the labels exactly.
    np.testing.assert_allclose(supcon(features, targets=onehot, temperature=0.2),
                               supcon(features, labels, temperature=0.2), rtol=1e-6)
    perm, lam = rng.permutation(6), rng.uniform(size=6)
    soft = lam[:, None] * onehot + (1 - lam[:, None]) * onehot[perm]
    np.testing.assert_allclose(supcon(features, targets=soft.astype(np.float32),
                                      temperature=0.2),
                               ref_soft_supcon(features, soft, 0.2), rtol=2e-5)
    with pytest.raises(ValueError, match="targets must be"):
        C.supcon(features, labels, targets=onehot)
