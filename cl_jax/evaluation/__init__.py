"""Evaluation of frozen features: weighted kNN, linear probe, few-label linear probe."""

import numpy as np

from cl_jax.evaluation.knn import knn_accuracy, knn_predict
from cl_jax.evaluation.linear import fewshot_accuracy, linear_accuracy


def evaluate_features(train_features, train_labels, test_features, test_labels, num_classes,
                      config):
    """``knn_top1``, ``linear_top1``, ``fewshot_top1`` (and its std over draws) on test.

    ``config`` is ``config.eval``. Training examples without a label (-1) are left out.
    """
    labelled = np.asarray(train_labels) >= 0
    train_features, train_labels = train_features[labelled], train_labels[labelled]
    probe = dict(steps=config.linear_steps, batch_size=config.linear_batch_size,
                 lr=config.linear_lr, weight_decay=config.linear_weight_decay)
    results = {
        "knn_top1": knn_accuracy(train_features, train_labels, test_features, test_labels,
                                 num_classes, k=config.knn_k,
                                 temperature=config.knn_temperature),
        "linear_top1": linear_accuracy(train_features, train_labels, test_features,
                                       test_labels, num_classes, **probe),
    }
    if config.fewshot_per_class > 0:
        mean, std = fewshot_accuracy(train_features, train_labels, test_features, test_labels,
                                     num_classes, per_class=config.fewshot_per_class,
                                     draws=config.fewshot_draws, **probe)
        results.update(fewshot_top1=mean, fewshot_top1_std=std)
    return results


__all__ = ["evaluate_features", "fewshot_accuracy", "knn_accuracy", "knn_predict",
           "linear_accuracy"]
