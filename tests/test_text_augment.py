"""Caption augmentation on the host: word dropout drops whole words, deterministically."""

import numpy as np
import tensorflow as tf

from cl_jax.data import text_augment

# Ids: 0 pad, 2 bos, 3 eos; 10-19 start a word ("▁..."), 20-29 continue one.
STARTS = np.zeros(30, np.int32)
STARTS[10:20] = 1
STARTS[[2, 3]] = 1


def drop(tokens, seed, rate):
    out = text_augment.word_dropout(tf.constant(tokens, tf.int32), tf.constant(seed, tf.int64),
                                    rate, STARTS, (2, 3), pad_id=0)
    return out.numpy()


def words(tokens):
    """The words of a token row (without pad / bos / eos), as tuples of ids."""
    found, current = [], []
    for t in tokens:
        if t in (0, 2, 3):
            continue
        if STARTS[t] and current:
            found.append(tuple(current))
            current = []
        current.append(int(t))
    return found + ([tuple(current)] if current else [])


def test_word_dropout_drops_whole_words_and_keeps_bos_eos():
    tokens = [2, 10, 20, 21, 11, 12, 22, 13, 3, 0, 0, 0]  # bos, 4 words, eos, padding
    original = words(tokens)
    seen = set()
    for s in range(40):
        out = drop(tokens, [7, s], 0.5)
        assert len(out) == len(tokens)
        kept = [t for t in out if t]
        assert kept[0] == 2 and kept[-1] == 3  # bos first, eos last
        assert np.all(out[len(kept):] == 0)  # packed to the left
        got = words(out)
        assert all(w in original for w in got)  # whole words only, in order
        assert [original.index(w) for w in got] == sorted(original.index(w) for w in got)
        seen.add(len(got))
    assert seen >= {1, 2, 3}  # the rate draws different numbers of words
    np.testing.assert_array_equal(drop(tokens, [7, 3], 0.5), drop(tokens, [7, 3], 0.5))
    np.testing.assert_array_equal(drop(tokens, [7, 3], 0.0), tokens)
    assert words(drop(tokens, [7, 3], 1.0)) == []


def test_one_of_several_captions_is_drawn_per_example_and_epoch():
    import dataclasses

    from cl_jax import train
    from cl_jax.data import pipeline, sources

    class Words:  # a tokenizer: one id per caption string, no special tokens
        pad_id = 0

        def encode(self, texts, max_len):
            ids = {"a": 5, "b": 6, "c": 7, "d": 8}
            return np.asarray([[ids[t]] + [0] * (max_len - 1) for t in texts], np.int32)

    base = sources.in_memory_split("pairs", np.zeros((3, 4, 4, 1), np.uint8),
                                   np.zeros(3, np.int32), 0)
    split = dataclasses.replace(base, captions=(("a", "b"), ("c",), ("d", "a", "b")))
    tokens, counts = train.caption_tokens(split, Words(), max_len=3)
    assert tokens.shape == (3, 3, 3) and list(counts) == [2, 1, 3]
    split = sources.with_tokens(split, tokens, counts)
    views = [pipeline.ViewAugment(size=4, jitter_prob=0.0, grayscale_prob=0.0)]
    drawn = {0: set(), 1: set(), 2: set()}
    for epoch in range(12):
        for index in range(3):
            example = split.read(tf.constant(index, tf.int64))
            seed = pipeline.example_seed(0, epoch, index)
            made = pipeline.make_views(example, seed, views, (0.0,), (1.0,), index)
            again = pipeline.make_views(example, seed, views, (0.0,), (1.0,), index)
            np.testing.assert_array_equal(made["tokens"], again["tokens"])
            drawn[index].add(int(made["tokens"][0]))
    assert drawn == {0: {5, 6}, 1: {7}, 2: {8, 5, 6}}
