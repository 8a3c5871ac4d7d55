"""CERT (Fang, Wang, Zhou, Ding & Xie 2020, "CERT: Contrastive Self-supervised Learning for
Language Understanding", arXiv:2005.12766): MoCo on a sentence and its back-translation.

Each example is (sentence, paraphrase): the query is the online encoder's embedding of the
sentence (the text tower and the MLP pooler as MoCo v2's head), the key the momentum
encoder's embedding of the paraphrase, the negatives a FIFO queue of past keys; the loss is
:func:`cl_jax.losses.info_nce` against the queue (He et al. 2020, Chen et al. 2020 for the
MLP head and T = 0.2). The momentum encoder is an EMA of the online one (``momentum``), updated
inside the jitted step; the keys of each batch enter the queue after the step. The
embedding evaluated is the encoder's, without the head.

Back-translation needs a translation model, which cannot be downloaded here: the pairs must
be made beforehand (``--config.data.source=pairs --config.data.train_file=FILE``, a TSV of
sentence / paraphrase columns). The embedded default stands in WordNet's (gloss, usage
example) pairs, which are not paraphrases.
"""

import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.losses._utils import l2_normalize
from cl_jax.methods._queue import check_queue_size, enqueue, random_unit_rows
from cl_jax.methods._sentence import SentenceMethod
from cl_jax.methods._target import init_target, update_target

TARGET_MODULES = ("encoder", "pooler")


class CERT(SentenceMethod):
    name = "cert"
    num_sentences = (2, 3)  # (sentence, paraphrase[, unused third column])
    supports_grad_cache = False

    @classmethod
    def validate(cls, config):
        super().validate(config)
        check_queue_size(config.method.queue_size, config.batch_size)

    def build_target_network(self, encoder):
        return self.build_network(encoder, 0)

    def init_extra(self, params, batch_stats, rng):
        width = self.network.encoder.width
        return {**init_target(params, batch_stats, TARGET_MODULES),
                "queue": random_unit_rows(rng, (self.config.queue_size, width)),
                "queue_ptr": jnp.zeros((), jnp.int32)}

    def loss(self, params, batch_stats, extra, batch, rng, step):
        c = self.config
        sentences = batch["sentences"]
        query_rng, key_rng = jax.random.split(rng)
        q = self.embed(params, sentences[:, 0], query_rng)
        k = self.target_network.apply({"params": extra["target_params"]}, sentences[:, 1],
                                      train=True, rngs={"dropout": key_rng})
        k = jax.lax.stop_gradient(l2_normalize(k))
        queue = jax.lax.stop_gradient(extra["queue"])
        loss = losses.info_nce(q, k, negatives=queue, temperature=c.temperature)
        return loss, self.aux({}).replace(extra={"keys": k})

    def update_extra(self, extra, params, aux, step):
        queue, ptr = enqueue(extra["queue"], extra["queue_ptr"], aux.extra["keys"])
        return {"target_params": update_target(extra["target_params"], params,
                                               self.config.momentum),
                "target_batch_stats": extra["target_batch_stats"], "queue": queue,
                "queue_ptr": ptr}
