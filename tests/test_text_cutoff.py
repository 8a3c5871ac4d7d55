"""Cutoff keep masks: counts per row (ConSERT's rounding), padding untouched, span contiguity,
one independent, deterministic draw per example key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_jax.models import text_cutoff as tc

token_cutoff = jax.jit(tc.token_cutoff, static_argnames="ratio")
span_cutoff = jax.jit(tc.span_cutoff, static_argnames="ratio")
feature_cutoff = jax.jit(tc.feature_cutoff, static_argnames=("width", "ratio"))

L = 12
# Right padding, left padding, no padding, a single token, only padding.
LENGTHS = [9, 5, 12, 1, 0]


def example_keys(n, seed=0):
    return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(seed), jnp.arange(n))


def valid_rows():
    valid = np.arange(L)[None] < np.array(LENGTHS)[:, None]
    valid[1] = valid[1][::-1]  # left-padded
    return valid


def cut(mask):
    return np.asarray(mask) == 0.0


@pytest.mark.parametrize("ratio", [0.0, 0.15, 0.3, 0.5, 1.0])
def test_token_cutoff_counts_and_padding(ratio):
    valid = valid_rows()
    mask = np.asarray(token_cutoff(example_keys(5), valid, ratio=ratio))
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(cut(mask).sum(1), [int(n * ratio) for n in LENGTHS])
    assert not cut(mask)[~valid].any()


def test_counts_use_float64_floor():
    """100 * 0.29 is 28.999999999999996 in float64 (ConSERT and Shen et al. cut 28) but 29.0
    in float32."""
    assert int(100 * 0.29) == 28 and int(np.float32(100) * np.float32(0.29)) == 29
    valid = np.ones((2, 100), bool)
    for cutoff in (token_cutoff, span_cutoff):
        np.testing.assert_array_equal(cut(cutoff(example_keys(2), valid, ratio=0.29)).sum(1), 28)
    assert (cut(feature_cutoff(example_keys(2), width=100, ratio=0.29)).sum(1) == 28).all()


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 1.0])
def test_feature_cutoff_counts(ratio):
    mask = np.asarray(feature_cutoff(example_keys(6), width=16, ratio=ratio))
    assert mask.shape == (6, 16) and mask.dtype == np.float32
    np.testing.assert_array_equal(cut(mask).sum(1), int(16 * ratio))
    if 0 < ratio < 1:
        assert len({tuple(row) for row in mask}) > 1  # independent per example


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.5, 1.0])
def test_span_cutoff_is_one_span_inside_the_text(ratio):
    valid = valid_rows()
    mask = np.asarray(span_cutoff(example_keys(5), valid, ratio=ratio))
    for row, v, n in zip(cut(mask), valid, LENGTHS, strict=True):
        k = int(n * ratio)
        assert row.sum() == k and not row[~v].any()
        if k:
            positions = np.flatnonzero(row)
            assert positions[-1] - positions[0] == k - 1  # contiguous


def test_span_start_distribution():
    """Shen et al.'s start ``int(u (n - k))`` takes every value 0 .. n - k - 1, never n - k:
    the last token stays unless the whole row is cut."""
    valid = np.arange(L)[None] < 6
    mask = span_cutoff(example_keys(300, seed=1), np.repeat(valid, 300, 0), ratio=0.5)
    starts = np.argmax(cut(mask), axis=1)
    assert set(starts) == {0, 1, 2}
    assert not cut(mask)[:, 5].any()


def test_token_cutoff_is_uniform_over_the_text():
    valid = np.repeat(valid_rows()[1:2], 400, 0)  # 5 tokens at the end of the row
    frequency = cut(token_cutoff(example_keys(400, seed=2), valid, ratio=0.4)).mean(0)
    np.testing.assert_allclose(frequency[valid[0]], 0.4, atol=0.08)  # 2 of 5 each time
    assert (frequency[~valid[0]] == 0).all()


@pytest.mark.parametrize("cutoff", ["token", "span", "feature"])
def test_deterministic_per_example_key(cutoff):
    valid = valid_rows()

    def masks(keys, rows):
        if cutoff == "feature":
            return np.asarray(feature_cutoff(keys, width=L, ratio=0.5))
        fn = token_cutoff if cutoff == "token" else span_cutoff
        return np.asarray(fn(keys, valid[rows], ratio=0.5))

    keys = example_keys(5)
    first = masks(keys, slice(None))
    np.testing.assert_array_equal(first, masks(keys, slice(None)))
    # Example 2 alone, or with the batch reordered, gets the same mask: it depends only on its key.
    np.testing.assert_array_equal(masks(keys[2:3], slice(2, 3))[0], first[2])
    order = np.array([4, 2, 0, 3, 1])
    np.testing.assert_array_equal(masks(keys[order], order), first[order])
    other = masks(example_keys(5, seed=7), slice(None))
    assert not np.array_equal(first, other)


def test_legacy_uint32_keys_and_ratio_checks():
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(0), jnp.arange(5))
    assert cut(tc.token_cutoff(keys, valid_rows(), 0.5)).sum() == sum(n // 2 for n in LENGTHS)
    with pytest.raises(ValueError, match="ratio"):
        tc.token_cutoff(keys, valid_rows(), 1.5)
    with pytest.raises(ValueError, match="keys"):
        tc.span_cutoff(keys[:3], valid_rows(), 0.5)
    with pytest.raises(jax.errors.ConcretizationTypeError):
        jax.jit(tc.feature_cutoff, static_argnames="width")(keys, width=8, ratio=0.5)
