"""Metrics of a trained model on the train, validation and test splits.

For each split: loss L (mean cross-entropy, or mean multiple binary
cross-entropy for a run trained with ``loss="bce"``), cost J = L + λ‖W‖², accuracy.
On the test split also the confusion matrix C (K × K) with
C[t, p] = #{i : y_i = t, argmax_k S[k, i] = p} (rows true class, columns
predicted), and the per-class accuracy C[t, t] / Σ_p C[t, p].
One forward pass per split; pure numpy, no I/O.
"""

from __future__ import annotations

import numpy as np

from .model import metrics_from_scores, scores
from .prepare import PreparedData

__all__ = ["confusion_matrix", "evaluate_model"]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, K: int = 10) -> np.ndarray:
    """K × K int64 counts: rows true class, columns predicted class."""
    y_true = np.asarray(y_true, dtype=np.intp)
    y_pred = np.asarray(y_pred, dtype=np.intp)
    return np.bincount(y_true * K + y_pred, minlength=K * K).reshape(K, K)


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
    out["label_names"] = names
    return out
