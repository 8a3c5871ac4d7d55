"""STS scoring and text retrieval, on hand-made numbers."""

import numpy as np
import pytest

from cl_jax.evaluation import sts


def test_spearman_on_hand_ranked_scores():
    # Ranks of x: 1 2 3 4 5; of y: 2 1 4 3 5 -> d^2 = 1+1+1+1+0 = 4; 1 - 6*4/(5*24) = 0.8
    assert sts.spearman([1.0, 2.0, 3.0, 4.0, 5.0], [0.2, 0.1, 0.4, 0.3, 0.9]) == \
        pytest.approx(0.8)
    assert sts.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # Ties take their average rank: x ranks 1.5 1.5 3, y ranks 1 2 3 -> Pearson of the ranks.
    rx, ry = np.array([1.5, 1.5, 3.0]), np.array([1.0, 2.0, 3.0])
    expected = np.corrcoef(rx, ry)[0, 1]
    assert sts.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="same length"):
        sts.spearman([1, 2], [1, 2, 3])


def test_sts_spearman_ranks_pair_cosines_against_gold():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    b = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, -1.0]])  # cos 1, .707, 0, -1
    np.testing.assert_allclose(sts.pair_cosines(a, b), [1.0, 2 ** -0.5, 0.0, -1.0], atol=1e-12)
    assert sts.sts_spearman(a, b, [5.0, 3.0, 1.0, 0.0]) == pytest.approx(1.0)
    assert sts.sts_spearman(a, b, [0.0, 1.0, 3.0, 5.0]) == pytest.approx(-1.0)


def test_text_recall_counts_matches_among_top_k():
    candidates = np.eye(4)
    queries = np.array([[1.0, 0.1, 0, 0], [0.9, 1.0, 0, 0], [1.0, 0.0, 0.5, 0.0]])
    matches = np.array([0, 1, 2])  # query 2's match is only its second-best candidate
    recall = sts.text_recall(queries, matches, candidates, ks=(1, 2))
    assert recall[1] == pytest.approx(2 / 3)
    assert recall[2] == pytest.approx(1.0)
