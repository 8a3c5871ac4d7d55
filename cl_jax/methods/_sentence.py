"""What the sentence-embedding methods share: the network, its inputs, the embedding evaluated.

Batch field ``sentences``: int32 (B, K, L) token ids, K sentences per example (one sentence;
a pair; anchor, positive, hard negative), ``[bos] pieces [eos] pad`` (``cl_jax.data.text``).
The encoder is the run's text tower (``config.model.text``): token ids -> pooled (B, W).

``SentenceNetwork`` adds SimCSE's MLP pooler (Gao et al. 2021, ``MLPLayer``: a dense layer of
the encoder's width and tanh, on the pooled feature), used in training and, unless
``mlp_only_train``, in evaluation too; and an optional classifier (Sentence-BERT's softmax
head). ``text_features`` is what every text evaluator embeds (STS, probes, retrieval).

Cutoff (Shen et al. 2020; ``cl_jax.models.text_cutoff``): ``method.cutoff`` = ``token`` /
``feature`` / ``span`` with ``method.cutoff_ratio`` zeroes token rows, embedding columns or a
span of the second view's input embeddings; the masks are drawn per example from the step's
key folded with the example's index, so they are the same on any number of devices.

GradCache (``config.grad_cache_chunk=K``; Gao et al. 2021, ``cl_jax.grad_cache``): every
``embed`` runs in chunks of K rows, keeping one chunk's activations, with the exact
full-batch gradient (the text tower has no batch statistics); the dropout masks are drawn
per chunk, so they differ from an uncached run's.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax import grad_cache
from cl_jax.errors import ConfigError
from cl_jax.methods.base import LossAux, Method
from cl_jax.models import text_cutoff

CUTOFFS = ("", "token", "feature", "span")


class SentenceNetwork(nn.Module):
    """Text encoder, SimCSE's MLP pooler (``pooler=True``) and an optional classifier on
    features of ``classifier_inputs`` (SBERT's softmax objective)."""

    encoder: nn.Module
    pooler: bool = False
    mlp_only_train: bool = False
    num_labels: int = 0

    def setup(self):
        if self.pooler:
            self.pooler_dense = nn.Dense(self.encoder.width, name="pooler")
        if self.num_labels:
            self.classifier = nn.Dense(self.num_labels, name="classifier")

    def __call__(self, tokens, train: bool = True, keep=None):
        features = self.encoder(tokens, train, keep=keep)
        if self.pooler and (train or not self.mlp_only_train):
            features = jnp.tanh(self.pooler_dense(features))
        return features

    def features(self, tokens):
        return self(tokens, train=False)

    def classify(self, features):
        return self.classifier(features)


def cutoff_keep(kind, ratio, rng, index, tokens, width, pad_id):
    """The cutoff mask of ``kind`` for (B, L) ``tokens``, broadcastable to (B, L, width)."""
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(index)
    valid = tokens != pad_id
    if kind == "token":
        return text_cutoff.token_cutoff(keys, valid, ratio)[..., None]
    if kind == "span":
        return text_cutoff.span_cutoff(keys, valid, ratio)[..., None]
    return text_cutoff.feature_cutoff(keys, width, ratio)[:, None, :]


class SentenceMethod(Method):
    """Base of the sentence-embedding methods: the network on ``sentences``."""

    inputs = ("sentences", "index")
    min_views = 0
    supports_grad_cache = True
    #: How many sentences per example the method reads (columns of the text split).
    num_sentences = (1,)

    @classmethod
    def sentence_counts(cls, config):
        """The numbers of sentences per example the method trains on with the run config."""
        return cls.num_sentences
    #: Classes of the classifier head (SBERT softmax), 0 for none.
    num_labels = 0

    @classmethod
    def validate(cls, config):
        if config.model.encoder != "text":
            raise ConfigError(f"{config.method.name} embeds sentences: set "
                              "--config.model.encoder=text (the text transformer of "
                              "config.model.text).")
        cutoff = config.method.get("cutoff", "")
        if cutoff not in CUTOFFS:
            raise ConfigError(f"method.cutoff is {cutoff!r}; choose one of "
                              f"{', '.join(map(repr, CUTOFFS))}.")

    def build_network(self, encoder, num_classes):
        c = self.config
        return SentenceNetwork(encoder, pooler=c.get("pooler", False),
                               mlp_only_train=c.get("mlp_only_train", False),
                               num_labels=self.num_labels)

    def sample_inputs(self, config):
        return {"sentences": jnp.ones((2, 1, config.model.text.max_len), jnp.int32)}

    def init_variables(self, rng, sample):
        tokens = sample["sentences"][:, 0]
        variables = self.network.init({"params": rng, "dropout": rng}, tokens, train=True)
        if self.num_labels:  # the classifier's parameters, on SBERT's [u; v; |u - v|]
            width = self.network.encoder.width
            head = self.network.init(rng, jnp.zeros((1, 3 * width)),
                                     method=SentenceNetwork.classify)
            variables = {"params": {**variables["params"], **head["params"]}}
        return variables

    def embed(self, params, tokens, rng, keep=None):
        """Training-mode embeddings of (B, L) ``tokens``, dropout from ``rng``; in chunks of
        ``grad_cache_chunk`` rows through GradCache when that is > 0."""
        apply = lambda p, x, r: self.network.apply({"params": p}, x["tokens"], train=True,
                                                   keep=x["keep"], rngs={"dropout": r})
        inputs = {"tokens": tokens, "keep": keep}
        if self.grad_cache_chunk:
            return grad_cache.cached_embed(apply, self.grad_cache_chunk)(params, inputs, rng)
        return apply(params, inputs, rng)

    def cutoff(self, rng, index, tokens):
        """The configured cutoff mask for ``tokens``, or None."""
        c = self.config
        kind = c.get("cutoff", "")
        if not kind or c.cutoff_ratio <= 0:
            return None
        text = self.network.encoder
        return cutoff_keep(kind, c.cutoff_ratio, rng, index, tokens, text.width, text.pad_id)

    def text_features(self, variables, tokens):
        """The sentence embeddings every text evaluator scores: inference mode, no dropout."""
        return self.network.apply({"params": variables["params"]}, tokens,
                                  method=SentenceNetwork.features)

    def aux(self, metrics):
        return LossAux(metrics=metrics, batch_stats={})
