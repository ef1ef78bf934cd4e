"""The official CIFAR-10 batch layouts, and decoding their files into arrays.

Two layouts are published: "binary" (records of one label byte and 3072 pixels, class
names as lines of text) and "python" (pickled dicts, loaded with an unpickler that can
only build numpy arrays). Every check on decoded content lives here; a problem is a
``CifarError`` naming the file it came from.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from cifarcli.errors import CifarError
from cifarcli.safe_pickle import UnsafePickle, load_batch_pickle

PIXELS = 3072  # 32 x 32 x 3, stored as 1024 R, 1024 G, 1024 B
RECORD = PIXELS + 1  # binary layout: one label byte, then the pixels
N_CLASSES = 10
TRAIN_BATCHES = 5


@dataclass(frozen=True)
class Cifar10:
    """The whole data set, as in the official files.

    train_x: uint8 (N_train, 3072), record order of batches 1..5 concatenated;
    train_y: uint8 (N_train,); test_x: uint8 (N_test, 3072); test_y: uint8 (N_test,).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    label_names: tuple[str, ...]
    batch_size: int


@dataclass(frozen=True)
class Layout:
    """File names of one official layout, inside its single top folder."""

    folder: str
    train: tuple[str, ...]
    test: str
    meta: str

    @property
    def required(self) -> tuple[str, ...]:
        return (*self.train, self.test, self.meta)


_TRAIN = range(1, TRAIN_BATCHES + 1)
LAYOUTS = {
    "binary": Layout(
        "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in _TRAIN),
        "test_batch.bin",
        "batches.meta.txt",
    ),
    "python": Layout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in _TRAIN), "test_batch", "batches.meta"),
}
FORMAT_OF_FOLDER = {layout.folder: fmt for fmt, layout in LAYOUTS.items()}


def decode_batches(fmt: str, files: Mapping[str, bytes], where: Callable[[str], str]) -> Cifar10:
    """Parse and validate the six batches and the class names into one ``Cifar10``."""
    layout = LAYOUTS[fmt]
    for name in layout.required:
        if name not in files:
            raise CifarError(f"missing {where(name)}", hint="the copy is incomplete", setting="source")
    parse = _binary_batch if fmt == "binary" else _python_batch
    train = [parse(files[name], where(name)) for name in layout.train]
    batch_size = len(train[0][1])
    for name, (_, y) in zip(layout.train, train):
        if len(y) != batch_size:
            raise CifarError(f"{where(name)} has {len(y)} records, but {where(layout.train[0])} has {batch_size}")
    test_x, test_y = parse(files[layout.test], where(layout.test))
    parse_names = _binary_names if fmt == "binary" else _python_names
    return Cifar10(
        train_x=np.concatenate([x for x, _ in train]),
        train_y=np.concatenate([y for _, y in train]),
        # The binary parser returns strided views into the file bytes; own a compact copy.
        test_x=np.ascontiguousarray(test_x),
        test_y=np.array(test_y),
        label_names=parse_names(files[layout.meta], where(layout.meta)),
        batch_size=batch_size,
    )


def _check_batch(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one batch: x uint8 (N, 3072) with N >= 1, y (N,) integers 0..9 -> (x, y as uint8)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != PIXELS:
        shape = getattr(x, "shape", type(x).__name__)
        raise CifarError(f"{where}: images must be a uint8 array of shape (N, {PIXELS}), got {shape}")
    if len(x) == 0:
        raise CifarError(f"{where} holds no images")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise CifarError(f"{where}: labels must be a list of integers")
    if len(y) != len(x):
        raise CifarError(f"{where} has {len(x)} images but {len(y)} labels")
    bad = y[(y < 0) | (y >= N_CLASSES)]
    if bad.size:
        raise CifarError(f"{where}: label {int(bad[0])} is outside 0-{N_CLASSES - 1}")
    return x, y.astype(np.uint8, copy=False)


def _check_names(names: list, where: str) -> tuple[str, ...]:
    """Ten non-empty names, none holding a control character.

    Class names reach terminals, reports and figures: an escape sequence (``\x1b[2J``),
    a carriage return or a bell in one would act there instead of printing. Printable
    text of any script (``café``, ``飞机``) is fine; rich markup in it is escaped where shown.
    """
    if len(names) != N_CLASSES or not all(names):
        raise CifarError(f"{where}: expected {N_CLASSES} class names, found {len(names)}")
    for i, name in enumerate(names, 1):
        control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
        if control is not None:
            # repr: the message itself must not carry the control character to the terminal.
            raise CifarError(
                f"{where}: class name {i} {name!r} holds the control character U+{ord(control):04X}; refusing it",
                hint="class names must be printable text",
            )
    return tuple(names)


# ---- binary layout


def _binary_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Records of 1 label byte + 3072 pixels -> (x view (N, 3072), y view (N,)), no copy."""
    if len(data) % RECORD:
        raise CifarError(f"{where} is {len(data)} bytes, not a whole number of {RECORD}-byte records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    return _check_batch(records[:, 1:], records[:, 0], where)


def _binary_names(data: bytes, where: str) -> tuple[str, ...]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CifarError(f"{where} is not a text file of class names") from exc
    # One name per "\n" line; a CRLF file's "\r" and padding spaces or tabs belong to the layout.
    # Not splitlines(): it would also split at "\r", "\x0b" or "\x1c" inside a name, hiding
    # them from the control-character check instead of refusing them.
    names = [line.rstrip("\r").strip(" \t") for line in text.split("\n")]
    return _check_names([name for name in names if name], where)


# ---- python layout (pickles)


def _unpickle(data: bytes, where: str):
    if not data:
        raise CifarError(f"{where} is empty")
    try:
        return load_batch_pickle(data)
    except UnsafePickle as exc:
        raise CifarError(f"{where}: refusing to unpickle {exc} (not part of a CIFAR-10 batch)") from None
    except Exception as exc:  # untrusted bytes can fail inside pickle or numpy in many ways
        raise CifarError(f"{where} is not a valid CIFAR-10 pickle ({type(exc).__name__}: {exc})") from None


def _field(record, key: str, where: str):
    """record[key] for a dict with str (latin1 Python 2) or bytes (Python 3) keys."""
    if not isinstance(record, dict):
        raise CifarError(f"{where}: expected a dict, the pickle holds a {type(record).__name__}")
    for k in (key, key.encode()):
        if k in record:
            return record[k]
    raise CifarError(f"{where}: the pickled dict has no {key!r} entry")


def _python_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    record = _unpickle(data, where)
    x = _field(record, "data", where)
    labels = _field(record, "labels", where)
    try:
        if not isinstance(labels, (list, tuple, np.ndarray)):
            raise TypeError
        y = np.asarray(labels)
    except (TypeError, ValueError, OverflowError):
        raise CifarError(f"{where}: labels must be a list of integers") from None
    return _check_batch(x, y, where)


def _python_names(data: bytes, where: str) -> tuple[str, ...]:
    names = _field(_unpickle(data, where), "label_names", where)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in names):
        raise CifarError(f"{where}: label_names must be a list of strings")
    try:
        return _check_names([n.decode("utf-8") if isinstance(n, bytes) else n for n in names], where)
    except UnicodeDecodeError as exc:
        raise CifarError(f"{where}: class names are not text") from exc
