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


def shuffle(tokens, seed, window):
    out = text_augment.word_shuffle(tf.constant(tokens, tf.int32), tf.constant(seed, tf.int64),
                                    window, STARTS, (2, 3), pad_id=0)
    return out.numpy()


def test_word_shuffle_moves_whole_words_at_most_window_places():
    tokens = [2, 10, 20, 11, 12, 21, 22, 13, 14, 15, 3, 0, 0]  # bos, 6 words, eos, padding
    original = words(tokens)
    orders = set()
    for s in range(60):
        out = shuffle(tokens, [5, s], 2)
        assert out[0] == 2 and out[10] == 3 and np.all(out[11:] == 0)  # specials stay put
        got = words(out)
        assert sorted(got) == sorted(original)  # the same words, each kept whole
        places = [original.index(w) for w in got]
        assert max(abs(p - i) for i, p in enumerate(places)) <= 2
        orders.add(tuple(places))
    assert len(orders) > 5  # it does shuffle
    for s in range(30):  # window 1: at most neighbours swap
        places = [original.index(w) for w in words(shuffle(tokens, [6, s], 1))]
        assert max(abs(p - i) for i, p in enumerate(places)) <= 1
    np.testing.assert_array_equal(shuffle(tokens, [5, 3], 2), shuffle(tokens, [5, 3], 2))
    np.testing.assert_array_equal(shuffle(tokens, [5, 3], 0), tokens)


# Synonyms of one-piece words: 11 -> {16, 17}, 12 -> {18}; 10 (a two-piece word here) -> {19}.
TABLE = np.full((30, 2), -1, np.int32)
TABLE[11] = [16, 17]
TABLE[12, 0] = 18
TABLE[10, 0] = 19


def test_synonym_replacement_swaps_one_piece_words_for_their_synonyms():
    tokens = [2, 10, 20, 11, 12, 13, 3, 0]  # bos, "10 20" (two pieces), 11, 12, 13, eos
    seen = set()
    for s in range(40):
        out = text_augment.synonym_replace(tf.constant(tokens, tf.int32),
                                           tf.constant([1, s], tf.int64), 0.5, TABLE, STARTS)
        out = out.numpy()
        assert list(out[[0, 1, 2, 5, 6, 7]]) == [2, 10, 20, 13, 3, 0]  # no synonym / 2 pieces
        assert out[3] in (11, 16, 17) and out[4] in (12, 18)
        seen.add((int(out[3]), int(out[4])))
    assert {(16, 12), (17, 12), (11, 18), (11, 12)} <= seen  # each synonym, each word alone
    full = text_augment.synonym_replace(tf.constant(tokens, tf.int32),
                                        tf.constant([1, 0], tf.int64), 1.0, TABLE, STARTS)
    assert full.numpy()[4] == 18


def test_synonym_insertion_adds_one_synonym_when_there_is_room():
    tokens = [2, 11, 13, 14, 3, 0, 0]
    kinds = set()
    for s in range(40):
        out = text_augment.synonym_insert(tf.constant(tokens, tf.int32),
                                          tf.constant([2, s], tf.int64), 1.0, TABLE, STARTS,
                                          (2, 3)).numpy()
        assert out[0] == 2 and list(out[-2:]) == [3, 0]  # bos first, eos and one pad left
        new = [t for t in out if t in (16, 17)]
        assert len(new) == 1  # one synonym of the only word that has one
        rest = [t for t in out if t not in (16, 17)]
        assert rest[:5] == [2, 11, 13, 14, 3]  # the others, in order
        kinds.add((int(new[0]), list(out).index(new[0])))
    assert {k for k, _ in kinds} == {16, 17} and {p for _, p in kinds} == {1, 2, 3, 4}
    no_room = [2, 11, 13, 14, 3]
    np.testing.assert_array_equal(text_augment.synonym_insert(
        tf.constant(no_room, tf.int32), tf.constant([2, 0], tf.int64), 1.0, TABLE, STARTS,
        (2, 3)).numpy(), no_room)


def test_synonym_table_keeps_single_piece_synonyms():
    class Pieces:
        vocab_size = 6
        pieces = ["<pad>", "▁dog", "▁hound", "▁do", "g", "▁cat"]

        def piece(self, i):
            return self.pieces[i]

    table = text_augment.synonym_table(Pieces(), {"dog": ("domestic dog", "hound", "cat"),
                                                  "hound": ("dog",)})
    assert list(table[1]) == [2, 5, -1, -1, -1, -1, -1, -1]
    assert list(table[2][:2]) == [1, -1] and np.all(table[[0, 3, 4, 5]] == -1)
