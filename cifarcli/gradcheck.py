"""Numerical (centred-difference) gradients of the cost, and their comparison.

For every parameter θ (each W[k, j] and b[k]), in float64::

    g_n(θ) = (J(θ + h) - J(θ - h)) / (2h),      J = L + λ‖W‖²
    rel(θ) = |g_a - g_n| / max(eps, |g_a| + |g_n|)

Each J(θ ± h) is a true evaluation of the cost (loss and regulariser) at the
perturbed parameters; only the way it is evaluated is fast. Scores are linear
in W, so W[k, j] ± h changes only row k of S = W X + b, by ± h X[j, :]. For
each k all d perturbed versions of that row form one d × n block
(S[k, :] ± h X), and the loss of every column is recomputed from it:

    LSE_i = log( Σ_{l≠k} exp(S[l, i] - m_i) + exp(S'[k, i] - m_i) ) + m_i
    loss  = mean_i( LSE_i - S'[y_i, i] )     (S' = S with row k perturbed)

so all 2·K·d perturbed costs take 2K vectorised block evaluations instead of
2·K·d forward passes. b[k] ± h shifts row k by ± h (a 1 × n block). The
regulariser is recomputed at the perturbed value: λ(‖W‖² - W[k,j]² + (W[k,j] ± h)²).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .model import compute_gradients, evaluate_classifier, labels_of

__all__ = ["numerical_gradients", "relative_errors", "check_gradients", "error_summary"]


class _RowPerturbation:
    """Costs of S with row k replaced by S[k, :] + delta[j, :], for a block delta (p × n)."""

    def __init__(self, S: np.ndarray, y: np.ndarray, k: int):
        n = S.shape[1]
        self.m = S.max(axis=0)             # shift; perturbations are ~h·|X|, far from overflow
        others = np.delete(np.arange(S.shape[0]), k)
        self.rest = np.exp(S[others] - self.m).sum(axis=0)    # Σ_{l≠k} exp(S[l, i] - m_i)
        self.row = S[k]
        self.is_k = y == k
        self.true = S[y, np.arange(n)]     # true-class scores where row k is not the true one

    def losses(self, delta: np.ndarray) -> np.ndarray:
        """Mean cross-entropy for each of the p perturbations -> (p,)."""
        row = self.row + delta                              # p × n perturbed rows
        lse = np.log(self.rest + np.exp(row - self.m)) + self.m
        true = np.where(self.is_k, row, self.true)
        return (lse - true).mean(axis=1)


def numerical_gradients(X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray,
                        lam: float, h: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Centred-difference gradients (gW K × d, gb K × 1) of compute_cost, in float64."""
    X = np.asarray(X, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 1)
    y = labels_of(Y)
    K, d = W.shape
    S = W @ X + b
    w2 = float(np.sum(W * W))
    hX = h * X                                     # d × n: change of row k per W[k, j]
    ones = np.full((1, X.shape[1]), h)
    gW = np.empty((K, d))
    gb = np.empty((K, 1))
    for k in range(K):                             # loop over classes, not samples or parameters
        wk = W[k]
        reg_plus = lam * (w2 - wk * wk + (wk + h) ** 2)
        reg_minus = lam * (w2 - wk * wk + (wk - h) ** 2)
        rows = _RowPerturbation(S, y, k)
        cost_plus = rows.losses(hX) + reg_plus
        cost_minus = rows.losses(-hX) + reg_minus
        gW[k] = (cost_plus - cost_minus) / (2 * h)
        reg = lam * w2
        bp = rows.losses(ones) + reg
        bm = rows.losses(-ones) + reg
        gb[k] = (bp - bm) / (2 * h)
    return gW, gb


def relative_errors(ga: np.ndarray, gn: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """|g_a - g_n| / max(eps, |g_a| + |g_n|), elementwise."""
    ga = np.asarray(ga, dtype=np.float64)
    gn = np.asarray(gn, dtype=np.float64)
    return np.abs(ga - gn) / np.maximum(eps, np.abs(ga) + np.abs(gn))


def error_summary(err: np.ndarray, threshold: float = 1e-6) -> dict:
    """max, mean, median, share below threshold and the 5 × 5 top-left corner."""
    return {
        "max": float(err.max()),
        "mean": float(err.mean()),
        "median": float(np.median(err)),
        "share_below_1e-6": float(np.mean(err < threshold)),
        "n": int(err.size),
        "corner": [[float(v) for v in row] for row in err[:5, :5]],
    }


def check_gradients(X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray,
                    lams=(0.0, 0.1), h: float = 1e-6,
                    gradient_fn: Callable = compute_gradients, eps: float = 1e-10) -> dict:
    """Compare ``gradient_fn`` with numerical gradients for every parameter and each λ.

    ``gradient_fn(X, Y, P, W, lam) -> (grad_W, grad_b)``. Returns a
    JSON-serialisable dict: {"h", "eps", "n_images", "n_params", "max_error",
    "results": [{"lam", "W": summary, "b": summary, "seconds"}, ...]}.
    """
    X = np.asarray(X, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 1)
    Y = np.asarray(Y)
    results = []
    for lam in lams:
        t0 = time.perf_counter()
        P = evaluate_classifier(X, W, b)
        ga_W, ga_b = gradient_fn(X, Y, P, W, float(lam))
        gn_W, gn_b = numerical_gradients(X, Y, W, b, float(lam), h)
        err_W = relative_errors(ga_W, gn_W, eps)
        err_b = relative_errors(np.asarray(ga_b).reshape(-1, 1), gn_b, eps)
        results.append({"lam": float(lam), "W": error_summary(err_W), "b": error_summary(err_b),
                         "seconds": time.perf_counter() - t0})
    worst = max([r["W"]["max"] for r in results] + [r["b"]["max"] for r in results], default=0.0)
    return {"h": float(h), "eps": float(eps), "n_images": int(X.shape[1]),
            "n_params": int(W.size + b.size), "max_error": float(worst), "results": results}
