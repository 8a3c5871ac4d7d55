"""Augmentations of token sequences on the host (tf.data), deterministic per example seed.

``word_dropout`` drops whole words of a caption (Radford et al. 2021 train CLIP on raw
captions; word dropout is the text side of the seeds' multimodal augmentation, as EDA's
random deletion, Wei & Zou 2019): a word is a sentencepiece piece that starts with the word
boundary marker "▁" and the pieces that follow it. The BOS / EOS tokens stay; the kept
tokens are packed to the left and padded back to the sequence's length.
"""

import numpy as np
import tensorflow as tf


def word_start_table(tokenizer):
    """int32 (vocab,): 1 for pieces that start a word or are BOS / EOS, else 0."""
    starts = [int(tokenizer.piece(i).startswith("▁")) for i in range(tokenizer.vocab_size)]
    starts = np.asarray(starts, np.int32)
    starts[[tokenizer.bos_id, tokenizer.eos_id]] = 1
    return starts


def word_dropout(tokens, seed, rate, starts, keep_ids, pad_id=0):
    """``tokens`` (L,) with each word dropped with probability ``rate``; ``keep_ids``
    (BOS, EOS) are never dropped. ``starts``: ``word_start_table``. ``seed``: shape [2]."""
    if rate <= 0:
        return tokens
    length = tf.shape(tokens)[0]
    word = tf.cumsum(tf.gather(tf.constant(starts), tokens))
    drop = tf.random.stateless_uniform([length + 1], seed) < rate
    special = tf.reduce_any(tokens[:, None] == tf.constant(keep_ids, tokens.dtype)[None], 1)
    keep = (~tf.gather(drop, word) | special) & (tokens != pad_id)
    kept = tf.boolean_mask(tokens, keep)
    return tf.pad(kept, [[0, length - tf.shape(kept)[0]]], constant_values=pad_id)
