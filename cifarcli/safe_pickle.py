"""Reading pickles without running them: the allow-lists of the store's payloads and of CIFAR-10's python batches.

A pickle names the globals it needs and calls them; here each unpickler looks a
name up in its own small table (never importing it), and the store's also calls
nothing but what builds a payload and reads no array larger than its file.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from cifarcli.files import open_regular


class UnsafePickle(Exception):
    """Raised from ``find_class``: the pickle names a global outside the allow-list."""


def _bounded_frame(np, frame_class: type) -> type:
    """joblib's frame for one array, read only when it is of a plain form and its claimed size is in the file."""

    class BoundedArrayWrapper(frame_class):
        def read(self, unpickler, ensure_native_byte_order):
            shape, dtype = getattr(self, "shape", None), getattr(self, "dtype", None)
            if not (
                isinstance(shape, tuple)
                and all(type(n) is int and n >= 0 for n in shape)
                and isinstance(dtype, np.dtype)
                and not dtype.hasobject
                and getattr(self, "subclass", None) in (np.ndarray, np.memmap)
                and getattr(self, "order", None) in ("C", "F")
            ):
                raise UnsafePickle("an array frame of another form")
            handle = unpickler.file_handle
            left = os.fstat(handle.fileno()).st_size - handle.tell()
            if math.prod(shape) * dtype.itemsize > left:
                raise UnsafePickle(f"an array of {shape} {dtype} in {left} bytes")
            return super().read(unpickler, ensure_native_byte_order)

    return BoundedArrayWrapper


def _calling_only(load: Callable, callables: tuple) -> Callable:
    """An unpickler's REDUCE or NEWOBJ that calls only ``callables`` (found below the arguments on the stack)."""

    def guarded_load(unpickler) -> None:
        function = unpickler.stack[-2]
        if not any(function is allowed for allowed in callables):
            raise UnsafePickle(f"a call of {getattr(function, '__name__', type(function).__name__)}")
        load(unpickler)

    return guarded_load


def _refused(unpickler) -> None:
    raise UnsafePickle("an opcode our payloads never use")


@lru_cache(maxsize=1)
def _safe_unpickler():
    """joblib's own unpickler (it turns its array frames into arrays, memory-mapped on request)
    that hands out only the few objects our payloads are made of, calls only what builds them,
    and reads no array larger than the bytes left in the file.

    Built on first use so that importing the store does not import joblib and numpy.
    """
    import numpy as np
    from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray

    frame = _bounded_frame(np, NumpyArrayWrapper)
    # Looked up in this table, never imported by name: a pickle cannot reach anything else.
    # The classes are only compared with (an array's recorded class) or built empty (the frame).
    allowed = {
        ("joblib.numpy_pickle", "NumpyArrayWrapper"): frame,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "memmap"): np.memmap,
        ("numpy", "dtype"): np.dtype,
        **{(module, "scalar"): multiarray.scalar for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    }
    plain = NumpyUnpickler.dispatch

    class SafeUnpickler(NumpyUnpickler):
        # What a payload may call: a dtype, a numpy scalar from its bytes, an empty array frame.
        dispatch = {
            **plain,
            pickle.REDUCE[0]: _calling_only(plain[pickle.REDUCE[0]], (np.dtype, multiarray.scalar)),
            pickle.NEWOBJ[0]: _calling_only(plain[pickle.NEWOBJ[0]], (frame,)),
            **{
                op[0]: _refused
                for op in (pickle.NEWOBJ_EX, pickle.OBJ, pickle.INST, pickle.EXT1, pickle.EXT2, pickle.EXT4)
            },
        }

        def find_class(self, module: str, name: str):
            try:
                return allowed[(module, name)]
            except KeyError:
                raise UnsafePickle(f"{module}.{name}") from None

    return SafeUnpickler


def safe_load(path: Path, *, mmap: bool = False) -> Any:
    """``joblib.load`` of a file the store wrote, without executing anything found in it.

    Raises ``UnsafePickle`` for a global outside the allow-list (before it is
    imported or called), a call other than those that build our payloads, or an array
    larger than the file; and whatever pickle or numpy raise for bytes that do not parse.
    Only uncompressed regular files are read (``UnsafeFile`` otherwise, never following a
    link): the store never compresses (arrays must be mappable), and joblib's compressed and
    pre-0.10 formats have readers of their own that this allow-list would not cover.
    """
    unpickler_class = _safe_unpickler()
    with open_regular(Path(path)) as handle:
        if handle.read(1) != pickle.PROTO:
            raise pickle.UnpicklingError("not an uncompressed joblib pickle")
        handle.seek(0)
        unpickler = unpickler_class(
            str(path), handle, ensure_native_byte_order=not mmap, mmap_mode="r" if mmap else None
        )
        return unpickler.load()


# -- CIFAR-10's python batches ------------------------------------------------------


def _latin1_encode(text, encoding="utf-8"):
    """Stand-in for ``_codecs.encode``: Python 3 protocol-2 pickles store bytes this way."""
    if not isinstance(text, str) or encoding.lower() not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unexpected use of _codecs.encode")
    return text.encode("latin1")


@lru_cache(maxsize=1)
def _batch_globals() -> dict:
    """What the official batches (Python 2 pickles) and protocol-2 re-pickles refer to.

    numpy 2 renamed numpy.core to numpy._core; the function is taken from numpy itself
    rather than by the deprecated path.
    """
    import numpy as np

    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _batch_globals()[(module, name)]
        except KeyError:
            raise UnsafePickle(f"{module}.{name}") from None


def load_batch_pickle(data: bytes) -> Any:
    """A CIFAR-10 python batch (or its meta file) from its bytes; ``UnsafePickle`` for any other global.

    latin1: the official files are Python 2 pickles whose str objects hold raw bytes.
    """
    return _BatchUnpickler(io.BytesIO(data), encoding="latin1").load()
