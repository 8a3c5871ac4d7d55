"""i-Mix's loss against float64 NumPy, and the mixing ops against their formulas and the
reference CutMix sampler re-implemented in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import numeric_grad
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cl_jax import mixing
from cl_jax.losses.contrastive import info_nce
from cl_jax.losses.imix import imix_info_nce

# Jitted once per shape (the temperature and lam traced), to keep compilations few.
imix = jax.jit(imix_info_nce, static_argnames="block_size")
loss_and_grads = jax.jit(
    jax.value_and_grad(imix_info_nce, argnums=(0, 1)), static_argnames="block_size"
)


def embeddings(seed, n, d=5):
    rng = np.random.RandomState(seed)
    q = rng.normal(size=(n, d)) * rng.uniform(0.3, 3.0, size=(n, 1))
    k = q + 0.8 * rng.normal(size=(n, d))
    return q.astype(np.float32), k.astype(np.float32), rng.permutation(n)


# ---- float64 references ----


def ref_imix(q, k, perm, lam, t, negatives=None):
    """One query at a time: log-softmax over the keys (then the negatives, never targets),
    the two targets weighted by lam."""
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    candidates = k if negatives is None else np.concatenate([k, np.asarray(negatives,
                                                                           np.float64)])
    lam = np.broadcast_to(np.asarray(lam, np.float64), (len(q),))
    losses = []
    for i in range(len(q)):
        logits = np.array([q[i] @ c / np.linalg.norm(q[i]) / np.linalg.norm(c) / t
                           for c in candidates])
        log_p = logits - np.log(np.sum(np.exp(logits)))
        losses.append(-(lam[i] * log_p[i] + (1 - lam[i]) * log_p[perm[i]]))
    return np.mean(losses)




def ref_cutmix_lam(rng, h, w, alpha):
    """clovaai/CutMix-PyTorch ``rand_bbox`` and its adjusted lam, in NumPy."""
    lam = rng.beta(alpha, alpha)
    cut_h, cut_w = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
    cy, cx = rng.randint(h), rng.randint(w)
    y1, y2 = np.clip(cy - cut_h // 2, 0, h), np.clip(cy + cut_h // 2, 0, h)
    x1, x2 = np.clip(cx - cut_w // 2, 0, w), np.clip(cx + cut_w // 2, 0, w)
    return 1 - (y2 - y1) * (x2 - x1) / (h * w)


# ---- imix_info_nce ----


@pytest.mark.parametrize("n, t, per_example", [(2, 0.2, False), (5, 0.5, True), (8, 0.1, False),
                                           (8, 0.1, True)])
def test_imix_value_and_gradients_match_reference(n, t, per_example):
    q, k, perm = embeddings(n, n)
    lam = np.random.RandomState(n).uniform(size=n if per_example else ()).astype(np.float32)
    value, (gq, gk) = loss_and_grads(q, k, perm, lam, t)
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(value, ref_imix(q, k, perm, lam, t), rtol=1e-5)
    np.testing.assert_allclose(
        gq, numeric_grad(lambda x: ref_imix(x, k, perm, lam, t), q), atol=3e-5)
    np.testing.assert_allclose(
        gk, numeric_grad(lambda x: ref_imix(q, x, perm, lam, t), k), atol=3e-5)


@pytest.mark.parametrize("block_size", [None, 3])
def test_imix_with_queue_negatives_matches_reference(block_size):
    q, k, perm = embeddings(5, 5)
    queue = np.random.RandomState(1).normal(size=(7, 5)).astype(np.float32)
    lam = np.random.RandomState(2).uniform(0.5, 1.0, size=5).astype(np.float32)
    value, grads = jax.value_and_grad(imix_info_nce, argnums=(0, 1))(
        q, k, perm, lam, 0.3, block_size, queue)
    np.testing.assert_allclose(value, ref_imix(q, k, perm, lam, 0.3, queue), rtol=1e-5)
    np.testing.assert_allclose(
        grads[0], numeric_grad(lambda x: ref_imix(x, k, perm, lam, 0.3, queue), q), atol=3e-5)
    np.testing.assert_allclose(
        grads[1], numeric_grad(lambda x: ref_imix(q, x, perm, lam, 0.3, queue), k), atol=3e-5)


def test_mocov2_imix_mixes_queries_against_batch_keys_and_queue():
    """MoCo v2 with ``method.imix``: with alpha -> 0 (lam -> 1) the loss is i-Mix's 'mocon'
    loss of the clean queries (float64 NumPy), keys of the batch then the queue as the
    candidates; with alpha = 1 the queries are mixed and the online probe is off."""
    from conftest import random_batch, tiny_config

    from cl_jax import train
    from cl_jax.errors import ConfigError

    config = tiny_config("mocov2")
    config.method.update(imix="mixup", imix_alpha=1e-4, shuffle_bn_groups=1)
    exp = train.create_experiment(config)
    state, method = train.initial_state(exp), exp.method
    batch = jax.tree.map(jnp.asarray, random_batch(config, 16))
    loss, aux = method.loss(state.params, state.batch_stats, state.extra, batch,
                            jax.random.key(3), 0)
    views = batch["views"][:2]
    outputs, _ = method.forward(state.params, state.batch_stats,
                                [views[1 - v] for v in method.key_views])
    expected = []
    for i, v in enumerate(method.key_views):
        k, _ = method.key_projections(state.extra["target_params"],
                                      state.extra["target_batch_stats"], views[v], None)
        expected.append(ref_imix(outputs[i]["projection"], k, np.arange(16), 1.0,
                                 config.method.temperature, state.extra["queue"][i]))
    np.testing.assert_allclose(loss, np.mean(expected), rtol=1e-4)
    assert aux.probe_logits is None and float(aux.metrics["lam"]) > 0.999
    method.config.imix_alpha = 1.0
    mixed, aux = method.loss(state.params, state.batch_stats, state.extra, batch,
                             jax.random.key(3), 0)
    assert abs(float(mixed) - float(loss)) > 1e-3 and 0.5 <= float(aux.metrics["lam"]) < 1
    for changes, match in ((dict(imix="mixip"), "method.imix is 'mixip'"),
                           (dict(mochi=True), "imix and method.mochi do not combine")):
        bad = tiny_config("mocov2")
        bad.method.update({"imix": "cutmix", **changes})
        with pytest.raises(ConfigError, match=match):
            train.validate(bad)


def test_imix_without_mixing_is_info_nce():
    q, k, perm = embeddings(1, 6)
    t = 0.3
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    kn = k / np.linalg.norm(k, axis=1, keepdims=True)
    logits = qn.astype(np.float64) @ kn.T / t
    cross_entropy = np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits))
    np.testing.assert_allclose(imix(q, k, perm, 1.0, t), cross_entropy, rtol=1e-5)
    np.testing.assert_allclose(imix(q, k, perm, 1.0, t),
                               jax.jit(info_nce)(q, k, temperature=t), rtol=1e-6)
    # The identity permutation mixes each example with itself: any lam is plain InfoNCE.
    np.testing.assert_allclose(imix(q, k, np.arange(6), 0.3, t), cross_entropy, rtol=1e-5)
    # lam = 0: the whole target on perm(i).
    np.testing.assert_allclose(
        imix(q, k, perm, 0.0, t),
        np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(6), perm]), rtol=1e-5)


def test_imix_blockwise_bfloat16_and_shape_checks():
    q, k, perm = embeddings(2, 7)
    lam = np.linspace(0.1, 0.9, 7).astype(np.float32)
    dense = loss_and_grads(q, k, perm, lam, 0.2)
    blocked = loss_and_grads(q, k, perm, lam, 0.2, block_size=3)
    for a, b in zip(jax.tree.leaves(dense), jax.tree.leaves(blocked), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    low = imix(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), perm, lam, 0.2)
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, dense[0], rtol=2e-2)
    with pytest.raises(AssertionError):
        imix_info_nce(q, k, perm[:5], lam)
    with pytest.raises(AssertionError):
        imix_info_nce(q, k[:6], perm, lam)


def test_imix_of_sharded_batch_equals_unsharded():
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
    q, k, perm = embeddings(3, 16)
    lam = np.random.RandomState(3).uniform(size=16).astype(np.float32)
    args = (q, k, perm, lam)
    sharded = [jax.device_put(x, sharding) for x in args]
    assert all(len(x.sharding.device_set) == 8 for x in sharded)
    value, grads = loss_and_grads(*sharded, 0.2)
    expected_value, expected_grads = loss_and_grads(*args, 0.2)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    np.testing.assert_allclose(grads, expected_grads, rtol=1e-4, atol=1e-6)


# ---- mixing: two programs, each vmapped over many keys ----

IMAGES = np.random.RandomState(0).normal(size=(6, 7, 9, 2)).astype(np.float32)
KEYS = jax.random.split(jax.random.key(2), 4000)


@jax.jit
def draws(keys, alpha):
    """For each key: (mixed, perm, lam) of mixup, of mixup with one lam per row and
    ``lam_at_least_half``, and of CutMix, on ``IMAGES``."""

    def one(key):
        return {"mixup": mixing.mixup(key, IMAGES, alpha),
                "per_example": mixing.mixup(key, IMAGES, alpha, per_example=True,
                                            lam_at_least_half=True),
                "cutmix": mixing.cutmix(key, IMAGES, alpha)}

    return jax.vmap(one)(keys)


@jax.jit
def sampled_lams(alpha):
    """mixup's and CutMix's lam for each of the 4000 ``KEYS``, then both with
    ``lam_at_least_half``."""
    tiny = IMAGES[:, :4, :4]

    def lams(key):
        return tuple(op(key, tiny, alpha, lam_at_least_half=half)[2]
                     for half in (False, True) for op in (mixing.mixup, mixing.cutmix))

    return jax.vmap(lams)(KEYS)


def draws_of(keys, alpha):
    return jax.tree.map(np.asarray, draws(keys, alpha))


def test_mixup_is_the_formula():
    out = draws_of(KEYS[:48], 1.0)
    for name, lam_shape in (("mixup", ()), ("per_example", (6,))):
        for mixed, perm, lam in zip(*out[name], strict=True):
            assert lam.shape == lam_shape and lam.dtype == np.float32
            assert sorted(perm) == list(range(6))
            assert np.all((0 <= lam) & (lam <= 1))
            w = lam.astype(np.float64).reshape(-1, 1, 1, 1)
            expected = w * IMAGES + (1 - w) * IMAGES.astype(np.float64)[perm]
            np.testing.assert_allclose(mixed, expected, rtol=1e-6, atol=1e-6)
    assert np.all(out["per_example"][2] >= 0.5)


def test_lam_distributions():
    for alpha in (1.0, 2.0):
        mix_lam, cut_lam, mix_half, cut_half = map(np.asarray, sampled_lams(alpha))
        # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)).
        assert abs(mix_lam.mean() - 0.5) < 0.02
        assert abs(mix_lam.var() - 1 / (4 * (2 * alpha + 1))) < 0.01
        # CutMix's adjusted lam is not Beta: compare with the reference sampler's.
        rng = np.random.RandomState(int(alpha))
        ref = np.array([ref_cutmix_lam(rng, 4, 4, alpha) for _ in range(4000)])
        se = np.sqrt(ref.var() / 4000 + cut_lam.var() / 4000)
        assert abs(cut_lam.mean() - ref.mean()) < 4 * se
        assert abs(cut_lam.std() - ref.std()) < 0.03
        np.testing.assert_allclose(np.mean(cut_lam == 1), np.mean(ref == 1), atol=0.04)
        # max(lam, 1 - lam) of the same draws.
        np.testing.assert_allclose(mix_half, np.maximum(mix_lam, 1 - mix_lam), rtol=1e-6)
        assert np.all(cut_half >= 0.5) and cut_half.mean() > cut_lam.mean()


def test_cutmix_pastes_one_clipped_rectangle_of_area_one_minus_lam():
    h, w = IMAGES.shape[1:3]
    touches_border = interior = 0
    for m, p, lam in zip(*draws_of(KEYS[:48], 1.0)["cutmix"], strict=True):
        row = int(np.argmax(p != np.arange(6)))  # a row mixed with another image
        inside = np.any(m[row] != IMAGES[row], axis=-1)
        rows, cols = inside.any(1), inside.any(0)
        np.testing.assert_array_equal(inside, np.outer(rows, cols))  # a product of two sets
        for axis in (rows, cols):  # of consecutive rows / columns
            assert np.all(np.diff(np.flatnonzero(axis)) == 1)
        assert inside.sum() == round((1 - lam) * h * w)
        np.testing.assert_allclose(1 - inside.sum() / (h * w), lam, atol=1e-6)
        np.testing.assert_array_equal(m, np.where(inside[None, :, :, None], IMAGES[p], IMAGES))
        if inside.any():
            on_edge = any((rows[0], rows[-1], cols[0], cols[-1]))
            touches_border += on_edge
            interior += not on_edge
    assert touches_border and interior  # clipped and unclipped boxes both drawn


def test_mixing_is_deterministic_per_key():
    first, again = draws_of(KEYS[:48], 1.0), draws_of(KEYS[:48], 1.0)
    for x, y in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(x, y)
    for mixed, perm, _ in first.values():  # different keys, different draws
        assert len(np.unique(perm, axis=0)) > 40
        assert len(np.unique(mixed.reshape(48, -1), axis=0)) > 40
    assert len(np.unique(first["mixup"][2])) == 48


def test_alpha_edge_cases():
    for alpha in (0.0, -1.0):  # no mixing
        for mixed, _, lam in draws_of(KEYS[:48], alpha).values():
            np.testing.assert_array_equal(lam, 1.0)
            np.testing.assert_array_equal(mixed, np.broadcast_to(IMAGES, mixed.shape))
    small, _, _, _ = map(np.asarray, sampled_lams(0.05))
    assert np.all(np.isfinite(small)) and np.mean((small < 0.05) | (small > 0.95)) > 0.7
    large, _, _, _ = map(np.asarray, sampled_lams(200.0))
    assert np.all(np.abs(large - 0.5) < 0.15)


def test_dtypes_and_shape_check():
    key = jax.random.key(7)
    for dtype, mixup_dtype in ((jnp.bfloat16, jnp.bfloat16), (jnp.uint8, jnp.float32)):
        images = jax.ShapeDtypeStruct(IMAGES.shape, dtype)
        mixed, perm, lam = jax.eval_shape(mixing.mixup, key, images, 1.0)
        assert mixed.dtype == mixup_dtype and lam.dtype == jnp.float32
        assert jax.eval_shape(mixing.cutmix, key, images, 1.0)[0].dtype == dtype
    with pytest.raises(ValueError, match="N, H, W, C"):
        mixing.cutmix(key, IMAGES[..., 0], 1.0)


def test_mix_labels():
    labels = np.eye(4)[[0, 2, 1, 3, 3]]
    perm = np.array([4, 0, 1, 3, 2])
    mix_labels = jax.jit(mixing.mix_labels)
    np.testing.assert_allclose(
        mix_labels(labels, perm, 0.7), 0.7 * labels + 0.3 * labels[perm], rtol=1e-6)
    lam = np.array([0.1, 0.5, 0.9, 1.0, 0.0])
    expected = lam[:, None] * labels + (1 - lam[:, None]) * labels[perm]
    mixed = mix_labels(labels, perm, lam)
    assert mixed.dtype == jnp.float32
    np.testing.assert_allclose(mixed, expected, rtol=1e-6)
    np.testing.assert_allclose(mixed.sum(1), 1.0, rtol=1e-6)


def test_imix_method_mixes_the_first_views_against_clean_keys():
    """With alpha -> 0 (lam -> 1 after max(lam, 1 - lam)) the method's loss is InfoNCE of
    the first views' projections against the second views'; with alpha = 1 the first views
    are mixed (the loss moves) and the reported lam is the drawn one, about 0.75 on average."""
    from conftest import random_batch, tiny_config

    from cl_jax import losses, train

    config = tiny_config("imix")
    config.method.alpha = 1e-4
    exp = train.create_experiment(config)
    state = train.initial_state(exp)
    method = exp.method
    batch = jax.tree.map(jnp.asarray, random_batch(config, 16))
    rng = jax.random.key(3)
    loss, aux = method.loss(state.params, state.batch_stats, state.extra, batch, rng, 0)
    outputs, _ = method.forward(state.params, state.batch_stats, tuple(batch["views"][:2]))
    clean = losses.info_nce(outputs[0]["projection"], outputs[1]["projection"],
                            temperature=config.method.temperature)
    np.testing.assert_allclose(loss, clean, rtol=1e-4)
    assert float(aux.metrics["lam"]) > 0.999
    method.config.alpha = 1.0
    mixed, aux = method.loss(state.params, state.batch_stats, state.extra, batch, rng, 0)
    assert abs(float(mixed) - float(clean)) > 1e-3 and 0.5 <= float(aux.metrics["lam"]) < 1
