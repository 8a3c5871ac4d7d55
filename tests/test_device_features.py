"""Features kept on the devices (eval.features_on_device): the same kNN and probes as on host."""

import jax
import numpy as np
import pytest
from conftest import tiny_config

from cl_jax import parallel, train
from cl_jax.evaluation import device_features, knn, linear

NUM_CLASSES = 4


def reference_knn(x, y, xt, k, temperature):
    """Weighted kNN (Wu et al. 2018) in float64 over the labelled rows of (x, y)."""
    x = np.asarray(x, np.float64)[y >= 0]
    y = y[y >= 0]
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    similarity = unit(np.asarray(xt, np.float64)) @ unit(x).T
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(xt), NUM_CLASSES))
    np.add.at(votes, (np.arange(len(xt))[:, None], y[top]),
              np.exp(np.take_along_axis(similarity, top, axis=1) / temperature))
    return np.argmax(votes, axis=1)


def collect(mesh, features, labels, mask, batch):
    """``features`` fed to a FeatureBuffer batch by batch, as the loop feeds it."""
    buffer = device_features.FeatureBuffer(mesh, len(features) // batch)
    for start in range(0, len(features), batch):
        rows = slice(start, start + batch)
        values = parallel.to_global({"x": features[rows]}, mesh)["x"]
        buffer.add(values, labels[rows], mask[rows])
    return buffer.result()


@pytest.fixture(scope="module")
def data():
    """Clustered features on the 8-device mesh: 96 training rows (a few unlabelled, one
    masked out) and 32 test rows, as DeviceFeatures and as the host arrays."""
    rng = np.random.RandomState(0)
    mesh = parallel.create_mesh()
    centres = rng.randn(NUM_CLASSES, 6) * 2
    y, yt = rng.randint(0, NUM_CLASSES, 96), rng.randint(0, NUM_CLASSES, 32)
    x = (centres[y] + rng.randn(96, 6)).astype(np.float32)
    xt = (centres[yt] + rng.randn(32, 6)).astype(np.float32)
    y[[3, 40, 77]] = -1  # unlabelled
    mask = np.ones(96, np.int32)
    mask[50] = 0  # an unreadable image
    x[[3, 40, 77, 50]] = xt[[0, 1, 2, 3]]  # each the nearest row of a test row, not a vote
    yt[:4] = np.arange(1, 5) % NUM_CLASSES  # not class 0, which a no-vote kNN would give
    train_f = collect(mesh, x, y, mask, 16)
    test_f = collect(mesh, xt, yt, np.ones(32, np.int32), 16)
    keep = (y >= 0) & (mask > 0)
    return train_f, test_f, (x[keep], y[keep], xt, yt)


def test_the_buffer_keeps_the_rows_in_order_split_over_the_devices(data):
    train_f, test_f, (x, y, xt, yt) = data
    assert train_f.values.sharding.is_equivalent_to(knn.row_sharding(train_f.mesh), 2)
    assert len(train_f.values.addressable_shards) == 8
    assert all(s.data.shape == (12, 6) for s in train_f.values.addressable_shards)
    kept = train_f.labels >= 0
    np.testing.assert_array_equal(np.asarray(train_f.values)[kept], x)
    np.testing.assert_array_equal(train_f.labels[kept], y)
    assert train_f.labels[50] == train_f.labels[3] == -1 and train_f.num_labelled == len(y)
    np.testing.assert_array_equal(np.asarray(test_f.values), xt)


@pytest.mark.parametrize("k", [1, 5, 200])
def test_knn_equals_float64_and_the_host_path(data, k):
    train_f, test_f, (x, y, xt, yt) = data
    expected = reference_knn(x, y, xt, min(k, len(y)), 0.07)
    got = device_features.knn_predict(train_f, test_f, NUM_CLASSES, k=k, chunk_size=12)
    np.testing.assert_array_equal(got, expected)
    assert device_features.knn_top1(train_f, test_f, NUM_CLASSES, k=k) == pytest.approx(
        knn.knn_accuracy(x, y, xt, yt, NUM_CLASSES, k=k))


def test_probes_equal_the_host_probes(data):
    """Full batch the data-parallel probe is the host probe's optimisation exactly; the
    few-label probe draws the same rows with the same seeds."""
    train_f, test_f, (x, y, xt, yt) = data
    options = dict(steps=30, batch_size=4096, lr=0.05)
    assert device_features.linear_top1(train_f, test_f, NUM_CLASSES, **options) == \
        pytest.approx(linear.linear_accuracy(x, y, xt, yt, NUM_CLASSES, **options))
    got = device_features.fewshot_top1(train_f, test_f, NUM_CLASSES, per_class=2, draws=3,
                                       **options)
    expected = linear.fewshot_accuracy(x, y, xt, yt, NUM_CLASSES, per_class=2, draws=3,
                                       **options)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_minibatch_probe_learns_the_clusters(data):
    train_f, test_f, (x, y, xt, yt) = data
    host = linear.linear_accuracy(x, y, xt, yt, NUM_CLASSES, steps=60, batch_size=16, lr=0.05)
    sharded = device_features.linear_top1(train_f, test_f, NUM_CLASSES, steps=60,
                                          batch_size=16, lr=0.05)
    assert host > 0.8 and abs(sharded - host) <= 0.1


def test_the_loop_evaluates_the_same_on_device(tmp_path):
    config = tiny_config("byol")
    config.evals.linear.batch_size = config.evals.fewshot.batch_size = 4096  # full batch
    exp = train.create_experiment(config)
    state = train.initial_state(exp)
    on_host = train.evaluate(exp, state)
    exp.config.eval.features_on_device = True
    on_device = train.evaluate(exp, state)
    features = train.EvalContext(exp, state).features("train")
    assert isinstance(features, device_features.DeviceFeatures)
    assert features.values.shape == (23 * 64, 16) and features.num_labelled == 1438
    assert set(on_device) == set(on_host)
    for key, value in on_host.items():
        assert on_device[key] == pytest.approx(value, abs=1 / 359 + 1e-6), key
    assert jax.device_count() == 8


def test_collapse_monitors_of_device_features_use_the_labelled_rows(data):
    """Padding and unreadable rows (label -1) stay out of the monitors."""
    from cl_jax import config_lib
    from cl_jax.evaluation import collapse, registry

    train_f, _, (x, *_) = data

    class Context:
        warnings = []

        def features(self, which):
            return train_f

        def augmented_pairs(self, which, n):
            return None

    settings = config_lib.base_config().evals.collapse
    got = registry.collapse_monitors(Context(), settings)
    assert got["rankme"] == pytest.approx(float(collapse.rankme(x)), rel=1e-5)
    assert got["embedding_std"] == pytest.approx(
        float(collapse.embedding_std(x - x.mean(0))), rel=1e-5)
