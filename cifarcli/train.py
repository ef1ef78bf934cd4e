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

* ``loss="bce"`` or ``loss="svm"``: another G (losses.py states each loss's formula).
* ``shuffle`` and ``flip=p``: each epoch's row order and mirrored images (augment.py).
* ``decay_every=k, decay_factor=f``: epoch e uses η · f^⌊(e-1)/k⌋ (``learning_rate``).
* ``init="xavier"``: W and b from N(0, 1/d) instead of N(0, 0.01²), same generator.
* Early stopping on validation (``EarlyStopping``): the *best* epoch is the
  first epoch e ≥ 1 with the highest validation accuracy (ties go to the
  earliest). ``keep="best"`` returns its weights instead of the last epoch's;
  ``patience=P`` stops after epoch e when e − best = P (validation accuracy has
  not improved for P epochs). The history still holds every epoch trained, and
  each checkpoint carries the best-so-far weights, so a resumed run is exact.

``train_reference`` is that loop written plainly, as the course writes it;
``train`` computes the same updates (equal to float rounding, tested) with
``fast_loop.FastLoop``, which keeps the buffers and the schedule of a batch, and
fuses the training metrics of each epoch into the next epoch's forward product.

Determinism, by construction: a run's W and b are a function of its config,
its data and this machine's numpy/BLAS build only. Every product has the same
shape, operands and single BLAS thread however many threads run (threads.py).
Nothing is random after initialisation but the per-epoch shuffle and flips,
drawn per epoch (augment.py), and the learning rate depends only on
the epoch number: a resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .augment import epoch_plan, flip_rows
from .config import HISTORY_KEYS, TrainConfig, learning_rate
from .errors import CifarError, WorkFailed
from .fast_loop import FastLoop
from .model import init_parameters, scores
from .prepare import PreparedData
from .threads import TwoHalves, one_blas_thread


def init_std(config: TrainConfig, d: int) -> float:
    """Standard deviation of the initial W and b: 0.01 (the study) or 1/sqrt(d) (Xavier)."""
    return 1.0 / math.sqrt(d) if config.init == "xavier" else 0.01


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
    rows = list(val_acc[1 : None if upto is None else upto + 1])
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
    chosen_epoch: int | None = None  # the epoch whose weights W, b are (the last, or the best with keep="best")


class TrainingDiverged(WorkFailed):
    """The cost became NaN or infinite; carries the epoch and the history so far."""

    def __init__(self, epoch: int, history: dict[str, list], eta: float):
        super().__init__(
            f"training diverged at epoch {epoch}: the cost is no longer finite",
            f"use a smaller learning rate η (this run used {eta:g})",
        )
        self.epoch = epoch
        self.history = history


def train_keeping_last_good(
    config: TrainConfig,
    data: PreparedData,
    *,
    resume: Checkpoint | None = None,
    on_epoch: Callable[[Checkpoint], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
) -> dict:
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
        if good is not None and good.best_W is not None:  # keep="best": the best epoch's weights
            good = Checkpoint(good.best_epoch, good.best_W, good.best_b, good.history)
        return {
            "W": good.W if good else None,
            "b": good.b if good else None,
            "history": diverged.history,
            "timings": {},
            "diverged_at": diverged.epoch,
            "chosen_epoch": good.epoch if good else None,
        }
    return {
        "W": result.W,
        "b": result.b,
        "history": result.history,
        "timings": result.timings,
        "diverged_at": None,
        "chosen_epoch": result.chosen_epoch,
    }


def _empty_history() -> dict[str, list]:
    return {k: [] for k in HISTORY_KEYS}


def _start(config: TrainConfig, K: int, d: int, resume: Checkpoint | None):
    """(first epoch, W0, b0, history) of a fresh run or of one resumed from ``resume``."""
    if resume is None:
        W0, b0 = init_parameters(
            K, d, np.random.default_rng(config.seed), std=init_std(config, d), dtype=np.dtype(config.dtype)
        )
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


# -- the two loops: the plain reference, and train on the fast path ----------------


def train_reference(config: TrainConfig, data: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """The study's loop as the course writes it: the plain version of ``train``, for reading and testing.

    Returns the final (W, b), or with ``keep="best"`` those of the best epoch on validation
    (``patience`` stops it as in ``train``). ``train`` computes the same updates (equal to
    float rounding, tested) in preallocated buffers, with the metrics fused in.
    The gradient is the reference gradient of ``config.loss`` (losses.py).
    """
    dtype, loss = np.dtype(config.dtype), config.loss_fn
    X, Y = data.X_train.astype(dtype), data.Y_train.astype(dtype)
    K, (d, n) = Y.shape[0], X.shape
    W, b = init_parameters(K, d, np.random.default_rng(config.seed), std=init_std(config, d), dtype=dtype)
    if config.flip > 0:
        X_mirrored = flip_rows(X.T, data.mean, data.std).T  # every image mirrored, normalised
    best = (-1.0, 0, W, b)  # early stopping: (val acc, epoch, W, b) of the best
    for epoch in range(1, config.n_epochs + 1):
        if config.patience and best[1] and epoch - 1 - best[1] >= config.patience:
            break  # not improved for `patience` epochs
        eta = learning_rate(config, epoch)
        order, flips = epoch_plan(config, n, epoch)
        images = order if order is not None else np.arange(n)
        for start in range(0, n, config.n_batch):
            batch = images[start : start + config.n_batch]
            Xb, Yb = X[:, batch], Y[:, batch]
            if flips is not None:
                Xb = np.where(flips[batch], X_mirrored[:, batch], Xb)
            grad_W, grad_b = loss.compute_gradients(Xb, Yb, loss.output(scores(Xb, W, b)), W, config.lam)
            W = W - eta * grad_W
            b = b - eta * grad_b
        if config.stops_early:
            X_val = data.X_val.astype(dtype)
            val_acc = float(np.mean(np.argmax(scores(X_val, W, b), axis=0) == data.y_val))
            if val_acc > best[0]:  # strictly better: ties stay with the earliest
                best = (val_acc, epoch, W, b)
    if config.keep == "best":
        return best[2], best[3]
    return W, b


def train(
    config: TrainConfig,
    data: PreparedData,
    *,
    resume: Checkpoint | None = None,
    on_epoch: Callable[[Checkpoint], None] | None = None,
    on_batch: Callable[[int, int, int], None] | None = None,
    threads: int | None = None,
) -> TrainResult:
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
    stopping = EarlyStopping(config, resume)
    record = _recorder(history, stopping, on_epoch, K)
    fresh = not history["epoch"]
    with (
        np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"),
        one_blas_thread(),
        TwoHalves(threads) as halves,
    ):
        loop = FastLoop(config, data, W0, b0, halves, first_epoch=start + 1)
        epoch_seconds = _run_epochs(loop, config, start + 1, fresh, stopping, record, on_batch)
    W, b, chosen = stopping.chosen(loop.W.copy(), loop.b.reshape(K, 1).copy(), history["epoch"][-1])
    return TrainResult(
        W=W,
        b=b,
        history=history,
        config=config,
        chosen_epoch=chosen,
        timings={
            "total_seconds": time.perf_counter() - t_start,
            "epoch_seconds": epoch_seconds,
            "first_epoch": start + 1,
        },
    )


def _run_epochs(
    loop: FastLoop, config: TrainConfig, first: int, fresh: bool, stopping: EarlyStopping, record, on_batch
) -> list[float]:
    """Train epochs ``first``.. on ``loop``, recording each epoch's row; returns their durations.

    Fused, the training metrics of epoch e come out of the pass of epoch e + 1: until then
    epoch e waits with its validation metrics in ``waiting``. The last epoch, and one that
    early stopping ends on, pay a metrics pass of their own. A ``fresh`` run also has a row
    for epoch 0, the initial weights.
    """
    waiting = None
    if fresh:
        waiting = loop.val_metrics()
        if not loop.fused:
            record(0, loop.train_metrics(), waiting, loop.W, loop.b, loop.eta)
            waiting = None
    epoch_seconds: list[float] = []
    t_epoch = time.perf_counter()
    for epoch in range(first, config.n_epochs + 1):
        if stopping.should_stop(epoch - 1):  # patience ran out (also when resuming a stopped run)
            break
        loop.run_epoch(epoch, on_batch)
        if waiting is not None:  # the pass also scored epoch - 1's weights
            record(epoch - 1, loop.previous_train_metrics(), waiting, loop.W_prev, loop.b_prev, loop.eta)
        waiting = loop.val_metrics()
        stopping.offer(epoch, waiting[2], loop.W, loop.b)
        if not loop.fused or epoch == config.n_epochs or stopping.should_stop(epoch):
            record(epoch, loop.train_metrics(), waiting, loop.W, loop.b, loop.eta)
            waiting = None
        now = time.perf_counter()
        epoch_seconds.append(now - t_epoch)
        loop.halves.epoch_done(now - t_epoch)
        t_epoch = now
    return epoch_seconds
