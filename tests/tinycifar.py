"""Tiny, learnable CIFAR-10 look-alikes in both official layouts.

Every class has its own random 32x32x3 template; an image is its class template
plus noise, so a softmax classifier learns it in a few epochs. Sizes are small
so tests stay fast, but the files follow the official layouts byte for byte.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]


def make_arrays(n_per_batch: int = 200, n_test: int = 200, seed: int = 0):
    """Return (batches, test) where each is a list of (x uint8 n×3072, y uint8 n)."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(40, 216, size=(10, 3072))

    def batch(n):
        y = np.arange(n) % 10
        rng.shuffle(y)
        noise = rng.normal(0, 60, size=(n, 3072))
        x = np.clip(templates[y] + noise, 0, 255).astype(np.uint8)
        return x, y.astype(np.uint8)

    return [batch(n_per_batch) for _ in TRAIN_FILES], batch(n_test)


def _binary_bytes(x, y) -> bytes:
    return np.hstack([y[:, None], x]).astype(np.uint8).tobytes()


def binary_members(n_per_batch=200, n_test=200, seed=0, label_names=LABEL_NAMES) -> dict[str, bytes]:
    """File name -> bytes of a ``cifar-10-batches-bin`` folder (``label_names``: batches.meta.txt's lines)."""
    batches, test = make_arrays(n_per_batch, n_test, seed)
    files = {f"{name}.bin": _binary_bytes(*xy) for name, xy in zip(TRAIN_FILES, batches)}
    files["test_batch.bin"] = _binary_bytes(*test)
    files["batches.meta.txt"] = ("\n".join(label_names) + "\n\n").encode()
    return files


def python_members(n_per_batch=200, n_test=200, seed=0, label_names=LABEL_NAMES) -> dict[str, bytes]:
    """File name -> bytes of a ``cifar-10-batches-py`` folder (pickles as the official ones)."""
    return python_members_of(*make_arrays(n_per_batch, n_test, seed), label_names)


def python_members_of(batches, test, label_names=LABEL_NAMES) -> dict[str, bytes]:
    """The ``cifar-10-batches-py`` files of given arrays: ``batches`` five (x, y), ``test`` one (x, y)."""

    def batch_pickle(label, x, y):
        record = {
            b"batch_label": label.encode(),
            b"labels": [int(v) for v in y],
            b"data": x,
            b"filenames": [f"img_{i}.png".encode() for i in range(len(y))],
        }
        return pickle.dumps(record, protocol=2)

    files = {
        name: batch_pickle(f"training batch {i + 1} of 5", *xy)
        for i, (name, xy) in enumerate(zip(TRAIN_FILES, batches))
    }
    files["test_batch"] = batch_pickle("testing batch 1 of 1", *test)
    files["batches.meta"] = pickle.dumps(
        {
            b"label_names": [n.encode() for n in label_names],
            b"num_cases_per_batch": len(batches[0][1]),
            b"num_vis": 3072,
        },
        protocol=2,
    )
    return files


def write_folder(root: Path, members: dict[str, bytes], folder: str) -> Path:
    target = Path(root) / folder
    target.mkdir(parents=True, exist_ok=True)
    for name, data in members.items():
        (target / name).write_bytes(data)
    return target


def write_archive(path: Path, members: dict[str, bytes], folder: str) -> Path:
    """Write a ``.tar.gz`` holding ``folder/<member>`` for each member."""
    path = Path(path)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def binary_archive(path: Path, **kw) -> Path:
    return write_archive(path, binary_members(**kw), "cifar-10-batches-bin")


def python_archive(path: Path, **kw) -> Path:
    return write_archive(path, python_members(**kw), "cifar-10-batches-py")


def prepared(dtype: str = "float32", split: str = "seed", n_per_batch: int = 200):
    """The arrays of ``make_arrays(n_per_batch, 100)`` prepared for training: split ``split``, 100 validation
    images, ``dtype``."""
    from cifarcli.prepare import prepare

    batches, (tx, ty) = make_arrays(n_per_batch, 100, seed=0)
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    return prepare(x, y, tx, ty, LABEL_NAMES, n_per_batch, split, 100, dtype)
