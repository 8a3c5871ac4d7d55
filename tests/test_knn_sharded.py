"""Sharded kNN (training rows split over the 8 forced CPU devices) against NumPy float64
references, the dense ``knn_predict``, and the compiled programs' memory."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO
from jax.sharding import NamedSharding, PartitionSpec

from cl_jax import parallel
from cl_jax.evaluation import knn


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8
    return parallel.create_mesh()


def reference_neighbours(train, test, k):
    """Indices of the ``k`` most cosine-similar training rows, float64; equal similarities
    in increasing index order (a stable sort)."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    similarity = test @ train.T
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k], similarity


def reference_predict(train, labels, test, num_classes, k, temperature):
    """Weighted vote of Wu et al. 2018 by hand; a label of -1 holds a neighbour slot but has
    no vote (as ``jax.nn.one_hot`` of -1 is all zeros)."""
    top, similarity = reference_neighbours(train, test, min(k, len(train)))
    votes = np.zeros((len(test), num_classes))
    for i, row in enumerate(top):
        for j in row:
            if labels[j] >= 0:
                votes[i, labels[j]] += np.exp(similarity[i, j] / temperature)
    return votes.argmax(axis=1)


def test_sharded_predictions_match_numpy_and_dense(mesh):
    # 203 rows: 26 per device, the last 5 are padding; 70 queries: 3 chunks of 32, the last
    # padded; k = 40 > 26 rows per device, so the merge picks from several devices; 500 is
    # capped at 203. A quarter of the labels are -1 in the second label set.
    rng = np.random.RandomState(0)
    train, test = rng.randn(203, 6).astype(np.float32), rng.randn(70, 6).astype(np.float32)
    labels = rng.randint(0, 4, 203)
    unlabelled = np.where(rng.rand(203) < 0.25, -1, labels)
    kept = train.copy()
    for y in (labels, unlabelled):
        for k, t in ((10, 0.07), (40, 0.07), (500, 0.5)):
            compiled_before = knn.predict_chunk_sharded._cache_size()
            got = knn.knn_predict_sharded(train, y, test, 4, mesh, k, t, chunk_size=32)
            expected = reference_predict(train, y, test, 4, k, t)
            np.testing.assert_array_equal(got, expected, err_msg=f"k={k}")
            np.testing.assert_array_equal(
                got, knn.knn_predict(train, y, test, 4, k, t, chunk_size=32))
            assert knn.predict_chunk_sharded._cache_size() - compiled_before <= 1
    np.testing.assert_array_equal(train, kept)


def test_sharded_takes_global_arrays_and_knn_accuracy_uses_it(mesh, monkeypatch):
    rng = np.random.RandomState(1)
    train, test = rng.randn(208, 5).astype(np.float32), rng.randn(40, 5).astype(np.float32)
    labels, test_labels = rng.randint(0, 3, 208), rng.randint(0, 3, 40)
    rows = NamedSharding(mesh, PartitionSpec("data"))
    sharded_train = jax.device_put(train, rows)
    assert knn.place_train(sharded_train, labels, mesh)[0] is sharded_train  # not copied
    expected = reference_predict(train, labels, test, 3, 30, 0.07)
    for x in (sharded_train, jnp.asarray(train)):  # split already; on one device
        got = knn.knn_predict_sharded(x, jax.device_put(labels, rows), jnp.asarray(test), 3,
                                      mesh, k=30, chunk_size=16)
        np.testing.assert_array_equal(got, expected)

    calls = []
    sharded = knn.knn_predict_sharded
    monkeypatch.setattr(knn, "knn_predict_sharded", lambda *a, **kw: calls.append(1) or
                        sharded(*a, **kw))
    accuracy = knn.knn_accuracy(train, labels, test, test_labels, 3, k=30, mesh=mesh)
    assert calls and accuracy == pytest.approx(np.mean(expected == test_labels))
    single = parallel.create_mesh(jax.devices()[:1])
    assert knn.knn_accuracy(train, labels, test, test_labels, 3, k=30, mesh=single) == accuracy
    assert len(calls) == 1  # one device: the dense path


def one_hot_features(rng, num_rows, dim):
    """Rows ``c e_j`` (c in 1, 2, 4; j random): a query's similarity to a row is exactly the
    query's j-th entry, in any order of summation, with the norm divided before or after, and
    every value is shared by many rows."""
    rows = np.zeros((num_rows, dim), np.float32)
    rows[np.arange(num_rows), rng.randint(0, dim, num_rows)] = rng.choice([1, 2, 4], num_rows)
    return rows


def test_ties_go_to_the_lower_index_as_on_the_whole_matrix(mesh):
    rng = np.random.RandomState(2)
    train = one_hot_features(rng, 203, 8)  # about 25 rows tie on each similarity value
    test = rng.randn(32, 8).astype(np.float32)
    placed, norms, indices = knn.place_train(train, np.arange(203), mesh)
    chunk = knn.l2_normalize(jnp.asarray(test))
    for k in (7, 40, 203):  # cutting through groups of equal similarities
        top_k = jax.jit(knn.sharded_top_k, static_argnums=(4, 5, 6))
        similarity, neighbours = top_k(placed, norms, indices, chunk, mesh, 203, k)
        expected, _ = reference_neighbours(train, test, k)
        np.testing.assert_array_equal(neighbours, expected, err_msg=f"k={k}")
        whole_values, whole = jax.lax.top_k(chunk @ knn.l2_normalize(jnp.asarray(train)).T, k)
        np.testing.assert_array_equal(neighbours, whole)
        np.testing.assert_array_equal(similarity, whole_values)
    labels = rng.randint(0, 5, 203)
    np.testing.assert_array_equal(
        knn.knn_predict_sharded(train, labels, test, 5, mesh, k=40, chunk_size=32),
        knn.knn_predict(train, labels, test, 5, 40, chunk_size=32))


def test_tied_neighbours_spread_over_devices_keep_index_order(mesh):
    # Six rows equal to the query, on devices 0, 1, 1, 2, 5 and 7 (26 rows each); the other
    # rows are orthogonal to it. k = 2 takes rows 5 and 30: two votes for class 2. Any other
    # pair of tied rows has at most one vote for 2 and one for a lower class, which wins the
    # tied vote (argmax: first maximum).
    train = np.tile(np.float32([0, 1]), (203, 1))
    tied = [5, 30, 31, 60, 150, 200]
    train[tied] = [1, 0]
    labels = np.zeros(203, int)
    labels[tied] = [2, 2, 0, 1, 0, 1]
    query = np.float32([[1, 0]])
    for k in (2, 1):
        assert knn.knn_predict_sharded(train, labels, query, 3, mesh, k=k)[0] == 2
        assert knn.knn_predict(train, labels, query, 3, k)[0] == 2
        labels[30] = 0  # k = 1: only row 5 votes for 2


def chunk_memory(mesh, num_train, dim, chunk):
    """(argument, temporary) bytes per device of the per-chunk program, compiled only."""
    rows = knn.row_sharding(mesh)
    compiled = knn.predict_chunk_sharded.lower(
        jax.ShapeDtypeStruct((num_train, dim), jnp.float32, sharding=rows),
        jax.ShapeDtypeStruct((num_train,), jnp.float32, sharding=rows),
        jax.ShapeDtypeStruct((num_train,), jnp.int32, sharding=rows),
        jax.ShapeDtypeStruct((chunk, dim), jnp.float32,
                             sharding=NamedSharding(mesh, PartitionSpec())),
        jnp.float32(0.07), mesh=mesh, num_train=num_train, num_classes=10, k=20).compile()
    analysis = compiled.memory_analysis()
    return analysis.argument_size_in_bytes, analysis.temp_size_in_bytes


def test_chunk_memory_per_device_is_chunk_times_rows_per_device(mesh):
    n, dim, chunk = 16384, 16, 64
    similarities_per_device = chunk * (n // 8) * 4  # float32
    arguments, temp = chunk_memory(mesh, n, dim, chunk)
    one_arguments, one_temp = chunk_memory(parallel.create_mesh(jax.devices()[:1]), n, dim,
                                           chunk)
    assert one_temp >= chunk * n * 4  # one device: the chunk x N similarities
    assert similarities_per_device <= temp < 2 * similarities_per_device
    assert temp < one_temp / 4
    # A device holds its N / 8 training rows, their norms and labels, and the chunk.
    assert arguments <= (n // 8) * (dim + 2) * 4 + chunk * dim * 4 + 64
    assert one_arguments >= n * dim * 4


def test_knn_eval_benchmark_tiny(tmp_path):
    out = tmp_path / "knn_eval.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/knn_eval.py", "--tiny", "--runs=dense:1,sharded:8",
         f"--out={out}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["results"]
    assert [(r["impl"], r["devices"]) for r in rows] == [("dense", 1), ("sharded", 8)]
    assert all("error" not in r and r["first_s"] > 0 and r["same_as_dense"] == 1.0
               for r in rows), rows
    dense, sharded = rows
    assert sharded["device_argument_bytes"] < dense["device_argument_bytes"] / 4
    assert "peak RSS" in result.stdout
