"""The one-layer softmax network: scores, probabilities, cost, accuracy, gradients.

Notation and shapes follow the course (DD2424, assignment 1)::

    X  : d × n   one image per column (d = 3072)
    Y  : K × n   one-hot labels (K = 10);  y : (n,) integer labels
    W  : K × d,  b : K × 1

    S = W X + b 1ᵀ                         (scores, K × n)
    P = softmax(S),  P[k, i] = exp(S[k, i]) / Σ_l exp(S[l, i])
    L = -(1/n) Σ_i log P[y_i, i]           (mean cross-entropy, "loss")
    J = L + λ ‖W‖²                         ("cost"; b is not regularised)
    G = P - Y
    ∂J/∂W = (1/n) G Xᵀ + 2 λ W,   ∂J/∂b = (1/n) G 1

The two other losses (multiple binary cross-entropy, the multi-class SVM)
have their plain functions here too (``*_bce``, ``*_svm``); their formulas, and
which function each loss uses, are stated once in losses.py.

Everything here is pure numpy: no I/O, no printing, no Python loop over samples.
The loss is computed as log-sum-exp minus the true-class score, which equals
-log P[y, i] but never takes the logarithm of an underflowed probability; the
BCE loss likewise uses softplus (``np.logaddexp(0, s)``), never log(σ(s)).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "softmax",
    "scores",
    "evaluate_classifier",
    "log_sum_exp",
    "labels_of",
    "one_hot",
    "compute_loss",
    "compute_cost",
    "compute_accuracy",
    "compute_gradients",
    "init_parameters",
    "metrics_from_scores",
    "predict",
    "sigmoid",
    "softplus",
    "compute_loss_bce",
    "compute_gradients_bce",
    "sample_losses",
    "sample_losses_bce",
    "sample_losses_svm",
    "svm_margins",
    "compute_loss_svm",
    "compute_gradients_svm",
    "true_class_margins",
]


def scores(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """S = W X + b (K × n) for X (d × n), W (K × d), b (K × 1)."""
    S = W @ X
    S += b.reshape(-1, 1)
    return S


def softmax(S: np.ndarray) -> np.ndarray:
    """Column-wise softmax of S (K × n), stable for any finite scores.

    The column maximum is subtracted first, so exp never overflows and every
    column sums to 1 up to rounding.
    """
    with np.errstate(over="ignore"):  # S - max may round to -inf for scores ~1e308 apart: exp gives 0, exactly
        P = S - S.max(axis=0, keepdims=True)
    np.exp(P, out=P)
    P /= P.sum(axis=0, keepdims=True)
    return P


def evaluate_classifier(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P = softmax(W X + b): class probabilities, K × n."""
    S = scores(X, W, b)
    # in place: S is ours
    S -= S.max(axis=0, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=0, keepdims=True)
    return S


def log_sum_exp(S: np.ndarray) -> np.ndarray:
    """log Σ_k exp(S[k, i]) per column, computed stably: shape (n,)."""
    m = S.max(axis=0)
    e = np.exp(S - m)
    return np.log(e.sum(axis=0)) + m


def softplus(S: np.ndarray) -> np.ndarray:
    """log(1 + exp(S)) elementwise, stable for any finite S (same shape as S)."""
    return np.logaddexp(0.0, S)


def sigmoid(S: np.ndarray) -> np.ndarray:
    """σ(S) = 1 / (1 + exp(-S)) elementwise (same shape as S), without overflow.

    Computed as exp(-softplus(-S)): exact for large |S| (σ(-800) underflows to
    0 quietly instead of raising an overflow warning in exp(800)).
    """
    S = np.asarray(S)
    return np.exp(-softplus(-S))


def true_class_margins(S: np.ndarray, y: np.ndarray) -> np.ndarray:
    """s_{y_i} - max_{j ≠ y_i} s_j per column (n,): how far the true class's score leads the best other one.

    S is K × n scores (K ≥ 2), y (n,) labels or K × n one-hot. Positive when the
    image is classified correctly, negative when another class wins (0 on a tie).
    """
    y = labels_of(y)
    S = np.asarray(S)
    if S.shape[0] < 2:
        raise ValueError(f"a margin needs at least 2 classes, got scores of shape {S.shape}")
    cols = np.arange(y.size)
    others = np.array(S, dtype=np.result_type(S, np.float64), copy=True)
    s_true = others[y, cols].copy()
    others[y, cols] = -np.inf
    return s_true - others.max(axis=0)


def svm_margins(S: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Margins M (K × n): M[j, i] = S[j, i] - S[y_i, i] + 1 for j ≠ y_i, and M[y_i, i] = 0.

    Not clipped: the hinge loss is Σ_j max(0, M[j, i]) and its subgradient the
    indicator M > 0 (the zeroed true class is never positive). S K × n, y (n,) or one-hot.
    """
    y = labels_of(y)
    cols = np.arange(y.size)
    S = np.asarray(S)
    M = S - S[y, cols]
    M += 1
    M[y, cols] = 0
    return M


def labels_of(Y: np.ndarray) -> np.ndarray:
    """Integer labels (n,) from one-hot Y (K × n); 1-D input is returned as is."""
    Y = np.asarray(Y)
    if Y.ndim == 1:
        return Y.astype(np.intp, copy=False)
    return np.argmax(Y, axis=0)


def one_hot(y: np.ndarray, K: int = 10, dtype=np.float64) -> np.ndarray:
    """One-hot matrix Y (K × n) for integer labels y (n,) in [0, K)."""
    y = np.asarray(y).astype(np.intp, copy=False)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= K):
        raise ValueError(f"labels must lie in [0, {K}), got {y.min()}..{y.max()}")
    Y = np.zeros((K, y.size), dtype=dtype)
    Y[y, np.arange(y.size)] = 1
    return Y


def sample_losses(S: np.ndarray, y: np.ndarray) -> np.ndarray:
    """-log softmax(S)[y_i, i] per column, shape (n,)."""
    return log_sum_exp(S) - S[y, np.arange(y.size)]


def sample_losses_bce(S: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(1/K) Σ_k [softplus(S[k, i]) - Y[k, i] S[k, i]] per column, shape (n,)."""
    K = S.shape[0]
    return (softplus(S).sum(axis=0) - S[y, np.arange(y.size)]) / K


def sample_losses_svm(S: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Σ_{j ≠ y_i} max(0, S[j, i] - S[y_i, i] + 1) per column, shape (n,)."""
    return np.maximum(svm_margins(S, y), 0).sum(axis=0)


def compute_loss_svm(X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray) -> float:
    """Mean multi-class hinge loss L = (1/n) Σ_i Σ_{j ≠ y_i} max(0, s_j - s_{y_i} + 1).

    X d × n, Y one-hot K × n or labels (n,), W K × d, b K × 1.
    """
    return float(np.mean(sample_losses_svm(scores(X, W, b), labels_of(Y))))


def compute_loss_bce(X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray) -> float:
    """Mean multiple binary cross-entropy L = (1/n) Σ_i l_i (see the module docstring).

    X d × n, Y one-hot K × n or labels (n,), W K × d, b K × 1.
    """
    y = labels_of(Y)
    return float(np.mean(sample_losses_bce(scores(X, W, b), y)))


def compute_loss(X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray) -> float:
    """Mean cross-entropy L = -(1/n) Σ log P[y_i, i]; Y one-hot (K × n) or labels (n,)."""
    y = labels_of(Y)
    return float(np.mean(sample_losses(scores(X, W, b), y)))


def compute_cost(X: np.ndarray, Y: np.ndarray, W: np.ndarray, b: np.ndarray, lam: float) -> float:
    """J = L + λ ‖W‖² (squared Frobenius norm of W; b not regularised)."""
    return compute_loss(X, Y, W, b) + lam * float(np.sum(W * W))


def predict(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Predicted labels argmax_k S[k, i], shape (n,)."""
    return np.argmax(scores(X, W, b), axis=0)


def compute_accuracy(X: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray) -> float:
    """Share of columns whose highest score is the true label; y (n,) or one-hot."""
    y = labels_of(y)
    return float(np.mean(predict(X, W, b) == y))


def metrics_from_scores(
    S: np.ndarray, y: np.ndarray, reg: float, per_sample=sample_losses
) -> tuple[float, float, float]:
    """(loss, cost, accuracy) from one score matrix S (K × n): one forward pass for all three.

    ``reg`` is the already computed λ‖W‖²; ``per_sample(S, y)`` the loss of each image (n,).
    """
    y = labels_of(y)
    mean_loss = float(np.mean(per_sample(S, y)))
    acc = float(np.mean(np.argmax(S, axis=0) == y))
    return mean_loss, mean_loss + reg, acc


def compute_gradients(
    X: np.ndarray, Y: np.ndarray, P: np.ndarray, W: np.ndarray, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """Analytic gradients of J: (∂J/∂W K × d, ∂J/∂b K × 1).

    G = P - Y;  ∂J/∂W = G Xᵀ / n + 2 λ W;  ∂J/∂b = G 1 / n.
    Y may be one-hot (K × n) or integer labels (n,); the latter is applied as
    index arithmetic (P[y, i] -= 1) without building the dense one-hot matrix.
    """
    n = X.shape[1]
    G = np.array(P, dtype=np.result_type(P, W), copy=True)
    Y = np.asarray(Y)
    if Y.ndim == 1:
        G[Y.astype(np.intp, copy=False), np.arange(n)] -= 1
    else:
        G -= Y
    return _gradients_of(G, X, W, lam)


def _gradients_of(G: np.ndarray, X: np.ndarray, W: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(G Xᵀ / n + 2 λ W, G 1 / n) for G = ∂l/∂S (K × n): the form every loss's gradient takes."""
    n = X.shape[1]
    grad_W = G @ X.T
    grad_W /= n
    if lam:
        grad_W += (2 * lam) * W
    grad_b = G.sum(axis=1, keepdims=True)
    grad_b /= n
    return grad_W, grad_b


def compute_gradients_bce(
    X: np.ndarray, Y: np.ndarray, P: np.ndarray, W: np.ndarray, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """Analytic gradients of the BCE cost: (∂J/∂W K × d, ∂J/∂b K × 1).

    P = σ(S) (K × n);  G = (P - Y) / K;  ∂J/∂W = G Xᵀ / n + 2 λ W;  ∂J/∂b = G 1 / n.
    Y one-hot (K × n) or integer labels (n,).
    """
    K = P.shape[0]
    grad_W, grad_b = compute_gradients(X, Y, P, W, 0.0)
    grad_W /= K
    grad_b /= K
    if lam:
        grad_W += (2 * lam) * W
    return grad_W, grad_b


def compute_gradients_svm(
    X: np.ndarray, Y: np.ndarray, S: np.ndarray, W: np.ndarray, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """(Sub)gradients of the multi-class SVM cost: (∂J/∂W K × d, ∂J/∂b K × 1).

    Takes the SCORES S = W X + b (K × n), not probabilities (an SVM has none).
    G = [M > 0] with G[y_i, i] = -Σ_{j ≠ y_i} [M[j, i] > 0], M = svm_margins(S, y);
    ∂J/∂W = G Xᵀ / n + 2 λ W;  ∂J/∂b = G 1 / n. X d × n, Y one-hot (K × n) or labels (n,).
    """
    y = labels_of(Y)
    n = X.shape[1]
    G = (svm_margins(S, y) > 0).astype(np.result_type(S, W))
    G[y, np.arange(n)] = -G.sum(axis=0)
    return _gradients_of(G, X, W, lam)


def init_parameters(
    K: int, d: int, rng: np.random.Generator, std: float = 0.01, dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """W (K × d) then b (K × 1), each entry drawn from N(0, std²) with ``rng``.

    The draws are made in float64 and then cast, so float32 and float64 runs
    start from the same (rounded) weights.
    """
    W = rng.normal(0.0, std, size=(K, d)).astype(dtype)
    b = rng.normal(0.0, std, size=(K, 1)).astype(dtype)
    return W, b
