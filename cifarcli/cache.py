"""The artifact store: content-addressed, atomic, locked and self-checking.

Layout under the cache root::

    <stage>/<key>/payload.joblib   the artifact, uncompressed so arrays can be memory-mapped
    <stage>/<key>/meta.json        written last: params, inputs, created, duration, versions,
                                   payload size, mtime and sha256
    <stage>/.tmp-<key>-*           a write in progress, renamed into place when whole
    <stage>/.scratch/<key>/        resumable partial work (training checkpoints)
    .locks/<stage>-<key>.lock      per-key lock (fcntl.flock: the kernel releases it when
                                   its holder dies, so a killed process never blocks others)

A key is the hash of the stage name, the stage's version, its parameters as
canonical JSON and the keys of its inputs: same inputs, same key; any change
upstream changes every key downstream.

Nothing read from the cache is trusted: payloads and checkpoints are unpickled
with an allow-list (``safe_load``: numpy arrays, dtypes and scalars, joblib's
array frames, plain containers; nothing else is imported or called), then
checked against their stage's schema (``validate``), and every ``meta.json``
against the store's own. A payload also records the ``payload_sha256`` of the
artifacts it was made from (``input_sha256``): when one of them has changed
since, the payload is stale. Damaged or stale, it is reported in one line,
removed and recomputed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import pickle
import secrets
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from cifarcli import __version__
from cifarcli.errors import CifarError, WorkFailed, disk_error  # noqa: F401  (disk_error: re-exported)
from cifarcli.smallfile import UnsafeFile, kind_of, open_regular, read_json

PAYLOAD = "payload.joblib"
META = "meta.json"
KEY_LENGTH = 16
_CHUNK = 1 << 20


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def artifact_key(stage: str, version: int, params: dict, inputs: dict[str, str]) -> str:
    """The content address of an artifact: 16 hex digits of a sha256."""
    document = {"stage": stage, "version": version, "params": params, "inputs": inputs}
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()[:KEY_LENGTH]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(Path(path)) as handle:  # never through a link, never a FIFO or device
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    ``mode``: create the file with these permission bits less the umask, as ``open()`` does
    (for a file the user asked for, e.g. ``export --out``); None: 0600, as ``mkstemp`` does.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode is None:
            handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        else:
            tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
            handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise disk_error(exc, path, len(data)) from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())  # whole on disk before its name is
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise disk_error(exc, path, len(data)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def approx_size(value: Any) -> int:
    """Roughly the bytes ``value`` takes when dumped: its arrays and byte strings, recursively."""
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, dict):
        return sum(approx_size(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(approx_size(v) for v in value)
    if hasattr(value, "__dict__"):
        return approx_size(vars(value))
    return 8


# -- reading pickles without running them ------------------------------------------


class UnsafePickle(Exception):
    """Raised from ``find_class``: the pickle names a global outside the allow-list."""


def _bounded_frame(np, frame_class: type) -> type:
    """joblib's frame for one array, read only when it is of a plain form and its claimed size is in the file."""

    class BoundedArrayWrapper(frame_class):
        def read(self, unpickler, ensure_native_byte_order):
            shape, dtype = getattr(self, "shape", None), getattr(self, "dtype", None)
            if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)
                    and isinstance(dtype, np.dtype) and not dtype.hasobject
                    and getattr(self, "subclass", None) in (np.ndarray, np.memmap)
                    and getattr(self, "order", None) in ("C", "F")):
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
        dispatch = {**plain, pickle.REDUCE[0]: _calling_only(plain[pickle.REDUCE[0]], (np.dtype, multiarray.scalar)),
                    pickle.NEWOBJ[0]: _calling_only(plain[pickle.NEWOBJ[0]], (frame,)),
                    **{op[0]: _refused for op in (pickle.NEWOBJ_EX, pickle.OBJ, pickle.INST, pickle.EXT1,
                                                  pickle.EXT2, pickle.EXT4)}}

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
        unpickler = unpickler_class(str(path), handle, ensure_native_byte_order=not mmap,
                                    mmap_mode="r" if mmap else None)
        return unpickler.load()


# -- schemas ------------------------------------------------------------------------
#
# A schema is plain data: a Python type (``int`` refuses bools, ``float`` accepts ints),
# ``None``, a dict literal (these keys, each of its schema; ``Opt`` marks a key that may
# be absent; other keys are allowed), or one of the small classes below. Names in an
# ``Array`` or ``ListOf`` shape ("n", "K") must take one value throughout a document
# (throughout one item, for names first bound inside a list's item).


class SchemaError(Exception):
    def __init__(self, where: str, problem: str):
        super().__init__(f"{where or 'the document'}: {problem}")


@dataclass(frozen=True)
class Array:
    """An ndarray of one of ``dtypes`` (names, or kinds such as "f" for any float) and ``shape``."""

    dtypes: tuple[str, ...]
    shape: tuple[int | str, ...]
    within: tuple[float, float] | None = None  # every value in [lo, hi]


@dataclass(frozen=True)
class ListOf:
    item: Any
    length: int | str | None = None


@dataclass(frozen=True)
class DictOf:
    key: Any
    value: Any


@dataclass(frozen=True)
class OneOf:
    options: tuple


@dataclass(frozen=True)
class Opt:
    """A dict value whose key may be absent."""

    schema: Any


@dataclass(frozen=True)
class Check:
    """``schema``, then ``test(value)`` must hold (e.g. a range, or agreement between two fields)."""

    schema: Any
    test: Callable[[Any], bool]
    what: str


HEX64 = Check(str, lambda s: len(s) == 64 and all(c in "0123456789abcdef" for c in s), "64 hex digits")
NUMBER = float


def validate(value: Any, schema: Any, where: str = "") -> None:
    """Raise ``SchemaError`` naming the first place where ``value`` does not fit ``schema``."""
    _validate(value, schema, where, {})


def _validate(value: Any, schema: Any, where: str, dims: dict) -> None:
    if schema is None:
        if value is not None:
            raise SchemaError(where, f"expected None, found {type(value).__name__}")
    elif isinstance(schema, type):
        if not _is_instance(value, schema):
            raise SchemaError(where, f"expected {schema.__name__}, found {type(value).__name__}")
    elif isinstance(schema, dict):
        _validate_dict(value, schema, where, dims)
    elif isinstance(schema, Array):
        _validate_array(value, schema, where, dims)
    elif isinstance(schema, ListOf):
        if not isinstance(value, list):
            raise SchemaError(where, f"expected a list, found {type(value).__name__}")
        if schema.length is not None:
            _bind(dims, schema.length, len(value), where, "length")
        for i, item in enumerate(value):  # each item its own scope: names it binds stay inside it
            _validate(item, schema.item, f"{where}[{i}]", dict(dims))
    elif isinstance(schema, DictOf):
        if not isinstance(value, dict):
            raise SchemaError(where, f"expected a dict, found {type(value).__name__}")
        for k, v in value.items():
            _validate(k, schema.key, f"{where} key {k!r}", dims)
            _validate(v, schema.value, f"{where}[{k!r}]", dims)
    elif isinstance(schema, OneOf):
        errors = []
        for option in schema.options:
            trial = dict(dims)
            try:
                _validate(value, option, where, trial)
            except SchemaError as error:
                errors.append(str(error))
                continue
            dims.update(trial)
            return
        raise SchemaError(where, "fits none of its forms (" + "; ".join(errors) + ")")
    elif isinstance(schema, Check):
        _validate(value, schema.schema, where, dims)
        if not schema.test(value):
            raise SchemaError(where, f"must be {schema.what}")
    else:
        raise TypeError(f"not a schema: {schema!r}")


def _is_instance(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return type(value) is kind or (kind is not bool and isinstance(value, kind))


def _validate_dict(value: Any, schema: dict, where: str, dims: dict) -> None:
    if not isinstance(value, dict):
        raise SchemaError(where, f"expected a dict, found {type(value).__name__}")
    for key, sub in schema.items():
        optional = isinstance(sub, Opt)
        if key not in value:
            if optional:
                continue
            raise SchemaError(where, f"missing key {key!r}")
        _validate(value[key], sub.schema if optional else sub, f"{where}.{key}" if where else key, dims)


def _validate_array(value: Any, schema: Array, where: str, dims: dict) -> None:
    import numpy as np

    if not isinstance(value, np.ndarray):
        raise SchemaError(where, f"expected an array, found {type(value).__name__}")
    if value.dtype.name not in schema.dtypes and value.dtype.kind not in schema.dtypes:
        raise SchemaError(where, f"dtype {value.dtype} is not {' or '.join(schema.dtypes)}")
    if value.ndim != len(schema.shape):
        raise SchemaError(where, f"shape {value.shape} is not {_shape_text(schema.shape)}")
    for size, expected in zip(value.shape, schema.shape):
        _bind(dims, expected, size, where, f"shape {value.shape} (expected {_shape_text(schema.shape)})")
    if schema.within is not None and value.size:
        lo, hi = schema.within
        if not (lo <= value.min() and value.max() <= hi):
            raise SchemaError(where, f"values outside {lo}..{hi}")


def _bind(dims: dict, expected: int | str, found: int, where: str, what: str) -> None:
    if isinstance(expected, int):
        if found != expected:
            raise SchemaError(where, f"{what}: {found}, not {expected}")
    elif dims.setdefault(expected, found) != found:
        raise SchemaError(where, f"{what}: {expected} is {found} here but {dims[expected]} elsewhere")


def _shape_text(shape: tuple) -> str:
    return "(" + " × ".join(str(s) for s in shape) + ")"


@dataclass(frozen=True)
class Schema:
    """What one stage's artifacts hold: its payload, and its meta.json's ``params`` and ``info``."""

    payload: Any
    params: Any = dict
    info: Any = dict
    inputs: Any = DictOf(str, str)   # the names of the inputs its key is made from
    meta: Any = dict                 # the whole meta.json (e.g. info's epochs within params' settings)
    summary: Callable[[Any], dict] | None = None  # what info repeats of the payload: `cache verify` compares


# The store's own fields of every meta.json; the key must be the hash of the rest.
META_SCHEMA = {
    "stage": str, "key": str, "version": int, "params": dict, "inputs": DictOf(str, str), "info": dict,
    "created": Check(str, lambda text: _sane_date(text), "a date with its time zone, from 2000 to now"),
    "duration": Check(NUMBER, lambda s: 0 <= s < 1e9, "a duration in seconds"), "cifarcli_version": str, "payload_size": int,
    "payload_mtime_ns": int, "payload_sha256": HEX64, "input_sha256": Opt(DictOf(str, HEX64)),
}


def _sane_date(text: str) -> bool:
    try:
        moment = datetime.fromisoformat(text)
        return moment.tzinfo is not None and \
            datetime(2000, 1, 1, tzinfo=timezone.utc) <= moment <= datetime.now(timezone.utc) + timedelta(days=1)
    except (ValueError, OverflowError):
        return False


@dataclass
class Artifact:
    stage: str
    key: str
    path: Path
    meta: dict
    payload: Any = None
    status: str = "hit"  # "hit" or "computed"


@dataclass
class Store:
    """The cache folder. ``log`` receives one-line notices (waiting, damage found).

    ``schemas`` maps a stage to the ``Schema`` its artifacts must fit; a stage
    without one is only read through the allow-list.
    """

    root: Path
    log: Callable[[str], None] = lambda message: None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    schemas: dict[str, Schema] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # -- reading ---------------------------------------------------------

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def load(self, stage: str, key: str, *, mmap: bool = False) -> Artifact | None:
        """The artifact if it is present, whole, of its schema and up to date; None if absent.

        Raises ``DamagedArtifact`` when it is present but its meta.json or
        payload is not what the store wrote (``StaleArtifact`` when an input it
        was made from has changed since). The payload is re-hashed only when its
        mtime differs from the one recorded at commit, so a cache hit stays cheap.
        """
        folder = self._folder(stage, key)
        if folder is None:
            return None
        meta = self._check(folder, full=False)
        payload = self._payload(folder, mmap)
        self._check_inputs(meta)
        return Artifact(stage, key, folder, meta, payload)

    def _folder(self, stage: str, key: str) -> Path | None:
        """The artifact's folder, None when absent; checked with lstat, so a link is never followed.

        Raises ``DamagedArtifact`` when something else has its name (removing it
        unlinks the link, never its target), ``UnreadableArtifact`` when it cannot be
        looked at, and ``LinkInCache`` when the stage's folder itself is a link.
        """
        folder = self._stage_dir(stage) / key
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise UnreadableArtifact(stage, key, folder) from None
        if not stat.S_ISDIR(info.st_mode):
            raise DamagedArtifact(stage, key, f"{folder} is {kind_of(info.st_mode)}, not a folder; never followed")
        return folder

    def _stage_dir(self, stage: str) -> Path:
        path = self.root / stage
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return path
        except PermissionError:
            raise UnreadableArtifact(stage, "", path) from None
        if not stat.S_ISDIR(info.st_mode):
            raise LinkInCache(path, kind_of(info.st_mode))
        return path

    def _payload(self, folder: Path, mmap: bool) -> Any:
        """The payload, read through the allow-list and checked against its stage's schema."""
        stage, key = folder.parent.name, folder.name
        try:
            payload = safe_load(folder / PAYLOAD, mmap=mmap)
        except PermissionError:
            raise UnreadableArtifact(stage, key, folder / PAYLOAD) from None
        except UnsafeFile as unsafe:
            raise DamagedArtifact(stage, key, f"{folder / PAYLOAD} is {unsafe}") from None
        except UnsafePickle as refused:
            raise DamagedArtifact(stage, key, f"payload refused: it names {refused}") from None
        except (Exception, RecursionError) as exc:  # any unpickling failure means the file is damaged
            raise DamagedArtifact(stage, key, f"payload does not load ({type(exc).__name__})") from None
        schema = self.schemas.get(stage)
        if schema is not None:
            try:
                validate(payload, schema.payload, "payload")
            except SchemaError as wrong:
                raise DamagedArtifact(stage, key, f"not a {stage} payload: {wrong}") from None
        return payload

    def _read_meta(self, folder: Path) -> dict:
        """meta.json, checked: the store's fields, the stage's params and info, and a key that is
        the hash of its stage, version, params and inputs (so params can be trusted to rebuild a config)."""
        stage, key = folder.parent.name, folder.name
        try:
            meta = read_json(folder / META)
        except PermissionError:
            raise UnreadableArtifact(stage, key, folder / META) from None
        except UnsafeFile as unsafe:
            raise DamagedArtifact(stage, key, f"meta.json is {unsafe}") from None
        except OSError:
            raise DamagedArtifact(stage, key, "meta.json is missing or unreadable") from None
        schema = self.schemas.get(stage, Schema(payload=object))
        try:
            validate(meta, META_SCHEMA, "meta.json")
            validate(meta["params"], schema.params, "meta.json params")
            validate(meta["info"], schema.info, "meta.json info")
            validate(meta["inputs"], schema.inputs, "meta.json inputs")
            validate(meta, schema.meta, "meta.json")
        except SchemaError as wrong:
            raise DamagedArtifact(stage, key, str(wrong)) from None
        try:
            hashed = artifact_key(meta["stage"], meta["version"], meta["params"], meta["inputs"])
        except ValueError:  # NaN or infinity in params
            hashed = None
        if (meta["stage"], meta["key"], hashed) != (stage, key, key):
            raise DamagedArtifact(stage, key, "meta.json does not describe this artifact (its key differs)")
        return meta

    def meta(self, stage: str, key: str) -> dict | None:
        """The checked meta.json of an artifact, or None when it is absent or damaged."""
        try:
            folder = self._folder(stage, key)
            return self._read_meta(folder) if folder else None
        except (DamagedArtifact, UnreadableArtifact, LinkInCache):
            return None

    def _check(self, folder: Path, *, full: bool) -> dict:
        stage, key = folder.parent.name, folder.name
        meta = self._read_meta(folder)
        try:
            info = os.lstat(folder / PAYLOAD)
        except PermissionError:
            raise UnreadableArtifact(stage, key, folder / PAYLOAD) from None
        except OSError:
            raise DamagedArtifact(stage, key, "payload is missing") from None
        if not stat.S_ISREG(info.st_mode):  # a link (to /dev/zero, /proc/self/mem), a FIFO: never opened
            raise DamagedArtifact(stage, key, f"{folder / PAYLOAD} is {kind_of(info.st_mode)}, not a payload")
        recorded_size, recorded_mtime, recorded_sha = (
            meta["payload_size"], meta["payload_mtime_ns"], meta["payload_sha256"])
        if info.st_size != recorded_size:
            raise DamagedArtifact(stage, key, f"payload is {info.st_size} bytes, expected {recorded_size}")
        try:
            if full or info.st_mtime_ns != recorded_mtime:
                changed = file_sha256(folder / PAYLOAD) != recorded_sha
            else:
                open_regular(folder / PAYLOAD).close()  # readable by us: another user's may not be
                changed = False
        except PermissionError:
            raise UnreadableArtifact(stage, key, folder / PAYLOAD) from None
        except (OSError, UnsafeFile):  # swapped for something else since the lstat, or an I/O error
            raise DamagedArtifact(stage, key, "payload is not readable") from None
        if changed:
            raise DamagedArtifact(stage, key, "payload checksum does not match meta.json")
        return meta

    def _input_sha256(self, stage: str, key: str) -> str | None:
        """The current payload_sha256 of an input, None when it is absent or unreadable (it is then
        recomputed by whoever needs it, and checked again then)."""
        meta = self.meta(stage, key)
        return meta["payload_sha256"] if meta else None

    def _check_inputs(self, meta: dict) -> None:
        """Raise ``StaleArtifact`` when an input this artifact was made from has changed since.

        An artifact written before inputs were recorded (no ``input_sha256``) but made
        from inputs cannot show it is current, so it counts as stale (recomputed once).
        """
        stage, key = meta["stage"], meta["key"]
        recorded = meta.get("input_sha256")
        if recorded is None:
            if meta["inputs"]:
                raise StaleArtifact(stage, key, "was made before the checksums of its inputs were recorded")
            return
        for name, sha in recorded.items():
            input_stage, _, input_key = name.partition("/")
            current = self._input_sha256(input_stage, input_key)
            if current is not None and current != sha:
                raise StaleArtifact(stage, key, f"was made from an older {input_stage} artifact ({name})")

    def state(self, stage: str, key: str) -> tuple[str, str | None]:
        """("cached" | "missing" | "damaged" | "stale", reason) without loading the payload."""
        try:
            folder = self._folder(stage, key)
            if folder is None:
                return "missing", None
            self._check_inputs(self._check(folder, full=False))
        except StaleArtifact as stale:
            return "stale", stale.reason
        except DamagedArtifact as damage:
            return "damaged", damage.reason
        except (UnreadableArtifact, LinkInCache) as other:
            return ("unreadable" if isinstance(other, UnreadableArtifact) else "damaged"), other.message
        return "cached", None

    # -- computing -------------------------------------------------------

    def get_or_compute(
        self,
        stage: str,
        version: int,
        params: dict,
        inputs: dict[str, str],
        compute: Callable[[], tuple[Any, dict]],
        *,
        force: bool = False,
        mmap: bool = False,
        depends: Iterable[tuple[str, str]] = (),
    ) -> Artifact:
        """Return the artifact for these inputs, computing it at most once across processes.

        ``compute()`` returns ``(payload, info)``; ``info`` is kept in meta.json
        (small, JSON) so that listings never load payloads. ``depends`` names the
        artifacts (stage, key) the payload is made from; their payload_sha256 are
        recorded, and when one changes the payload is stale (see ``_check_inputs``).
        They are not part of the key: run IDs do not move.
        """
        key = artifact_key(stage, version, params, inputs)
        if not force:
            found = self._load_or_discard(stage, key, mmap)
            if found:
                self.events.append((stage, key, "hit"))
                return found
        with self.lock(stage, key):
            if not force:  # another process may have finished it while we waited
                found = self._load_or_discard(stage, key, mmap)
                if found:
                    self.events.append((stage, key, "hit"))
                    return found
            started = time.perf_counter()
            payload, info = compute()
            # Read after compute: the inputs it used are the ones on disk now.
            made_from = {f"{s}/{k}": self._input_sha256(s, k) for s, k in depends}
            meta = {
                "stage": stage, "key": key, "version": version, "params": params, "inputs": inputs,
                "input_sha256": {name: sha for name, sha in made_from.items() if sha is not None},
                "info": info, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "duration": round(time.perf_counter() - started, 4), "cifarcli_version": __version__,
            }
            self._commit(stage, key, payload, meta)
        self.events.append((stage, key, "computed"))
        artifact = self.load(stage, key, mmap=mmap) if mmap else Artifact(stage, key, self.path(stage, key), meta, payload)
        artifact.status = "computed"
        return artifact

    def _load_or_discard(self, stage: str, key: str, mmap: bool) -> Artifact | None:
        try:
            return self.load(stage, key, mmap=mmap)
        except DamagedArtifact as damage:
            self.log(f"{damage.message}; removing it and recomputing")
            self.events.append((stage, key, "stale" if isinstance(damage, StaleArtifact) else "damaged"))
            self._remove(self.path(stage, key))
            return None

    def _commit(self, stage: str, key: str, payload: Any, meta: dict) -> None:
        import joblib

        stage_dir = self.root / stage
        try:
            stage_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=stage_dir))
        except OSError as exc:
            raise disk_error(exc, stage_dir / key, approx_size(payload)) from None
        try:
            joblib.dump(payload, tmp / PAYLOAD)
            info = (tmp / PAYLOAD).stat()
            meta.update(payload_size=info.st_size, payload_mtime_ns=info.st_mtime_ns,
                        payload_sha256=file_sha256(tmp / PAYLOAD))
            # meta.json last and synced: its presence marks a complete artifact.
            with open(tmp / META, "w") as out:
                out.write(json.dumps(meta, indent=2, allow_nan=False))
                out.flush()
                os.fsync(out.fileno())
            final = stage_dir / key
            if final.exists():  # --force: move the old one aside, then swap in the new one
                self._remove(final)
            os.rename(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise disk_error(exc, stage_dir / key, approx_size(payload)) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _remove(self, folder: Path) -> None:
        """Remove an artifact folder; renamed first so no half-deleted folder keeps its name."""
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode):  # a link goes, never what it points to
            folder.unlink()
            return
        trash = folder.with_name(f".tmp-{folder.name}-trash-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    @contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """Hold the per-key lock. A second process waits here, then finds the artifact made."""
        lock_dir = self.root / ".locks"
        try:
            lock_dir.mkdir(parents=True, exist_ok=True)
            handle = open(lock_dir / f"{stage}-{key}.lock", "a+")
        except OSError as exc:
            raise disk_error(exc, lock_dir) from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.log(f"waiting for another cifarcli process computing {stage} {key}")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _is_locked(self, stage: str, key: str) -> bool:
        path = self.root / ".locks" / f"{stage}-{key}.lock"
        if not path.exists():
            return False
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    # -- scratch space for resumable work ----------------------------------

    def scratch(self, stage: str, key: str) -> Path:
        return self.root / stage / ".scratch" / key

    def save_scratch(self, stage: str, key: str, name: str, value: Any) -> None:
        """Persist partial work (e.g. a checkpoint) atomically; the previous one stays until replaced."""
        import joblib

        folder = self.scratch(stage, key)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            os.close(handle)
            try:
                joblib.dump(value, tmp)
                os.replace(tmp, folder / name)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            raise disk_error(exc, folder / name, approx_size(value)) from None

    def load_scratch(self, stage: str, key: str, name: str, schema: Any = object) -> Any | None:
        """The saved partial work, or None (with a notice) when there is none, or it does not
        load through the allow-list, or does not fit ``schema``."""
        path = self.scratch(stage, key) / name
        if not path.is_file():
            return None
        try:
            value = safe_load(path)
            validate(value, schema, name)
        except UnsafePickle as refused:  # a damaged checkpoint only costs the work it held
            self.log(f"ignoring checkpoint {path}: it names {refused}")
            return None
        except SchemaError as wrong:
            self.log(f"ignoring checkpoint {path}: {wrong}")
            return None
        except Exception:
            self.log(f"ignoring unreadable checkpoint {path}")
            return None
        return value

    def drop_scratch(self, stage: str, key: str) -> None:
        shutil.rmtree(self.scratch(stage, key), ignore_errors=True)

    # -- listing and upkeep ------------------------------------------------
    #
    # Every entry is looked at with lstat: a link found in the cache is listed as such and,
    # when the cache is cleared, unlinked itself; what it points to is never read or removed.

    @property
    def downloads(self) -> Path:
        """Verified downloaded archives, kept so a damaged dataset can be re-imported offline."""
        return self.root / "downloads"

    def stages(self) -> list[str]:
        return [path.name for path, mode in _entries(self.root)
                if stat.S_ISDIR(mode) and not path.name.startswith(".") and path != self.downloads]

    def _folders(self, stage: str | None) -> Iterator[Path]:
        for name in [stage] if stage else self.stages():
            for path, mode in _entries(self.root / name):
                if stat.S_ISDIR(mode) and not path.name.startswith("."):
                    yield path

    def strays(self, stage: str | None = None) -> list[dict]:
        """Links (and other non-folders) where a stage folder or an artifact folder should be: left alone."""
        found = [] if stage else [(path, mode, path.name, "") for path, mode in _entries(self.root)
                                  if stat.S_ISLNK(mode) and not path.name.startswith(".")]
        found += [(path, mode, name, path.name) for name in ([stage] if stage else self.stages())
                  for path, mode in _entries(self.root / name) if not stat.S_ISDIR(mode) and not path.name.startswith(".")]
        return [{"stage": name, "key": key, "path": str(path),
                 "damaged": f"{kind_of(mode)}; left alone (the cache never follows links)"}
                for path, mode, name, key in found]

    def ls(self, stage: str | None = None) -> list[dict]:
        """One summary per artifact, read from meta.json only (payloads are never loaded), with its size
        on disk; a row made from one run (evaluate, plot) carries that run's ID and settings."""
        rows = []
        for folder in self._folders(stage):
            try:
                meta = self._read_meta(folder)
            except (DamagedArtifact, UnreadableArtifact) as damage:
                meta = {"damaged": damage.reason}
            run = meta.get("inputs", {}).get("train") if len(meta.get("inputs", {})) == 1 else None
            run_meta = self.meta("train", run) if run else None
            rows.append({"stage": folder.parent.name, "key": folder.name, "path": str(folder),
                         "params": run_meta["params"] if run_meta else meta.get("params", {}),
                         "size": disk_size(folder), "created": meta.get("created"), "info": meta.get("info", {}),
                         **({"run": run} if run else {}),
                         **({"damaged": meta["damaged"]} if "damaged" in meta else {})})
        return rows + [{"params": {}, "size": None, "created": None, "info": {}, **row} for row in self.strays(stage)]

    def find(self, stage: str, prefix: str) -> list[str]:
        """Keys of ``stage`` that start with ``prefix`` (for user-typed run IDs)."""
        try:
            self._stage_dir(stage)
        except (LinkInCache, UnreadableArtifact):
            return []
        return [folder.name for folder in self._folders(stage) if folder.name.startswith(prefix)]

    def verify(self, stage: str | None = None) -> list[dict]:
        """Re-hash every payload and read it as a load would (allow-list, schema, inputs), and check that
        what meta.json repeats of the payload (its metrics) is the payload's; one row per artifact with
        ``ok`` and, when damaged, stale or unreadable, ``reason``. Links are rows that are not ok."""
        rows = []
        for folder in self._folders(stage):
            row = {"stage": folder.parent.name, "key": folder.name, "ok": True}
            try:
                meta = self._check(folder, full=True)
                payload = self._payload(folder, mmap=True)  # mapped: verifying a large dataset reads no array
                self._check_summary(meta, payload)
                self._check_inputs(meta)
            except (DamagedArtifact, UnreadableArtifact) as damage:
                row.update(ok=False, reason=damage.reason)
            rows.append(row)
        return rows + [{"stage": row["stage"], "key": row["key"], "ok": False, "reason": row["damaged"]}
                       for row in self.strays(stage)]

    def _check_summary(self, meta: dict, payload: Any) -> None:
        schema = self.schemas.get(meta["stage"])
        if schema is None or schema.summary is None:
            return
        for name, value in schema.summary(payload).items():
            if meta["info"].get(name) != value:
                raise DamagedArtifact(meta["stage"], meta["key"], f"meta.json info.{name} is not the payload's")

    def clear_plan(self, stage: str | None = None, *, keep_data: bool = False) -> dict:
        """What ``clear`` would remove: per stage its artifact count and bytes, and the links it would
        unlink (never their targets). ``keep_data``: the dataset and its downloads stay."""
        kept = {"dataset"} if keep_data else set()
        stages = {}
        for name in [stage] if stage else self.stages():
            folders = [] if name in kept else list(self._folders(name))
            if folders:
                stages[name] = {"artifacts": len(folders), "bytes": sum(disk_size(f) for f in folders)}
        if stage is None and not keep_data and disk_size(self.downloads):
            stages["downloads"] = {"artifacts": 0, "bytes": disk_size(self.downloads)}
        links = [row["path"] for row in self.strays(stage) if not (keep_data and row["stage"] == "dataset")]
        return {"stages": stages, "links": links}

    def clear(self, stage: str | None = None, *, keep_data: bool = False) -> int:
        """Remove artifacts (of one stage, or all; ``keep_data``: not the dataset and its downloads),
        links found where artifacts belong (the link, not its target) and leftovers; returns how many
        artifacts went."""
        removed = 0
        names = [name for name in ([stage] if stage else self.stages()) if not (keep_data and name == "dataset")]
        for name in names:
            for folder in list(self._folders(name)):
                with self.lock(name, folder.name):
                    self._remove(folder)
                removed += 1
            _remove_tree(self.root / name / ".scratch")
        for path in self.clear_plan(stage, keep_data=keep_data)["links"]:
            Path(path).unlink(missing_ok=True)
        if stage is None and not keep_data:
            _remove_tree(self.downloads)
        self.gc()
        return removed

    def gc(self) -> list[Path]:
        """Remove temporary folders and files left by killed processes; returns what went.

        A temporary folder belongs to one key; it is removed only when nobody
        holds that key's lock, so a write in progress elsewhere is never touched.
        """
        removed = []
        for stage in self.stages():
            stage_dir = self.root / stage
            leftovers = [p for p, _ in _entries(stage_dir) if p.name.startswith(".tmp-")]
            leftovers += [p for d, mode in _entries(stage_dir / ".scratch") if stat.S_ISDIR(mode)
                          for p, _ in _entries(d) if p.name.startswith(".") and p.name.endswith(".tmp")]
            for path in leftovers:
                key = path.parent.name if path.name.endswith(".tmp") else path.name.split("-")[1]
                if self._is_locked(stage, key):
                    continue
                _remove_tree(path)
                removed.append(path)
        for path in self.root.glob(".*.tmp"):  # half-written workspace files
            path.unlink(missing_ok=True)
            removed.append(path)
        # A partial download is resumable, but gc is the user asking for a clean cache: it goes
        # unless a fetch is writing it (that fetch holds the "downloads" lock of its file name).
        for path, _ in _entries(self.downloads):
            if path.suffix == ".part" and not self._is_locked("downloads", path.name[:-len(".part")]) or \
                    path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed


def _entries(folder: Path) -> list[tuple[Path, int]]:
    """A folder's entries with their lstat modes, sorted; none when it is not a folder (a link to one is not)."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return []
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    found = []
    for name in names:
        try:
            found.append((folder / name, os.lstat(folder / name).st_mode))
        except OSError:  # gone meanwhile
            pass
    return found


def _remove_tree(path: Path) -> None:
    """Remove a folder and what it holds, or a file or a link (itself: a link is never followed)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)   # rmtree itself never follows a link inside
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def disk_size(path: Path) -> int:
    """The bytes of the regular files under ``path`` (or of the file ``path``); links are not followed."""
    sizes = []
    for folder, _, files in [(path.parent, [], [path.name])] + list(os.walk(path)):  # walk never enters a link
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:  # gone meanwhile, or not ours to look at
                continue
            sizes.append(info.st_size if stat.S_ISREG(info.st_mode) else 0)
    return sum(sizes)


class DamagedArtifact(CifarError):
    def __init__(self, stage: str, key: str, reason: str):
        super().__init__(f"damaged artifact {stage}/{key}: {reason}")
        self.reason = reason


class UnreadableArtifact(WorkFailed):
    """Present but not ours to read (another user's, in a shared cache): not damaged, so never
    removed; the command stops here (exit 1)."""

    def __init__(self, stage: str, key: str, path: Path):
        super().__init__(f"cannot read {path}: permission denied",
                         hint="ask its owner for read access, or use a cache folder of your own")
        self.reason = f"cannot read {path.name}: permission denied"


class LinkInCache(CifarError):
    """A stage's folder is a link (or not a folder): the store never follows it."""

    def __init__(self, path: Path, kind: str):
        super().__init__(f"{path} is {kind}: the cache never follows links inside it",
                         hint="remove that link (its target is left alone), or run cifarcli cache clear")
        self.reason = f"{kind}; left alone"


class StaleArtifact(DamagedArtifact):
    """Whole and well-formed, but made from an input that has changed since."""

    def __init__(self, stage: str, key: str, reason: str):
        CifarError.__init__(self, f"{stage}/{key} {reason}")
        self.reason = f"stale: {reason}"
