"""Linear probes on frozen features: all labels, and few labels per class.

The probe is multinomial logistic regression on standardised features (mean and standard
deviation from the training features), trained by AdamW with a cosine learning rate on
minibatches (full batch when the set is small), the whole optimisation one jitted loop.
This is the cheap "precomputed features, no augmentation" variant of the linear protocol;
the SimCLR/BYOL papers' ImageNet numbers come from 90 epochs on augmented images.

The few-label probe is the semi-supervised protocol of the SimCLR paper (section 5.2) in
miniature: ``per_class`` labelled examples of every class, drawn ``draws`` times with
different seeds; it reports the mean test accuracy over the draws.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


@functools.partial(jax.jit, static_argnames=("num_classes", "steps", "batch_size"))
def train_logistic_regression(features, labels, num_classes, *, steps, batch_size, lr,
                              weight_decay, seed):
    """Weights (D, C) and bias (C,) of a softmax classifier fitted to (features, labels)."""
    n, d = features.shape
    params = {"w": jnp.zeros((d, num_classes)), "b": jnp.zeros((num_classes,))}
    tx = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=weight_decay,
                     mask={"w": True, "b": False})

    def loss_fn(p, x, y):
        logits = x @ p["w"] + p["b"]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    def step(i, carry):
        p, opt_state = carry
        if batch_size >= n:
            x, y = features, labels
        else:
            rows = jax.random.randint(jax.random.fold_in(jax.random.key(seed), i),
                                      (batch_size,), 0, n)
            x, y = features[rows], labels[rows]
        grads = jax.grad(loss_fn)(p, x, y)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state

    params, _ = jax.lax.fori_loop(0, steps, step, (params, tx.init(params)))
    return params


def standardizer(train_features):
    mean = train_features.mean(axis=0)
    std = train_features.std(axis=0) + 1e-6
    return lambda x: (x - mean) / std


def linear_accuracy(train_features, train_labels, test_features, test_labels, num_classes, *,
                    steps=1000, batch_size=1024, lr=0.01, weight_decay=1e-4, seed=0,
                    standardize_with=None):
    """Test accuracy of a logistic regression trained on all the given training features."""
    scale = standardizer(train_features if standardize_with is None else standardize_with)
    params = train_logistic_regression(
        jnp.asarray(scale(train_features)), jnp.asarray(train_labels), num_classes, steps=steps,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed)
    logits = jnp.asarray(scale(test_features)) @ params["w"] + params["b"]
    return float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(test_labels)))


def few_label_subset(labels, per_class, seed):
    """Indices of ``per_class`` examples of every class present, drawn with ``seed``."""
    rng = np.random.RandomState(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), min(per_class, np.sum(labels == c)),
                        replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def fewshot_accuracy(train_features, train_labels, test_features, test_labels, num_classes, *,
                     per_class=3, draws=5, seed=0, **probe_kwargs):
    """Mean and standard deviation over ``draws`` of the few-label linear probe's accuracy.

    Features are standardised with the statistics of all training features (only the
    labels are scarce, as in the semi-supervised setting).
    """
    accuracies = []
    for draw in range(draws):
        rows = few_label_subset(np.asarray(train_labels), per_class, seed + draw)
        accuracies.append(linear_accuracy(
            train_features[rows], train_labels[rows], test_features, test_labels, num_classes,
            seed=seed + draw, standardize_with=train_features, **probe_kwargs))
    return float(np.mean(accuracies)), float(np.std(accuracies))


def ridge_r2(train_features, train_targets, test_features, test_targets, alpha=1.0):
    """R^2 on the test set of ridge regression (``alpha``, the penalty on the weights of the
    standardised features; intercept unpenalised) fitted on the training set, in float64.

    R^2 is ``1 - sum (y - y_hat)^2 / sum (y - mean_test(y))^2`` per target dimension, then
    averaged over the dimensions: scikit-learn's ``r2_score`` with its default
    ``multioutput="uniform_average"``; 0 is the test mean's score, 1 a perfect fit.
    """
    scale = standardizer(np.asarray(train_features, np.float64))
    x = scale(np.asarray(train_features, np.float64))
    y = np.asarray(train_targets, np.float64).reshape(len(x), -1)
    y_mean = y.mean(axis=0)
    gram = x.T @ x + alpha * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, x.T @ (y - y_mean))  # x is centred: the intercept is y_mean
    truth = np.asarray(test_targets, np.float64).reshape(len(test_features), -1)
    predicted = scale(np.asarray(test_features, np.float64)) @ weights + y_mean
    residual = np.sum((truth - predicted) ** 2, axis=0)
    total = np.sum((truth - truth.mean(axis=0)) ** 2, axis=0)
    return float(np.mean(1.0 - residual / np.maximum(total, 1e-12)))
