"""cifarcli.stats: the Wilson interval and McNemar's exact test, against published and exact values."""

import math
from fractions import Fraction

import numpy as np
import pytest

from cifarcli.stats import discordant_counts, mcnemar_exact, wilson_interval


@pytest.mark.parametrize(
    "k, n, lo, hi",
    [
        # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombe(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert round(got[0], 4) == lo and round(got[1], 4) == hi


def test_wilson_interval_on_ten_thousand_images_is_about_a_point_wide_each_way():
    lo, hi = wilson_interval(3889, 10000)
    assert 0.0090 < 0.3889 - lo < 0.0100 and 0.0090 < hi - 0.3889 < 0.0100


def exact_p(a, b):
    """2 · P[X ≤ min(a, b)], X ~ Bin(a + b, 1/2), in exact fractions."""
    n = a + b
    tail = sum(Fraction(math.comb(n, i), 2**n) for i in range(min(a, b) + 1))
    return float(min(Fraction(1), 2 * tail))


@pytest.mark.parametrize("a, b", [(0, 6), (1, 5), (3, 13), (10, 10), (259, 291), (26, 0), (400, 470), (0, 0)])
def test_mcnemar_exact_equals_the_binomial_tail_in_fractions(a, b):
    assert mcnemar_exact(a, b) == pytest.approx(exact_p(a, b), rel=1e-9)
    assert mcnemar_exact(a, b) == mcnemar_exact(b, a)


def test_mcnemar_exact_textbook_values():
    assert mcnemar_exact(0, 6) == pytest.approx(0.03125)  # 2 / 64
    assert mcnemar_exact(1, 5) == pytest.approx(0.21875)  # 14 / 64
    assert mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_mcnemar_exact_agrees_with_scipy_binomtest():
    scipy_stats = pytest.importorskip("scipy.stats")  # in the dev extra: CI always runs it
    for a, b in [(12, 30), (3000, 3150), (5, 5), (1, 40)]:
        assert mcnemar_exact(a, b) == pytest.approx(scipy_stats.binomtest(a, a + b, 0.5).pvalue, rel=1e-9)


def test_discordant_counts_count_images_only_one_classifier_gets_right():
    y = np.array([0, 1, 2, 3, 4, 5])
    a = np.array([0, 1, 9, 9, 4, 0])
    b = np.array([0, 9, 2, 9, 9, 5])
    assert discordant_counts(a, b, y) == (2, 2)
    assert discordant_counts(a, y, y) == (0, 3)
