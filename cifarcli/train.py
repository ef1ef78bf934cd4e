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
* BLAS threads: two are fastest on an idle machine (forward 9.4 vs 16.8
  ms/epoch, backward 6.8 vs 15.1) but collapse when another process holds a
  core, so ``threads.AdaptiveBlasThreads`` picks the count epoch by epoch from
  measured epoch times. Results are bit-identical for 1 and 2 threads.

With ``flip`` the batch rows are augmented, so the W_prev half of the fused
GEMM would score flipped images: those runs multiply by W alone and pay one
metrics pass over the (unflipped) training split per epoch instead. With
``shuffle`` alone the fused trick still holds: the W_prev scores are those of
the epoch's permuted rows, scored against the permuted labels (the loss is a
mean and the accuracy a count, so the order does not matter). Augmented
batches are gathered into one preallocated n_batch × d buffer: no per-epoch
copy of the training split (which would double the memory of split full).

Determinism: the same config and data give bit-identical W and b. Nothing is
random after initialisation except the per-epoch shuffle and flips, drawn from
``epoch_rng(seed, epoch)`` and never from a generator that runs across epochs,
and the learning rate depends only on the epoch number: a resumed run stays
bit-identical.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from .errors import CifarError, WorkFailed
from .model import LOSSES, init_parameters
from .prepare import SPLITS, PreparedData
from .threads import AdaptiveBlasThreads

# float32 by measurement (benchmarks/bench_train.py --compare-dtypes, CIFAR-10
# stand-in, seed split, 40 epochs, n_batch 100), test accuracy float32 / float64:
#   λ=0 η=0.001: 0.3863 / 0.3863   λ=0.1 η=0.001: 0.3889 / 0.3888   λ=1 η=0.001: 0.3738 / 0.3738
#   λ=0 η=0.1 (the unstable setting): 0.2880 / 0.2506 — there any rounding difference
#   is amplified by the oscillating loss, as it would be by a different BLAS or seed.
# Stable settings agree to 1e-4; float32 trains ~1.8× faster (1.1 s vs 2.0 s).
DEFAULT_DTYPE = "float32"
DTYPES = ("float32", "float64")
HISTORY_KEYS = ("epoch", "train_loss", "train_cost", "train_acc", "val_loss", "val_cost", "val_acc")

INITS = ("normal", "xavier")
IMAGE_SHAPE = (3, 32, 32)   # a CIFAR record: 3 channels × 32 rows × 32 columns

# Options added later go here with their default; key_params() leaves out any
# option at its default, so existing run IDs stay stable.
_OPTIONAL_DEFAULTS: dict[str, object] = {
    "shuffle": False, "flip": 0.0, "decay_every": 0, "decay_factor": 1.0, "init": "normal", "loss": "softmax",
}


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
    shuffle: bool = False
    flip: float = 0.0
    decay_every: int = 0
    decay_factor: float = 1.0
    init: str = "normal"
    loss: str = "softmax"

    # Bounds beyond any real use, so that a typo (an extra zero or ten) is an error, not a training
    # that runs for days; and the seed fits the int64 that `export` writes.
    MAX_EPOCHS = 100_000
    MAX_SEED = 2 ** 63 - 1
    MAX_LAM = 1e10  # far past any use; near 1e38 λ‖W‖² overflows float32 and the initial cost is already inf

    @property
    def decays(self) -> bool:
        """Whether the step decay changes anything (it needs both decay_every > 0 and decay_factor < 1)."""
        return self.decay_every > 0 and self.decay_factor < 1

    def validate(self, n_train: int | None = None) -> "TrainConfig":
        """Raise CifarError naming the option when a value is out of range."""
        def bad(option: str, message: str, hint: str) -> CifarError:
            return CifarError(f"{option}: {message}", hint)

        if not _is_real(self.eta) or not math.isfinite(self.eta) or self.eta <= 0:
            raise bad("--eta", f"the learning rate must be a finite number > 0, got {self.eta!r}",
                      "the study uses --eta 0.001 (and 0.1)")
        if not _is_real(self.lam) or not math.isfinite(self.lam) or not 0 <= self.lam <= self.MAX_LAM:
            raise bad("--lam", f"the regularisation must be a finite number from 0 to {self.MAX_LAM:g}, "
                      f"got {self.lam!r}", "the study uses --lam 0, 0.1 and 1")
        if not _is_int(self.n_epochs) or not 1 <= self.n_epochs <= self.MAX_EPOCHS:
            raise bad("--n-epochs", f"must be an integer from 1 to {self.MAX_EPOCHS}, got {self.n_epochs!r}",
                      "the study uses 40")
        if not _is_int(self.n_batch) or self.n_batch < 1:
            raise bad("--n-batch", f"must be an integer >= 1, got {self.n_batch!r}",
                      "the study uses 100")
        if n_train is not None and self.n_batch > n_train:
            raise bad("--n-batch", f"{self.n_batch} is larger than the training split ({n_train} images)",
                      f"use at most {n_train}")
        if not _is_int(self.seed) or not 0 <= self.seed <= self.MAX_SEED:
            raise bad("--seed", f"must be an integer from 0 to {self.MAX_SEED} (2**63 - 1), got {self.seed!r}",
                      "the default is 42")
        if self.split not in SPLITS:
            raise bad("--split", f"unknown split {self.split!r}", f"use one of: {', '.join(SPLITS)}")
        if not _is_int(self.val_size) or not 1 <= self.val_size <= self.MAX_SEED:
            raise bad("--val-size", f"must be an integer >= 1, got {self.val_size!r}",
                      "the default is 1000")
        if self.dtype not in DTYPES:
            raise bad("--dtype", f"unknown dtype {self.dtype!r}", f"use one of: {', '.join(DTYPES)}")
        if not isinstance(self.shuffle, (bool, np.bool_)):
            raise bad("--shuffle", f"must be true or false, got {self.shuffle!r}", "--shuffle or --no-shuffle")
        if not _is_real(self.flip) or not 0 <= self.flip <= 1:
            raise bad("--flip", f"the flip probability must be a number in [0, 1], got {self.flip!r}",
                      "0 turns flipping off; the course uses 0.5")
        if not _is_int(self.decay_every) or not 0 <= self.decay_every <= self.MAX_EPOCHS:
            raise bad("--decay-every", f"must be an integer >= 0 (0: no decay), got {self.decay_every!r}",
                      f"at most {self.MAX_EPOCHS}; e.g. --decay-every 10 --decay-factor 0.1")
        if not _is_real(self.decay_factor) or not 0 < self.decay_factor <= 1:
            raise bad("--decay-factor", f"must be a number in (0, 1], got {self.decay_factor!r}",
                      "η is multiplied by it every --decay-every epochs; e.g. 0.1")
        if self.init not in INITS:
            raise bad("--init", f"unknown initialisation {self.init!r}", f"use one of: {', '.join(INITS)}")
        if self.loss not in LOSSES:
            raise bad("--loss", f"unknown loss {self.loss!r}", f"use one of: {', '.join(LOSSES)}")
        return self

    def key_params(self) -> dict:
        """Canonical parameters for the cache key (the run ID).

        val_size only matters for split "full"; options in _OPTIONAL_DEFAULTS
        are included only when they differ from their default (as the default's
        type, so flip=1 and flip=1.0 are one run), and the two decay options
        only when the decay is on (both set), since otherwise they change nothing.
        """
        params = {"lam": float(self.lam), "eta": float(self.eta), "n_epochs": int(self.n_epochs),
                  "n_batch": int(self.n_batch), "seed": int(self.seed), "split": self.split,
                  "dtype": self.dtype}
        if self.split == "full":
            params["val_size"] = int(self.val_size)
        for name, default in _OPTIONAL_DEFAULTS.items():
            if name in ("decay_every", "decay_factor") and not self.decays:
                continue
            value = getattr(self, name)
            if value != default:
                params[name] = type(default)(value)
        return params

    def to_dict(self) -> dict:
        return asdict(self)


def _is_real(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


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
        raise CifarError(f"--flip needs 32 × 32 colour images ({m.size} values), got {mean.size}")
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
    lam, nb = float(config.lam), int(config.n_batch)
    bce = config.loss == "bce"
    flipping = config.flip > 0
    augment = flipping or bool(config.shuffle)    # batches are gathered into a buffer
    fused = not flipping                          # W_prev scores of unaugmented rows are the metrics
    row_metrics = _row_metrics_bce if bce else _row_metrics

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
        W0, b0 = init_parameters(K, d, np.random.default_rng(config.seed), std=init_std(config, d), dtype=dtype)
        history = _empty_history()

    # --- buffers -----------------------------------------------------------
    WW = np.empty((2 * K, d), dtype)          # [W; W_prev] for the fused forward GEMM
    W, W_prev = WW[:K], WW[K:]
    W[...] = W0
    W_fwd = WW if fused else W                # with flips: W alone, metrics in a separate pass
    width = 2 * K if fused else K
    b = np.array(np.asarray(b0).reshape(K), dtype=dtype)   # row vector: scores are m × K
    b_prev = b.copy()
    S = np.empty((n, width), dtype)           # per-epoch scores: [:, :K] current, [:, K:] W_prev
    S_flat = S.reshape(-1)
    true_flat0 = np.arange(n) * width + y     # S_flat[true_flat] is S[i, y_i]
    T_val = np.empty((yv.size, K), dtype)
    val_flat = np.arange(yv.size) * K + yv
    T_tr = np.empty((n, K), dtype)
    tr_flat0 = np.arange(n) * K + y
    dW = np.empty((K, d), dtype)
    col = np.empty((nb, 1), dtype)            # per-sample max, then (η/m) / Σ exp
    if augment:
        A_buf = np.empty((nb, d), dtype)      # the gathered (and partly flipped) batch
    if flipping:
        _, f_scale, f_shift = flip_transform(data.mean, data.std, dtype)
        f_scale = f_scale.reshape(IMAGE_SHAPE)   # applied to the reversed (n, 3, 32, 32) view
        F_buf = np.empty((nb, d), dtype)

    bounds = [(s, min(s + nb, n)) for s in range(0, n, nb)]
    n_batches = len(bounds)
    stride = max(1, n_batches // 20)

    def schedule(eta_e: float):
        """Per-batch step sizes (η/m, and η/(mK) for BCE) and the weight-decay factor for η_e."""
        # A huge η overflows the dtype (inf): no warning here, training reports the divergence as one line.
        with np.errstate(over="ignore", invalid="ignore"):
            steps = [(s, e, dtype.type(eta_e / (e - s)), dtype.type(eta_e / ((e - s) * K))) for s, e in bounds]
            return steps, dtype.type(1.0 - 2.0 * eta_e * lam)

    eta = learning_rate(config, start + 1)
    steps, decay = schedule(eta)

    def reg_of(Wm: np.ndarray) -> float:
        W64 = Wm.astype(np.float64)
        return lam * float(np.einsum("ij,ij->", W64, W64))

    def val_metrics(Wm, bm):
        np.matmul(Av, Wm.T, out=T_val)
        np.add(T_val, bm, out=T_val)
        return row_metrics(T_val, yv, val_flat, reg_of(Wm))

    def train_metrics(Wm, bm):
        """A separate pass over the (unflipped) training split."""
        np.matmul(A, Wm.T, out=T_tr)
        np.add(T_tr, bm, out=T_tr)
        return row_metrics(T_tr, y, tr_flat0, reg_of(Wm))

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

    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"), \
            AdaptiveBlasThreads() as blas:
        if not history["epoch"]:                      # a fresh run: epoch 0 = the initial weights
            pending = {"epoch": 0, "val": val_metrics(W, b)}
            if not fused:
                finish(0, train_metrics(W, b), W, b)
        t_epoch = time.perf_counter()
        for epoch in range(start + 1, config.n_epochs + 1):
            eta_e = learning_rate(config, epoch)
            if eta_e != eta:
                eta = eta_e
                steps, decay = schedule(eta)
            order, flips = epoch_plan(config, n, epoch) if augment else (None, None)
            if order is None:
                y_ep, true_flat, tr_flat = y, true_flat0, tr_flat0
            else:                                     # row s of this epoch is image order[s]
                y_ep = y[order]
                true_flat = np.arange(n) * width + y_ep
                tr_flat = np.arange(n) * K + y_ep
            if fused:
                W_prev[...] = W
                b_prev[...] = b
            for i, (s, e, c, cK) in enumerate(steps):
                batch_flat = true_flat[s:e]
                if not augment:
                    Ab = A[s:e]
                elif flips is None:                   # shuffled: gather the batch's rows
                    Ab = A_buf[:e - s]
                    np.take(A, order[s:e], axis=0, out=Ab, mode="clip")   # "clip": no buffered copy
                else:
                    # The batch's unflipped images, then its flipped ones (the update
                    # sums over the batch, so the row order inside it does not matter).
                    Ab = A_buf[:e - s]
                    images = order[s:e] if order is not None else np.arange(s, e)
                    fb = flips[images]
                    keep, mirrored = images[~fb], images[fb]
                    nk = keep.size
                    np.take(A, keep, axis=0, out=Ab[:nk], mode="clip")
                    if mirrored.size:
                        Fb = F_buf[:mirrored.size]
                        np.take(A, mirrored, axis=0, out=Fb, mode="clip")
                        np.multiply(Fb.reshape(-1, *IMAGE_SHAPE)[..., ::-1], f_scale,
                                    out=Ab[nk:].reshape(-1, *IMAGE_SHAPE))
                        Ab[nk:] += f_shift
                    batch_flat = np.arange(s, e) * width + np.concatenate((y[keep], y[mirrored]))
                Sb = S[s:e]
                np.matmul(Ab, W_fwd.T, out=Sb)        # [W; W_prev] scores of the batch
                G = Sb[:, :K]
                G += b
                if bce:
                    np.negative(G, out=G)
                    np.exp(G, out=G)
                    G += 1
                    np.divide(cK, G, out=G)           # (η/(mK)) σ(S)
                    S_flat[batch_flat] -= cK          # (η/(mK)) (σ(S) - Y)
                else:
                    cb = col[:e - s]
                    np.max(G, axis=1, keepdims=True, out=cb)
                    G -= cb
                    np.exp(G, out=G)
                    np.sum(G, axis=1, keepdims=True, out=cb)
                    np.divide(c, cb, out=cb)
                    G *= cb                           # (η/m) P
                    S_flat[batch_flat] -= c           # (η/m) (P - Y)
                np.matmul(G.T, Ab, out=dW)            # (η/m) G X_bᵀ
                if lam:
                    W *= decay
                W -= dW
                b -= G.sum(axis=0)
                if on_batch is not None and (i % stride == stride - 1 or i == n_batches - 1):
                    on_batch(epoch, i, n_batches)
            if not fused:                             # augmented rows: metrics from their own pass
                pending = {"epoch": epoch, "val": val_metrics(W, b)}
                finish(epoch, train_metrics(W, b), W, b)
            else:
                if pending is not None:               # metrics of epoch - 1 from the fused half
                    T_prev = S[:, K:]
                    T_prev += b_prev
                    np.copyto(T_tr, T_prev)
                    finish(epoch - 1, row_metrics(T_tr, y_ep, tr_flat, reg_of(W_prev)), W_prev, b_prev)
                pending = {"epoch": epoch, "val": val_metrics(W, b)}
                if epoch == config.n_epochs:          # the last epoch needs its own pass
                    finish(epoch, train_metrics(W, b), W, b)
            now = time.perf_counter()
            epoch_seconds.append(now - t_epoch)
            blas.epoch_done(now - t_epoch)
            t_epoch = now

    total = time.perf_counter() - t_start
    return TrainResult(W=W.copy(), b=b.reshape(K, 1).copy(), history=history,
                       timings={"total_seconds": total, "epoch_seconds": epoch_seconds,
                                "first_epoch": start + 1},
                       config=config)
