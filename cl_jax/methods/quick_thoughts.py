"""Quick-Thoughts (Logeswaran & Lee 2018, "An efficient framework for learning sentence
representations", arXiv:1803.02893): an input encoder ``f`` and a context encoder ``g``;
each sentence must pick its neighbours out of the batch by ``f(s) . g(s')``
(:func:`cl_jax.losses.quick_thoughts`). The sentence embedding is ``[f(s); g(s)]``.

The paper's batch is 400 contiguous sentences of BookCorpus. Here an example is a run of
``data.text_chunk`` consecutive sentences of one document (``cl_jax.data.text``), so the
sampler keeps the order inside each run, and the batch's ``batch_size`` runs give
``batch_size * text_chunk`` candidates. Deviations: Transformers for the GRU
encoders; runs are windows that may overlap, so a sentence can meet a copy of itself or of
its neighbour among the candidates of another run (rare in a large corpus).
"""

import flax.linen as nn
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.methods._sentence import SentenceMethod


class TwoEncoders(nn.Module):
    """The input encoder ``f`` (the run's text tower) and a context encoder ``g``, a copy of
    it with its own parameters."""

    encoder: nn.Module

    def setup(self):
        self.context = self.encoder.clone()

    def __call__(self, tokens, train: bool = True, keep=None):
        return self.encoder(tokens, train), self.context(tokens, train)

    def features(self, tokens):
        f, g = self(tokens, train=False)
        return jnp.concatenate([f, g], axis=-1)


class QuickThoughts(SentenceMethod):
    name = "quick_thoughts"
    supports_grad_cache = False

    @classmethod
    def validate(cls, config):
        super().validate(config)
        if config.data.text_chunk < 2:
            raise ConfigError("quick_thoughts trains on runs of consecutive sentences: set "
                              "--config.data.text_chunk to 2 or more (the config's default "
                              "is 8).")

    @classmethod
    def sentence_counts(cls, config):
        return (config.data.text_chunk,)

    def build_network(self, encoder, num_classes):
        return TwoEncoders(encoder)

    def init_variables(self, rng, sample):
        return self.network.init({"params": rng, "dropout": rng}, sample["sentences"][:, 0],
                                 train=True)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        sentences = batch["sentences"]
        b, k, length = sentences.shape
        f, g = self.network.apply({"params": params}, sentences.reshape(b * k, length),
                                  train=True, rngs={"dropout": rng})
        loss = losses.quick_thoughts(f, g, chunk=k)
        return loss, self.aux({})

    def text_features(self, variables, tokens):
        return self.network.apply({"params": variables["params"]}, tokens,
                                  method=TwoEncoders.features)
