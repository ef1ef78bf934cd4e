"""The three losses, one class each: formula, gradients, metrics, exact differences, outputs.

Shapes as in model.py: X d × n, Y one-hot K × n (or labels y (n,)), W K × d,
b K × 1, scores S = W X + b 1ᵀ (K × n). Every loss is a mean over images of a
per-image loss l_i, and every cost is J = L + λ ‖W‖² (b not regularised)::

    Softmax (the study):       P = softmax(S),  l_i = log Σ_k exp(S[k, i]) - S[y_i, i]
                               G = P - Y
    BinaryCrossEntropy (bce):  P = σ(S) elementwise,  l_i = (1/K) Σ_k [softplus(S[k, i]) - Y[k, i] S[k, i]]
                               G = (P - Y) / K
    MulticlassSVM (svm):       M[j, i] = S[j, i] - S[y_i, i] + 1 (j ≠ y_i),  M[y_i, i] = 0
                               l_i = Σ_j max(0, M[j, i])
                               G[j, i] = [M[j, i] > 0] (j ≠ y_i),  G[y_i, i] = -Σ_{j ≠ y_i} [M[j, i] > 0]

    L = (1/n) Σ_i l_i,   ∂J/∂W = (1/n) G Xᵀ + 2 λ W,   ∂J/∂b = (1/n) G 1

G = ∂l/∂S is all that differs between the losses' gradients. The hinge is not
differentiable where a margin is exactly 0; G is the subgradient that counts
such a margin as not positive. Predictions (and so accuracy) are argmax_k S[k, i]
for every loss. softplus(s) = log(1 + eˢ) is ``np.logaddexp(0, s)``: never log(0).

What each loss's outputs are: softmax probabilities (each column sums to 1),
K independent sigmoid probabilities (they do not sum to 1), or the scores
themselves (an SVM has no probabilities; only their order and differences mean
anything).

Each class holds, for its loss: the reference loss and gradient (model.py's pure
functions), the fast loop's in-place batch gradient (train.py, samples in rows),
the row metrics of the fast loop, and gradcheck's exact centred difference (see
gradcheck.py for why it is computed from the loss's form, never as a difference
of two costs). ``config.loss_named`` maps a setting's name to its object.
"""

from __future__ import annotations

import numpy as np

from .model import (
    compute_gradients,
    compute_gradients_bce,
    compute_gradients_svm,
    labels_of,
    log_sum_exp,
    metrics_from_scores,
    sample_losses,
    sample_losses_bce,
    sample_losses_svm,
    scores,
    sigmoid,
    softmax,
    svm_margins,
)

__all__ = ["Loss", "Softmax", "BinaryCrossEntropy", "MulticlassSVM"]


class Loss:
    """The protocol every loss follows; the subclasses fill in the formulas.

    ``name`` is its setting; ``is_study`` marks the study's loss, which payloads and labels leave
    unnamed and the report compares every other loss with; ``outputs`` says what ``output`` gives
    ("probabilities" or "scores") and ``output_words`` how a result describes them; ``smooth`` is False
    for a loss with kinks.
    """

    name: str
    is_study = False
    outputs = "probabilities"
    smooth = True
    probability_kind = "softmax"  # evaluate's summary "kind" of the true-class probability
    probability_caption = "softmax"  # how the report's histogram names that probability
    output_words: dict

    @property
    def gives_probabilities(self) -> bool:
        return self.outputs == "probabilities"

    @property
    def tag(self) -> str:
        """How a run label names the loss: "" for the study's, else e.g. "BCE"."""
        return "" if self.is_study else self.name.upper()

    # -- reference (model.py) --

    def output(self, S: np.ndarray) -> np.ndarray:
        """The model's outputs for scores S (K × n): what ``compute_gradients`` takes, predict shows."""
        raise NotImplementedError

    def sample_losses(self, S: np.ndarray, y: np.ndarray) -> np.ndarray:
        """l_i per column of S (K × n) for labels y (n,): shape (n,)."""
        raise NotImplementedError

    def compute_gradients(self, X, Y, outputs, W, lam) -> tuple[np.ndarray, np.ndarray]:
        """(∂J/∂W K × d, ∂J/∂b K × 1) from ``outputs`` = ``output(S)``."""
        raise NotImplementedError

    def true_class_probabilities(self, S: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The probability each column of S (K × n) gives its true class y_i: shape (n,)."""
        raise NotImplementedError

    def compute_loss(self, X, Y, W, b) -> float:
        """L = (1/n) Σ_i l_i; Y one-hot (K × n) or labels (n,)."""
        return float(np.mean(self.sample_losses(scores(X, W, b), labels_of(Y))))

    def compute_cost(self, X, Y, W, b, lam: float) -> float:
        """J = L + λ ‖W‖²."""
        return self.compute_loss(X, Y, W, b) + lam * float(np.sum(W * W))

    def metrics_from_scores(self, S: np.ndarray, y: np.ndarray, reg: float) -> tuple[float, float, float]:
        """(loss, cost, accuracy) from one score matrix S (K × n); ``reg`` the computed λ‖W‖²."""
        return metrics_from_scores(S, y, reg, self.sample_losses)

    # -- the fast loop (train.py): samples in rows --

    def batch_divisor(self, m: int, K: int) -> int:
        """What η is divided by for a batch of m images: the mean over the batch (and classes)."""
        return m

    def batch_gradient(self, G: np.ndarray, S_flat: np.ndarray, true_flat: np.ndarray, step, col) -> None:
        """Scores G (m × K, a view into the flat S) → step · Gᵀ of the formula, in place.

        ``S_flat[true_flat]`` are G's true-class entries; ``col`` an m × 1 scratch buffer.
        """
        raise NotImplementedError

    def row_metrics(self, T: np.ndarray, y: np.ndarray, flat: np.ndarray, reg: float) -> tuple[float, float, float]:
        """(loss, cost, acc) from scores in rows T (n × K, C-contiguous), flat true-class indices
        into T and ``reg`` = λ‖W‖²; works in T's dtype, averages in float64, may overwrite T."""
        raise NotImplementedError

    # -- gradcheck --

    def loss_differences(self, X: np.ndarray, y: np.ndarray, W: np.ndarray, b: np.ndarray, h: float):
        """(dW K × d, db K × 1, kinks_W, kinks_b): L(θ + h) - L(θ - h) for every parameter θ, exactly,
        and the masks of the parameters whose ±h straddles a kink (float64 inputs)."""
        raise NotImplementedError


def _accuracy(T: np.ndarray, y: np.ndarray) -> float:
    return float(np.count_nonzero(np.argmax(T, axis=1) == y)) / y.size


def _log1p_differences(P_k: np.ndarray, is_k: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Σ over samples of [log1p(p_ki · expm1(δ)) - log1p(p_ki · expm1(-δ)) - 2δ [y_i = k]] / n per row
    of ``delta`` (p × n) -> (p,): the exact change of the mean of -log p_y (or of softplus - y·s)
    when row k of the scores moves by ±δ, keeping full relative precision."""
    up = np.log1p(P_k * np.expm1(delta))
    down = np.log1p(P_k * np.expm1(-delta))
    return (up - down - 2 * delta * is_k).mean(axis=1)


class _SmoothLoss(Loss):
    """Softmax and BCE: shifting row k of S by δ changes l_i by scale · [log1p(p_ki expm1(δ)) - δ [y_i = k]],
    p = softmax(S) or σ(S), scale 1 or 1/K: no kinks, no subtraction of two costs."""

    def _scale(self, K: int) -> float:
        return 1.0

    def loss_differences(self, X, y, W, b, h):
        K = W.shape[0]
        P = self.output(scores(X, W, b))
        scale = self._scale(K)
        hX = h * X  # d × n: change of row k per W[k, j]
        hb = np.full((1, X.shape[1]), h)
        dW, db = np.zeros(W.shape), np.zeros((K, 1))
        for k in range(K):  # loop over classes, not samples or parameters
            is_k = y == k
            dW[k] = scale * _log1p_differences(P[k], is_k, hX)
            db[k] = scale * _log1p_differences(P[k], is_k, hb)[0]
        return dW, db, np.zeros(W.shape, bool), np.zeros((K, 1), bool)


class Softmax(_SmoothLoss):
    """Cross-entropy of softmax probabilities: the study's loss."""

    name, is_study = "softmax", True
    output_words = {"kind": "softmax", "sums_to_one": True, "note": "softmax over the 10 classes: they sum to 1"}

    output = staticmethod(softmax)
    sample_losses = staticmethod(sample_losses)
    compute_gradients = staticmethod(compute_gradients)

    def true_class_probabilities(self, S, y):
        y = labels_of(y)
        S = np.asarray(S, dtype=np.float64)
        return np.exp(S[y, np.arange(y.size)] - log_sum_exp(S))

    def batch_gradient(self, G, S_flat, true_flat, step, col):
        """Scores G → step · (P - Y) in place, P = softmax of each row."""
        np.max(G, axis=1, keepdims=True, out=col)
        G -= col
        np.exp(G, out=G)
        np.sum(G, axis=1, keepdims=True, out=col)
        np.divide(step, col, out=col)
        G *= col
        S_flat[true_flat] -= step

    def row_metrics(self, T, y, flat, reg):
        acc = _accuracy(T, y)
        m = T.max(axis=1)
        true_scores = T.reshape(-1)[flat]
        T -= m[:, None]
        np.exp(T, out=T)
        per_sample = np.log(T.sum(axis=1))  # the per-sample log-sum-exp, exact to T's precision
        per_sample += m
        per_sample -= true_scores
        loss = float(np.mean(per_sample, dtype=np.float64))
        return loss, loss + reg, acc


class BinaryCrossEntropy(_SmoothLoss):
    """K yes/no questions with sigmoid outputs (the course's "beyond" option)."""

    name = "bce"
    probability_kind = "sigmoid"
    probability_caption = "per-class sigmoid σ(s_y) of a BCE run; the ten do not sum to 1"
    output_words = {
        "kind": "sigmoid",
        "sums_to_one": False,
        "note": "bce run: each class has its own sigmoid probability (a yes/no answer per class); they do not sum to 1",
    }

    def _scale(self, K):
        return 1.0 / K  # BCE averages its K binary losses

    output = staticmethod(sigmoid)
    sample_losses = staticmethod(sample_losses_bce)
    compute_gradients = staticmethod(compute_gradients_bce)

    def true_class_probabilities(self, S, y):
        y = labels_of(y)
        return sigmoid(np.asarray(S, dtype=np.float64)[y, np.arange(y.size)])

    def batch_divisor(self, m, K):
        return m * K

    def batch_gradient(self, G, S_flat, true_flat, step, col):
        """Scores G → step · (σ(G) - Y) in place."""
        np.negative(G, out=G)
        np.exp(G, out=G)
        G += 1
        np.divide(step, G, out=G)
        S_flat[true_flat] -= step

    def row_metrics(self, T, y, flat, reg):
        per_sample = np.logaddexp(0, T).sum(axis=1)
        per_sample -= T.reshape(-1)[flat]
        per_sample /= T.shape[1]
        loss = float(np.mean(per_sample, dtype=np.float64))
        return loss, loss + reg, _accuracy(T, y)


def _hinge_differences(m: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """relu(m + δ) - relu(m - δ) elementwise (broadcast), computed as sign(δ) · clip(m + |δ|, 0, 2|δ|).

    Exactly 2δ (m ≥ |δ|) or 0 (m ≤ -|δ|) away from the kink; m + |δ| inside it.
    """
    a = np.abs(delta)
    return np.sign(delta) * np.clip(m + a, 0, 2 * a)


class MulticlassSVM(Loss):
    """The multi-class hinge loss with margin 1 (the cs231n / course form): scores, no probabilities.

    Its exact difference: shifting row k of S by δ (δ_i = h X[j, i] for W[k, j], h for b[k]) moves
    the margin M[k, i] of each image with y_i ≠ k by +δ_i, and every M[j, i] (j ≠ k) of each image
    with y_i = k by -δ_i; each moved margin m adds relu(m + δ) - relu(m - δ) to L(θ + h) - L(θ - h).
    Where a moved margin lies within |δ| of zero the centred difference mixes both slopes: that
    parameter is a kink, counted by gradcheck and left out of its verdict.
    """

    name = "svm"
    outputs = "scores"
    smooth = False
    output_words = {
        "kind": "svm scores",
        "sums_to_one": False,
        "scores": True,
        "note": "svm run: these are class scores s = Wx + b, not probabilities; the highest wins, "
        "and only their order and differences (margins) mean anything",
    }

    def output(self, S):
        return S

    sample_losses = staticmethod(sample_losses_svm)
    compute_gradients = staticmethod(compute_gradients_svm)

    def true_class_probabilities(self, S, y):
        raise ValueError(
            "an SVM (loss 'svm') has no probabilities: it gives class scores S = W X + b; "
            "use the scores, or true_class_margins for how clearly the true class wins"
        )

    def batch_gradient(self, G, S_flat, true_flat, step, col):
        """Scores G → step · M in place: M[i, j] = [G[i, j] - G[i, y_i] + 1 > 0] for j ≠ y_i and
        M[i, y_i] = -(the count of those)."""
        np.take(S_flat, true_flat, out=col.reshape(-1), mode="clip")  # "clip": not buffered
        G -= col
        G += 1  # margins; the true class's own is exactly 1
        np.greater(G, 0, out=G)  # 1 where the margin is positive, the true class included
        np.sum(G, axis=1, keepdims=True, out=col)
        np.subtract(1, col, out=col)  # -(count of positive margins of the other classes)
        S_flat[true_flat] = col.reshape(-1)
        G *= step

    def row_metrics(self, T, y, flat, reg):
        acc = _accuracy(T, y)
        true_scores = T.reshape(-1)[flat]
        T -= true_scores[:, None]
        T += 1
        np.maximum(T, 0, out=T)
        T.reshape(-1)[flat] = 0  # the true class is not one of its own margins
        loss = float(np.mean(T.sum(axis=1), dtype=np.float64))
        return loss, loss + reg, acc

    def loss_differences(self, X, y, W, b, h):
        K = W.shape[0]
        M = svm_margins(scores(X, W, b), y)
        hX = h * X
        hb = np.full((1, X.shape[1]), h)
        dW, db = np.zeros(W.shape), np.zeros((K, 1))
        kW, kb = np.zeros(W.shape, bool), np.zeros((K, 1), bool)
        for k in range(K):
            dW[k], kW[k] = self._row_differences(M, y, k, hX)
            diff, kinks = self._row_differences(M, y, k, hb)
            db[k], kb[k] = diff[0], kinks[0]
        return dW, db, kW, kb

    @staticmethod
    def _row_differences(M: np.ndarray, y: np.ndarray, k: int, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L(S_k + δ) - L(S_k - δ) per row of ``delta`` (p × n) -> (p,), kink mask (p,)); M the K × n margins."""
        K = M.shape[0]
        is_k = y == k
        other = ~is_k
        diff = np.zeros(delta.shape)
        diff[:, other] = _hinge_differences(M[k, other], delta[:, other])
        d_k = delta[:, is_k]
        for j in range(K):  # over classes, not samples: the images of class k
            if j != k:
                diff[:, is_k] -= _hinge_differences(M[j, is_k], d_k)
        # The margin nearest zero among those a shift of row k moves, per image.
        nearest = np.abs(M[k])
        if is_k.any():
            rest = np.abs(np.delete(M[:, is_k], k, axis=0))
            nearest[is_k] = rest.min(axis=0) if rest.size else np.inf
        kinks = (nearest < np.abs(delta)).any(axis=1)
        return diff.mean(axis=1), kinks
