"""BYOL, SimSiam, Barlow Twins and VICReg against float64 NumPy references with loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cl_jax import losses
from cl_jax.losses import non_contrastive as nc

byol = jax.jit(nc.byol)
simsiam = jax.jit(nc.simsiam)
barlow_twins = jax.jit(nc.barlow_twins)
vicreg = jax.jit(nc.vicreg)
vicreg_terms = jax.jit(nc.vicreg_terms)


def pair(seed, n=16, d=5, noise=0.5):
    rng = np.random.RandomState(seed)
    z1 = rng.normal(size=(n, d)) * rng.uniform(0.3, 2.0, size=d) + rng.normal(size=d)
    z2 = z1 + noise * rng.normal(size=(n, d))
    return z1.astype(np.float32), z2.astype(np.float32)


# ---- references ----


def ref_cos(p, z):
    p, z = np.asarray(p, np.float64), np.asarray(z, np.float64)
    return np.array(
        [p[i] @ z[i] / np.linalg.norm(p[i]) / np.linalg.norm(z[i]) for i in range(len(p))]
    )


def ref_barlow(z1, z2, lambda_):
    z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    n, d = z1.shape

    def bn(z):  # BatchNorm1d(affine=False), training mode: biased variance, eps 1e-5
        out = np.empty_like(z)
        for k in range(d):
            col = z[:, k]
            var = sum((v - col.mean()) ** 2 for v in col) / n
            out[:, k] = (col - col.mean()) / np.sqrt(var + 1e-5)
        return out

    a, b = bn(z1), bn(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[s, i] * b[s, j] for s in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambda_ * c**2
    return loss


def ref_vicreg_terms(z1, z2):
    z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
    n, d = z1.shape
    invariance = np.mean([(z1[s, k] - z2[s, k]) ** 2 for s in range(n) for k in range(d)])

    def var_cov(z):
        z = z - z.mean(0)
        std = [np.sqrt(sum(z[s, k] ** 2 for s in range(n)) / (n - 1) + 1e-4) for k in range(d)]
        variance = np.mean([max(0.0, 1 - s) for s in std])
        cov = sum(
            (sum(z[s, i] * z[s, j] for s in range(n)) / (n - 1)) ** 2
            for i in range(d)
            for j in range(d)
            if i != j
        )
        return variance, cov / d

    (v1, c1), (v2, c2) = var_cov(z1), var_cov(z2)
    return {"invariance": invariance, "variance": (v1 + v2) / 2, "covariance": c1 + c2}


# ---- values ----


@pytest.mark.parametrize("seed", range(3))
def test_byol_and_simsiam(seed):
    p, z = pair(seed, n=8)
    cos = ref_cos(p, z)
    np.testing.assert_allclose(byol(p, z), np.mean(2 - 2 * cos), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(simsiam(p, z), -np.mean(cos), rtol=1e-5, atol=1e-6)


def test_byol_is_normalized_squared_error():
    p, z = pair(5, n=8)
    pn, zn = (
        p / np.linalg.norm(p, axis=1, keepdims=True),
        z / np.linalg.norm(z, axis=1, keepdims=True),
    )
    np.testing.assert_allclose(byol(p, z), np.mean(np.sum((pn - zn) ** 2, 1)), rtol=1e-5)
    np.testing.assert_allclose(byol(p, p), 0.0, atol=1e-6)
    np.testing.assert_allclose(simsiam(p, -3 * p), 1.0, rtol=1e-6)


@pytest.mark.parametrize("lambda_", [0.0051, 0.1, 1.0])
def test_barlow_twins(lambda_):
    z1, z2 = pair(1, n=10, d=4)
    np.testing.assert_allclose(
        barlow_twins(z1, z2, lambda_), ref_barlow(z1, z2, lambda_), rtol=2e-5
    )


@pytest.mark.parametrize("seed", range(2))
def test_vicreg_terms_and_total(seed):
    z1, z2 = pair(seed, n=10, d=4)
    z1[:, 0] *= 0.1  # a low-variance dimension, so the variance hinge is active
    ref = ref_vicreg_terms(z1, z2)
    got = vicreg_terms(z1, z2)
    assert set(got) == set(ref)
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], rtol=2e-5, atol=1e-7, err_msg=key)
    assert ref["variance"] > 0
    for coeffs in [(25.0, 25.0, 1.0), (1.0, 2.0, 3.0)]:
        expected = sum(
            c * ref[k]
            for c, k in zip(coeffs, ("invariance", "variance", "covariance"), strict=True)
        )
        np.testing.assert_allclose(vicreg(z1, z2, *coeffs), expected, rtol=2e-5)


def test_vicreg_hand_computed():
    # Uncorrelated columns of +-2: unbiased std = sqrt(16/3 + 1e-4) > 1, so every term is 0.
    z = np.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]], np.float32) * 2
    np.testing.assert_allclose(vicreg(z, z), 0.0, atol=1e-6)
    # Columns of +-0.5: std = sqrt(4 * 0.25 / 3 + 1e-4) < 1 in both dims and both branches.
    std = np.sqrt(4 * 0.25 / 3 + 1e-4)
    np.testing.assert_allclose(vicreg(z * 0.25, z * 0.25), 25.0 * (1 - std), rtol=1e-5)


# ---- invariances ----


def test_batch_permutation_invariance():
    z1, z2 = pair(3)
    perm = np.random.RandomState(0).permutation(len(z1))
    for fn in (byol, simsiam, barlow_twins, vicreg):
        np.testing.assert_allclose(fn(z1, z2), fn(z1[perm], z2[perm]), rtol=1e-5)


def test_cosine_losses_scale_invariant():
    p, z = pair(4, n=8)
    scale = np.random.RandomState(1).uniform(0.1, 10.0, size=(8, 1)).astype(np.float32)
    for fn in (byol, simsiam):
        np.testing.assert_allclose(fn(p, z), fn(p * scale, z * 3.0), rtol=1e-5, atol=1e-6)


def test_barlow_twins_invariant_to_affine_per_dimension():
    z1, z2 = pair(6)
    a = np.random.RandomState(2).uniform(0.5, 4.0, size=5).astype(np.float32)
    np.testing.assert_allclose(
        barlow_twins(z1, z2), barlow_twins(z1 * a + 3.0, z2 - 1.0), rtol=1e-4
    )


# ---- autodiff, transforms, dtypes, sharding ----

FNS = {"byol": byol, "simsiam": simsiam, "barlow_twins": barlow_twins, "vicreg": vicreg}


def test_gradients_finite_and_match_finite_differences():
    z1, z2 = pair(7)
    direction = np.random.RandomState(3).normal(size=z1.shape).astype(np.float32)
    for name, fn in FNS.items():
        grad = jax.jit(jax.grad(fn))(z1, z2)
        assert np.all(np.isfinite(grad)), name
        eps = 1e-2
        fd = (fn(z1 + eps * direction, z2) - fn(z1 - eps * direction, z2)) / (2 * eps)
        np.testing.assert_allclose(np.sum(grad * direction), fd, rtol=2e-2, atol=2e-3, err_msg=name)


def test_gradient_finite_when_views_coincide():
    z1, _ = pair(8)
    for name, fn in FNS.items():
        grad = jax.jit(jax.grad(fn))(z1, z1)
        assert np.all(np.isfinite(grad)), name


def test_vmap():
    z1, z2 = pair(9, n=8)
    stacked1, stacked2 = np.stack([z1, z2]), np.stack([z2, z1 * 2])
    for name, fn in FNS.items():
        np.testing.assert_allclose(
            jax.vmap(fn)(stacked1, stacked2), [fn(z1, z2), fn(z2, z1 * 2)], rtol=1e-5, err_msg=name
        )


def test_bfloat16_input_gives_float32():
    z1, z2 = pair(10)
    for name, fn in FNS.items():
        low = fn(jnp.asarray(z1, jnp.bfloat16), jnp.asarray(z2, jnp.bfloat16))
        assert low.dtype == jnp.float32, name
        np.testing.assert_allclose(low, fn(z1, z2), rtol=5e-2, atol=2e-2, err_msg=name)


def test_sharded_batch_matches_unsharded():
    sharding = NamedSharding(Mesh(jax.devices(), ("data",)), P("data"))
    z1, z2 = pair(11, n=16)
    s1, s2 = jax.device_put(z1, sharding), jax.device_put(z2, sharding)
    for name, fn in FNS.items():
        np.testing.assert_allclose(fn(s1, s2), fn(z1, z2), rtol=1e-5, err_msg=name)
    terms, sharded_terms = vicreg_terms(z1, z2), vicreg_terms(s1, s2)
    for key in terms:
        np.testing.assert_allclose(sharded_terms[key], terms[key], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss", [losses.byol, losses.simsiam, losses.barlow_twins,
                                  losses.vicreg, losses.nt_xent, losses.dcl])
def test_paired_losses_refuse_mismatched_batches_under_jit(loss):
    a, b = jnp.ones((4, 3)), jnp.ones((5, 3))
    with pytest.raises(AssertionError, match="shape"):
        jax.jit(loss)(a, b)
    with pytest.raises(AssertionError, match="rank"):
        jax.jit(loss)(jnp.ones((4, 3, 1)), jnp.ones((4, 3, 1)))
