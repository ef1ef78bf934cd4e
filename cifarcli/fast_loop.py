"""The fast path of ``train``: ``FastLoop``, the buffers and the schedule of a batch, and each epoch's metrics.

It computes the updates of ``train.train_reference`` (equal to float rounding, tested);
``train.train`` drives it epoch by epoch. With ``shuffle`` the fused forward product
scores the epoch's permuted rows against the permuted labels (a mean and a count: the
order does not matter); with ``flip`` it scores flipped images, so those runs pay one
metrics pass over the unflipped training split per epoch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .augment import IMAGE_SHAPE, epoch_plan, flip_transform
from .config import TrainConfig, learning_rate
from .prepare import PreparedData
from .threads import TwoHalves


def _rows(X: np.ndarray, dtype) -> np.ndarray:
    """X (d × n) as samples-in-rows n × d C-ordered, without a copy when possible."""
    A = X.T
    if A.dtype != dtype or not A.flags.c_contiguous:
        A = np.ascontiguousarray(A, dtype=dtype)
    return A


class FastLoop:
    """The buffers and the schedule of a batch of ``train``: gather, forward, the loss's in-place
    gradient, update; and the metrics. Complete once built, for weights (W0, b0) and epochs from
    ``first_epoch`` on; ``halves`` runs the two halves of every product.

    * Samples are rows: A = X_train.T is n × d C-ordered, a batch is one contiguous block (or is
      gathered into a buffer when shuffled or flipped), scores are m × K rows: S_b = A_b Wᵀ, then
      ΔW = G_bᵀ A_b. Everything in the hot loop writes into preallocated buffers; η/m (η/(mK) for
      BCE) is folded into G; the one-hot target is index arithmetic on flat indices.
    * Fused metrics: a product of K = 10 rows is dominated by streaming the batch, so the forward
      product multiplies by [W; W_prev] (2K × d), W_prev the weights at the start of the epoch. Its
      second half is the training-split scores of the previous epoch's weights: that epoch's
      training metrics need no pass of their own (``previous_train_metrics``). Flipped batches are
      not the training split: those runs pay a metrics pass per epoch instead.
    * Every product runs on one BLAS thread, cut in two at a fixed place (the batch products by
      columns of W, the metrics by rows): the bits are the same on one thread or two (threads.py).
    """

    def __init__(
        self,
        config: TrainConfig,
        data: PreparedData,
        W0: np.ndarray,
        b0: np.ndarray,
        halves: TwoHalves,
        first_epoch: int,
    ):
        self.config, dtype = config, np.dtype(config.dtype)
        self.A, self.A_val = _rows(data.X_train, dtype), _rows(data.X_val, dtype)
        self.y, self.y_val = np.asarray(data.y_train, np.intp), np.asarray(data.y_val, np.intp)
        n, d = self.A.shape
        K = self.K = W0.shape[0]
        self.lam, self.dtype, self.loss, self.halves = float(config.lam), dtype, config.loss_fn, halves
        self.augment = config.flip > 0 or bool(config.shuffle)  # batches gathered into a buffer
        # Fused: the forward product multiplies by [W; W_prev], W_prev the weights at the start of
        # the epoch, so its second half scores the training split for the previous epoch's metrics
        # at no extra pass. Flipped batches are not the training split: those runs pay a pass.
        self.fused = not config.flip > 0
        width = 2 * K if self.fused else K
        self.WW = np.empty((width, d), dtype)
        self.W, self.W_prev = self.WW[:K], self.WW[K:]
        self.W[...] = W0
        if self.fused:
            self.W_prev[...] = W0  # until the first epoch starts
        self.b = np.array(np.asarray(b0).reshape(K), dtype=dtype)  # a row: scores are m × K
        self.b_prev = self.b.copy()
        self.S = np.empty((n, width), dtype)  # the epoch's scores, batch by batch
        self.S_flat = self.S.reshape(-1)
        self.epoch_order: np.ndarray | None = None  # the rows of S, when the epoch shuffled them
        self.true_flat0 = np.arange(n) * width + self.y  # S.flat[true_flat0[i]] is S[i, y_i]
        self.T_train, self.T_val = np.empty((n, K), dtype), np.empty((self.y_val.size, K), dtype)
        self.columns = (slice(0, d // 2), slice(d // 2, d))  # the fixed cut of every batch product
        self.dW = [np.empty((K, c.stop - c.start), dtype) for c in self.columns]
        self.S_halves = [np.empty((config.n_batch, width), dtype) for _ in self.columns]
        self.col = np.empty((config.n_batch, 1), dtype)
        # Two gather buffers: a batch is still read by its update while the next is gathered.
        self.A_bufs = [np.empty((config.n_batch, d), dtype) for _ in range(2 if self.augment else 0)]
        self.f_scale = self.f_shift = self.F_buf = None  # flips: the mirror map, its buffer
        if config.flip > 0:
            _, scale, self.f_shift = flip_transform(data.mean, data.std, dtype)
            self.f_scale = scale.reshape(IMAGE_SHAPE)
            self.F_buf = np.empty((config.n_batch, d), dtype)
        self.bounds = [(s, min(s + config.n_batch, n)) for s in range(0, n, config.n_batch)]
        self.eta = learning_rate(config, first_epoch)
        self.steps, self.decay = self.rates(self.eta)

    def rates(self, eta: float) -> tuple[list, np.floating]:
        """The per-batch step sizes (η over the loss's ``batch_divisor``) and the weight decay 1 - 2ηλ."""
        # A huge η overflows the dtype (inf): the divergence is reported as one line, not warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            steps = [self.dtype.type(eta / self.loss.batch_divisor(e - s, self.K)) for s, e in self.bounds]
            return steps, self.dtype.type(1.0 - 2.0 * eta * self.lam)

    def gather(self, s: int, e: int, order, flips, buffer) -> tuple[np.ndarray, np.ndarray]:
        """The batch of rows s:e of this epoch (n_b × d, in ``buffer`` when augmented) and the flat
        indices of its true classes in S."""
        width = self.S.shape[1]
        if not self.augment:
            return self.A[s:e], self.true_flat0[s:e]
        images = order[s:e] if order is not None else np.arange(s, e)
        Ab = buffer[: e - s]
        if flips is None:
            np.take(self.A, images, axis=0, out=Ab, mode="clip")  # "clip": no buffered copy
            return Ab, np.arange(s, e) * width + self.y[images]
        # Unflipped images first, then the flipped ones: the update sums over the batch.
        keep, mirrored = images[~flips[images]], images[flips[images]]
        np.take(self.A, keep, axis=0, out=Ab[: keep.size], mode="clip")
        if mirrored.size:
            Fb = self.F_buf[: mirrored.size]
            np.take(self.A, mirrored, axis=0, out=Fb, mode="clip")
            np.multiply(
                Fb.reshape(-1, *IMAGE_SHAPE)[..., ::-1], self.f_scale, out=Ab[keep.size :].reshape(-1, *IMAGE_SHAPE)
            )
            Ab[keep.size :] += self.f_shift
        return Ab, np.arange(s, e) * width + np.concatenate((self.y[keep], self.y[mirrored]))

    def step(
        self, pending: tuple[np.ndarray, np.ndarray] | None, Ab: np.ndarray | None, s: int, e: int
    ) -> np.ndarray | None:
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
        G = Sb[:, : self.K]
        G += self.b
        return G

    def run_epoch(self, epoch: int, on_batch) -> None:
        """One pass over the training split with the learning rate of ``epoch``; fused, it also
        scores the training split with the weights of the epoch before (W_prev, b_prev)."""
        eta = learning_rate(self.config, epoch)
        if eta != self.eta:
            self.eta, (self.steps, self.decay) = eta, self.rates(eta)
        order, flips = epoch_plan(self.config, self.A.shape[0], epoch) if self.augment else (None, None)
        self.epoch_order = order
        if self.fused:
            self.W_prev[...] = self.W
            self.b_prev[...] = self.b
        gradient, S_flat, col = self.loss.batch_gradient, self.S_flat, self.col
        n_batches = len(self.bounds)
        stride = max(1, n_batches // 20)
        pending = None  # (G, batch) whose update is due
        for i, ((s, e), step) in enumerate(zip(self.bounds, self.steps)):
            Ab, true_flat = self.gather(s, e, order, flips, self.A_bufs[i % 2] if self.augment else None)
            G = self.step(pending, Ab, s, e)
            gradient(G, S_flat, true_flat, step, col[: e - s])
            self.b -= G.sum(axis=0)
            pending = (G, Ab)
            if on_batch is not None and (i % stride == stride - 1 or i == n_batches - 1):
                on_batch(epoch, i, n_batches)
        self.step(pending, None, 0, 0)

    # -- metrics --

    def _scores(self, A: np.ndarray, T: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        half = A.shape[0] // 2
        self.halves.run(lambda: np.matmul(A[:half], W.T, out=T[:half]), lambda: np.matmul(A[half:], W.T, out=T[half:]))
        T += b
        return T

    def _reg(self, W: np.ndarray) -> float:
        W64 = W.astype(np.float64)
        return self.lam * float(np.einsum("ij,ij->", W64, W64))

    def _metrics(self, T: np.ndarray, y: np.ndarray, W: np.ndarray) -> tuple[float, float, float]:
        """(loss, cost, acc) of scores in rows T (overwritten) for labels y, with λ‖W‖²."""
        return self.loss.row_metrics(T, y, np.arange(y.size) * self.K + y, self._reg(W))

    def val_metrics(self) -> tuple[float, float, float]:
        return self._metrics(self._scores(self.A_val, self.T_val, self.W, self.b), self.y_val, self.W)

    def train_metrics(self) -> tuple[float, float, float]:
        """A separate pass over the (unflipped) training split with the current weights."""
        return self._metrics(self._scores(self.A, self.T_train, self.W, self.b), self.y, self.W)

    def previous_train_metrics(self) -> tuple[float, float, float]:
        """Training metrics of W_prev from the epoch's fused scores (rows in the epoch's order)."""
        y = self.y if self.epoch_order is None else self.y[self.epoch_order]
        np.add(self.S[:, self.K :], self.b_prev, out=self.T_train)
        return self._metrics(self.T_train, y, self.W_prev)
