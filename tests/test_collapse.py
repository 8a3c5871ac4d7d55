"""Collapse monitors against hand-computed values on constructed embeddings and float64 NumPy
on random ones."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cl_jax.evaluation import collapse as C

EPS = 1e-7
metrics = jax.jit(C.collapse_metrics)  # one program per shape: all four monitors


# ---- float64 references ----


def normalized(z):
    z = np.asarray(z, np.float64)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def ref_std(z):
    x = normalized(z)
    return np.mean([np.sqrt(np.mean((x[:, d] - x[:, d].mean()) ** 2)) for d in range(x.shape[1])])


def ref_rankme_of(sigma, eps=EPS):
    p = np.asarray(sigma, np.float64) / np.sum(sigma) + eps
    return np.exp(-np.sum(p * np.log(p)))


def ref_rankme(z):
    return ref_rankme_of(np.linalg.svd(np.asarray(z, np.float64), compute_uv=False))


def ref_uniformity(z, t=2):
    x = normalized(z)
    kernel = [np.exp(-t * np.sum((x[i] - x[j]) ** 2))
              for i in range(len(x)) for j in range(i + 1, len(x))]
    return np.log(np.mean(kernel))


def ref_alignment(z1, z2, alpha=2):
    a, b = normalized(z1), normalized(z2)
    return np.mean([np.linalg.norm(a[i] - b[i]) ** alpha for i in range(len(a))])


def signed_basis(d, scales=None):
    """The 2D rows +e_k, -e_k, optionally rescaled row by row."""
    z = np.concatenate([np.eye(d), -np.eye(d)])
    return (z if scales is None else z * scales[:, None]).astype(np.float32)


# ---- constructed embeddings ----


def test_collapsed_embeddings():
    rng = np.random.RandomState(0)
    direction = rng.normal(size=6)
    z = (rng.uniform(0.5, 2.0, size=(10, 1)) * direction).astype(np.float32)  # one direction
    m = metrics(z, z)
    np.testing.assert_allclose(m["embedding_std"], 0.0, atol=1e-7)
    # One singular value: p = (1 + eps, eps, ..., eps) over min(N, D) = 6 values.
    expected = math.exp(-((1 + EPS) * math.log(1 + EPS) + 5 * EPS * math.log(EPS)))
    np.testing.assert_allclose(m["rankme"], expected, rtol=1e-4)
    np.testing.assert_allclose(m["uniformity"], 0.0, atol=1e-6)
    np.testing.assert_allclose(m["alignment"], 0.0, atol=1e-7)
    warning = C.collapse_warning(m, dim=6)
    assert "embedding_std" in warning and "rankme" in warning and "\n" not in warning


@pytest.mark.parametrize("d", [3, 8])
def test_signed_basis_has_the_hand_computed_values(d):
    scales = np.random.RandomState(d).uniform(0.2, 5.0, size=2 * d)
    m = metrics(signed_basis(d, scales))
    # Each column holds one +1, one -1 and 2D - 2 zeros: mean 0, variance 2 / (2D) = 1 / D.
    np.testing.assert_allclose(m["embedding_std"], 1 / math.sqrt(d), rtol=1e-6)
    # Of the D (2D - 1) pairs, D are antipodal (|x - y|^2 = 4), the others orthogonal (2).
    t = 2
    expected = math.log((math.exp(-4 * t) + 2 * (d - 1) * math.exp(-2 * t)) / (2 * d - 1))
    np.testing.assert_allclose(m["uniformity"], expected, rtol=1e-5)
    # Unscaled, z^T z = 2 I: D equal singular values, RankMe = D up to eps.
    p = 1 / d + EPS
    np.testing.assert_allclose(C.rankme(signed_basis(d)), math.exp(-d * p * math.log(p)),
                               rtol=1e-5)
    assert C.collapse_warning(m, dim=d) is None


def test_rankme_counts_the_dimensions_in_use():
    # Rows +-e_1, ..., +-e_3 in 8 dimensions (dimensional collapse): 3 equal singular values.
    z = np.concatenate([signed_basis(3), np.zeros((6, 5), np.float32)], axis=1)
    p = np.array([1 / 3] * 3 + [0] * 3) + EPS  # min(N, D) = 6 singular values
    np.testing.assert_allclose(C.rankme(z), np.exp(-np.sum(p * np.log(p))), rtol=1e-5)
    np.testing.assert_allclose(C.rankme(np.zeros((4, 3))), math.exp(-3 * EPS * math.log(EPS)),
                               rtol=1e-6)  # all-zero: every p_k = eps


# ---- random embeddings against float64 ----


@pytest.mark.parametrize("shape", [(16, 5), (5, 16)])
def test_metrics_match_float64_reference(shape):
    rng = np.random.RandomState(sum(shape))
    z = (rng.normal(size=shape) * rng.uniform(0.3, 3.0, size=(shape[0], 1))).astype(np.float32)
    z2 = (z + 0.5 * rng.normal(size=shape)).astype(np.float32)
    m = metrics(z, z2)
    assert sorted(m) == ["alignment", "embedding_std", "rankme", "uniformity"]
    assert all(v.dtype == jnp.float32 and v.shape == () for v in m.values())
    np.testing.assert_allclose(m["embedding_std"], ref_std(z), rtol=1e-5)
    np.testing.assert_allclose(m["rankme"], ref_rankme(z), rtol=1e-5)
    sigma = np.linalg.svd(z.astype(np.float64), compute_uv=False)  # where eps goes shows
    np.testing.assert_allclose(C.rankme(z, eps=0.05), ref_rankme_of(sigma, 0.05), rtol=1e-5)
    np.testing.assert_allclose(m["uniformity"], ref_uniformity(z), rtol=1e-5)
    np.testing.assert_allclose(m["alignment"], ref_alignment(z, z2), rtol=1e-5)
    # The other exponents, and bfloat16 in, float32 out.
    np.testing.assert_allclose(C.uniformity(z, t=0.5), ref_uniformity(z, 0.5), rtol=1e-5)
    np.testing.assert_allclose(C.alignment(z, z2, alpha=1), ref_alignment(z, z2, 1), rtol=1e-5)
    low = metrics(z.astype(jnp.bfloat16))
    assert sorted(low) == ["embedding_std", "rankme", "uniformity"]
    for name, value in low.items():
        assert value.dtype == jnp.float32
        np.testing.assert_allclose(value, m[name], rtol=2e-2, err_msg=name)


def test_metrics_of_sharded_batch_equal_unsharded():
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
    rng = np.random.RandomState(1)
    z, z2 = rng.normal(size=(2, 16, 5)).astype(np.float32)
    sharded = [jax.device_put(x, sharding) for x in (z, z2)]
    assert len(sharded[0].sharding.device_set) == 8
    got, expected = metrics(*sharded), metrics(z, z2)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, err_msg=name)


# ---- warning and checks ----


def test_collapse_warning_rule():
    healthy = 1 / math.sqrt(64)
    assert C.collapse_warning({"embedding_std": 0.21 * healthy}, dim=64) is None
    assert C.collapse_warning({"embedding_std": 0.19 * healthy}, dim=64) is not None
    assert C.collapse_warning({"embedding_std": 0.3 * healthy}, dim=64, threshold=0.5)
    assert C.collapse_warning({"embedding_std": float("nan")}, dim=64)
    assert C.collapse_warning({"embedding_std": np.float32(healthy)}, dim=64) is None


def test_shape_checks():
    with pytest.raises(ValueError, match="at least 2"):
        C.uniformity(np.ones((1, 4)))
    with pytest.raises(AssertionError):
        C.alignment(np.ones((3, 4)), np.ones((4, 4)))


def test_collapse_evaluator_in_the_loop_and_its_warning(capsys):
    """The ``collapse`` evaluator of the default config on a run's features: its numbers are
    those of the features the loop extracts, alignment comes from two augmented views, and
    an encoder whose features are all equal (collapsed) is reported in the log."""
    from conftest import tiny_config

    from cl_jax import config_lib, train

    config = tiny_config("byol")
    config.evals = {"collapse": config_lib.base_config().evals.collapse}
    exp = train.create_experiment(config)
    state = train.initial_state(exp)
    results = train.evaluate(exp, state)
    features, _ = train.extract_features(exp, state, exp.eval_test_split)
    assert set(results) == {"embedding_std", "rankme", "uniformity", "alignment"}
    centred = features - features.mean(0)
    assert results["embedding_std"] == pytest.approx(float(C.embedding_std(centred)), rel=1e-5)
    assert results["rankme"] == pytest.approx(float(C.rankme(features)), rel=1e-4)
    z1, z2 = train.EvalContext(exp, state).augmented_pairs("test", 2048)
    assert z1.shape == z2.shape == features.shape and not np.allclose(z1, z2)
    assert results["alignment"] == pytest.approx(float(C.alignment(z1, z2)), rel=1e-5)
    assert "collapsing" not in capsys.readouterr().out

    # Zero the encoder's last layer: every image gets the same (bias-only) features.
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 0 if "kernel" in jax.tree_util.keystr(path)
        and "encoder" in jax.tree_util.keystr(path) else x, state.params)
    collapsed = train.evaluate(exp, state.replace(params=params))
    assert collapsed["embedding_std"] < 1e-3
    assert "embeddings are collapsing" in capsys.readouterr().out
