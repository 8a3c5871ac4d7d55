"""Text Transformer: token ids (B, L) -> a pooled text feature (B, D).

The text tower of CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural
Language Supervision", section 2.4: width 512, 12 layers, 8 heads, causal self-attention, the
feature at the end-of-text token, a bias-free linear projection ``text_projection``), and with
``causal=False`` a BERT-style bidirectional encoder (Devlin et al. 2019) with ``cls`` or
``mean`` pooling (Sentence-BERT, Reimers & Gurevych 2019) for sentence-embedding methods.

``x = token_embedding[tokens] + pos_embedding[:L]``, then ``depth`` pre-norm blocks
(Vaswani et al. 2017 with the LayerNorm before each sub-layer, as CLIP and GPT-2)
``x = x + Drop(MHA(LN(x))); x = x + Drop(MLP(LN(x)))`` (MLP: Linear(mlp_ratio * width) -
exact GELU - Linear), a final LayerNorm, pooling, and the optional projection. LayerNorm
epsilon 1e-5 (PyTorch's, which CLIP uses). Initialisation as CLIP's ``initialize_parameters``
(openai/CLIP ``model.py``): token embedding N(0, 0.02), position embedding N(0, 0.01), q/k/v
N(0, width^-1/2), attention output and MLP output N(0, width^-1/2 (2 depth)^-1/2), MLP input
N(0, (2 width)^-1/2), projection N(0, width^-1/2), biases zero.

Padding is every position whose id is ``pad_id``; no position attends to a padding key, so
padding never changes the features of the other tokens. Pooling:

- ``eos``: the feature at the last non-pad position of each row. CLIP takes the argmax of the
  token ids, because its end-of-text token has the highest id; with a sentencepiece vocabulary
  (``cl_jax.data.tokenizer``, EOS id 3) the end-of-text token is instead the last token before
  the padding, which is what ``Tokenizer.encode(..., add_eos=True)`` puts there, truncation
  included. With ``causal=True`` only this position has seen the whole text.
- ``mean``: the mean of the features of the non-pad tokens.
- ``cls``: the feature at position 0 (the caller puts a BOS / CLS token there).

A row of only padding gives finite features (attention spreads uniformly; ``mean`` gives 0).
Dropout (on the embeddings, the attention weights and each residual branch, as BERT and
GPT-2) acts only with ``train=True`` and draws from the ``dropout`` rng collection.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

POOLINGS = ("eos", "mean", "cls")


def _normal(std):
    return nn.initializers.normal(stddev=std)


def masked_mean(x, valid):
    """The mean of ``x`` (B, L, W) over the positions where ``valid`` (B, L); 0 for none."""
    w = valid.astype(jnp.float32)
    return jnp.einsum("bl,blw->bw", w, x) / jnp.maximum(w.sum(1), 1.0)[:, None]


class TextBlock(nn.Module):
    """Pre-norm block ``x + Drop(MHA(LN(x)))`` then ``x + Drop(MLP(LN(x)))``, masked attention.

    ``mask`` (B, 1, L, L) is True where query ``i`` may attend to key ``j``. Attention weights
    ``softmax(q k^T / sqrt(d_head))`` are computed in float32 whatever the compute dtype.
    """

    num_heads: int
    mlp_ratio: int = 4
    depth: int = 12  # of the whole tower: scales the output projections' initialisation
    dropout_rate: float = 0.0
    deterministic: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask):
        b, t, width = x.shape
        head = width // self.num_heads
        out_std = width ** -0.5 * (2 * self.depth) ** -0.5
        drop = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)
        y = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm1")(x)
        qkv = nn.Dense(3 * width, dtype=self.dtype, kernel_init=_normal(width ** -0.5),
                       name="qkv")(y)
        q, k, v = jnp.split(qkv.reshape(b, t, 3 * self.num_heads, head), 3, axis=2)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(head)
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        weights = drop(jax.nn.softmax(logits, axis=-1)).astype(self.dtype)
        y = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, width)
        x = x + drop(nn.Dense(width, dtype=self.dtype, kernel_init=_normal(out_std),
                              name="proj")(y))
        y = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm2")(x)
        y = nn.Dense(self.mlp_ratio * width, dtype=self.dtype,
                     kernel_init=_normal((2 * width) ** -0.5), name="fc1")(y)
        y = nn.gelu(y, approximate=False)
        return x + drop(nn.Dense(width, dtype=self.dtype, kernel_init=_normal(out_std),
                                 name="fc2")(y))


class TextTransformer(nn.Module):
    """Text encoder: int tokens (B, L), ``L <= max_len``, -> float32 features (B, D).

    ``D`` is ``output_dim``, or ``width`` when ``output_dim`` is 0 (no projection). With
    ``return_tokens=True`` the call returns ``(pooled, token_features, mask)``: the per-token
    features after the final LayerNorm (B, L, width) float32 and the non-pad mask (B, L) bool;
    ``token_features`` returns the last two alone. Parameters are float32 and the same either
    way; ``dtype`` is the compute dtype. ``keep``, a mask broadcastable to (B, L, width),
    multiplies the summed token and position embeddings before the first block: the cutoff
    augmentations (``cl_jax.models.text_cutoff``).
    """

    vocab_size: int
    width: int = 512
    depth: int = 12
    num_heads: int = 8
    mlp_ratio: int = 4
    max_len: int = 77
    causal: bool = True
    pooling: str = "eos"
    output_dim: int = 0
    dropout_rate: float = 0.0
    pad_id: int = 0
    dtype: jnp.dtype = jnp.float32
    remat: bool = False  # recompute each block's activations in the backward pass

    @nn.compact
    def __call__(self, tokens, train: bool = False, return_tokens: bool = False, keep=None):
        self._check(tokens)
        length = tokens.shape[1]
        valid = tokens != self.pad_id
        mask = valid[:, None, None, :]
        if self.causal:
            mask = mask & jnp.tril(jnp.ones((length, length), bool))[None, None]
        x = nn.Embed(self.vocab_size, self.width, embedding_init=_normal(0.02),
                     dtype=self.dtype, name="token_embedding")(tokens)
        pos = self.param("pos_embedding", _normal(0.01), (self.max_len, self.width), jnp.float32)
        x = x + pos[:length].astype(self.dtype)[None]
        if keep is not None:  # cutoff: zeroed token rows / embedding columns
            x = x * keep.astype(self.dtype)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        block = nn.remat(TextBlock) if self.remat else TextBlock
        for i in range(self.depth):
            x = block(self.num_heads, self.mlp_ratio, self.depth, self.dropout_rate,
                      not train, self.dtype, name=f"block_{i}")(x, mask)
        x = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm")(x).astype(jnp.float32)
        pooled = self._pool(x, valid)
        if self.output_dim:
            pooled = nn.Dense(self.output_dim, use_bias=False, dtype=self.dtype,
                              kernel_init=_normal(self.width ** -0.5),
                              name="projection")(pooled).astype(jnp.float32)
        if return_tokens:
            return pooled, x, valid
        return pooled

    def token_features(self, tokens, train: bool = False):
        """Per-token features (B, L, width) float32 and the non-pad mask (B, L) bool."""
        _, features, valid = self(tokens, train=train, return_tokens=True)
        return features, valid

    def _pool(self, x, valid):
        if self.pooling == "cls":
            return x[:, 0]
        if self.pooling == "mean":
            return masked_mean(x, valid)
        last = jnp.max(jnp.where(valid, jnp.arange(x.shape[1]), 0), axis=1)
        return jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]

    def _check(self, tokens):
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"TextTransformer: tokens must be integer ids (batch, length), got "
                             f"{tokens.dtype} {tokens.shape}.")
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"TextTransformer: {tokens.shape[1]} tokens per text exceed max_len "
                             f"{self.max_len}; encode with max_len={self.max_len} or raise the "
                             "model's max_len.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"TextTransformer: pooling must be one of {POOLINGS}, got "
                             f"{self.pooling!r}.")
        if self.width % self.num_heads:
            raise ValueError(f"TextTransformer: width {self.width} is not divisible by "
                             f"num_heads {self.num_heads}.")
