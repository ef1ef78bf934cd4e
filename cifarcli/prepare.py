"""From the uint8 dataset to normalised training, validation and test matrices.

Input: records N × 3072 uint8 (one image per row, the official layout) and
labels (N,) uint8. The five training batches are concatenated in order, each
``batch_size`` records long.

    split "seed"   : batch 1; its first 80 % train, its last 20 % validate
    split "dd2424" : train on batch 1, validate on batch 2
    split "full"   : all five batches; the last ``val_size`` records validate

Normalisation, from the training split only, per dimension j, on pixels
scaled to [0, 1] (population std, ddof = 0)::

    mean_j = (1/n) Σ_i x_ij / 255,   std_j = sqrt((1/n) Σ_i (x_ij / 255 - mean_j)²)
    X[j, i] = (x_ij / 255 - mean_j) / std_j          (std_j = 0 is replaced by 1)

X is returned d × n as the transpose of an n × d C-ordered array: one image
is one contiguous row of memory, so a mini-batch of consecutive columns is one
contiguous block (measured fastest for the GEMMs of training, see train.py).
Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import SPLITS
from .errors import CifarError, OptionError
from .model import one_hot

N_BATCHES = 5
_CHUNK = 4096  # rows per chunk for the statistics (bounded float64 temporaries)


def split_indices(
    split: str, n_train_total: int, batch_size: int, val_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): row indices into the concatenated training records.

    Both are increasing, contiguous and disjoint. ``val_size`` only matters
    for split "full".
    """
    if split not in SPLITS:
        raise OptionError("split", f"unknown split {split!r}", f"use one of: {', '.join(SPLITS)}")
    if batch_size < 1 or n_train_total < batch_size:
        raise CifarError(
            f"cannot take a batch of {batch_size} records from {n_train_total}",
            "the dataset looks truncated",
            setting="force",
        )
    if split == "seed":
        n_tr = (batch_size * 4) // 5
        if n_tr < 1 or n_tr >= batch_size:
            raise CifarError(f"split 'seed' needs at least 2 records per batch, got {batch_size}")
        return np.arange(0, n_tr), np.arange(n_tr, batch_size)
    if split == "dd2424":
        if n_train_total < 2 * batch_size:
            raise CifarError(
                f"split 'dd2424' needs two training batches, have {n_train_total} records", "use the seed split"
            )
        return np.arange(0, batch_size), np.arange(batch_size, 2 * batch_size)
    # full
    if not 1 <= val_size < n_train_total:
        raise OptionError(
            "val_size",
            f"must be between 1 and {n_train_total - 1} for split 'full', got {val_size}",
            "the default is 1000",
        )
    cut = n_train_total - val_size
    return np.arange(0, cut), np.arange(cut, n_train_total)


def _as_slice(idx: np.ndarray) -> slice | np.ndarray:
    """A slice when idx is a contiguous increasing range (views instead of copies)."""
    if idx.size and idx[-1] - idx[0] + 1 == idx.size and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def normalisation_stats(x_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension (mean, std), each d × 1 float64, of x_uint8 (n × d) / 255.

    Exact sums in bounded chunks (no n × d float64 temporary); a zero std
    (a constant pixel) is replaced by 1 so normalising never divides by zero.
    """
    x = np.asarray(x_uint8)
    if x.ndim != 2 or x.shape[0] < 1:
        raise CifarError(f"need a non-empty n × d array of records, got shape {x.shape}")
    n, d = x.shape
    s = np.zeros(d)
    ss = np.zeros(d)
    for start in range(0, n, _CHUNK):
        c = x[start : start + _CHUNK].astype(np.float64)
        s += c.sum(axis=0)
        ss += np.einsum("ij,ij->j", c, c)
    mean = s / n
    var = np.maximum(ss / n - mean * mean, 0.0)  # sums of integers: exact in float64
    std = np.sqrt(var)
    std[std == 0] = 255.0  # → 1 after scaling
    return (mean / 255.0).reshape(d, 1), (std / 255.0).reshape(d, 1)


def normalise(x_uint8: np.ndarray, mean: np.ndarray, std: np.ndarray, dtype=np.float32) -> np.ndarray:
    """X = (x / 255 - mean) / std, returned d × n (transpose of an n × d C array).

    Computed in ``dtype`` in two in-place passes, with no full-size float64
    temporary: X = (x - 255 mean) · 1 / (255 std).
    """
    x = np.asarray(x_uint8)
    dtype = np.dtype(dtype)
    shift = (np.asarray(mean, dtype=np.float64).reshape(1, -1) * 255.0).astype(dtype)
    scale = (1.0 / (np.asarray(std, dtype=np.float64).reshape(1, -1) * 255.0)).astype(dtype)
    out = np.empty(x.shape, dtype=dtype)
    np.subtract(x, shift, out=out, dtype=dtype)
    out *= scale
    return out.T


@dataclass
class PreparedData:
    """Normalised matrices for one split. X: d × n, Y: K × n one-hot, y: (n,) int."""

    X_train: np.ndarray
    Y_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    Y_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    label_names: list[str] = field(default_factory=list)
    split: str = "seed"

    @property
    def dtype(self) -> np.dtype:
        return self.X_train.dtype

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": int(self.y_train.size), "val": int(self.y_val.size), "test": int(self.y_test.size)}


def _labels(y: np.ndarray, K: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise CifarError(f"labels must be 1-D, got shape {y.shape}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= K):
        raise CifarError(
            f"labels must lie in 0..{K - 1}, found {int(y.min())}..{int(y.max())}",
            "the dataset is damaged",
            setting="force",
        )
    return y.astype(np.intp)


def prepare(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    label_names: list[str],
    batch_size: int,
    split: str = "seed",
    val_size: int = 1000,
    dtype="float32",
) -> PreparedData:
    """Split, normalise by the training split's statistics, one-hot encode."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise OptionError("dtype", f"unknown dtype {dtype!r}", "use float32 or float64") from None
    if dtype not in (np.float32, np.float64):
        raise OptionError("dtype", f"unknown dtype {dtype.name!r}", "use float32 or float64")
    K = len(label_names) or 10
    train_x = np.asarray(train_x)
    test_x = np.asarray(test_x)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise CifarError(f"records must be n × d with equal d, got {train_x.shape} and {test_x.shape}")
    if len(train_y) != len(train_x) or len(test_y) != len(test_x):
        raise CifarError("records and labels differ in number")
    tr, va = split_indices(split, len(train_x), batch_size, val_size)
    tr, va = _as_slice(tr), _as_slice(va)
    x_tr, x_va = train_x[tr], train_x[va]
    y_tr = _labels(np.asarray(train_y)[tr], K)
    y_va = _labels(np.asarray(train_y)[va], K)
    y_te = _labels(test_y, K)
    mean, std = normalisation_stats(x_tr)
    return PreparedData(
        X_train=normalise(x_tr, mean, std, dtype),
        Y_train=one_hot(y_tr, K, dtype),
        y_train=y_tr,
        X_val=normalise(x_va, mean, std, dtype),
        Y_val=one_hot(y_va, K, dtype),
        y_val=y_va,
        X_test=normalise(test_x, mean, std, dtype),
        Y_test=one_hot(y_te, K, dtype),
        y_test=y_te,
        mean=mean,
        std=std,
        label_names=list(label_names),
        split=split,
    )
