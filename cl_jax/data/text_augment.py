"""Augmentations of token sequences on the host (tf.data), deterministic per example seed.

``word_dropout`` drops whole words of a caption (Radford et al. 2021 train CLIP on raw
captions; word dropout is the text side of the seeds' multimodal augmentation, as EDA's
random deletion, Wei & Zou 2019): a word is a sentencepiece piece that starts with the word
boundary marker "▁" and the pieces that follow it. The BOS / EOS tokens stay; the kept
tokens are packed to the left and padded back to the sequence's length. ``word_shuffle``
shuffles words within a window. Sentence runs apply both to every sentence (augment.word_dropout,
augment.word_shuffle_window).
"""

import numpy as np
import tensorflow as tf


def word_start_table(tokenizer):
    """int32 (vocab,): 1 for pieces that start a word or are BOS / EOS, else 0.

    A word starts at a piece with sentencepiece's "▁" or byte-level BPE's "Ġ" (RoBERTa); in
    a WordPiece vocabulary (BERT), where continuations carry "##", at every other piece."""
    pieces = [tokenizer.piece(i) for i in range(tokenizer.vocab_size)]
    if any(p.startswith("##") for p in pieces):
        starts = [not p.startswith("##") for p in pieces]
    else:
        starts = [p.startswith(("▁", "Ġ")) for p in pieces]
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


def word_shuffle(tokens, seed, window, starts, keep_ids, pad_id=0):
    """``tokens`` (L,) with its words slightly shuffled: word ``i`` moves to the rank of
    ``i + U(0, window + 1)``, so no word moves more than ``window`` places (Lample et al.
    2018, "Unsupervised Machine Translation Using Monolingual Corpora Only", section 2.3,
    the noise model with ``k = window``; ``window=1`` swaps neighbours, EDA's random swap
    kept local). A word's pieces stay together and in order; ``keep_ids`` (BOS, EOS) and the
    padding stay where they are."""
    if window <= 0:
        return tokens
    length = tf.shape(tokens)[0]
    special = tf.reduce_any(tokens[:, None] == tf.constant(keep_ids, tokens.dtype)[None], 1)
    movable = ~special & (tokens != pad_id)
    word = tf.cumsum(tf.gather(tf.constant(starts), tokens))
    noise = tf.random.stateless_uniform([length + 1], seed, 0.0, window + 1.0)
    position = tf.range(length)
    # A movable token's key: its word's noisy place, then its place within the word.
    key = tf.cast(tf.gather(noise, word) + tf.cast(word, tf.float32), tf.float64) \
        + tf.cast(position, tf.float64) * 1e-6
    places = tf.boolean_mask(position, movable)
    order = tf.gather(places, tf.argsort(tf.boolean_mask(key, movable), stable=True))
    moved = tf.tensor_scatter_nd_update(tokens, places[:, None], tf.gather(tokens, order))
    return moved


def synonym_table(tokenizer, synonyms, max_synonyms=8):
    """int32 (vocab, max_synonyms): for a piece that is a whole word on its own (sentencepiece
    "▁dog"), the ids of up to ``max_synonyms`` synonyms that are single pieces too ("▁hound"),
    padded with -1. ``synonyms``: ``{word: synonyms}``, e.g. ``cl_jax.data.wordnet.synonyms``.
    Words of several pieces have no entry (they are left alone)."""
    ids = {tokenizer.piece(i): i for i in range(tokenizer.vocab_size)}
    table = np.full((tokenizer.vocab_size, max_synonyms), -1, np.int32)
    for piece, i in ids.items():
        if not piece.startswith("▁") or len(piece) < 2:
            continue
        found = [ids[f"▁{w}"] for w in synonyms.get(piece[1:].lower(), ()) if f"▁{w}" in ids]
        found = [j for j in dict.fromkeys(found) if j != i][:max_synonyms]
        table[i, :len(found)] = found
    return table


def _single_piece_words(tokens, starts, pad_id):
    """(L,) bool: tokens that are a whole word (a word start followed by a word start, BOS /
    EOS or padding)."""
    start = tf.gather(tf.constant(starts), tokens) > 0
    following = tf.concat([start[1:] | (tokens[1:] == pad_id), [True]], axis=0)
    return start & following & (tokens != pad_id)


def synonym_replace(tokens, seed, rate, table, starts, pad_id=0):
    """EDA's synonym replacement (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for
    Boosting Performance on Text Classification Tasks", section 2): each one-piece word with a
    one-piece synonym in ``table`` (``synonym_table``) is replaced with probability ``rate`` by
    one of its synonyms, drawn uniformly. EDA replaces ``n = alpha * length`` words; a rate per
    word is the same in expectation."""
    if rate <= 0:
        return tokens
    length = tf.shape(tokens)[0]
    choices = tf.gather(tf.constant(table), tokens)  # (L, S)
    count = tf.reduce_sum(tf.cast(choices >= 0, tf.int32), axis=1)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    draw = tf.random.stateless_uniform([length], seeds[0]) < rate
    pick = tf.random.stateless_uniform([length], seeds[1], 0, 2 ** 30, tf.int32) \
        % tf.maximum(count, 1)
    synonym = tf.gather(choices, pick, batch_dims=1)
    replace = draw & (count > 0) & _single_piece_words(tokens, starts, pad_id)
    return tf.where(replace, synonym, tokens)


def synonym_insert(tokens, seed, rate, table, starts, keep_ids, pad_id=0):
    """EDA's random insertion, once with probability ``rate``: a synonym of a random one-piece
    word that has one is inserted before a random word or at the end, after the BOS and
    before the EOS (``keep_ids`` = (BOS, EOS)); a sentence with no such word, or no padding
    left to grow into, is unchanged."""
    if rate <= 0:
        return tokens
    length = tf.shape(tokens)[0]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    choices = tf.gather(tf.constant(table), tokens)
    has = (choices[:, 0] >= 0) & _single_piece_words(tokens, starts, pad_id)
    special = tf.reduce_any(tokens[:, None] == tf.constant(keep_ids, tokens.dtype)[None], 1)
    start = ((tf.gather(tf.constant(starts), tokens) > 0) & ~special & (tokens != pad_id)) \
        | (tokens == keep_ids[-1])  # before a word, or at the end (before the EOS)

    def one_of(mask, s):  # a uniformly drawn position where mask holds
        noise = tf.random.stateless_uniform([length], s)
        return tf.argmax(tf.where(mask, noise, -1.0), output_type=tf.int32)

    source = one_of(has, seeds[0])
    count = tf.reduce_sum(tf.cast(choices[source] >= 0, tf.int32))
    pick = tf.random.stateless_uniform([], seeds[1], 0, 2 ** 30, tf.int32) % tf.maximum(count, 1)
    place = one_of(start, seeds[2])
    inserted = tf.concat([tokens[:place], [choices[source, pick]], tokens[place:-1]], axis=0)
    ok = (tf.random.stateless_uniform([], seeds[3]) < rate) & tf.reduce_any(has) \
        & tf.reduce_any(start) & (tokens[-1] == pad_id)
    return tf.cond(ok, lambda: inserted, lambda: tokens)
