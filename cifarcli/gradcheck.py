"""Numerical (centred-difference) gradients of the cost, and their comparison.

For every parameter θ (each W[k, j] and b[k]), in float64::

    g_n(θ) = (J(θ + h) - J(θ - h)) / (2h),      J = L + λ‖W‖²
    rel(θ) = |g_a - g_n| / max(eps, |g_a| + |g_n|)

Each J(θ + h) - J(θ - h) is a true difference of costs at the perturbed
parameters; only the way it is evaluated is fast and exact. Scores are linear
in W, so W[k, j] ± h shifts only row k of S = W X + b, by ± h X[j, :], and
the loss of sample i then changes by exactly

    log1p(P[k, i] · expm1(± h X[j, i])) ∓ h X[j, i] [y_i = k]

so all 2·K·d perturbed costs take K vectorised d × n evaluations instead of
2·K·d forward passes, and the difference of two costs near 2.3 is never
formed by subtraction (which would keep only ~1e-10 of its precision and put
relative errors near 1e-5 on small gradients). b[k] ± h shifts row k by ± h.

The multiple binary cross-entropy (``loss="bce"``) has per-sample loss
(1/K) Σ_k [softplus(s_k) - y_k s_k], so shifting s_k by δ changes it by
(1/K) [softplus(s_k + δ) - softplus(s_k) - y_k δ], and

    softplus(s + δ) - softplus(s) = log((1 + e^(s+δ)) / (1 + e^s)) = log1p(σ(s) · expm1(δ))

— the same exact form as for softmax with p_k replaced by σ(s_k), scaled by 1/K.

The multi-class SVM (``loss="svm"``) has l_i = Σ_{j ≠ y_i} relu(m_ji), with
margins m_ji = s_j - s_{y_i} + 1 (``svm_margins``). Shifting row k of S by δ
(δ_i = h X[j, i] for W[k, j], h for b[k]) moves the one margin m_ki of each
image with y_i ≠ k by +δ_i, and every margin m_ji (j ≠ k) of each image with
y_i = k by -δ_i. Each moved margin m contributes to J(θ + h) - J(θ - h)

    relu(m + δ) - relu(m - δ) = sign(δ) · clip(m + |δ|, 0, 2|δ|)

exactly: 2δ or 0 when |m| ≥ |δ|, with no subtraction of costs. The hinge has
kinks: where a moved margin crosses zero inside ±h (|m| < |δ|) the centred
difference mixes both slopes and is not the gradient of either side. Such a
parameter is a *kink*: ``numerical_gradients(..., return_kinks=True)`` also
returns the masks, ``check_gradients`` counts them per result (``"kinks"``) and
leaves them out of the error summaries (``"n_excluded"``), so the verdict is
over the parameters where J is linear on [θ - h, θ + h] and the centred
difference equals the derivative.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .model import (LOSSES, compute_gradients, compute_gradients_bce, compute_gradients_svm, labels_of,
                    probabilities, scores, svm_margins)
from .threads import on_one_blas_thread

__all__ = ["numerical_gradients", "relative_errors", "check_gradients", "error_summary"]


def _cost_differences(P_k: np.ndarray, is_k: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """L(S_k + delta) - L(S_k - delta) for each of the p rows of ``delta`` (p × n) -> (p,).

    Shifting row k of the scores of sample i by δ changes its loss by
    log1p(p_ki · expm1(δ)) - δ [y_i = k], exactly. Evaluated this way the
    difference keeps full relative precision; subtracting two whole costs of
    about 2.3 would leave only about 1e-10 of it.
    """
    up = np.log1p(P_k * np.expm1(delta))
    down = np.log1p(P_k * np.expm1(-delta))
    return (up - down - 2 * delta * is_k).mean(axis=1)


def _hinge_differences(m: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """relu(m + δ) - relu(m - δ) elementwise (broadcast), computed as sign(δ) · clip(m + |δ|, 0, 2|δ|).

    Exactly 2δ (m ≥ |δ|) or 0 (m ≤ -|δ|) away from the kink; m + |δ| inside it.
    """
    a = np.abs(delta)
    return np.sign(delta) * np.clip(m + a, 0, 2 * a)


def _svm_cost_differences(M: np.ndarray, y: np.ndarray, k: int,
                          delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L(S_k + δ) - L(S_k - δ) per row of ``delta`` (p × n) -> (p,), kink mask (p,)) for the SVM.

    M: K × n margins (``svm_margins``). Images with y_i ≠ k move their margin
    M[k, i] by δ; images with y_i = k move every M[j, i], j ≠ k, by -δ. A row
    is a kink when any moved margin satisfies |m| < |δ_i|.
    """
    K = M.shape[0]
    is_k = y == k
    other = ~is_k
    diff = np.zeros(delta.shape)
    diff[:, other] = _hinge_differences(M[k, other], delta[:, other])
    d_k = delta[:, is_k]
    for j in range(K):                             # over classes, not samples: the images of class k
        if j != k:
            diff[:, is_k] -= _hinge_differences(M[j, is_k], d_k)
    # The margin nearest zero among those a shift of row k moves, per image.
    nearest = np.abs(M[k])
    if is_k.any():
        rest = np.abs(np.delete(M[:, is_k], k, axis=0))
        nearest[is_k] = rest.min(axis=0) if rest.size else np.inf
    kinks = (nearest < np.abs(delta)).any(axis=1)
    return diff.mean(axis=1), kinks


def numerical_gradients(X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray,
                        lam: float, h: float = 1e-6,
                        loss: str = "softmax", return_kinks: bool = False):
    """Centred-difference gradients (gW K × d, gb K × 1) of compute_cost(..., loss), in float64.

    With ``return_kinks`` also the boolean masks (kW K × d, kb K × 1) of the
    parameters whose ±h straddles a kink of the loss (always all False for
    softmax and BCE, which are smooth): (gW, gb, kW, kb).
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}")
    X = np.asarray(X, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 1)
    y = labels_of(Y)
    K = W.shape[0]
    if loss == "svm":
        gW, gb, kW, kb = _svm_numerical_gradients(X, y, W, b, lam, h)
    else:
        gW, gb = _smooth_numerical_gradients(X, y, W, b, lam, h, loss)
        kW, kb = np.zeros(W.shape, bool), np.zeros((K, 1), bool)
    return (gW, gb, kW, kb) if return_kinks else (gW, gb)


def _svm_numerical_gradients(X, y, W, b, lam, h):
    K = W.shape[0]
    M = svm_margins(scores(X, W, b), y)
    hX = h * X
    hb = np.full((1, X.shape[1]), h)
    gW = 4 * lam * h * W                           # λ((w + h)² - (w - h)²) = 4λhw exactly
    gb = np.zeros((K, 1))
    kW = np.zeros(W.shape, bool)
    kb = np.zeros((K, 1), bool)
    for k in range(K):
        diff, kW[k] = _svm_cost_differences(M, y, k, hX)
        gW[k] += diff
        diff, kinks = _svm_cost_differences(M, y, k, hb)
        gb[k], kb[k] = diff[0], kinks[0]
    return gW / (2 * h), gb / (2 * h), kW, kb


def _smooth_numerical_gradients(X, y, W, b, lam, h, loss):
    K = W.shape[0]
    P = probabilities(scores(X, W, b), loss)   # softmax(S), or σ(S) for BCE
    scale = 1.0 / K if loss == "bce" else 1.0  # BCE averages its K binary losses
    hX = h * X                                     # d × n: change of row k per W[k, j]
    hb = np.full((1, X.shape[1]), h)
    # λ((w + h)² - (w - h)²) is exactly 4λhw: the regulariser's centred difference, free of cancellation.
    gW = 4 * lam * h * W
    gb = np.zeros((K, 1))
    for k in range(K):                             # loop over classes, not samples or parameters
        is_k = y == k
        gW[k] += scale * _cost_differences(P[k], is_k, hX)
        gb[k] = scale * _cost_differences(P[k], is_k, hb)[0]
    return gW / (2 * h), gb / (2 * h)


def n_checked(report: dict) -> int:
    """How many parameter errors (over every λ) the verdict rests on: all but the kinks."""
    return sum(r[p]["n"] - r[p]["n_excluded"] for r in report["results"] for p in ("W", "b"))


def relative_errors(ga: np.ndarray, gn: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """|g_a - g_n| / max(eps, |g_a| + |g_n|), elementwise."""
    ga = np.asarray(ga, dtype=np.float64)
    gn = np.asarray(gn, dtype=np.float64)
    return np.abs(ga - gn) / np.maximum(eps, np.abs(ga) + np.abs(gn))


def error_summary(err: np.ndarray, threshold: float = 1e-6, exclude: np.ndarray | None = None) -> dict:
    """max, mean, median, share below threshold and the 5 × 5 top-left corner.

    ``exclude`` (bool, err's shape) marks parameters left out of max, mean,
    median and share (the SVM's kinks); "n" stays the number of parameters and
    "n_excluded" counts those left out. The corner shows every parameter's
    error, excluded ones too. A summary over no parameter cannot pass: its
    max, mean and median are 1.0 (the largest relative error) and its share 0.
    """
    err = np.asarray(err, dtype=np.float64)
    mask = np.zeros(err.shape, bool) if exclude is None else np.asarray(exclude, bool).reshape(err.shape)
    kept = err[~mask]
    if kept.size:
        stats = {"max": float(kept.max()), "mean": float(kept.mean()), "median": float(np.median(kept)),
                 "share_below_tol": float(np.mean(kept < threshold))}
    else:
        stats = {"max": 1.0, "mean": 1.0, "median": 1.0, "share_below_tol": 0.0}
    return {
        **stats,
        "n": int(err.size),
        "n_excluded": int(mask.sum()),
        "corner": [[float(v) for v in row] for row in err[:5, :5]],
    }


@on_one_blas_thread
def check_gradients(X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray,
                    lams=(0.0, 0.1), h: float = 1e-6,
                    gradient_fn: Callable | None = None, eps: float = 1e-10,
                    loss: str = "softmax") -> dict:
    """Compare ``gradient_fn`` with numerical gradients for every parameter and each λ.

    ``gradient_fn(X, Y, P, W, lam) -> (grad_W, grad_b)``, P = softmax(S) (or
    σ(S) for ``loss="bce"``, and the scores S themselves for ``loss="svm"``);
    by default the model's analytic gradients of that loss. Returns a
    JSON-serialisable dict: {"h", "eps", "n_images", "n_params", "max_error",
    "results": [{"lam", "W": summary, "b": summary, "kinks": {"W", "b"}, "seconds"}, ...]}.
    "kinks" counts the parameters within h of a kink (always 0 for the smooth
    losses); they are left out of the summaries and so of the verdict ``max_error``.
    """
    X = np.asarray(X, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 1)
    Y = np.asarray(Y)
    if gradient_fn is None:
        gradient_fn = {"softmax": compute_gradients, "bce": compute_gradients_bce,
                       "svm": compute_gradients_svm}[loss]
    results = []
    for lam in lams:
        t0 = time.perf_counter()
        S = scores(X, W, b)
        ga_W, ga_b = gradient_fn(X, Y, S if loss == "svm" else probabilities(S, loss), W, float(lam))
        gn_W, gn_b, kink_W, kink_b = numerical_gradients(X, Y, W, b, float(lam), h, loss, return_kinks=True)
        err_W = relative_errors(ga_W, gn_W, eps)
        err_b = relative_errors(np.asarray(ga_b).reshape(-1, 1), gn_b, eps)
        results.append({"lam": float(lam), "W": error_summary(err_W, exclude=kink_W),
                        "b": error_summary(err_b, exclude=kink_b),
                        "kinks": {"W": int(kink_W.sum()), "b": int(kink_b.sum())},
                        "seconds": time.perf_counter() - t0})
    # A summary over no parameter (every one a kink) measured nothing: its 1.0 is no error of the others.
    checked = [s["max"] for r in results for s in (r["W"], r["b"]) if s["n"] > s["n_excluded"]]
    worst = max(checked, default=1.0)
    return {"h": float(h), "eps": float(eps), "loss": loss, "n_images": int(X.shape[1]),
            "n_params": int(W.size + b.size), "max_error": float(worst), "results": results}
