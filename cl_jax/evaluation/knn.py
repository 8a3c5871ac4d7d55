"""Weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018).

Cosine similarity to every training feature; the ``k`` most similar vote for their class
with weight ``exp(sim / temperature)``; the class with the largest vote wins. ``k=200`` and
``temperature=0.07`` are the values of Wu et al. 2018 (used by InstDisc, MoCo, solo-learn).
"""

import functools

import jax
import jax.numpy as jnp


def l2_normalize(x, eps=1e-12):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


@functools.partial(jax.jit, static_argnames=("num_classes", "k", "chunk_size"))
def knn_predict(train_features, train_labels, test_features, num_classes, k=200,
                temperature=0.07, chunk_size=256):
    """Predicted class of every test feature; ``k`` is capped by the training-set size."""
    train = l2_normalize(train_features.astype(jnp.float32))
    test = l2_normalize(test_features.astype(jnp.float32))
    k = min(k, train.shape[0])
    num_test = test.shape[0]
    pad = -num_test % chunk_size
    chunks = jnp.pad(test, ((0, pad), (0, 0))).reshape(-1, chunk_size, test.shape[1])

    def predict(chunk):
        similarity, neighbours = jax.lax.top_k(chunk @ train.T, k)
        weights = jnp.exp(similarity / temperature)
        votes = jax.nn.one_hot(train_labels[neighbours], num_classes) * weights[..., None]
        return jnp.argmax(jnp.sum(votes, axis=1), axis=-1)

    return jax.lax.map(predict, chunks).reshape(-1)[:num_test]


def knn_accuracy(train_features, train_labels, test_features, test_labels, num_classes,
                 k=200, temperature=0.07):
    predictions = knn_predict(train_features, train_labels, test_features, num_classes, k,
                              temperature)
    return float(jnp.mean(predictions == test_labels))
