"""BERT / RoBERTa encoder: token ids (B, L) -> a pooled sentence feature (B, hidden).

The architecture of Hugging Face ``transformers``' ``BertModel`` and ``RobertaModel`` (Devlin
et al. 2019, "BERT"; Liu et al. 2019, "RoBERTa"), so that their pretrained weights load
unchanged (``cl_jax.models.hf.load_hf_encoder``):

- embeddings ``x = Drop(LN(word[tokens] + position[p] + token_type[0]))``: BERT's position ids
  are ``p = 0 .. L-1``; RoBERTa's (``roberta_positions=True``, fairseq's ``make_positions``,
  ``create_position_ids_from_input_ids`` in transformers) count only the non-pad tokens and
  start at ``pad_id + 1``, and a pad token gets position ``pad_id``. Every token has segment 0.
- ``num_layers`` post-norm layers (Vaswani et al. 2017's original placement, unlike the
  pre-norm ``cl_jax.models.text``)::

      x = LN(x + Drop(Dense(MHA(x))))
      x = LN(x + Drop(Dense(act(Dense(x)))))

  with ``act`` the config's ``hidden_act`` (``gelu``: exact erf GELU; ``gelu_new`` /
  ``gelu_pytorch_tanh``: the tanh approximation; ``relu``) and dropout on the attention
  weights too. LayerNorm epsilon ``layer_norm_eps`` (1e-12 BERT, 1e-5 RoBERTa), its variance
  as ``E[(x - mean)^2]`` as PyTorch computes it.
- pooling: ``cls`` (the feature at position 0, where the tokenizer puts [CLS] / <s>),
  ``mean`` (over the non-pad tokens, Sentence-BERT, Reimers & Gurevych 2019) or ``pooler``
  (BERT's ``tanh(Dense(x[:, 0]))``, trained for next-sentence prediction; its parameters
  exist only with this pooling).

Padding is every position whose id is ``pad_id``: no position attends to a padding key, so
padding never changes the features of the other tokens (transformers' ``attention_mask``).
Attention weights are computed in float32 whatever the compute ``dtype``. Dropout acts only
with ``train=True`` and draws from the ``dropout`` rng collection. A fresh ``init`` draws
every weight from N(0, 0.02) (BERT's ``initializer_range``), biases zero.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax.models.text import masked_mean

POOLINGS = ("cls", "mean", "pooler")
ACTIVATIONS = {
    "gelu": functools.partial(nn.gelu, approximate=False),
    "gelu_new": functools.partial(nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(nn.gelu, approximate=True),
    "relu": nn.relu,
}


def position_ids(tokens, pad_id, roberta_positions):
    """int (B, L): ``0 .. L-1``, or RoBERTa's ``pad_id + (number of non-pad tokens up to and
    including this one)`` on non-pad tokens and ``pad_id`` on padding."""
    if not roberta_positions:
        return jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    valid = (tokens != pad_id).astype(jnp.int32)
    return jnp.cumsum(valid, axis=1) * valid + pad_id


class BertLayer(nn.Module):
    """Post-norm layer ``LN(x + Drop(Dense(MHA(x))))`` then ``LN(x + Drop(FFN(x)))``.

    ``mask`` (B, 1, 1, L) is True on the keys that may be attended to.
    """

    num_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    deterministic: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask):
        b, t, width = x.shape
        head = width // self.num_heads
        dense = functools.partial(nn.Dense, dtype=self.dtype, kernel_init=_normal(0.02))
        norm = functools.partial(nn.LayerNorm, epsilon=self.layer_norm_eps,
                                 use_fast_variance=False, dtype=self.dtype)
        drop = nn.Dropout(self.hidden_dropout, deterministic=self.deterministic)
        q, k, v = (dense(width, name=name)(x).reshape(b, t, self.num_heads, head)
                   for name in ("query", "key", "value"))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(head)
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        weights = nn.Dropout(self.attention_dropout, deterministic=self.deterministic)(
            jax.nn.softmax(logits, axis=-1)).astype(self.dtype)
        y = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, width)
        x = norm(name="attention_norm")(x + drop(dense(width, name="attention_output")(y)))
        y = ACTIVATIONS[self.hidden_act](dense(self.intermediate_size, name="intermediate")(x))
        return norm(name="output_norm")(x + drop(dense(width, name="output")(y)))


class BertEncoder(nn.Module):
    """BERT / RoBERTa: int tokens (B, L), ``L <= max_len``, -> float32 features (B, hidden).

    With ``return_tokens=True`` the call returns ``(pooled, token_features, valid)``: the last
    layer's per-token features (B, L, hidden) float32 (transformers' ``last_hidden_state``)
    and the non-pad mask (B, L) bool; ``token_features`` returns the last two alone. ``keep``,
    a mask broadcastable to (B, L, hidden), multiplies the embedding layer's output (after its
    LayerNorm and dropout, where ConSERT cuts: ``cl_jax.models.text_cutoff``). ``width`` is
    ``hidden_size``, the feature size (as ``TextTransformer``'s). Parameters are float32;
    ``dtype`` is the compute dtype.
    """

    vocab_size: int
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_id: int = 0
    roberta_positions: bool = False
    pooling: str = "cls"
    dtype: jnp.dtype = jnp.float32

    @property
    def width(self):
        return self.hidden_size

    @property
    def max_len(self):
        """The longest token sequence the position embeddings cover."""
        if self.roberta_positions:
            return self.max_position_embeddings - self.pad_id - 1
        return self.max_position_embeddings

    @nn.compact
    def __call__(self, tokens, train: bool = False, return_tokens: bool = False, keep=None):
        self._check(tokens)
        valid = tokens != self.pad_id
        embed = functools.partial(nn.Embed, features=self.hidden_size, dtype=self.dtype,
                                  embedding_init=_normal(0.02))
        x = embed(self.vocab_size, name="word_embeddings")(tokens)
        x = x + embed(self.max_position_embeddings, name="position_embeddings")(
            position_ids(tokens, self.pad_id, self.roberta_positions))
        x = x + embed(self.type_vocab_size, name="token_type_embeddings")(jnp.zeros_like(tokens))
        x = nn.LayerNorm(epsilon=self.layer_norm_eps, use_fast_variance=False, dtype=self.dtype,
                         name="embedding_norm")(x)
        x = nn.Dropout(self.hidden_dropout, deterministic=not train)(x)
        if keep is not None:  # cutoff: zeroed token rows / embedding columns
            x = x * keep.astype(x.dtype)
        for i in range(self.num_layers):
            x = BertLayer(self.num_heads, self.intermediate_size, self.hidden_act,
                          self.layer_norm_eps, self.hidden_dropout, self.attention_dropout,
                          not train, self.dtype, name=f"layer_{i}")(x, valid[:, None, None, :])
        x = x.astype(jnp.float32)
        pooled = self._pool(x, valid)
        if return_tokens:
            return pooled, x, valid
        return pooled

    def token_features(self, tokens, train: bool = False):
        """Per-token features (B, L, hidden) float32 and the non-pad mask (B, L) bool."""
        _, features, valid = self(tokens, train=train, return_tokens=True)
        return features, valid

    def _pool(self, x, valid):
        if self.pooling == "mean":
            return masked_mean(x, valid)
        if self.pooling == "pooler":
            dense = nn.Dense(self.hidden_size, dtype=self.dtype, kernel_init=_normal(0.02),
                             name="pooler")
            return jnp.tanh(dense(x[:, 0])).astype(jnp.float32)
        return x[:, 0]

    def _check(self, tokens):
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"BertEncoder: tokens must be integer ids (batch, length), got "
                             f"{tokens.dtype} {tokens.shape}.")
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"BertEncoder: {tokens.shape[1]} tokens per text exceed the "
                             f"{self.max_len} positions of the model; encode with max_len="
                             f"{self.max_len} or less.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"BertEncoder: pooling must be one of {POOLINGS}, got "
                             f"{self.pooling!r}.")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"BertEncoder: hidden_act must be one of {tuple(ACTIVATIONS)}, got "
                             f"{self.hidden_act!r}.")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"BertEncoder: hidden_size {self.hidden_size} is not divisible by "
                             f"num_heads {self.num_heads}.")


def _normal(std):
    return nn.initializers.normal(stddev=std)
