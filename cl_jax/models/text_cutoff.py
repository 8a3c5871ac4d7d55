"""Cutoff augmentations for text (Shen, Zheng, Cheng, Shen, Chen & Chen 2020, "A Simple but
Tough-to-Beat Data Augmentation Approach for Natural Language Understanding and Generation"),
as ConSERT uses them to make views (Yan, Li, Wang, Zhang, Wu & Xu 2021, "ConSERT: A
Contrastive Framework for Self-Supervised Sentence Representation Transfer", section 3.2).

Each function returns a multiplicative keep mask (1 keep, 0 cut), float32, drawn on device:
one independent draw per example from its own PRNG key, ``keys`` of shape (B,) (e.g.
``jax.vmap(jax.random.fold_in, (None, 0))(epoch_key, example_index)``), so a mask depends only
on its example's key. The caller multiplies the summed input embeddings ``x`` (B, L, W) by
``mask[..., None]`` (token, span) or ``mask[:, None, :]`` (feature). ConSERT cuts the output
of BERT's embedding layer (word + position + segment embeddings after its LayerNorm and
dropout) and leaves the attention mask alone; Shen et al. also zero the attention mask of cut
tokens and spans (pass ``valid & (mask > 0)`` as the new padding mask for that).

``ratio`` is a Python float in [0, 1], static under ``jit``
(``jax.jit(token_cutoff, static_argnames="ratio")``); ratio 0 gives all ones. The number cut
from a row of ``n`` non-pad tokens is ``int(n * ratio)``, the floor of the float64 product,
exactly as both reference codes round (so ``n = 100``, ``ratio = 0.29`` cuts 28). ``valid``
(B, L) is True at non-pad tokens; padding is never cut, and left, right or no padding all work.
"""

import jax
import jax.numpy as jnp
import numpy as np


def _static_ratio(ratio):
    ratio = float(ratio)  # a traced ratio fails here: it must be static
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"cutoff ratio must be in [0, 1], got {ratio}")
    return ratio


def _cut_counts(lengths, ratio, max_len):
    """``int(n * ratio)`` for each row length ``n``, from a table of the float64 products."""
    table = np.array([int(n * ratio) for n in range(max_len + 1)], np.int32)
    return jnp.asarray(table)[lengths]


def _cut_k_of(key, candidates, k):
    """Keep mask zeroing ``k`` positions drawn uniformly without replacement among
    ``candidates`` (bool, 1-D; ``k <= candidates.sum()``)."""
    scores = jnp.where(candidates, jax.random.uniform(key, candidates.shape), 2.0)
    rank = jnp.argsort(jnp.argsort(scores))  # non-candidates rank last
    return (rank >= k).astype(jnp.float32)


def _check(keys, valid):
    if valid.ndim != 2 or keys.shape[0] != valid.shape[0]:
        raise ValueError(f"keys must be (B,) and valid (B, L), got keys {keys.shape} and "
                         f"valid {valid.shape}")


def token_cutoff(keys, valid, ratio):
    """Token cutoff: per row, ``int(n * ratio)`` of its ``n`` non-pad tokens, drawn uniformly
    without replacement, have their whole embedding row (token and position) zeroed.
    Returns (B, L) float32.

    Convention: ConSERT ``_cutoff_embeddings(direction="row")`` (yym6472/ConSERT
    ``transformers/modeling_bert.py``: ``int(num_tokens * rate)`` indices of a shuffled
    ``range(num_tokens)``, so special tokens such as [CLS] and [SEP] can be cut). Shen et al.'s
    ``generate_token_cutoff_embedding`` draws the ``int(n * ratio)`` indices with replacement
    (``torch.randint``), so it may cut fewer distinct tokens.
    """
    valid = jnp.asarray(valid, bool)
    _check(keys, valid)
    counts = _cut_counts(valid.sum(1), _static_ratio(ratio), valid.shape[1])
    return jax.vmap(_cut_k_of)(keys, valid, counts)


def feature_cutoff(keys, width, ratio):
    """Feature cutoff: per example, ``int(width * ratio)`` of the ``width`` embedding columns,
    drawn uniformly without replacement, are zeroed at every position. Returns (B, width)
    float32.

    Convention: ConSERT ``_cutoff_embeddings(direction="column")`` (an independent set of
    columns per example). Shen et al.'s ``generate_dim_cutoff_embedding`` draws the columns
    with replacement.
    """
    k = int(width * _static_ratio(ratio))
    candidates = jnp.ones(width, bool)
    return jax.vmap(lambda key: _cut_k_of(key, candidates, k))(keys)


def _span_of(key, valid, k):
    n = valid.sum()
    room = n - k
    start = jnp.floor(jax.random.uniform(key) * room).astype(jnp.int32)
    start = jnp.clip(start, 0, jnp.maximum(room - 1, 0))
    index = jnp.cumsum(valid) - 1  # position among the non-pad tokens
    cut = valid & (index >= start) & (index < start + k)
    return 1.0 - cut.astype(jnp.float32)


def span_cutoff(keys, valid, ratio):
    """Span cutoff: per row, one contiguous span of ``k = int(n * ratio)`` of its ``n`` non-pad
    tokens is zeroed, starting at non-pad token ``floor(u (n - k))``, ``u ~ U[0, 1)``. Returns
    (B, L) float32.

    Convention: Shen et al. ``generate_span_cutoff_embedding`` (dinghanshen/Cutoff
    ``transformers/trainer.py``: ``start = int(torch.rand(1) * (input_lens[i] -
    cutoff_length))``). The start is uniform on ``0 .. n - k - 1``, so unless ``k = n`` the span
    never covers the last non-pad token (the end-of-sentence token). ConSERT's paper uses
    only token and feature cutoff; its code's ``span`` option is another augmentation (it keeps
    one span of ``int(n (1 - ratio))`` tokens and pads the rest).
    """
    valid = jnp.asarray(valid, bool)
    _check(keys, valid)
    counts = _cut_counts(valid.sum(1), _static_ratio(ratio), valid.shape[1])
    return jax.vmap(_span_of)(keys, valid, counts)
