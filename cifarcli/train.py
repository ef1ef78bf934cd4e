"""Mini-batch gradient descent for the one-layer softmax network.

For each epoch, the training columns are visited in order, in batches of
n_batch (X_b: d × m, labels y_b), and the parameters updated as in the study::

    P = softmax(W X_b + b 1ᵀ),  G = P - Y_b
    W ← W - η (G X_bᵀ / m + 2 λ W)  =  (1 - 2ηλ) W - (η/m) G X_bᵀ
    b ← b - η G 1 / m

W and b start from N(0, 0.01²) drawn from ``numpy.random.default_rng(seed)``.
After epoch 0 (the initial weights) and after every epoch the history records
loss, cost and accuracy on the training and validation splits.

How it is made fast (2-core Xeon, OpenBLAS 0.3.31, 8000 × 3072 float32,
n_batch 100; the whole seed run takes ~1.1 s vs ~1.85 s for the same loop in
PyTorch 2.13, see benchmarks/bench_train.py; ms figures are microbenchmarks):

* Samples are rows: A = X_train.T is n × d C-ordered (prepare.normalise makes
  it so), a batch is one contiguous block, and scores are kept as m × K rows.
  Of the layouts measured this pair of GEMMs was fastest:
  ``S_b = A_b Wᵀ`` then ``ΔW = G_bᵀ A_b`` (G_bᵀ read in place, no copy).
* The GEMMs of K = 10 rows are dominated by OpenBLAS packing the 1.2 MB batch,
  not by arithmetic, so adding rows is cheap (10 → 20 rows: +3 ms/epoch, while
  a separate metrics pass over the training split costs ~8 ms). The forward GEMM therefore
  multiplies the batch by the stacked [W; W_prev] (2K × d), where W_prev is
  the weights at the start of the epoch: its half of the result is exactly the
  training-split scores needed for the previous epoch's metrics. The separate
  metrics pass over the training split disappears (only the last epoch needs
  one); the metrics of epoch e are thus complete after the pass of epoch e+1,
  which is when ``on_epoch`` is called for epoch e.
* Everything in the hot loop writes into preallocated buffers (``out=``, in-place
  ufuncs); η/m is folded into the softmax normalisation so G arrives scaled;
  the one-hot target is index arithmetic on precomputed flat indices; the
  weight decay is one in-place multiply.
* BLAS threads: OpenBLAS' default (all cores) was measured fastest here
  (2 threads vs 1: forward 9.4 vs 16.8 ms/epoch, backward 6.8 vs 15.1), and
  the results were bit-identical between 1 and 2 threads for these shapes,
  so the thread count is left alone.

Determinism: the same config and data give bit-identical W and b. Nothing is
random after initialisation; any per-epoch randomness added later (shuffling,
flips) must be drawn from ``epoch_rng(seed, epoch)``, never from a generator
that runs across epochs, so a resumed run stays bit-identical.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from .errors import CifarError, WorkFailed
from .model import init_parameters
from .prepare import SPLITS, PreparedData

# float32 by measurement (benchmarks/bench_train.py --compare-dtypes, CIFAR-10
# stand-in, seed split, 40 epochs, n_batch 100), test accuracy float32 / float64:
#   λ=0 η=0.001: 0.3863 / 0.3863   λ=0.1 η=0.001: 0.3889 / 0.3888   λ=1 η=0.001: 0.3738 / 0.3738
#   λ=0 η=0.1 (the unstable setting): 0.2880 / 0.2506 — there any rounding difference
#   is amplified by the oscillating loss, as it would be by a different BLAS or seed.
# Stable settings agree to 1e-4; float32 trains ~1.8× faster (1.1 s vs 2.0 s).
DEFAULT_DTYPE = "float32"
DTYPES = ("float32", "float64")
HISTORY_KEYS = ("epoch", "train_loss", "train_cost", "train_acc", "val_loss", "val_cost", "val_acc")

# Options added later go here with their default; key_params() leaves out any
# option at its default, so existing run IDs stay stable.
_OPTIONAL_DEFAULTS: dict[str, object] = {}


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator for per-epoch randomness: derived from (seed, epoch) only."""
    return np.random.default_rng([int(seed), int(epoch)])


@dataclass(frozen=True)
class TrainConfig:
    lam: float
    eta: float
    n_epochs: int = 40
    n_batch: int = 100
    seed: int = 42
    split: str = "seed"
    val_size: int = 1000
    dtype: str = DEFAULT_DTYPE

    def validate(self, n_train: int | None = None) -> "TrainConfig":
        """Raise CifarError naming the option when a value is out of range."""
        def bad(option: str, message: str, hint: str) -> CifarError:
            return CifarError(f"{option}: {message}", hint)

        if not _is_real(self.eta) or not math.isfinite(self.eta) or self.eta <= 0:
            raise bad("--eta", f"the learning rate must be a finite number > 0, got {self.eta!r}",
                      "the study uses --eta 0.001 (and 0.1)")
        if not _is_real(self.lam) or not math.isfinite(self.lam) or self.lam < 0:
            raise bad("--lam", f"the regularisation must be a finite number >= 0, got {self.lam!r}",
                      "the study uses --lam 0, 0.1 and 1")
        if not _is_int(self.n_epochs) or self.n_epochs < 1:
            raise bad("--n-epochs", f"must be an integer >= 1, got {self.n_epochs!r}",
                      "the study uses 40")
        if not _is_int(self.n_batch) or self.n_batch < 1:
            raise bad("--n-batch", f"must be an integer >= 1, got {self.n_batch!r}",
                      "the study uses 100")
        if n_train is not None and self.n_batch > n_train:
            raise bad("--n-batch", f"{self.n_batch} is larger than the training split ({n_train} images)",
                      f"use at most {n_train}")
        if not _is_int(self.seed) or self.seed < 0:
            raise bad("--seed", f"must be an integer >= 0, got {self.seed!r}", "the default is 42")
        if self.split not in SPLITS:
            raise bad("--split", f"unknown split {self.split!r}", f"use one of: {', '.join(SPLITS)}")
        if not _is_int(self.val_size) or self.val_size < 1:
            raise bad("--val-size", f"must be an integer >= 1, got {self.val_size!r}",
                      "the default is 1000")
        if self.dtype not in DTYPES:
            raise bad("--dtype", f"unknown dtype {self.dtype!r}", f"use one of: {', '.join(DTYPES)}")
        return self

    def key_params(self) -> dict:
        """Canonical parameters for the cache key (the run ID).

        val_size only matters for split "full"; options in _OPTIONAL_DEFAULTS
        are included only when they differ from their default.
        """
        params = {"lam": float(self.lam), "eta": float(self.eta), "n_epochs": int(self.n_epochs),
                  "n_batch": int(self.n_batch), "seed": int(self.seed), "split": self.split,
                  "dtype": self.dtype}
        if self.split == "full":
            params["val_size"] = int(self.val_size)
        for name, default in _OPTIONAL_DEFAULTS.items():
            value = getattr(self, name)
            if value != default:
                params[name] = value
        return params

    def to_dict(self) -> dict:
        return asdict(self)


def _is_real(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


@dataclass
class Checkpoint:
    """The state after ``epoch`` epochs: W (K × d), b (K × 1), history up to that epoch."""

    epoch: int
    W: np.ndarray
    b: np.ndarray
    history: dict[str, list]


@dataclass
class TrainResult:
    W: np.ndarray
    b: np.ndarray
    history: dict[str, list]
    timings: dict = field(default_factory=dict)
    config: TrainConfig | None = None


class TrainingDiverged(WorkFailed):
    """The cost became NaN or infinite; carries the epoch and the history so far."""

    def __init__(self, epoch: int, history: dict[str, list], eta: float):
        super().__init__(
            f"training diverged at epoch {epoch}: the cost is no longer finite",
            f"use a smaller --eta (this run used {eta:g})")
        self.epoch = epoch
        self.history = history


def _empty_history() -> dict[str, list]:
    return {k: [] for k in HISTORY_KEYS}


def _row_metrics(T: np.ndarray, y: np.ndarray, flat: np.ndarray, reg: float) -> tuple[float, float, float]:
    """(loss, cost, acc) from scores in rows T (n × K, C-contiguous) and flat true-class indices.

    Works in T's dtype (the per-sample log-sum-exp is exact to its precision)
    and averages in float64.
    """
    m = T.max(axis=1)
    E = T - m[:, None]
    np.exp(E, out=E)
    per_sample = np.log(E.sum(axis=1))
    per_sample += m
    per_sample -= T.reshape(-1)[flat]
    loss = float(np.mean(per_sample, dtype=np.float64))
    acc = float(np.count_nonzero(np.argmax(T, axis=1) == y)) / y.size
    return loss, loss + reg, acc


def _rows(X: np.ndarray, dtype) -> np.ndarray:
    """X (d × n) as samples-in-rows n × d C-ordered, without a copy when possible."""
    A = X.T
    if A.dtype != dtype or not A.flags.c_contiguous:
        A = np.ascontiguousarray(A, dtype=dtype)
    return A


def train(config: TrainConfig, data: PreparedData, *, resume: Checkpoint | None = None,
          on_epoch: Callable[[Checkpoint], None] | None = None,
          on_batch: Callable[[int, int, int], None] | None = None) -> TrainResult:
    """Train W, b; see the module docstring for the algorithm and the callbacks.

    ``on_batch(epoch, batch_index, n_batches)`` is called about 20 times per
    epoch (and on the last batch), not on every batch, to keep the loop tight.
    ``on_epoch(checkpoint)`` is called once per epoch (starting after epoch 1
    resumes, or with epoch 0 first) as soon as that epoch's metrics are known.
    """
    t_start = time.perf_counter()
    dtype = np.dtype(config.dtype)
    A = _rows(data.X_train, dtype)
    Av = _rows(data.X_val, dtype)
    y = np.asarray(data.y_train, dtype=np.intp)
    yv = np.asarray(data.y_val, dtype=np.intp)
    n, d = A.shape
    K = int(data.Y_train.shape[0]) if data.Y_train is not None and data.Y_train.ndim == 2 else 10
    config.validate(n)
    lam, eta, nb = float(config.lam), float(config.eta), int(config.n_batch)

    if resume is not None:
        start = int(resume.epoch)
        if not 0 <= start <= config.n_epochs:
            raise CifarError(f"cannot resume from epoch {start} of a {config.n_epochs}-epoch run")
        W0, b0 = np.asarray(resume.W), np.asarray(resume.b)
        if W0.shape != (K, d) or b0.size != K:
            raise CifarError(f"checkpoint shapes {W0.shape}, {b0.shape} do not match the data ({K} × {d})")
        history = copy.deepcopy(resume.history)
        if len(history.get("epoch", [])) != start + 1:
            raise CifarError(f"checkpoint of epoch {start} holds {len(history.get('epoch', []))} history rows")
    else:
        start = 0
        W0, b0 = init_parameters(K, d, np.random.default_rng(config.seed), std=0.01, dtype=dtype)
        history = _empty_history()

    # --- buffers -----------------------------------------------------------
    WW = np.empty((2 * K, d), dtype)          # [W; W_prev] for the fused forward GEMM
    W, W_prev = WW[:K], WW[K:]
    W[...] = W0
    b = np.array(np.asarray(b0).reshape(K), dtype=dtype)   # row vector: scores are m × K
    b_prev = b.copy()
    S = np.empty((n, 2 * K), dtype)           # per-epoch scores: [:, :K] current, [:, K:] W_prev
    S_flat = S.reshape(-1)
    true_flat = np.arange(n) * (2 * K) + y    # S_flat[true_flat] is S[i, y_i]
    T_val = np.empty((yv.size, K), dtype)
    val_flat = np.arange(yv.size) * K + yv
    T_tr = np.empty((n, K), dtype)
    tr_flat = np.arange(n) * K + y
    dW = np.empty((K, d), dtype)
    col = np.empty((nb, 1), dtype)            # per-sample max, then (η/m) / Σ exp

    bounds = [(s, min(s + nb, n)) for s in range(0, n, nb)]
    n_batches = len(bounds)
    stride = max(1, n_batches // 20)
    # A huge η overflows the dtype (inf): no warning here, training reports the divergence as one line.
    with np.errstate(over="ignore", invalid="ignore"):
        steps = [(s, e, dtype.type(eta / (e - s))) for s, e in bounds]
        decay = dtype.type(1.0 - 2.0 * eta * lam)

    def reg_of(Wm: np.ndarray) -> float:
        W64 = Wm.astype(np.float64)
        return lam * float(np.einsum("ij,ij->", W64, W64))

    def val_metrics(Wm, bm):
        np.matmul(Av, Wm.T, out=T_val)
        np.add(T_val, bm, out=T_val)
        return _row_metrics(T_val, yv, val_flat, reg_of(Wm))

    epoch_seconds: list[float] = []
    pending: dict | None = None   # epoch whose val metrics are known, train metrics not yet

    def finish(epoch: int, train_m, Wm, bm):
        """Record the epoch's row, check divergence, hand out the checkpoint."""
        nonlocal pending
        val_m = pending["val"]
        pending = None
        row = (epoch, *train_m, *val_m)
        for key, value in zip(HISTORY_KEYS, row):
            history[key].append(int(value) if key == "epoch" else float(value))
        if not (math.isfinite(train_m[1]) and math.isfinite(val_m[1])):
            raise TrainingDiverged(epoch, copy.deepcopy(history), eta)
        if on_epoch is not None:
            on_epoch(Checkpoint(epoch, np.array(Wm, copy=True),
                                np.array(bm).reshape(K, 1), copy.deepcopy(history)))

    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        if not history["epoch"]:                      # a fresh run: epoch 0 = the initial weights
            pending = {"epoch": 0, "val": val_metrics(W, b)}
        t_epoch = time.perf_counter()
        for epoch in range(start + 1, config.n_epochs + 1):
            W_prev[...] = W
            b_prev[...] = b
            for i, (s, e, c) in enumerate(steps):
                Ab = A[s:e]
                Sb = S[s:e]
                np.matmul(Ab, WW.T, out=Sb)           # [W; W_prev] scores of the batch
                G = Sb[:, :K]
                G += b
                cb = col[:e - s]
                np.max(G, axis=1, keepdims=True, out=cb)
                G -= cb
                np.exp(G, out=G)
                np.sum(G, axis=1, keepdims=True, out=cb)
                np.divide(c, cb, out=cb)
                G *= cb                               # (η/m) P
                S_flat[true_flat[s:e]] -= c           # (η/m) (P - Y)
                np.matmul(G.T, Ab, out=dW)            # (η/m) G X_bᵀ
                if lam:
                    W *= decay
                W -= dW
                b -= G.sum(axis=0)
                if on_batch is not None and (i % stride == stride - 1 or i == n_batches - 1):
                    on_batch(epoch, i, n_batches)
            if pending is not None:                   # metrics of epoch - 1 from the fused half
                T_prev = S[:, K:]
                T_prev += b_prev
                np.copyto(T_tr, T_prev)
                finish(epoch - 1, _row_metrics(T_tr, y, tr_flat, reg_of(W_prev)), W_prev, b_prev)
            pending = {"epoch": epoch, "val": val_metrics(W, b)}
            if epoch == config.n_epochs:              # the last epoch needs its own pass
                np.matmul(A, W.T, out=T_tr)
                T_tr += b
                finish(epoch, _row_metrics(T_tr, y, tr_flat, reg_of(W)), W, b)
            now = time.perf_counter()
            epoch_seconds.append(now - t_epoch)
            t_epoch = now

    total = time.perf_counter() - t_start
    return TrainResult(W=W.copy(), b=b.reshape(K, 1).copy(), history=history,
                       timings={"total_seconds": total, "epoch_seconds": epoch_seconds,
                                "first_epoch": start + 1},
                       config=config)
