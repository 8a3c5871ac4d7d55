"""SimCSE (Gao, Yao & Chen 2021, "SimCSE: Simple Contrastive Learning of Sentence
Embeddings", arXiv:2104.08821), on the reference princeton-nlp/SimCSE ``cl_forward``.

Unsupervised (one sentence per example): the batch goes through the encoder twice with
independent dropout masks (the reference duplicates the batch and runs one forward pass,
which is what this does), ``z1`` and ``z2`` are the two embeddings of each sentence, and the
loss is :func:`cl_jax.losses.simcse`: in-batch InfoNCE over ``cos(z1_i, z2_j) / T``,
``T = 0.05``. Dropout is the only augmentation unless ``method.cutoff`` adds one to the second
pass. ``mlp_only_train`` (the paper's unsupervised setting): the MLP pooler is used in
training and left out of the embeddings evaluated.

Supervised (anchor, entailment, contradiction from NLI; three sentences per example): ``z1``
the anchors, ``z2`` their positives, and every contradiction ``z3`` a further negative of every
anchor, with ``hard_negative_weight`` added to the logit of each anchor's own (0 in the paper's
runs). Two sentences per example (pairs without negatives) train as the unsupervised loss on
(anchor, positive). The pooler is kept in evaluation (the paper's supervised setting).

Metric ``batch_top1``: the fraction of anchors whose own positive is the most similar of the
batch's positives.
"""

import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.losses._utils import l2_normalize
from cl_jax.methods._sentence import SentenceMethod


class SimCSE(SentenceMethod):
    name = "simcse"
    num_sentences = (1, 2, 3)

    @classmethod
    def validate(cls, config):
        super().validate(config)
        if config.method.temperature <= 0:
            raise ConfigError("method.temperature must be > 0 (SimCSE uses 0.05).")

    def loss(self, params, batch_stats, extra, batch, rng, step):
        c = self.config
        sentences = batch["sentences"]
        b, k, _ = sentences.shape
        dropout_rng, cutoff_rng = jax.random.split(rng)
        if k == 1:  # the same sentences twice, the second pass maybe cut off
            tokens = sentences[:, 0]
            keep = self.cutoff(cutoff_rng, batch["index"], tokens)
            if keep is None:
                z = self.embed(params, jnp.concatenate([tokens, tokens]), dropout_rng)
                z1, z2 = z[:b], z[b:]
            else:
                r1, r2 = jax.random.split(dropout_rng)
                z1 = self.embed(params, tokens, r1)
                z2 = self.embed(params, tokens, r2, keep)
            z3 = None
        else:
            z = self.embed(params, jnp.swapaxes(sentences, 0, 1).reshape(b * k, -1),
                           dropout_rng)
            z1, z2 = z[:b], z[b:2 * b]
            z3 = z[2 * b:] if k == 3 else None
        loss = losses.simcse(z1, z2, z3, temperature=c.temperature,
                             hard_negative_weight=c.hard_negative_weight)
        similarity = l2_normalize(z1) @ l2_normalize(z2).T
        top1 = jnp.mean(jnp.argmax(similarity, axis=1) == jnp.arange(b))
        return loss, self.aux({"batch_top1": top1})
