"""IS-BERT (Zhang, He, Liu, Lim & Bing 2020, "An Unsupervised Sentence Embedding Method by
Mutual Information Maximization", EMNLP, arXiv:2009.12061), on the reference
yanzhangnlp/IS-BERT (``examples/training/nli/unsupervised_training_nli.py``: a
``Transformer``, ``models.CNN`` and mean ``Pooling``, trained with
``losses.MutualInformationLoss``).

One sentence per example. The text tower's token features ``h`` (B, L, W) go through 1-D
convolutions over the tokens, one per kernel size ``k`` in ``method.kernel_sizes`` (1, 3, 5),
``method.channels`` (256) output channels each, stride 1, ``(k - 1) / 2`` zeros of padding on
either side so that every token keeps one feature per kernel; their outputs concatenated are
the local (n-gram) features ``l`` (B, L, 3 * 256). The global feature is the mean of ``l``
over the sentence's non-pad tokens ([bos] and [eos] included, as the reference's
``attention_mask`` includes [CLS] and [SEP]); it is the sentence embedding every evaluator
scores. The loss maximises the Jensen-Shannon MI estimate between each token's local feature
and its sentence's global feature against the batch's other sentences,
:func:`cl_jax.losses.mutual_information.dim_local_global` (``method.measure``: ``jsd``, the
paper's; ``nce``, DIM's InfoNCE form).

Activation (``method.activation``): the paper's eq. 1 applies a ReLU to each convolution;
the reference's ``models/CNN.py`` has none (a linear map of the token features), and that is
the default here; ``relu`` gives the paper's.

Padding. The reference's ``Conv1d`` zero-pads only the ends of the padded batch and reads the
transformer's outputs at [PAD] positions as tokens, so there a sentence's last local features
depend on how long the other sentences of its batch are. Here the token features are set to 0
at padding before the convolutions, which is the reference's computation on each sentence
alone (its own zero padding), so padding never changes a local or the global feature.

Convolution initialisation as PyTorch's ``Conv1d`` default (weights and biases uniform on
``+-1 / sqrt(W k)``). Metric ``local_top1``: the fraction of valid token positions whose
highest-scoring global feature in the batch is their own sentence's.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax.errors import ConfigError
from cl_jax.losses.mutual_information import MEASURES, dim_local_global
from cl_jax.methods._sentence import SentenceMethod
from cl_jax.models.text import masked_mean

ACTIVATIONS = {"none": lambda x: x, "relu": nn.relu}


def _uniform(bound):
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                   bound)


class NGramNetwork(nn.Module):
    """Text encoder, n-gram convolutions over its token features and their masked mean.

    Returns ``(local (B, L, C), global (B, C), valid (B, L))``, ``C = channels *
    len(kernel_sizes)``; local features at padding are those of zero inputs (never read by the
    loss or the mean).
    """

    encoder: nn.Module
    channels: int = 256
    kernel_sizes: tuple = (1, 3, 5)
    activation: str = "none"

    @nn.compact
    def __call__(self, tokens, train: bool = True):
        _, h, valid = self.encoder(tokens, train, return_tokens=True)
        h = jnp.where(valid[..., None], h, 0.0)
        local = jnp.concatenate([self._conv(h, k) for k in self.kernel_sizes], axis=-1)
        local = ACTIVATIONS[self.activation](local)
        return local, masked_mean(local, valid), valid

    def _conv(self, h, k):
        bound = 1.0 / math.sqrt(h.shape[-1] * k)
        pad = (k - 1) // 2
        return nn.Conv(self.channels, (k,), padding=[(pad, pad)], kernel_init=_uniform(bound),
                       bias_init=_uniform(bound), name=f"conv{k}")(h)

    def features(self, tokens):
        return self(tokens, train=False)[1]


class ISBERT(SentenceMethod):
    name = "isbert"
    supports_grad_cache = False  # its loss reads token features, not through embed()

    @classmethod
    def validate(cls, config):
        super().validate(config)
        m = config.method
        if m.measure not in MEASURES:
            raise ConfigError(f"method.measure is {m.measure!r}; choose one of "
                              f"{', '.join(MEASURES)} (IS-BERT uses jsd).")
        if m.activation not in ACTIVATIONS:
            raise ConfigError(f"method.activation is {m.activation!r}; choose one of "
                              f"{', '.join(ACTIVATIONS)}.")
        if not m.kernel_sizes or any(k < 1 or k % 2 == 0 for k in m.kernel_sizes):
            raise ConfigError(f"method.kernel_sizes {tuple(m.kernel_sizes)} must be odd "
                              "(each keeps one feature per token; IS-BERT uses 1, 3, 5).")

    def build_network(self, encoder, num_classes):
        c = self.config
        return NGramNetwork(encoder, channels=c.channels, kernel_sizes=tuple(c.kernel_sizes),
                            activation=c.activation)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        local, global_, valid = self.network.apply(
            {"params": params}, batch["sentences"][:, 0], train=True, rngs={"dropout": rng})
        loss = dim_local_global(local, global_, valid, measure=self.config.measure)
        scores = jnp.einsum("blc,dc->bld", local, global_)
        own = jnp.argmax(scores, axis=-1) == jnp.arange(scores.shape[0])[:, None]
        top1 = jnp.sum(own & valid) / jnp.maximum(jnp.sum(valid), 1)
        return loss, self.aux({"local_top1": top1})

    def text_features(self, variables, tokens):
        return self.network.apply({"params": variables["params"]}, tokens,
                                  method=NGramNetwork.features)
