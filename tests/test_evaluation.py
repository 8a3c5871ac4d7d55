"""kNN and linear probes against independent NumPy computations."""

import jax.numpy as jnp
import numpy as np

from cl_jax import evaluation
from cl_jax.evaluation import linear


def knn_reference(train, train_labels, test, num_classes, k, temperature):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    predictions = []
    for q in test:
        sims = train @ q
        top = np.argsort(-sims)[:k]
        votes = np.zeros(num_classes)
        for j in top:
            votes[train_labels[j]] += np.exp(sims[j] / temperature)
        predictions.append(np.argmax(votes))
    return np.array(predictions)


def test_knn_matches_reference():
    rng = np.random.RandomState(0)
    train, test = rng.randn(300, 6), rng.randn(70, 6)
    labels = rng.randint(0, 4, 300)
    for k, t in ((1, 0.07), (10, 0.07), (50, 0.5)):
        got = evaluation.knn_predict(jnp.asarray(train), jnp.asarray(labels), jnp.asarray(test),
                                     4, k, t, chunk_size=32)
        np.testing.assert_array_equal(got, knn_reference(train, labels, test, 4, k, t))


def test_knn_caps_k_at_training_set_size():
    train = np.eye(3, 5)
    acc = evaluation.knn_accuracy(train, np.arange(3), train, np.arange(3), 3, k=200)
    assert acc == 1.0


def separable(n, d=5, classes=3, seed=0):
    centers = 4 * np.random.RandomState(100).randn(classes, d)
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, classes, n)
    return (centers[labels] + rng.randn(n, d)).astype(np.float32), labels


def test_linear_probe_learns_separable_classes_and_not_noise():
    x, y = separable(400)
    xt, yt = separable(200, seed=1)
    assert evaluation.linear_accuracy(x, y, xt, yt, 3, steps=300) > 0.95
    shuffled = np.random.RandomState(2).permutation(yt)
    assert evaluation.linear_accuracy(x, y, xt, shuffled, 3, steps=300) < 0.6


def test_few_label_subset_takes_per_class_examples():
    labels = np.repeat(np.arange(4), 10)
    rows = linear.few_label_subset(labels, 3, seed=0)
    assert sorted(np.bincount(labels[rows])) == [3, 3, 3, 3]
    assert not np.array_equal(rows, linear.few_label_subset(labels, 3, seed=1))


def test_fewshot_reports_mean_over_draws():
    x, y = separable(300)
    xt, yt = separable(100, seed=1)
    mean, std = evaluation.fewshot_accuracy(x, y, xt, yt, 3, per_class=3, draws=4, steps=200)
    assert 0.8 < mean <= 1.0 and std >= 0.0
