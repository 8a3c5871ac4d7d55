"""Sentence-BERT's objectives (Reimers & Gurevych 2019, "Sentence-BERT: Sentence Embeddings
using Siamese BERT-Networks", arXiv:1908.10084) and the ones sentence-transformers added,
on one siamese text encoder (``method.objective``):

- ``softmax``: pairs with an NLI label; a linear classifier on ``[u; v; |u - v|]`` trained with
  cross-entropy (the paper's classification objective; ``SoftmaxLoss``).
- ``cosine``: pairs with a graded score; the squared error between ``cos(u, v)`` and the score
  divided by ``method.score_scale`` (the paper's regression objective;
  ``CosineSimilarityLoss``, which trains STS-B with scores / 5).
- ``cosent``: pairs with a graded score; CoSENT's ranking of the pairs' cosines
  (``CoSENTLoss``, scale 20).
- ``triplet``: (anchor, positive, negative); ``max(|a - p| - |a - n| + 5, 0)`` (the paper's
  triplet objective, Euclidean distance, margin 5; ``TripletLoss``).
- ``mnrl``: (anchor, positive[, negative]); in-batch InfoNCE over ``20 cos``, every other
  positive and every hard negative a candidate (``MultipleNegativesRankingLoss``).

Pooling is the text tower's (``model.text.pooling``; the paper's default is the mean of the
token embeddings). Formulas and the sentence-transformers versions they match are in
``cl_jax.losses.sentence``.
"""

import jax.numpy as jnp
import optax

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.methods._sentence import SentenceMethod

OBJECTIVES = {"softmax": (2,), "cosine": (2,), "cosent": (2,), "triplet": (3,),
              "mnrl": (2, 3)}


class SentenceBERT(SentenceMethod):
    name = "sbert"
    inputs = ("sentences", "index", "label", "score")

    @classmethod
    def validate(cls, config):
        super().validate(config)
        if config.method.objective not in OBJECTIVES:
            raise ConfigError(f"method.objective is {config.method.objective!r}; choose one of "
                              f"{', '.join(OBJECTIVES)}.")

    @classmethod
    def sentence_counts(cls, config):
        return OBJECTIVES[config.method.objective]

    def __init__(self, config, *args, **kwargs):
        self.num_labels = config.num_labels if config.objective == "softmax" else 0
        super().__init__(config, *args, **kwargs)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        c = self.config
        sentences = batch["sentences"]
        b, k, _ = sentences.shape
        z = self.embed(params, jnp.swapaxes(sentences, 0, 1).reshape(b * k, -1), rng)
        u, v = z[:b], z[b:2 * b]
        metrics = {}
        if c.objective == "softmax":
            logits = self.network.apply({"params": params},
                                        losses.sbert_softmax_features(u, v),
                                        method=self.network.classify)
            labels = batch["label"]
            loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
            metrics["accuracy"] = jnp.mean(jnp.argmax(logits, axis=1) == labels)
        elif c.objective == "cosine":
            loss = losses.cosine_similarity_mse(u, v, batch["score"] / c.score_scale)
        elif c.objective == "cosent":
            loss = losses.cosent(u, v, batch["score"], scale=c.scale)
        elif c.objective == "triplet":
            loss = losses.sentence_triplet(u, v, z[2 * b:], margin=c.margin)
        else:
            loss = losses.multiple_negatives_ranking(u, v, z[2 * b:] if k == 3 else None,
                                                     scale=c.scale)
        return loss, self.aux(metrics)
