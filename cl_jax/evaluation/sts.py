"""Sentence-embedding evaluators: graded similarity (STS) and text -> text retrieval.

STS (the protocol of SimCSE and SentEval's STS tasks, "all" aggregation): each pair's cosine
similarity of its two sentence embeddings against the gold scores, scored by the Spearman
rank correlation (``sts_spearman``, in [-1, 1]; papers print it x 100). With ``whiten``, also
after whitening (Su et al. 2021; ``sts_spearman_whitened``, keeping ``whiten_dim`` dimensions,
0: all) and with ``flow`` after BERT-flow (Li et al. 2020; ``sts_spearman_flow``), both fitted
on the embeddings of the split's own distinct sentences (the papers' unsupervised "target"
setting: no gold score is used).

Sentence probe (SentEval's classification tasks, Conneau & Kiela 2018: MR, CR, SUBJ, MPQA,
...): logistic regression on the frozen sentence embeddings of a labelled file, ``folds``-fold
cross-validation (SentEval's default 10), ``probe_acc`` the mean test accuracy over the folds
(``probe_acc_std`` their spread). The rows are shuffled by ``seed`` and the last
``N mod folds`` left out, so every fold has one size and the probe compiles once.

Text retrieval (WordNet's definition -> word): a query is the first sentence of an example,
its match the second; every distinct second sentence is a candidate; Recall@k
(``text_r@1``, ``text_r@10``), the fraction of queries whose match is among the k candidates
of highest cosine similarity.
"""

import numpy as np
import scipy.stats

from cl_jax.evaluation.image_text import topk_hits
from cl_jax.evaluation.linear import linear_accuracy
from cl_jax.evaluation.registry import evaluator, probe_options


def spearman(x, y):
    """Spearman's rank correlation of two 1-D arrays (ties get their average rank)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"spearman needs two arrays of the same length >= 2, got {len(x)} "
                         f"and {len(y)}.")
    return float(scipy.stats.spearmanr(x, y).statistic)


def pair_cosines(a, b):
    """Row-wise cosine similarity of (N, D) arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.sum(a * b, axis=1)


def sts_spearman(a, b, scores):
    """Spearman correlation of the pairs' cosine similarities with their gold ``scores``."""
    return spearman(pair_cosines(a, b), scores)


@evaluator("sts")
def sts(context, settings):
    """``sts_spearman`` on the pairs of ``settings.split``; whitened and flow variants when
    ``settings.whiten`` / ``settings.flow``."""
    pairs = context.sentence_pairs(settings.split)
    if pairs is None or pairs["scores"] is None:
        return {}
    unique, (first, second), scores = pairs["unique"], pairs["rows"], pairs["scores"]
    results = {"sts_spearman": sts_spearman(unique[first], unique[second], scores)}
    if settings.get("whiten", False) or settings.get("flow", False):
        from cl_jax.evaluation import postprocess
    if settings.get("whiten", False):
        mean, w = postprocess.whitening(unique, settings.get("whiten_dim", 0) or None)
        white = postprocess.apply_whitening(unique, mean, w)
        results["sts_spearman_whitened"] = sts_spearman(white[first], white[second], scores)
    if settings.get("flow", False):
        flow = postprocess.fit_flow(unique, seed=settings.get("flow_seed", 0))
        latent = np.asarray(postprocess.flow_transform(flow, unique))
        results["sts_spearman_flow"] = sts_spearman(latent[first], latent[second], scores)
    return results


def text_recall(queries, matches, candidates, ks=(1, 10)):
    """Recall@k of (Nq, D) ``queries`` whose match is candidate ``matches[q]`` of (Nc, D)."""
    hits = np.asarray(topk_hits(np.asarray(queries, np.float32), np.asarray(matches),
                                np.asarray(candidates, np.float32),
                                np.arange(len(candidates)), tuple(ks)))
    return {k: float(np.mean(hits[:, j])) for j, k in enumerate(ks)}


@evaluator("text_retrieval")
def text_retrieval(context, settings):
    """``text_r@k`` for ``settings.ks``: first sentence -> second sentence of each pair."""
    pairs = context.sentence_pairs(settings.split)
    if pairs is None:
        return {}
    split = context.split(settings.split)
    _, match = np.unique(np.asarray(split.texts[1], object), return_inverse=True)
    _, first = np.unique(match, return_index=True)  # one embedding per distinct candidate
    recall = text_recall(pairs["a"], match, pairs["b"][first], tuple(settings.ks))
    return {f"text_r@{k}": value for k, value in recall.items()}


def cross_validated_accuracy(features, labels, num_classes, folds=10, seed=0, **probe):
    """Mean and std over ``folds`` of a linear probe's test accuracy, each fold tested on its
    rows and trained on the others'; rows shuffled by ``seed``, ``N mod folds`` left out."""
    order = np.random.RandomState(seed).permutation(len(labels))
    parts = order[:len(order) - len(order) % folds].reshape(folds, -1)
    scores = []
    for k in range(folds):
        train = np.concatenate([p for i, p in enumerate(parts) if i != k])
        scores.append(linear_accuracy(features[train], labels[train], features[parts[k]],
                                      labels[parts[k]], num_classes, **probe))
    return float(np.mean(scores)), float(np.std(scores))


@evaluator("sentence_probe")
def sentence_probe(context, settings):
    """``probe_acc`` (and ``probe_acc_std``) on ``settings.split``'s labelled sentences."""
    found = context.features(settings.split)
    split = context.split(settings.split)
    if found is None or not split.num_classes:
        return {}
    x, y = found
    folds = settings.get("folds", 10)
    mean, std = cross_validated_accuracy(x, np.asarray(y), split.num_classes, folds,
                                         **probe_options(settings, len(y) - len(y) // folds))
    return {"probe_acc": mean, "probe_acc_std": std}
