"""Whitening and BERT-flow post-processing of sentence embeddings, against float64 NumPy
computations written out here (eigendecompositions, Jacobians by jax.jacfwd, densities)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_jax.evaluation import postprocess as pp


def anisotropic(n, d, seed=0):
    """Correlated rows with a large common offset, as language-model embeddings have."""
    rng = np.random.RandomState(seed)
    return rng.randn(n, d) @ (rng.randn(d, d) * np.logspace(0, -2, d)[:, None]) + 5.0


def eig_whitening(x):
    """mu and U diag(S^-1/2) with columns by decreasing variance, from eigh of the (N-1)
    covariance written out."""
    mu = x.sum(0) / len(x)
    cov = (x - mu).T @ (x - mu) / (len(x) - 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    return mu, cov, evecs[:, order] / np.sqrt(evals[order])


def align_signs(w, ref):
    """Flip columns of w to match ref (eigenvectors are defined up to sign)."""
    return w * np.sign(np.sum(w * ref, axis=0))


@pytest.mark.parametrize("dim", [None, 3])
def test_whitening_matches_eigendecomposition_and_whitens(dim):
    x = anisotropic(300, 6)
    mu, _, expected = eig_whitening(x)
    mean, w = pp.whitening(x, dim=dim)
    k = 6 if dim is None else dim
    assert w.shape == (6, k) and w.dtype == np.float64
    np.testing.assert_allclose(mean, mu, rtol=1e-12)
    np.testing.assert_allclose(align_signs(w, expected[:, :k]), expected[:, :k], rtol=1e-7)
    y = pp.apply_whitening(x, mean, w)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(y.T @ y / (len(y) - 1), np.eye(k), atol=1e-9)


def test_whitening_is_inverse_sqrt_covariance_up_to_rotation():
    x = anisotropic(300, 6)
    _, cov, _ = eig_whitening(x)
    evals, evecs = np.linalg.eigh(cov)
    cov_sqrt = evecs @ np.diag(np.sqrt(evals)) @ evecs.T
    _, w = pp.whitening(x)
    # W = Sigma^-1/2 R with R orthogonal, i.e. Sigma^1/2 W is a rotation.
    rotation = cov_sqrt @ w
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(6), atol=1e-9)
    np.testing.assert_allclose(w @ w.T, np.linalg.inv(cov), rtol=1e-7)
    # Hence the whitened embeddings' cosines ignore any invertible affine map of the input.
    a = np.random.RandomState(1).randn(6, 6)
    y = pp.apply_whitening(x, *pp.whitening(x))
    y_mapped = pp.apply_whitening(x @ a + 3.0, *pp.whitening(x @ a + 3.0))
    np.testing.assert_allclose(y_mapped @ y_mapped.T, y @ y.T, atol=1e-8)


def test_whitening_rank_deficient_stays_finite():
    x = anisotropic(4, 6)  # 4 rows span a 3-dimensional affine subspace
    x[:, 5] = 0.25  # and a dead unit: an exactly zero variance
    mean, w = pp.whitening(x)
    assert np.all(np.isfinite(w))
    y = pp.apply_whitening(x, mean, w)
    np.testing.assert_allclose(y[:, :3].T @ y[:, :3] / 3, np.eye(3), atol=1e-9)
    assert np.abs(y[:, 3:]).max() < 1e-6  # the unspanned directions are not blown up


# One architecture and one data shape for all flow tests: fewer compilations.
FLOW = {"num_layers": 4, "hidden": 16}
N, D = 2000, 5  # D odd, so the coupling's halves differ in size


def bananas(n, seed=0):
    """Two independent 2-D bananas (c = a^2 + noise) and a normal g, mixed by A and shifted;
    with their exact log-density log N(a) + log N(c; a^2, s^2) + ... + log N(g) - log|det A|."""
    rng = np.random.RandomState(seed)
    a, b, g = rng.randn(3, n)
    s = 0.3
    c, e = a**2 + s * rng.randn(n), b**2 + s * rng.randn(n)
    mix = np.linalg.qr(rng.randn(D, D))[0] * np.array([1.0, 2.0, 0.5, 1.0, 3.0])
    x = np.stack([a, c, b, e, g], axis=1) @ mix + 4.0
    log_normal = lambda v, sd: -0.5 * (v / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))
    log_p = (log_normal(a, 1) + log_normal(c - a**2, s) + log_normal(b, 1)
             + log_normal(e - b**2, s) + log_normal(g, 1) - np.linalg.slogdet(mix)[1])
    return x.astype(np.float32), log_p


def perturbed_flow(x, seed, scale=0.1):
    """An initialised flow with every trained parameter moved at random (so the coupling nets,
    zero at init, are non-trivial)."""
    flow = pp.init_flow(x, seed=seed, **FLOW)
    leaves, tree = jax.tree.flatten(flow.params)
    rng = np.random.RandomState(seed)
    leaves = [a + scale * rng.randn(*a.shape).astype(np.float32) for a in leaves]
    return dataclasses.replace(flow, params=jax.tree.unflatten(tree, leaves))


def test_initialisation():
    x, _ = bananas(N)
    flow = pp.init_flow(x, seed=0, **FLOW)
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), flow.params)
    bias, logs = params["actnorm"]["bias"][0], params["actnorm"]["logs"][0]
    y = (x + bias) * np.exp(logs)  # the first step's actnorm standardises the data
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(0), 1, rtol=1e-4)
    # Zero last coupling layer: every coupling scales its D - D//2 outputs by sigmoid(2).
    coupling = FLOW["num_layers"] * (D - D // 2) * np.log(1 / (1 + np.exp(-2.0)))
    expected = np.sum(params["actnorm"]["logs"]) + np.sum(params["linear"]["log_s"]) + coupling
    np.testing.assert_allclose(np.asarray(flow.forward(x)[1]), expected, rtol=1e-5)


def test_log_likelihood_matches_jacobian_determinant():
    x, _ = bananas(N)
    flow = perturbed_flow(x, seed=1)
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
        flow = pp.Flow(to64(flow.params), to64(flow.consts))
        points = jnp.asarray(x[:6], jnp.float64)

        def forward_one(v):  # z(v) to differentiate, and (z, logdet) as auxiliary outputs
            z, logdet = flow.forward(v[None])
            return z[0], (z[0], logdet[0])

        jacobians, (z, logdet) = jax.vmap(jax.jacfwd(forward_one, has_aux=True))(points)
        log_likelihood = np.asarray(flow.log_likelihood(points))
    jacobians, z, logdet = np.asarray(jacobians), np.asarray(z), np.asarray(logdet)
    _, expected_logdet = np.linalg.slogdet(jacobians)
    expected = -0.5 * np.sum(z**2, axis=1) - 0.5 * D * np.log(2 * np.pi) + expected_logdet
    assert np.ptp(expected_logdet) > 0.1  # the coupling makes log|det J| depend on x
    np.testing.assert_allclose(logdet, expected_logdet, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(log_likelihood, expected, rtol=1e-10)


def test_inverse_inverts_forward():
    x, _ = bananas(N)
    flow = perturbed_flow(x, seed=0)
    z, _ = flow.forward(x)
    np.testing.assert_allclose(np.asarray(flow.inverse(z)), x, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(pp.flow_transform(flow, x), np.asarray(z))


def gaussian_fit_log_likelihood(x):
    x = np.asarray(x, np.float64)
    mu, cov = x.mean(0), np.cov(x, rowvar=False, bias=True)
    r = np.linalg.solve(np.linalg.cholesky(cov), (x - mu).T)
    return -0.5 * np.sum(r**2, 0) - 0.5 * np.linalg.slogdet(2 * np.pi * cov)[1]


def max_projected_skewness(x, seed=0):
    """Largest |skewness| of the whitened data along 64 random directions (0 for a Gaussian)."""
    mu, _, w = eig_whitening(np.asarray(x, np.float64))
    y = (x - mu) @ w
    u = np.random.RandomState(seed).randn(y.shape[1], 64)
    p = y @ (u / np.linalg.norm(u, axis=0))
    p = (p - p.mean(0)) / p.std(0)
    return np.abs(np.mean(p**3, axis=0)).max()


FIT = {**FLOW, "lr": 3e-3, "batch_size": 256}


def test_fit_raises_likelihood_and_gaussianises():
    x, true_log_p = bananas(N)
    initial = pp.fit_flow(x, steps=0, **FIT)
    flow = pp.fit_flow(x, steps=1000, **FIT)
    ll_init = float(np.mean(initial.log_likelihood(x)))
    ll_fit = float(np.mean(flow.log_likelihood(x)))
    ll_gauss, ll_true = np.mean(gaussian_fit_log_likelihood(x)), np.mean(true_log_p)
    print(f"log-likelihood init {ll_init:.3f} fit {ll_fit:.3f} gaussian {ll_gauss:.3f} "
          f"true {ll_true:.3f}")
    assert ll_fit > ll_init + 0.5
    # Beyond the best Gaussian (what whitening amounts to), nearly to the true density.
    assert ll_fit > ll_gauss + 0.9 * (ll_true - ll_gauss)
    z = pp.flow_transform(flow, x)
    np.testing.assert_allclose(z.mean(0), 0, atol=0.2)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(D), atol=0.2)
    assert np.abs(x.mean(0)).max() > 1 and np.abs(np.cov(x, rowvar=False) - np.eye(D)).max() > 1
    skew_x, skew_z = max_projected_skewness(x), max_projected_skewness(z)
    print(f"max projected skewness: input {skew_x:.2f}, latent {skew_z:.2f}")
    assert skew_z < 0.3 < 1.0 < skew_x


def test_fit_is_deterministic_by_seed():
    x, _ = bananas(N)
    leaves = lambda seed: jax.tree.leaves(pp.fit_flow(x, steps=5, seed=seed, **FIT).params)
    first, again, other = leaves(0), leaves(0), leaves(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
