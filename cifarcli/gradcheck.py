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

The same holds for the other losses: each loss's ``loss_differences``
(losses.py) evaluates its exact difference from its form (softplus for BCE,
hinges for the SVM). The multi-class SVM has kinks: where a moved margin
crosses zero inside ±h the centred difference mixes both slopes and is not the
gradient of either side. Such a parameter is a *kink*:
``numerical_gradients(..., return_kinks=True)`` also returns the masks,
``check_gradients`` counts them per result (``"kinks"``) and leaves them out of
the error summaries (``"n_excluded"``), so the verdict is over the parameters
where J is linear on [θ - h, θ + h] and the centred difference equals the
derivative.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .config import loss_named
from .model import labels_of, scores
from .threads import on_one_blas_thread

__all__ = ["numerical_gradients", "relative_errors", "check_gradients", "error_summary"]


def numerical_gradients(
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    lam: float,
    h: float = 1e-6,
    loss: str = "softmax",
    return_kinks: bool = False,
):
    """Centred-difference gradients (gW K × d, gb K × 1) of the cost J of ``loss``, in float64.

    With ``return_kinks`` also the boolean masks (kW K × d, kb K × 1) of the
    parameters whose ±h straddles a kink of the loss (always all False for
    softmax and BCE, which are smooth): (gW, gb, kW, kb).
    """
    X = np.asarray(X, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 1)
    dW, db, kW, kb = loss_named(loss).loss_differences(X, labels_of(Y), W, b, h)
    # λ((w + h)² - (w - h)²) is exactly 4λhw: the regulariser's centred difference, free of cancellation.
    gW, gb = (4 * lam * h * W + dW) / (2 * h), db / (2 * h)
    return (gW, gb, kW, kb) if return_kinks else (gW, gb)


def verdict_line(worst: float, bound: float, checked: int = 1, h: float | None = None) -> str:
    """``PASS: max relative error 2.1e-09 ≤ 1e-06``, or ``FAIL: … > …`` (a NaN error fails); with no
    parameter checked (every one within h of a kink), no error was measured: it says so."""
    if not checked:
        return f"NOT CHECKED: every parameter is within h={h:g} of a kink, so no error was measured (try a smaller h)"
    if worst <= bound:
        return f"PASS: max relative error {worst:.1e} ≤ {bound:g}"
    return f"FAIL: max relative error {worst:.1e} > {bound:g}"


def verdict(report: dict, bound: float) -> str:
    """The verdict line of a gradient check's ``report`` (its payload) against ``bound``."""
    return verdict_line(report["max_error"], bound, n_checked(report), report["h"])


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
        stats = {
            "max": float(kept.max()),
            "mean": float(kept.mean()),
            "median": float(np.median(kept)),
            "share_below_tol": float(np.mean(kept < threshold)),
        }
    else:
        stats = {"max": 1.0, "mean": 1.0, "median": 1.0, "share_below_tol": 0.0}
    return {
        **stats,
        "n": int(err.size),
        "n_excluded": int(mask.sum()),
        "corner": [[float(v) for v in row] for row in err[:5, :5]],
    }


@on_one_blas_thread
def check_gradients(
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    lams=(0.0, 0.1),
    h: float = 1e-6,
    gradient_fn: Callable | None = None,
    eps: float = 1e-10,
    loss: str = "softmax",
) -> dict:
    """Compare ``gradient_fn`` with numerical gradients for every parameter and each λ.

    ``gradient_fn(X, Y, P, W, lam) -> (grad_W, grad_b)``, P the loss's outputs
    (softmax(S), σ(S) for ``loss="bce"``, the scores S themselves for ``loss="svm"``);
    by default the loss's reference gradients (losses.py). Returns a
    JSON-serialisable dict: {"h", "eps", "n_images", "n_params", "max_error",
    "results": [{"lam", "W": summary, "b": summary, "kinks": {"W", "b"}, "seconds"}, ...]}.
    "kinks" counts the parameters within h of a kink (always 0 for the smooth
    losses); they are left out of the summaries and so of the verdict ``max_error``.
    """
    X = np.asarray(X, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 1)
    Y = np.asarray(Y)
    objective = loss_named(loss)
    gradient_fn = gradient_fn or objective.compute_gradients
    results = []
    for lam in lams:
        t0 = time.perf_counter()
        S = scores(X, W, b)
        ga_W, ga_b = gradient_fn(X, Y, objective.output(S), W, float(lam))
        gn_W, gn_b, kink_W, kink_b = numerical_gradients(X, Y, W, b, float(lam), h, loss, return_kinks=True)
        err_W = relative_errors(ga_W, gn_W, eps)
        err_b = relative_errors(np.asarray(ga_b).reshape(-1, 1), gn_b, eps)
        results.append(
            {
                "lam": float(lam),
                "W": error_summary(err_W, exclude=kink_W),
                "b": error_summary(err_b, exclude=kink_b),
                "kinks": {"W": int(kink_W.sum()), "b": int(kink_b.sum())},
                "seconds": time.perf_counter() - t0,
            }
        )
    # A summary over no parameter (every one a kink) measured nothing: its 1.0 is no error of the others.
    checked = [s["max"] for r in results for s in (r["W"], r["b"]) if s["n"] > s["n_excluded"]]
    worst = max(checked, default=1.0)
    return {
        "h": float(h),
        "eps": float(eps),
        "loss": loss,
        "n_images": int(X.shape[1]),
        "n_params": int(W.size + b.size),
        "max_error": float(worst),
        "results": results,
    }
