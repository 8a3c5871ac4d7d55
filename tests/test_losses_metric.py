"""Metric-learning losses against float64 NumPy references written with explicit loops."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cl_jax.losses import metric

# All of length 8 so that each jitted loss compiles once. The first has a single-member class
# (an anchor without positive); the last has one pair only.
LABEL_SETS = [
    np.array([0, 0, 1, 1, 2, 3, 3, 3]),
    np.array([1, 0, 1, 2, 0, 1, 3, 3]),
    np.array([0, 1, 2, 3, 4, 4, 5, 6]),
]

# Margins and temperatures are traced arguments: one compilation per loss and shape.
contrastive = jax.jit(metric.contrastive_margin)
triplet = jax.jit(metric.triplet_margin, static_argnames="mining")
lifted = jax.jit(metric.lifted_structured)
snn = jax.jit(metric.soft_nearest_neighbor)
n_pair = jax.jit(metric.n_pair)
nce = jax.jit(metric.nce, static_argnames="num_noise")


def embeddings(seed, n, d=4, scale=1.0):
    return np.random.RandomState(seed).normal(size=(n, d)).astype(np.float32) * scale


def dist64(x):
    x = np.asarray(x, np.float64)
    n = len(x)
    return np.array([[np.linalg.norm(x[i] - x[j]) for j in range(n)] for i in range(n)])


# ---- references ----


def ref_contrastive(x, y, margin):
    d, n = dist64(x), len(x)
    terms = []
    for i, j in itertools.combinations(range(n), 2):
        if y[i] == y[j]:
            terms.append(d[i, j] ** 2)
        else:
            terms.append(max(0.0, margin - d[i, j]) ** 2)
    return np.mean(terms)


def ref_triplet_all(x, y, margin):
    d, n = dist64(x), len(x)
    terms = [
        max(0.0, d[a, p] - d[a, k] + margin)
        for a, p, k in itertools.product(range(n), repeat=3)
        if a != p and y[a] == y[p] and y[k] != y[a]
    ]
    return np.mean(terms) if terms else 0.0


def ref_triplet_hard(x, y, margin):
    d, n = dist64(x), len(x)
    terms = []
    for a in range(n):
        pos = [d[a, p] for p in range(n) if p != a and y[p] == y[a]]
        neg = [d[a, k] for k in range(n) if y[k] != y[a]]
        if pos and neg:
            terms.append(max(0.0, max(pos) - min(neg) + margin))
    return np.mean(terms) if terms else 0.0


def ref_triplet_semihard(x, y, margin):
    d, n = dist64(x), len(x)
    terms = []
    for a in range(n):
        neg = [k for k in range(n) if y[k] != y[a]]
        if not neg:
            continue
        for p in range(n):
            if p == a or y[p] != y[a]:
                continue
            farther = [d[a, k] for k in neg if d[a, k] > d[a, p]]
            d_an = min(farther) if farther else max(d[a, k] for k in neg)
            terms.append(max(0.0, d[a, p] - d_an + margin))
    return np.mean(terms) if terms else 0.0


def tfa_semihard(x, y, margin):
    """tensorflow-addons' triplet_semihard_loss algorithm (tiled masked min/max), in NumPy."""
    pdist = dist64(x)
    n = len(y)
    adjacency = y[:, None] == y[None, :]
    adjacency_not = ~adjacency
    tile = np.tile(pdist, (n, 1))
    mask = np.tile(adjacency_not, (n, 1)) & (tile > pdist.T.reshape(-1, 1))
    mask_final = (mask.sum(1, keepdims=True) > 0).reshape(n, n).T
    row_max = tile.max(1, keepdims=True)
    outside = (((tile - row_max) * mask).min(1, keepdims=True) + row_max).reshape(n, n).T
    row_min = pdist.min(1, keepdims=True)
    inside = np.tile(((pdist - row_min) * adjacency_not).max(1, keepdims=True) + row_min, (1, n))
    semi = np.where(mask_final, outside, inside)
    mask_pos = adjacency.astype(float) - np.eye(n)
    return np.maximum((margin + pdist - semi) * mask_pos, 0.0).sum() / mask_pos.sum()


def ref_lifted(x, y, margin):
    d, n = dist64(x), len(x)
    total, num_pos = 0.0, 0
    for i, j in itertools.combinations(range(n), 2):
        if y[i] != y[j]:
            continue
        num_pos += 1
        s = sum(np.exp(margin - d[i, k]) for k in range(n) if y[k] != y[i])
        s += sum(np.exp(margin - d[j, k]) for k in range(n) if y[k] != y[j])
        if s > 0:
            total += max(0.0, np.log(s) + d[i, j]) ** 2
    return total / (2 * num_pos)


def ref_n_pair(a, p):
    a, p = np.asarray(a, np.float64), np.asarray(p, np.float64)
    n = len(a)
    out = []
    for i in range(n):
        s = sum(np.exp(a[i] @ p[j] - a[i] @ p[i]) for j in range(n) if j != i)
        out.append(np.log1p(s))
    return np.mean(out)


def ref_nce(s_data, s_noise, lp_data, lp_noise, k):
    sigmoid = lambda u: 1.0 / (1.0 + np.exp(-u))
    total = 0.0
    for i in range(len(s_data)):
        g = s_data[i] - np.log(k * np.exp(lp_data[i]))
        term = np.log(sigmoid(g))
        for j in range(k):
            g = s_noise[i, j] - np.log(k * np.exp(lp_noise[i, j]))
            term += np.log(1.0 - sigmoid(g))
        total += term
    return -total / len(s_data)


def ref_snn(x, y, temperature):
    x = np.asarray(x, np.float64)
    n = len(x)
    out = []
    for i in range(n):
        w = [np.exp(-np.sum((x[i] - x[j]) ** 2) / temperature) for j in range(n)]
        num = sum(w[j] for j in range(n) if j != i and y[j] == y[i])
        den = sum(w[j] for j in range(n) if j != i)
        if any(j != i and y[j] == y[i] for j in range(n)):
            out.append(-np.log(num / den))
    return np.mean(out)


MARGINS = (0.2, 1.0, 3.0)
LOSSES = {  # name: (jitted loss(x, y, param), reference(x, y, param), params)
    "contrastive": (contrastive, ref_contrastive, MARGINS),
    "lifted": (lifted, ref_lifted, MARGINS),
    "triplet-all": (functools.partial(triplet, mining="all"), ref_triplet_all, MARGINS),
    "triplet-hard": (functools.partial(triplet, mining="hard"), ref_triplet_hard, MARGINS),
    "triplet-semihard": (
        functools.partial(triplet, mining="semihard"),
        ref_triplet_semihard,
        MARGINS,
    ),
    "snn": (snn, ref_snn, (0.5, 1.0, 4.0)),
}


# ---- values ----


@pytest.mark.parametrize(
    "name,param", [(name, p) for name, (_, _, params) in LOSSES.items() for p in params]
)
def test_matches_reference(name, param):
    fn, ref, _ = LOSSES[name]
    for seed, y in enumerate(LABEL_SETS):
        x = embeddings(seed, len(y), d=4, scale=0.7 + 0.3 * seed)
        got = fn(jnp.asarray(x), jnp.asarray(y), param)
        assert got.dtype == jnp.float32 and got.shape == ()
        np.testing.assert_allclose(got, ref(x, y, param), rtol=2e-5, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_semihard_matches_tensorflow_addons_algorithm(margin):
    for seed in range(4):
        y = np.array([0, 0, 0, 1, 1, 2, 3, 3])
        x = embeddings(10 + seed, len(y))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        got = triplet(jnp.asarray(x), jnp.asarray(y), margin, mining="semihard")
        np.testing.assert_allclose(got, tfa_semihard(x, y, margin), rtol=2e-5, atol=2e-6)


def test_triplet_hand_computed():
    # 1-D points: class 0 at 0 and 1, class 1 at 3 and 0.5; margin 0.5.
    x = jnp.array([[0.0], [1.0], [3.0], [0.5]])
    y = jnp.array([0, 0, 1, 1])
    # Semi-hard, per (a, p): (0, 1) d_ap=1, negatives at 3, 0.5 -> 3 -> 0;
    # (1, 0) d_ap=1, negatives at 2, 0.5 -> 2 -> 0; (2, 3) d_ap=2.5, negatives at 3, 2 -> 3
    # -> 0; (3, 2) d_ap=2.5, negatives at 0.5, 0.5, none farther -> farthest 0.5 -> 2.5.
    np.testing.assert_allclose(triplet(x, y, 0.5, mining="semihard"), 2.5 / 4)
    # Batch-hard, per anchor: 1-0.5+0.5, 1-0.5+0.5, 2.5-2+0.5, 2.5-0.5+0.5.
    np.testing.assert_allclose(triplet(x, y, 0.5, mining="hard"), (1 + 1 + 1 + 2.5) / 4)


def test_triplet_no_valid_triplet_is_zero():
    x = jnp.asarray(embeddings(0, 8))
    for mining in ("all", "hard", "semihard"):
        assert triplet(x, jnp.zeros(8, jnp.int32), 0.2, mining=mining) == 0.0
        assert triplet(x, jnp.arange(8), 0.2, mining=mining) == 0.0
    with pytest.raises(ValueError, match="mining"):
        metric.triplet_margin(x, jnp.arange(5), mining="easy")


def test_lifted_single_class_pairs_contribute_zero():
    x = embeddings(3, 8)
    np.testing.assert_allclose(lifted(jnp.asarray(x), jnp.zeros(8, jnp.int32), 1.0), 0.0)


@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0])
def test_n_pair(scale):
    a, p = embeddings(0, 8, 4, scale), embeddings(1, 8, 4, scale)
    got = n_pair(jnp.asarray(a), jnp.asarray(p))
    np.testing.assert_allclose(got, ref_n_pair(a, p), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_nce(k):
    rng = np.random.RandomState(k)
    n = 6
    s_data, s_noise = rng.normal(size=n), rng.normal(size=(n, k)) * 2
    lp_data, lp_noise = rng.normal(size=n) - 2, rng.normal(size=(n, k)) - 2
    args = [jnp.asarray(v, jnp.float32) for v in (s_data, s_noise, lp_data, lp_noise)]
    got = nce(*args, num_noise=k)
    np.testing.assert_allclose(got, ref_nce(s_data, s_noise, lp_data, lp_noise, k), rtol=2e-5)
    with pytest.raises(ValueError, match="num_noise"):
        metric.nce(*args, num_noise=k + 1)


def test_nce_optimum_is_log_density_ratio():
    # For data drawn from p_n itself, the NCE optimum is s = log p_n: gradient w.r.t. a shared
    # offset c of s vanishes in expectation; check that the loss is minimised near c=0.
    rng = np.random.RandomState(0)
    k, n = 4, 4000
    data, noise = rng.normal(size=n), rng.normal(size=(n, k))
    log_pn = lambda u: -0.5 * u**2 - 0.5 * np.log(2 * np.pi)

    def loss(c):
        return nce(
            jnp.asarray(log_pn(data) + c),
            jnp.asarray(log_pn(noise) + c),
            jnp.asarray(log_pn(data)),
            jnp.asarray(log_pn(noise)),
            k,
        )

    offsets = np.linspace(-1, 1, 21)
    assert abs(offsets[np.argmin([loss(c) for c in offsets])]) <= 0.1


# ---- invariances ----


@pytest.mark.parametrize("name", LOSSES)
def test_permutation_invariance(name):
    fn, _, params = LOSSES[name]
    y = LABEL_SETS[0]
    x = embeddings(5, len(y))
    perm = np.random.RandomState(1).permutation(len(y))
    np.testing.assert_allclose(
        fn(jnp.asarray(x), jnp.asarray(y), params[1]),
        fn(jnp.asarray(x[perm]), jnp.asarray(y[perm]), params[1]),
        rtol=1e-5,
    )


def test_n_pair_permutation_invariance():
    a, p = embeddings(0, 8), embeddings(1, 8)
    perm = np.random.RandomState(2).permutation(8)
    np.testing.assert_allclose(n_pair(a, p), n_pair(a[perm], p[perm]), rtol=1e-5)


def test_distance_losses_invariant_to_translation_and_rotation():
    y = LABEL_SETS[0]
    x = embeddings(6, len(y))
    rot, _ = np.linalg.qr(np.random.RandomState(3).normal(size=(4, 4)))
    moved = (x @ rot + np.array([1.0, -2.0, 0.5, 0.0])).astype(np.float32)
    for name, fn in GRAD_FNS.items():
        np.testing.assert_allclose(
            fn(jnp.asarray(x), y), fn(jnp.asarray(moved), y), rtol=1e-4, atol=1e-5, err_msg=name
        )


# ---- autodiff, transforms, dtypes, sharding ----

# Each loss at its middle parameter (margin 1, temperature 1), as a function of (x, y).
GRAD_FNS = {
    name: lambda x, y, fn=fn, p=params[1]: fn(x, y, p) for name, (fn, _, params) in LOSSES.items()
}
VALUE_AND_GRAD = {name: jax.jit(jax.value_and_grad(fn)) for name, fn in GRAD_FNS.items()}


@pytest.mark.parametrize("name", GRAD_FNS)
def test_gradient_finite_with_coincident_embeddings(name):
    y = jnp.asarray(LABEL_SETS[0])
    x = embeddings(7, len(y))
    x[1] = x[0]  # a positive pair at distance 0
    x[4] = x[2]  # a negative pair at distance 0
    value, grad = VALUE_AND_GRAD[name](jnp.asarray(x), y)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert np.any(grad != 0)


@pytest.mark.parametrize("name", GRAD_FNS)
def test_gradient_matches_finite_differences(name):
    y = jnp.asarray(LABEL_SETS[1])
    x = jnp.asarray(embeddings(8, len(y)))
    fn = GRAD_FNS[name]
    _, grad = VALUE_AND_GRAD[name](x, y)
    direction = jnp.asarray(np.random.RandomState(9).normal(size=x.shape), jnp.float32)
    eps = 1e-2
    fd = (fn(x + eps * direction, y) - fn(x - eps * direction, y)) / (2 * eps)
    np.testing.assert_allclose(jnp.sum(grad * direction), fd, rtol=5e-2, atol=5e-3)


def test_vmap_over_groups():
    y = np.stack([LABEL_SETS[0], LABEL_SETS[0][::-1]])
    x = np.stack([embeddings(1, 8), embeddings(2, 8)])
    for fn in GRAD_FNS.values():
        batched = jax.vmap(fn)(jnp.asarray(x), jnp.asarray(y))
        np.testing.assert_allclose(batched, [fn(x[0], y[0]), fn(x[1], y[1])], rtol=1e-5)
    a, p = np.stack([embeddings(3, 5), embeddings(4, 5)]), np.stack([embeddings(5, 5)] * 2)
    np.testing.assert_allclose(
        jax.vmap(n_pair)(a, p), [n_pair(a[0], p[0]), n_pair(a[1], p[1])], rtol=1e-5
    )
    args = [np.random.RandomState(6).normal(size=(2, 5, *tail)) for tail in ((), (3,), (), (3,))]
    batched = jax.vmap(lambda *a: metric.nce(*a, num_noise=3))(*args)
    expected = [nce(*(a[g] for a in args), num_noise=3) for g in range(2)]
    np.testing.assert_allclose(batched, expected, rtol=1e-5)


def test_bfloat16_input_gives_float32():
    y = jnp.asarray(LABEL_SETS[0])
    x = jnp.asarray(embeddings(11, len(y)))
    for name, fn in GRAD_FNS.items():
        low = jax.jit(fn)(x.astype(jnp.bfloat16), y)
        assert low.dtype == jnp.float32, name
        np.testing.assert_allclose(low, fn(x, y), rtol=5e-2, atol=2e-2, err_msg=name)
    low = n_pair(x.astype(jnp.bfloat16), x[::-1].astype(jnp.bfloat16))
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, n_pair(x, x[::-1]), rtol=5e-2)


def test_sharded_batch_matches_unsharded():
    sharding = NamedSharding(Mesh(jax.devices(), ("data",)), P("data"))
    y = np.repeat(np.arange(6), 3)[:16]
    x = embeddings(12, 16)
    xs, ys = jax.device_put(x, sharding), jax.device_put(y, sharding)
    for name, fn in GRAD_FNS.items():
        np.testing.assert_allclose(jax.jit(fn)(xs, ys), fn(x, y), rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(n_pair(xs, xs[::-1]), n_pair(x, x[::-1]), rtol=1e-5)
