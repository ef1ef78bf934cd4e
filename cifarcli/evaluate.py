"""Metrics of a trained model on the train, validation and test splits.

For each split: loss L (mean cross-entropy, mean multiple binary
cross-entropy for a run trained with ``loss="bce"``, or mean multi-class hinge
loss for ``loss="svm"``), cost J = L + λ‖W‖², accuracy.
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

An SVM run (``loss="svm"``) has no probabilities, and its loss L is the mean
multi-class hinge loss. In their place the test split gets ``"margins"``
(``margin_summary``): the true class's margin m_i = s_{y_i} - max_{j ≠ y_i} s_j
(``model.true_class_margins``; m_i > 0 exactly when image i is classified
correctly, ties aside), summarised the same way over ``MARGIN_BINS`` (20)
equal bins of width 0.5 on [-5, 5], bin edges at every half unit so 0 and ±1
(the hinge's margin) are edges. The outer bins are open: a margin below -5
counts in the first bin, one above 5 in the last. Its *confident mistakes* are
the misclassified images with m_i < ``CONFIDENT_MARGIN`` (-1): another class
beats the true one by more than the SVM's margin.
One forward pass per split; pure numpy, no I/O.
"""

from __future__ import annotations

import numpy as np

from .config import loss_named
from .model import scores, true_class_margins
from .prepare import PreparedData
from .threads import on_one_blas_thread

__all__ = ["confusion_matrix", "evaluate_model", "probability_summary", "PROB_BINS", "CONFIDENT_MISTAKE",
           "margin_summary", "MARGIN_BINS", "MARGIN_RANGE", "CONFIDENT_MARGIN"]

PROB_BINS = 20
CONFIDENT_MISTAKE = 0.1
MARGIN_BINS = 20
MARGIN_RANGE = (-5.0, 5.0)
CONFIDENT_MARGIN = -1.0


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, K: int = 10) -> np.ndarray:
    """K × K int64 counts: rows true class, columns predicted class."""
    y_true = np.asarray(y_true, dtype=np.intp)
    y_pred = np.asarray(y_pred, dtype=np.intp)
    return np.bincount(y_true * K + y_pred, minlength=K * K).reshape(K, K)


@on_one_blas_thread
def evaluate_model(W: np.ndarray, b: np.ndarray, lam: float, data: PreparedData,
                   loss: str = "softmax") -> dict:
    """JSON-serialisable metrics of (W, b) on data's three splits.

    The test split adds "probabilities" (``probability_summary``), or for
    ``loss="svm"`` "margins" (``margin_summary``) instead.
    """
    W = np.asarray(W)
    b = np.asarray(b).reshape(-1, 1)
    K = W.shape[0]
    W64 = W.astype(np.float64)
    reg = float(lam) * float(np.sum(W64 * W64))
    out: dict = {"lam": float(lam)}
    objective = loss_named(loss)
    if not objective.is_study:
        out["loss"] = loss
    names = list(data.label_names) or [str(k) for k in range(K)]
    for split, X, y in (("train", data.X_train, data.y_train), ("val", data.X_val, data.y_val),
                        ("test", data.X_test, data.y_test)):
        S = scores(X, W.astype(X.dtype, copy=False), b.astype(X.dtype, copy=False))
        mean_loss, cost, acc = objective.metrics_from_scores(S.astype(np.float64), y, reg)
        out[split] = {"loss": mean_loss, "cost": cost, "accuracy": acc, "n": int(np.size(y))}
        if split == "test":
            C = confusion_matrix(y, np.argmax(S, axis=0), K)
            totals = C.sum(axis=1)
            per_class = np.divide(np.diag(C), totals, out=np.zeros(K), where=totals > 0)
            out["confusion_matrix"] = C.astype(int).tolist()
            out["per_class_accuracy"] = {names[k]: float(per_class[k]) for k in range(K)}
            S64 = S.astype(np.float64)
            correct = np.argmax(S64, axis=0) == y
            if objective.gives_probabilities:
                out["probabilities"] = probability_summary(objective.true_class_probabilities(S64, y), correct,
                                                           objective.probability_kind)
            else:                      # scores, no probabilities: the true class's margin instead
                out["margins"] = margin_summary(true_class_margins(S64, y), correct)
    out["label_names"] = names
    return out


def probability_summary(p_true: np.ndarray, correct: np.ndarray, kind: str = "softmax",
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
    return {"kind": kind, "bins": edges.tolist(), "threshold": threshold,
            "correct": group(p_true[correct]), "incorrect": group(wrong),
            "confident_mistakes": float(np.mean(wrong < threshold)) if wrong.size else None}


def margin_summary(margins: np.ndarray, correct: np.ndarray, bins: int = MARGIN_BINS,
                   bounds: tuple[float, float] = MARGIN_RANGE, threshold: float = CONFIDENT_MARGIN) -> dict:
    """JSON summary of an SVM's true-class margins (n,) split by ``correct`` (n,) bool.

    ``{"kind": "svm_margin", "bins": [b_0 .. b_bins] (equal edges on ``bounds``),
    "open_ends": True, "threshold": t, "correct": {"n", "mean", "median", "counts"},
    "incorrect": {...}, "confident_mistakes": share of incorrect images with margin < t}``,
    the shape of ``probability_summary``. Mean and median are of the margins
    themselves; for the counts a margin outside ``bounds`` goes to the outer bin
    on its side. A mean, median or share over no image is None.
    """
    margins = np.asarray(margins, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    low, high = float(bounds[0]), float(bounds[1])
    edges = np.round(np.linspace(low, high, bins + 1), 12)

    def group(m: np.ndarray) -> dict:
        counts, _ = np.histogram(np.clip(m, low, high), bins=edges)
        return {"n": int(m.size), "mean": float(m.mean()) if m.size else None,
                "median": float(np.median(m)) if m.size else None, "counts": counts.astype(int).tolist()}

    wrong = margins[~correct]
    return {"kind": "svm_margin", "bins": edges.tolist(), "open_ends": True, "threshold": float(threshold),
            "correct": group(margins[correct]), "incorrect": group(wrong),
            "confident_mistakes": float(np.mean(wrong < threshold)) if wrong.size else None}
