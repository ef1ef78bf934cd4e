"""Metrics of a trained model on the train, validation and test splits.

For each split: loss L (mean cross-entropy, or mean multiple binary
cross-entropy for a run trained with ``loss="bce"``), cost J = L + λ‖W‖², accuracy.
On the test split also the confusion matrix C (K × K) with
C[t, p] = #{i : y_i = t, argmax_k S[k, i] = p} (rows true class, columns
predicted), and the per-class accuracy C[t, t] / Σ_p C[t, p].

Also on the test split, the probability the model gives the true class,
p_i = P[y_i, i] (softmax, or the class's sigmoid σ(S[y_i, i]) for a BCE run),
summarised separately for correctly and incorrectly classified images
(``probability_summary``): count, mean, median, and a histogram over
``PROB_BINS`` equal bins of [0, 1] (the last bin includes 1). A *confident
mistake* is a misclassified image with p_i < ``CONFIDENT_MISTAKE`` (0.1); its
share is taken over the misclassified images. The plot and report stages
draw from this summary, so the test set is scored once.
One forward pass per split; pure numpy, no I/O.
"""

from __future__ import annotations

import numpy as np

from .model import metrics_from_scores, scores, true_class_probabilities
from .prepare import PreparedData
from .threads import on_one_blas_thread

__all__ = ["confusion_matrix", "evaluate_model", "probability_summary", "PROB_BINS", "CONFIDENT_MISTAKE"]

PROB_BINS = 20
CONFIDENT_MISTAKE = 0.1


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, K: int = 10) -> np.ndarray:
    """K × K int64 counts: rows true class, columns predicted class."""
    y_true = np.asarray(y_true, dtype=np.intp)
    y_pred = np.asarray(y_pred, dtype=np.intp)
    return np.bincount(y_true * K + y_pred, minlength=K * K).reshape(K, K)


@on_one_blas_thread
def evaluate_model(W: np.ndarray, b: np.ndarray, lam: float, data: PreparedData,
                   loss: str = "softmax") -> dict:
    """JSON-serialisable metrics of (W, b) on data's three splits."""
    W = np.asarray(W)
    b = np.asarray(b).reshape(-1, 1)
    K = W.shape[0]
    W64 = W.astype(np.float64)
    reg = float(lam) * float(np.sum(W64 * W64))
    out: dict = {"lam": float(lam)}
    if loss != "softmax":
        out["loss"] = loss
    names = list(data.label_names) or [str(k) for k in range(K)]
    for split, X, y in (("train", data.X_train, data.y_train), ("val", data.X_val, data.y_val),
                        ("test", data.X_test, data.y_test)):
        S = scores(X, W.astype(X.dtype, copy=False), b.astype(X.dtype, copy=False))
        mean_loss, cost, acc = metrics_from_scores(S.astype(np.float64), y, reg, loss)
        out[split] = {"loss": mean_loss, "cost": cost, "accuracy": acc, "n": int(np.size(y))}
        if split == "test":
            C = confusion_matrix(y, np.argmax(S, axis=0), K)
            totals = C.sum(axis=1)
            per_class = np.divide(np.diag(C), totals, out=np.zeros(K), where=totals > 0)
            out["confusion_matrix"] = C.astype(int).tolist()
            out["per_class_accuracy"] = {names[k]: float(per_class[k]) for k in range(K)}
            S64 = S.astype(np.float64)
            out["probabilities"] = probability_summary(true_class_probabilities(S64, y, loss),
                                                       np.argmax(S64, axis=0) == y, loss)
    out["label_names"] = names
    return out


def probability_summary(p_true: np.ndarray, correct: np.ndarray, loss: str = "softmax",
                        bins: int = PROB_BINS, threshold: float = CONFIDENT_MISTAKE) -> dict:
    """JSON summary of the true-class probabilities p_true (n,) split by ``correct`` (n,) bool.

    ``{"kind": "softmax" | "sigmoid", "bins": [b_0 .. b_bins] (edges on [0, 1]),
    "threshold": t, "correct": {"n", "mean", "median", "counts"}, "incorrect": {...},
    "confident_mistakes": share of incorrect images with p_true < t}``. A mean,
    median or share over no image is None.
    """
    p_true = np.asarray(p_true, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.round(np.linspace(0.0, 1.0, bins + 1), 12)   # 0.15, not 0.15000000000000002, in the JSON

    def group(p: np.ndarray) -> dict:
        counts, _ = np.histogram(np.clip(p, 0.0, 1.0), bins=edges)
        return {"n": int(p.size), "mean": float(p.mean()) if p.size else None,
                "median": float(np.median(p)) if p.size else None, "counts": counts.astype(int).tolist()}

    wrong = p_true[~correct]
    return {"kind": "sigmoid" if loss == "bce" else "softmax", "bins": edges.tolist(), "threshold": threshold,
            "correct": group(p_true[correct]), "incorrect": group(wrong),
            "confident_mistakes": float(np.mean(wrong < threshold)) if wrong.size else None}
