"""Mini-batch gradient descent for the one-layer softmax network.

For each epoch, the training columns are visited in order, in batches of
n_batch (X_b: d × m, labels y_b), and the parameters updated as in the study::

    P = softmax(W X_b + b 1ᵀ),  G = P - Y_b
    W ← W - η (G X_bᵀ / m + 2 λ W)  =  (1 - 2ηλ) W - (η/m) G X_bᵀ
    b ← b - η G 1 / m

W and b start from N(0, 0.01²) drawn from ``numpy.random.default_rng(seed)``.
After epoch 0 (the initial weights) and after every epoch the history records
loss, cost and accuracy on the training and validation splits.

Options beyond the study (each off by default; see TrainConfig):

* ``loss="bce"``: P = σ(S) elementwise and G = (P - Y_b) / K (model.py).
* ``loss="svm"``: the multi-class hinge loss; G is the margin indicator matrix M (model.py).
* ``shuffle``: epoch e visits the rows in the order ``epoch_rng(seed, e).permutation(n)``.
* ``flip=p``: in epoch e, image i is mirrored left-right when
  ``epoch_rng(seed, e).random(n)[i] < p`` (drawn after the permutation). The
  flip is that of the raw image, normalised with the training statistics, as
  in the course: mirroring the raw pixels x to x' (x'_j = x_m(j)) and then
  normalising gives, from the normalised row z,

      z'_j = (x_m(j)/255 - μ_j) / σ_j = z_m(j) · σ_m(j)/σ_j + (μ_m(j) - μ_j)/σ_j

  i.e. a column gather plus a per-pixel affine map (``flip_rows``). Mirroring
  z alone would pair each pixel with the statistics of its mirror pixel. The
  metrics after each epoch are those of the unflipped training split.
* ``decay_every=k, decay_factor=f``: epoch e uses η · f^⌊(e-1)/k⌋ (``learning_rate``).
* ``init="xavier"``: W and b from N(0, 1/d) instead of N(0, 0.01²), same generator.
* Early stopping on validation (``EarlyStopping``): the *best* epoch is the
  first epoch e ≥ 1 with the highest validation accuracy (ties go to the
  earliest). ``keep="best"`` returns its weights instead of the last epoch's;
  ``patience=P`` stops after epoch e when e − best = P (validation accuracy has
  not improved for P epochs). The history still holds every epoch trained, and
  each checkpoint carries the best-so-far weights, so a resumed run is exact.

``train_reference`` is that loop written plainly, as the course writes it;
``train`` computes the same updates (equal to float rounding, tested) faster:

* Samples are rows: A = X_train.T is n × d C-ordered (prepare.normalise makes
  it so), a batch is one contiguous block, and scores are kept as m × K rows:
  ``S_b = A_b Wᵀ`` then ``ΔW = G_bᵀ A_b`` (G_bᵀ read in place, no copy).
* The products of K = 10 rows are dominated by streaming the batch, not by
  arithmetic, so extra rows are cheap. The forward product therefore
  multiplies the batch by the stacked [W; W_prev] (2K × d), where W_prev is
  the weights at the start of the epoch: its half of the result is exactly the
  training-split scores needed for the previous epoch's metrics, so no
  separate metrics pass over the training split is needed (only the last
  epoch needs one). The metrics of epoch e are thus complete after the pass
  of epoch e+1, which is when ``on_epoch`` is called for epoch e.
* Everything in the hot loop writes into preallocated buffers (``out=``,
  in-place ufuncs); η/m is folded into the softmax normalisation so G arrives
  scaled; the one-hot target is index arithmetic on precomputed flat indices;
  the weight decay is one in-place multiply.
* Threads without changing a bit (threads.py): every product runs on one BLAS
  thread and is cut in two at a fixed place (the forward product by rows of
  the batch, the update by columns of W); ``TwoHalves`` runs the halves on two
  threads, or on one when another process holds a core, chosen epoch by epoch
  from measured epoch times.

With ``flip`` the batch rows are augmented, so the W_prev half of the fused
product would score flipped images: those runs multiply by W alone and pay one
metrics pass over the (unflipped) training split per epoch instead. With
``shuffle`` alone the fused trick still holds: the W_prev scores are those of
the epoch's permuted rows, scored against the permuted labels (the loss is a
mean and the accuracy a count, so the order does not matter). Augmented
batches are gathered into one preallocated n_batch × d buffer: no per-epoch
copy of the training split (which would double the memory of split full).

Determinism, by construction: a run's W and b are a function of its config,
its data and this machine's numpy/BLAS build only. Every product has the same
shape, operands and single BLAS thread however many threads run, whatever the
load, in ``train``, ``report``, ``sweep`` or on Dask. Nothing is random after
initialisation except the per-epoch shuffle and flips, drawn from
``epoch_rng(seed, epoch)`` and never from a generator that runs across epochs,
and the learning rate depends only on the epoch number: a resumed run is
bit-identical to an uninterrupted one. Another CPU may take other kernels, so
its bits may differ (the README says by how much).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .config import TrainConfig
from .errors import CifarError, WorkFailed
from .model import (compute_gradients, compute_gradients_bce, compute_gradients_svm, evaluate_classifier,
                    init_parameters, scores, sigmoid)
from .prepare import PreparedData
from .threads import TwoHalves, one_blas_thread

HISTORY_KEYS = ("epoch", "train_loss", "train_cost", "train_acc", "val_loss", "val_cost", "val_acc")
IMAGE_SHAPE = (3, 32, 32)   # a CIFAR record: 3 channels × 32 rows × 32 columns


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator for per-epoch randomness: derived from (seed, epoch) only."""
    return np.random.default_rng([int(seed), int(epoch)])


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """η used in ``epoch`` (1-based): η · f^⌊(epoch - 1)/k⌋ with step decay, else η."""
    if not config.decays:
        return float(config.eta)
    return float(config.eta) * float(config.decay_factor) ** ((int(epoch) - 1) // int(config.decay_every))


def init_std(config: TrainConfig, d: int) -> float:
    """Standard deviation of the initial W and b: 0.01 (the study) or 1/sqrt(d) (Xavier)."""
    return 1.0 / math.sqrt(d) if config.init == "xavier" else 0.01


def epoch_plan(config: TrainConfig, n: int, epoch: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(order, flips) of ``epoch``: the row permutation (or None) and the flip mask over images (or None).

    Both come from ``epoch_rng(config.seed, epoch)``, the permutation first;
    flips[i] says whether training image i is mirrored in this epoch.
    """
    if not config.shuffle and not config.flip > 0:
        return None, None
    rng = epoch_rng(config.seed, epoch)
    order = rng.permutation(n) if config.shuffle else None
    flips = rng.random(n) < config.flip if config.flip > 0 else None
    return order, flips


def mirror_index(shape: tuple[int, int, int] = IMAGE_SHAPE) -> np.ndarray:
    """Column index m with x[m] = the image x (channels × rows × columns, flattened) mirrored left-right."""
    return np.arange(int(np.prod(shape))).reshape(shape)[:, :, ::-1].ravel()


def flip_transform(mean: np.ndarray, std: np.ndarray, dtype=np.float64):
    """(m, scale, shift) with flip(z) = z[:, m] · scale + shift for normalised rows z (n × d).

    flip(z) is the normalisation (with the same μ, σ) of the mirrored raw
    image: z'_j = z_m(j) σ_m(j)/σ_j + (μ_m(j) - μ_j)/σ_j; see the module docstring.
    """
    mean = np.asarray(mean, dtype=np.float64).ravel()
    std = np.asarray(std, dtype=np.float64).ravel()
    m = mirror_index()
    if mean.size != m.size or std.size != m.size:
        raise CifarError(f"flipping needs 32 × 32 colour images ({m.size} values), got {mean.size}")
    scale = (std[m] / std).astype(dtype)
    shift = ((mean[m] - mean) / std).astype(dtype)
    return m, scale, shift


def flip_rows(Z: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalised rows Z (n × d) of images → normalised rows of the same images mirrored left-right.

    Z[:, m] is the reversed last axis of the (n, 3, 32, 32) view, which numpy
    reads with a negative stride (faster than gathering columns by index).
    """
    _, scale, shift = flip_transform(mean, std, Z.dtype)
    out = np.multiply(Z.reshape(-1, *IMAGE_SHAPE)[..., ::-1], scale.reshape(IMAGE_SHAPE))
    out = out.reshape(Z.shape[0], -1)
    out += shift
    return out


@dataclass
class Checkpoint:
    """The state after ``epoch`` epochs: W (K × d), b (K × 1), history up to that epoch, and with
    ``keep="best"`` the best epoch so far and its weights (None otherwise)."""

    epoch: int
    W: np.ndarray
    b: np.ndarray
    history: dict[str, list]
    best_epoch: int | None = None
    best_W: np.ndarray | None = None
    best_b: np.ndarray | None = None


def best_epoch(val_acc: list[float], upto: int | None = None) -> int | None:
    """The first epoch e ≥ 1 (history rows 1..upto) with the highest validation accuracy, or None."""
    rows = list(val_acc[1:None if upto is None else upto + 1])
    return None if not rows else 1 + rows.index(max(rows))


class EarlyStopping:
    """``keep="best"`` and ``patience``: the best epoch on validation so far (ties: the earliest), its
    weights when they are to be kept, and when to stop. Rebuilt exactly from a checkpoint."""

    def __init__(self, config: TrainConfig, resume: Checkpoint | None = None):
        self.keep_best, self.patience = config.keep == "best", int(config.patience)
        self.epoch, self.acc, self.W, self.b = None, -math.inf, None, None
        if resume is not None:
            self.epoch = best_epoch(resume.history["val_acc"])
            self.acc = resume.history["val_acc"][self.epoch] if self.epoch is not None else -math.inf
            if self.keep_best and self.epoch is not None:
                if resume.best_epoch != self.epoch or resume.best_W is None or resume.best_b is None:
                    raise CifarError(f"checkpoint of epoch {resume.epoch} lacks the weights of its best epoch")
                self.W, self.b = np.array(resume.best_W), np.array(resume.best_b).reshape(-1, 1)

    def offer(self, epoch: int, val_acc: float, W: np.ndarray, b: np.ndarray) -> None:
        """Epoch ``epoch`` reached ``val_acc`` with weights (W, b): kept when strictly better than the best."""
        if epoch >= 1 and val_acc > self.acc:
            self.epoch, self.acc = epoch, float(val_acc)
            if self.keep_best:
                self.W, self.b = W.copy(), np.array(b).reshape(-1, 1)

    def should_stop(self, epoch: int) -> bool:
        """Whether training stops after ``epoch``: validation accuracy not improved for ``patience`` epochs."""
        return self.patience > 0 and self.epoch is not None and epoch - self.epoch >= self.patience

    def checkpoint(self, epoch: int, W: np.ndarray, b: np.ndarray, history: dict) -> Checkpoint:
        if not self.keep_best or self.epoch is None:
            return Checkpoint(epoch, W, b, history)
        return Checkpoint(epoch, W, b, history, self.epoch, self.W.copy(), self.b.copy())

    def chosen(self, W: np.ndarray, b: np.ndarray, last_epoch: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(W, b, epoch) the run returns: the best epoch's with ``keep="best"``, else the last's."""
        if self.keep_best and self.epoch is not None:
            return self.W.copy(), self.b.copy(), self.epoch
        return W, b, last_epoch


@dataclass
class TrainResult:
    W: np.ndarray
    b: np.ndarray
    history: dict[str, list]
    timings: dict = field(default_factory=dict)
    config: TrainConfig | None = None
    chosen_epoch: int | None = None      # the epoch whose weights W, b are (the last, or the best with keep="best")


class TrainingDiverged(WorkFailed):
    """The cost became NaN or infinite; carries the epoch and the history so far."""

    def __init__(self, epoch: int, history: dict[str, list], eta: float):
        super().__init__(
            f"training diverged at epoch {epoch}: the cost is no longer finite",
            f"use a smaller learning rate η (this run used {eta:g})")
        self.epoch = epoch
        self.history = history


def train_keeping_last_good(config: TrainConfig, data: PreparedData, *, resume: Checkpoint | None = None,
                            on_epoch: Callable[[Checkpoint], None] | None = None,
                            on_batch: Callable[[int, int, int], None] | None = None) -> dict:
    """``train``, except that a run that diverges is a result too: its history up to the blow-up,
    the weights of its last finite epoch (None before any), and the epoch it diverged at.

    Returns ``{"W", "b", "history", "timings", "diverged_at", "chosen_epoch"}``; the same wherever
    the run is trained (this process, a worker process, a Dask worker). With ``keep="best"`` a
    diverged run returns the best epoch's weights of its last checkpoint.
    """
    last = [resume] if resume is not None else []

    def keep(checkpoint: Checkpoint) -> None:
        last[:] = [checkpoint]
        if on_epoch is not None:
            on_epoch(checkpoint)

    try:
        result = train(config, data, resume=resume, on_epoch=keep, on_batch=on_batch)
    except TrainingDiverged as diverged:
        good = last[-1] if last else None
        if good is not None and good.best_W is not None:     # keep="best": the best epoch's weights
            good = Checkpoint(good.best_epoch, good.best_W, good.best_b, good.history)
        return {"W": good.W if good else None, "b": good.b if good else None, "history": diverged.history,
                "timings": {}, "diverged_at": diverged.epoch, "chosen_epoch": good.epoch if good else None}
    return {"W": result.W, "b": result.b, "history": result.history, "timings": result.timings,
            "diverged_at": None, "chosen_epoch": result.chosen_epoch}


def _empty_history() -> dict[str, list]:
    return {k: [] for k in HISTORY_KEYS}


def _row_metrics(T: np.ndarray, y: np.ndarray, flat: np.ndarray, reg: float) -> tuple[float, float, float]:
    """(loss, cost, acc) from scores in rows T (n × K, C-contiguous) and flat true-class indices.

    Works in T's dtype (the per-sample log-sum-exp is exact to its precision)
    and averages in float64. T is overwritten.
    """
    acc = float(np.count_nonzero(np.argmax(T, axis=1) == y)) / y.size
    m = T.max(axis=1)
    true_scores = T.reshape(-1)[flat]
    T -= m[:, None]
    np.exp(T, out=T)
    per_sample = np.log(T.sum(axis=1))
    per_sample += m
    per_sample -= true_scores
    loss = float(np.mean(per_sample, dtype=np.float64))
    return loss, loss + reg, acc


def _row_metrics_bce(T: np.ndarray, y: np.ndarray, flat: np.ndarray, reg: float) -> tuple[float, float, float]:
    """(loss, cost, acc) of the multiple binary cross-entropy from scores in rows T (n × K).

    Per sample (1/K) Σ_k [softplus(T[i, k]) - Y[i, k] T[i, k]], with softplus
    as logaddexp(0, ·): never log(0), exact for large |scores|.
    """
    per_sample = np.logaddexp(0, T).sum(axis=1)
    per_sample -= T.reshape(-1)[flat]
    per_sample /= T.shape[1]
    loss = float(np.mean(per_sample, dtype=np.float64))
    acc = float(np.count_nonzero(np.argmax(T, axis=1) == y)) / y.size
    return loss, loss + reg, acc


def _row_metrics_svm(T: np.ndarray, y: np.ndarray, flat: np.ndarray, reg: float) -> tuple[float, float, float]:
    """(loss, cost, acc) of the multi-class SVM from scores in rows T (n × K, C-contiguous).

    Per sample Σ_{j ≠ y_i} max(0, T[i, j] - T[i, y_i] + 1) (model.py); works in
    T's dtype and averages in float64. T is overwritten.
    """
    acc = float(np.count_nonzero(np.argmax(T, axis=1) == y)) / y.size
    true_scores = T.reshape(-1)[flat]
    T -= true_scores[:, None]
    T += 1
    np.maximum(T, 0, out=T)
    T.reshape(-1)[flat] = 0                           # the true class is not one of its own margins
    loss = float(np.mean(T.sum(axis=1), dtype=np.float64))
    return loss, loss + reg, acc


_ROW_METRICS = {"softmax": _row_metrics, "bce": _row_metrics_bce, "svm": _row_metrics_svm}


def _rows(X: np.ndarray, dtype) -> np.ndarray:
    """X (d × n) as samples-in-rows n × d C-ordered, without a copy when possible."""
    A = X.T
    if A.dtype != dtype or not A.flags.c_contiguous:
        A = np.ascontiguousarray(A, dtype=dtype)
    return A


# -- the reference loop -----------------------------------------------------------


def train_reference(config: TrainConfig, data: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """The study's loop as the course writes it: the plain version of ``train``, for reading and testing.

    Returns the final (W, b), or with ``keep="best"`` those of the best epoch on validation
    (``patience`` stops it as in ``train``). ``train`` computes the same updates (equal to
    float rounding, tested) in preallocated buffers, with the metrics fused in.
    The gradient per ``config.loss``: softmax, BCE (model.compute_gradients_bce)
    or the multi-class SVM (model.compute_gradients_svm, from the scores).
    """
    dtype = np.dtype(config.dtype)
    X, Y = data.X_train.astype(dtype), data.Y_train.astype(dtype)
    K, (d, n) = Y.shape[0], X.shape
    W, b = init_parameters(K, d, np.random.default_rng(config.seed), std=init_std(config, d), dtype=dtype)
    if config.flip > 0:
        X_mirrored = flip_rows(X.T, data.mean, data.std).T     # every image mirrored, normalised
    best = (-1.0, 0, W, b)                                     # early stopping: (val acc, epoch, W, b) of the best
    for epoch in range(1, config.n_epochs + 1):
        if config.patience and best[1] and epoch - 1 - best[1] >= config.patience:
            break                                              # not improved for `patience` epochs
        eta = learning_rate(config, epoch)
        order, flips = epoch_plan(config, n, epoch)
        images = order if order is not None else np.arange(n)
        for start in range(0, n, config.n_batch):
            batch = images[start:start + config.n_batch]
            Xb, Yb = X[:, batch], Y[:, batch]
            if flips is not None:
                Xb = np.where(flips[batch], X_mirrored[:, batch], Xb)
            if config.loss == "bce":
                grad_W, grad_b = compute_gradients_bce(Xb, Yb, sigmoid(scores(Xb, W, b)), W, config.lam)
            elif config.loss == "svm":
                grad_W, grad_b = compute_gradients_svm(Xb, Yb, scores(Xb, W, b), W, config.lam)
            else:
                grad_W, grad_b = compute_gradients(Xb, Yb, evaluate_classifier(Xb, W, b), W, config.lam)
            W = W - eta * grad_W
            b = b - eta * grad_b
        if config.stops_early:
            X_val = data.X_val.astype(dtype)
            val_acc = float(np.mean(np.argmax(scores(X_val, W, b), axis=0) == data.y_val))
            if val_acc > best[0]:                              # strictly better: ties stay with the earliest
                best = (val_acc, epoch, W, b)
    if config.keep == "best":
        return best[2], best[3]
    return W, b


# -- the fast loop ----------------------------------------------------------------


class _FastLoop:
    """The buffers and steps of ``train``: gather a batch, forward, gradient, update, metrics.

    Samples are rows (A is n × d). Every product is cut in two at a fixed
    place (the batch products by columns of W, the metrics by rows) and the
    halves run through ``TwoHalves``: the bits are the same on one thread or
    two (see threads.py).
    """

    def __init__(self, config: TrainConfig, data: PreparedData, W0: np.ndarray, b0: np.ndarray):
        self.config, dtype = config, np.dtype(config.dtype)
        self.A, self.A_val = _rows(data.X_train, dtype), _rows(data.X_val, dtype)
        self.y, self.y_val = np.asarray(data.y_train, np.intp), np.asarray(data.y_val, np.intp)
        n, d = self.A.shape
        K = self.K = W0.shape[0]
        self.lam, self.dtype = float(config.lam), dtype
        # The loss decides two steps, each chosen here once: the batch gradient and the metrics.
        self.gradient = {"softmax": self.softmax_gradient, "bce": self.bce_gradient,
                         "svm": self.svm_gradient}[config.loss]
        self.metrics_of = _ROW_METRICS[config.loss]
        self.augment = config.flip > 0 or bool(config.shuffle)   # batches gathered into a buffer
        # Fused: the forward product multiplies by [W; W_prev], W_prev the weights at the start of
        # the epoch, so its second half scores the training split for the previous epoch's metrics
        # at no extra pass. Flipped batches are not the training split: those runs pay a pass.
        self.fused = not config.flip > 0
        width = 2 * K if self.fused else K
        self.WW = np.empty((width, d), dtype)
        self.W, self.W_prev = self.WW[:K], self.WW[K:]
        self.W[...] = W0
        self.b = np.array(np.asarray(b0).reshape(K), dtype=dtype)   # a row: scores are m × K
        self.b_prev = self.b.copy()
        self.S = np.empty((n, width), dtype)                        # the epoch's scores, batch by batch
        self.true_flat0 = np.arange(n) * width + self.y             # S.flat[true_flat0[i]] is S[i, y_i]
        self.T_train, self.T_val = np.empty((n, K), dtype), np.empty((self.y_val.size, K), dtype)
        self.columns = (slice(0, d // 2), slice(d // 2, d))       # the fixed cut of every batch product
        self.dW = [np.empty((K, c.stop - c.start), dtype) for c in self.columns]
        self.S_halves = [np.empty((config.n_batch, width), dtype) for _ in self.columns]
        self.col = np.empty((config.n_batch, 1), dtype)
        if self.augment:   # two: a batch is still read by its update while the next is gathered
            self.A_bufs = [np.empty((config.n_batch, d), dtype) for _ in range(2)]
        if config.flip > 0:
            _, scale, self.f_shift = flip_transform(data.mean, data.std, dtype)
            self.f_scale = scale.reshape(IMAGE_SHAPE)
            self.F_buf = np.empty((config.n_batch, d), dtype)
        self.bounds = [(s, min(s + config.n_batch, n)) for s in range(0, n, config.n_batch)]
        self.halves: TwoHalves | None = None

    def set_learning_rate(self, eta: float) -> None:
        """Per-batch step sizes η/m (softmax, SVM) or η/(mK) (BCE), and the weight decay 1 - 2ηλ."""
        per_class = self.K if self.config.loss == "bce" else 1
        # A huge η overflows the dtype (inf): the divergence is reported as one line, not warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            self.steps = [self.dtype.type(eta / ((e - s) * per_class)) for s, e in self.bounds]
            self.decay = self.dtype.type(1.0 - 2.0 * eta * self.lam)

    def gather(self, s: int, e: int, order, flips, buffer) -> tuple[np.ndarray, np.ndarray]:
        """The batch of rows s:e of this epoch (n_b × d, in ``buffer`` when augmented) and the flat
        indices of its true classes in S."""
        width = self.S.shape[1]
        if not self.augment:
            return self.A[s:e], self.true_flat0[s:e]
        images = order[s:e] if order is not None else np.arange(s, e)
        Ab = buffer[:e - s]
        if flips is None:
            np.take(self.A, images, axis=0, out=Ab, mode="clip")    # "clip": no buffered copy
            return Ab, np.arange(s, e) * width + self.y[images]
        # Unflipped images first, then the flipped ones: the update sums over the batch.
        keep, mirrored = images[~flips[images]], images[flips[images]]
        np.take(self.A, keep, axis=0, out=Ab[:keep.size], mode="clip")
        if mirrored.size:
            Fb = self.F_buf[:mirrored.size]
            np.take(self.A, mirrored, axis=0, out=Fb, mode="clip")
            np.multiply(Fb.reshape(-1, *IMAGE_SHAPE)[..., ::-1], self.f_scale,
                        out=Ab[keep.size:].reshape(-1, *IMAGE_SHAPE))
            Ab[keep.size:] += self.f_shift
        return Ab, np.arange(s, e) * width + np.concatenate((self.y[keep], self.y[mirrored]))

    def softmax_gradient(self, G: np.ndarray, true_flat: np.ndarray, step) -> None:
        """Scores G → step · (P - Y) in place, P = softmax of each row."""
        cb = self.col[:G.shape[0]]
        np.max(G, axis=1, keepdims=True, out=cb)
        G -= cb
        np.exp(G, out=G)
        np.sum(G, axis=1, keepdims=True, out=cb)
        np.divide(step, cb, out=cb)
        G *= cb
        self.S.reshape(-1)[true_flat] -= step

    def bce_gradient(self, G: np.ndarray, true_flat: np.ndarray, step) -> None:
        """Scores G → step · (σ(G) - Y) in place."""
        np.negative(G, out=G)
        np.exp(G, out=G)
        G += 1
        np.divide(step, G, out=G)
        self.S.reshape(-1)[true_flat] -= step

    def svm_gradient(self, G: np.ndarray, true_flat: np.ndarray, step) -> None:
        """Scores G → step · M in place: M[i, j] = [G[i, j] - G[i, y_i] + 1 > 0] for j ≠ y_i and
        M[i, y_i] = -(the count of those), the multi-class SVM's subgradient (model.py)."""
        cb = self.col[:G.shape[0]]
        np.take(self.S.reshape(-1), true_flat, out=cb.reshape(-1), mode="clip")   # "clip": not buffered
        G -= cb
        G += 1                                     # margins; the true class's own is exactly 1
        np.greater(G, 0, out=G)                    # 1 where the margin is positive, the true class included
        np.sum(G, axis=1, keepdims=True, out=cb)
        np.subtract(1, cb, out=cb)                 # -(count of positive margins of the other classes)
        self.S.reshape(-1)[true_flat] = cb.reshape(-1)
        G *= step

    def step(self, pending: tuple[np.ndarray, np.ndarray] | None, Ab: np.ndarray | None,
             s: int, e: int) -> np.ndarray | None:
        """The update of the pending batch, then the forward product of batch ``Ab`` (rows s:e).

        Each column half c of W is one task: W[:, c] ← (1 - 2ηλ) W[:, c] - Gᵀ A_prev[:, c], with G
        already scaled by the step, then S_c = Ab[:, c] [W; W_prev][:, c]ᵀ. A thread so owns its half
        of W from one batch to the next, and the two threads meet once per batch. Returns the
        scores plus b of the current weights (n_b × K, a view into S), or None without a batch.
        """
        def half(c: slice, dW: np.ndarray, S_c: np.ndarray) -> Callable[[], None]:
            def work() -> None:
                if pending is not None:
                    G, A_prev = pending
                    np.matmul(G.T, A_prev[:, c], out=dW)
                    if self.lam:
                        self.W[:, c] *= self.decay
                    self.W[:, c] -= dW
                if Ab is not None:
                    np.matmul(Ab[:, c], self.WW[:, c].T, out=S_c)
            return work

        m = e - s
        self.halves.run(*(half(c, dW, S_c[:m]) for c, dW, S_c in zip(self.columns, self.dW, self.S_halves)))
        if Ab is None:
            return None
        Sb = self.S[s:e]
        np.add(self.S_halves[0][:m], self.S_halves[1][:m], out=Sb)
        G = Sb[:, :self.K]
        G += self.b
        return G

    def run_epoch(self, epoch: int, on_batch) -> None:
        order, flips = epoch_plan(self.config, self.A.shape[0], epoch) if self.augment else (None, None)
        self.epoch_order = order
        if self.fused:
            self.W_prev[...] = self.W
            self.b_prev[...] = self.b
        gradient = self.gradient
        n_batches = len(self.bounds)
        stride = max(1, n_batches // 20)
        pending = None                                 # (G, batch) whose update is due
        for i, ((s, e), step) in enumerate(zip(self.bounds, self.steps)):
            Ab, true_flat = self.gather(s, e, order, flips, self.A_bufs[i % 2] if self.augment else None)
            G = self.step(pending, Ab, s, e)
            gradient(G, true_flat, step)
            self.b -= G.sum(axis=0)
            pending = (G, Ab)
            if on_batch is not None and (i % stride == stride - 1 or i == n_batches - 1):
                on_batch(epoch, i, n_batches)
        self.step(pending, None, 0, 0)

    # -- metrics --

    def _scores(self, A: np.ndarray, T: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        half = A.shape[0] // 2
        self.halves.run(lambda: np.matmul(A[:half], W.T, out=T[:half]),
                        lambda: np.matmul(A[half:], W.T, out=T[half:]))
        T += b
        return T

    def _reg(self, W: np.ndarray) -> float:
        W64 = W.astype(np.float64)
        return self.lam * float(np.einsum("ij,ij->", W64, W64))

    def val_metrics(self) -> tuple[float, float, float]:
        T = self._scores(self.A_val, self.T_val, self.W, self.b)
        return self.metrics_of(T, self.y_val, np.arange(self.y_val.size) * self.K + self.y_val, self._reg(self.W))

    def train_metrics(self) -> tuple[float, float, float]:
        """A separate pass over the (unflipped) training split with the current weights."""
        T = self._scores(self.A, self.T_train, self.W, self.b)
        return self.metrics_of(T, self.y, np.arange(self.y.size) * self.K + self.y, self._reg(self.W))

    def previous_train_metrics(self) -> tuple[float, float, float]:
        """Training metrics of W_prev from the epoch's fused scores (rows in the epoch's order)."""
        y = self.y if self.epoch_order is None else self.y[self.epoch_order]
        np.add(self.S[:, self.K:], self.b_prev, out=self.T_train)
        return self.metrics_of(self.T_train, y, np.arange(y.size) * self.K + y, self._reg(self.W_prev))


def _start(config: TrainConfig, K: int, d: int, resume: Checkpoint | None):
    """(first epoch, W0, b0, history) of a fresh run or of one resumed from ``resume``."""
    if resume is None:
        W0, b0 = init_parameters(K, d, np.random.default_rng(config.seed), std=init_std(config, d),
                                 dtype=np.dtype(config.dtype))
        return 0, W0, b0, _empty_history()
    start = int(resume.epoch)
    if not 0 <= start <= config.n_epochs:
        raise CifarError(f"cannot resume from epoch {start} of a {config.n_epochs}-epoch run")
    W0, b0 = np.asarray(resume.W), np.asarray(resume.b)
    if W0.shape != (K, d) or b0.size != K:
        raise CifarError(f"checkpoint shapes {W0.shape}, {b0.shape} do not match the data ({K} × {d})")
    history = copy.deepcopy(resume.history)
    if len(history.get("epoch", [])) != start + 1:
        raise CifarError(f"checkpoint of epoch {start} holds {len(history.get('epoch', []))} history rows")
    return start, W0, b0, history


def _recorder(history: dict, stopping: EarlyStopping, on_epoch, K: int):
    """``record(epoch, train_m, val_m, W, b, eta)``: append the epoch's row to ``history``, stop on
    divergence, hand out the checkpoint (with the best-so-far weights of ``stopping``)."""
    def record(epoch: int, train_m, val_m, W: np.ndarray, b: np.ndarray, eta: float) -> None:
        for key, value in zip(HISTORY_KEYS, (epoch, *train_m, *val_m)):
            history[key].append(int(value) if key == "epoch" else float(value))
        if not (math.isfinite(train_m[1]) and math.isfinite(val_m[1])):
            raise TrainingDiverged(epoch, copy.deepcopy(history), eta)
        if on_epoch is not None:
            on_epoch(stopping.checkpoint(epoch, W.copy(), b.reshape(K, 1).copy(), copy.deepcopy(history)))
    return record


def train(config: TrainConfig, data: PreparedData, *, resume: Checkpoint | None = None,
          on_epoch: Callable[[Checkpoint], None] | None = None,
          on_batch: Callable[[int, int, int], None] | None = None, threads: int | None = None) -> TrainResult:
    """Train W, b; see the module docstring for the algorithm, early stopping and the callbacks.

    ``on_batch(epoch, batch_index, n_batches)`` is called about 20 times per
    epoch (and on the last batch), not on every batch, to keep the loop tight.
    ``on_epoch(checkpoint)`` is called once per epoch (starting after epoch 1
    resumes, or with epoch 0 first) as soon as that epoch's metrics are known.
    ``threads`` (1 or 2; None: chosen epoch by epoch) is how many threads compute; it never changes a bit.
    """
    t_start = time.perf_counter()
    n, d = data.X_train.shape[1], data.X_train.shape[0]
    K = int(data.Y_train.shape[0]) if data.Y_train is not None and data.Y_train.ndim == 2 else 10
    config.validate(n)
    start, W0, b0, history = _start(config, K, d, resume)
    loop, stopping = _FastLoop(config, data, W0, b0), EarlyStopping(config, resume)
    record = _recorder(history, stopping, on_epoch, K)
    eta = learning_rate(config, start + 1)
    loop.set_learning_rate(eta)
    epoch_seconds: list[float] = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"), \
            one_blas_thread(), TwoHalves(threads) as halves:
        loop.halves = halves
        pending = None                                # (epoch, val metrics) whose train metrics are due
        if not history["epoch"]:                      # a fresh run: epoch 0 = the initial weights
            pending = (0, loop.val_metrics())
            if not loop.fused:
                record(0, loop.train_metrics(), pending[1], loop.W, loop.b, eta)
                pending = None
        t_epoch = time.perf_counter()
        for epoch in range(start + 1, config.n_epochs + 1):
            if stopping.should_stop(epoch - 1):       # patience ran out (also when resuming a stopped run)
                break
            if learning_rate(config, epoch) != eta:
                eta = learning_rate(config, epoch)
                loop.set_learning_rate(eta)
            loop.run_epoch(epoch, on_batch)
            if pending is not None:                   # the fused half scored the previous epoch's weights
                record(pending[0], loop.previous_train_metrics(), pending[1], loop.W_prev, loop.b_prev, eta)
            pending = (epoch, loop.val_metrics())
            stopping.offer(epoch, pending[1][2], loop.W, loop.b)
            if not loop.fused or epoch == config.n_epochs or stopping.should_stop(epoch):
                record(epoch, loop.train_metrics(), pending[1], loop.W, loop.b, eta)
                pending = None
            now = time.perf_counter()
            epoch_seconds.append(now - t_epoch)
            halves.epoch_done(now - t_epoch)
            t_epoch = now
    W, b, chosen = stopping.chosen(loop.W.copy(), loop.b.reshape(K, 1).copy(), history["epoch"][-1])
    return TrainResult(W=W, b=b, history=history, config=config, chosen_epoch=chosen,
                       timings={"total_seconds": time.perf_counter() - t_start, "epoch_seconds": epoch_seconds,
                                "first_epoch": start + 1})
