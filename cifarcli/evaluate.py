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
Every split also keeps each image's predicted class (``"predictions"``,
uint8, one per image, in the split's order) so that two runs can be compared
image by image (McNemar's test, ``stats.py``), and the 95 % Wilson interval
of its accuracy (``"accuracy_ci"``).

``update_sizes``: the size of one mini-batch update relative to the weights it
changes, r = η ‖∂J/∂W‖_F / ‖W‖_F, over one epoch's batches of the training
split (in order) at the final weights. A step that moves W by a large share of
its own norm overshoots: it explains a saw-tooth cost.
``template_roughness``: how smooth the ten class templates are. Each row of
W is a 3 × 32 × 32 image w_k; over every pair (p, q) of horizontally or
vertically neighbouring pixels of one colour channel,

    R_k = mean (w_k[p] − w_k[q])² / (2 Var(w_k)),   roughness = mean_k R_k.

Independent noise has R = 1 (E(x − y)² = 2σ²); a smooth template, whose
neighbours are alike, has R near 0; a checkerboard up to 2.
One forward pass per split; pure numpy, no I/O.
"""

from __future__ import annotations

import numpy as np

from .config import loss_named
from .model import scores, true_class_margins
from .prepare import PreparedData
from .stats import wilson_interval
from .threads import on_one_blas_thread

__all__ = [
    "without_predictions",
    "confusion_matrix",
    "evaluate_model",
    "probability_summary",
    "PROB_BINS",
    "CONFIDENT_MISTAKE",
    "margin_summary",
    "MARGIN_BINS",
    "MARGIN_RANGE",
    "CONFIDENT_MARGIN",
    "update_sizes",
    "template_roughness",
]

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
def evaluate_model(W: np.ndarray, b: np.ndarray, lam: float, data: PreparedData, loss: str = "softmax") -> dict:
    """JSON-serialisable metrics of (W, b) on data's three splits.

    The test split adds "probabilities" (``probability_summary``), or for
    ``loss="svm"`` "margins" (``margin_summary``) instead. ``out["predictions"]``
    holds each split's predicted classes ((n,) uint8 arrays; not JSON).
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
    for split, X, y in (
        ("train", data.X_train, data.y_train),
        ("val", data.X_val, data.y_val),
        ("test", data.X_test, data.y_test),
    ):
        S = scores(X, W.astype(X.dtype, copy=False), b.astype(X.dtype, copy=False))
        mean_loss, cost, acc = objective.metrics_from_scores(S.astype(np.float64), y, reg)
        predicted = np.argmax(S, axis=0)
        n_right = int(np.count_nonzero(predicted == y))
        out[split] = {
            "loss": mean_loss,
            "cost": cost,
            "accuracy": acc,
            "n": int(np.size(y)),
            "accuracy_ci": list(wilson_interval(n_right, int(np.size(y)))),
        }
        out.setdefault("predictions", {})[split] = predicted.astype(np.uint8)
        if split == "test":
            C = confusion_matrix(y, np.argmax(S, axis=0), K)
            totals = C.sum(axis=1)
            per_class = np.divide(np.diag(C), totals, out=np.zeros(K), where=totals > 0)
            out["confusion_matrix"] = C.astype(int).tolist()
            out["per_class_accuracy"] = {names[k]: float(per_class[k]) for k in range(K)}
            S64 = S.astype(np.float64)
            correct = np.argmax(S64, axis=0) == y
            if objective.gives_probabilities:
                out["probabilities"] = probability_summary(
                    objective.true_class_probabilities(S64, y), correct, objective.probability_kind
                )
            else:  # scores, no probabilities: the true class's margin instead
                out["margins"] = margin_summary(true_class_margins(S64, y), correct)
    out["label_names"] = names
    return out


def template_roughness(W: np.ndarray) -> dict:
    """``{"roughness": mean_k R_k, "per_class": [R_0 .. R_{K-1}]}`` of W (K × 3072, CIFAR's channel-first order)."""
    images = np.asarray(W, dtype=np.float64).reshape(W.shape[0], 3, 32, 32)
    across = np.diff(images, axis=3).reshape(W.shape[0], -1)
    down = np.diff(images, axis=2).reshape(W.shape[0], -1)
    energy = np.concatenate([across, down], axis=1)
    variance = images.reshape(W.shape[0], -1).var(axis=1)
    per_class = np.mean(energy**2, axis=1) / np.where(variance > 0, 2 * variance, np.inf)
    return {"roughness": float(per_class.mean()), "per_class": per_class.tolist()}


def without_predictions(metrics: dict) -> dict:
    """The metrics as JSON: without the per-image predicted classes (arrays, kept in the cache only)."""
    return {k: v for k, v in metrics.items() if k != "predictions"}


@on_one_blas_thread
def update_sizes(
    W: np.ndarray,
    b: np.ndarray,
    lam: float,
    eta: float,
    n_batch: int,
    X: np.ndarray,
    y: np.ndarray,
    loss: str = "softmax",
) -> dict:
    """η ‖∂J/∂W‖_F / ‖W‖_F for every mini-batch of one epoch (X d × n, y (n,), in order) at (W, b).

    Returns ``{"median", "max", "n_updates"}``: how far one update moves W, as a share of W's norm.
    """
    objective = loss_named(loss)
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 1)
    norm = float(np.linalg.norm(W))
    ratios = []
    for start in range(0, X.shape[1], int(n_batch)):
        Xb = np.asarray(X[:, start : start + int(n_batch)], dtype=np.float64)
        yb = np.asarray(y[start : start + int(n_batch)])
        grad_W, _ = objective.compute_gradients(Xb, yb, objective.output(scores(Xb, W, b)), W, lam)
        ratios.append(float(eta) * float(np.linalg.norm(grad_W)) / norm if norm > 0 else float("inf"))
    return {"median": float(np.median(ratios)), "max": float(np.max(ratios)), "n_updates": len(ratios)}


def probability_summary(
    p_true: np.ndarray,
    correct: np.ndarray,
    kind: str = "softmax",
    bins: int = PROB_BINS,
    threshold: float = CONFIDENT_MISTAKE,
) -> dict:
    """JSON summary of the true-class probabilities p_true (n,) split by ``correct`` (n,) bool.

    ``{"kind": "softmax" | "sigmoid", "bins": [b_0 .. b_bins] (edges on [0, 1]),
    "threshold": t, "correct": {"n", "mean", "median", "counts"}, "incorrect": {...},
    "confident_mistakes": share of incorrect images with p_true < t}``. A mean,
    median or share over no image is None.
    """
    p_true = np.asarray(p_true, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.round(np.linspace(0.0, 1.0, bins + 1), 12)  # 0.15, not 0.15000000000000002, in the JSON

    def group(p: np.ndarray) -> dict:
        counts, _ = np.histogram(np.clip(p, 0.0, 1.0), bins=edges)
        return {
            "n": int(p.size),
            "mean": float(p.mean()) if p.size else None,
            "median": float(np.median(p)) if p.size else None,
            "counts": counts.astype(int).tolist(),
        }

    wrong = p_true[~correct]
    return {
        "kind": kind,
        "bins": edges.tolist(),
        "threshold": threshold,
        "correct": group(p_true[correct]),
        "incorrect": group(wrong),
        "confident_mistakes": float(np.mean(wrong < threshold)) if wrong.size else None,
    }


def margin_summary(
    margins: np.ndarray,
    correct: np.ndarray,
    bins: int = MARGIN_BINS,
    bounds: tuple[float, float] = MARGIN_RANGE,
    threshold: float = CONFIDENT_MARGIN,
) -> dict:
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
        return {
            "n": int(m.size),
            "mean": float(m.mean()) if m.size else None,
            "median": float(np.median(m)) if m.size else None,
            "counts": counts.astype(int).tolist(),
        }

    wrong = margins[~correct]
    return {
        "kind": "svm_margin",
        "bins": edges.tolist(),
        "open_ends": True,
        "threshold": float(threshold),
        "correct": group(margins[correct]),
        "incorrect": group(wrong),
        "confident_mistakes": float(np.mean(wrong < threshold)) if wrong.size else None,
    }
