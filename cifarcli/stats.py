"""Uncertainty of an accuracy and tests between two classifiers on the same images.

Wilson score interval (95 %) of a proportion k/n, z = 1.959964:

    centre = (k + z²/2) / (n + z²),  half = z √(k(n−k)/n + z²/4) / (n + z²)

McNemar's exact test of two classifiers A and B on the same n images: only
the discordant images count, a = #{A right, B wrong}, b = #{A wrong, B right}.
Under "A and B are equally accurate" each discordant image is A's with
probability 1/2, so a ~ Binomial(a + b, 1/2), and the two-sided p-value is

    p = min(1, 2 · P[X ≤ min(a, b)]),  X ~ Binomial(a + b, 1/2)

(p = 1 without discordant images). Summed in log space, exact for any n.
Pure Python and numpy; no I/O.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054
ALPHA = 0.05

__all__ = ["wilson_interval", "mcnemar_exact", "discordant_counts", "ALPHA", "Z95"]


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    k = min(max(int(k), 0), int(n))
    z2 = z * z
    centre = (k + z2 / 2) / (n + z2)
    half = z * math.sqrt(k * (n - k) / n + z2 / 4) / (n + z2)
    return max(0.0, centre - half), min(1.0, centre + half)


def _log_binom_pmf(k: int, n: int) -> float:
    """log P[X = k] for X ~ Binomial(n, 1/2)."""
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2.0)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts."""
    a_only, b_only = int(a_only), int(b_only)
    if a_only < 0 or b_only < 0:
        raise ValueError("discordant counts are never negative")
    n = a_only + b_only
    if n == 0:
        return 1.0
    logs = [_log_binom_pmf(i, n) for i in range(min(a_only, b_only) + 1)]
    top = max(logs)
    tail = math.exp(top + math.log(sum(math.exp(v - top) for v in logs)))
    return min(1.0, 2.0 * tail)


def discordant_counts(pred_a: np.ndarray, pred_b: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """(#images only A classifies correctly, #images only B does); all three (n,) arrays of class indices."""
    right_a = np.asarray(pred_a) == np.asarray(y)
    right_b = np.asarray(pred_b) == np.asarray(y)
    return int(np.count_nonzero(right_a & ~right_b)), int(np.count_nonzero(~right_a & right_b))
