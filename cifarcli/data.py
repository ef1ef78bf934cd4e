"""CIFAR-10 on disk and on the wire: the official formats, safe import, download.

Pure library code: no printing, no CLI. Every problem with the user's input is
raised as ``CifarError`` (exit 2), a network failure as ``WorkFailed`` (exit 1).
Input is untrusted: archives are read member by member in memory against an
allow-list (nothing is ever extracted to disk), and the pickled "python"
version is loaded with an unpickler that can only build numpy arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import socket
import ssl
import stat
import tarfile
import time
import unicodedata
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import numpy as np

from cifarcli import __version__
from cifarcli.errors import CifarError, WorkFailed, disk_error, human_size
from cifarcli.safe_pickle import UnsafePickle, load_batch_pickle

PIXELS = 3072  # 32 x 32 x 3, stored as 1024 R, 1024 G, 1024 B
RECORD = PIXELS + 1  # binary layout: one label byte, then the pixels
N_CLASSES = 10
TRAIN_BATCHES = 5

_COPY_HINT = "give a CIFAR-10 archive or an extracted cifar-10-batches-* folder"
_CHUNK = 1 << 20
_MAX_MEMBER = 256 << 20  # an official batch is ~31 MB; refuse gzip bombs early


@dataclass(frozen=True)
class OfficialArchive:
    """One of the two archives published at the CIFAR-10 home page."""

    format: str
    url: str
    md5: str
    size: int


OFFICIAL: dict[str, OfficialArchive] = {
    "binary": OfficialArchive(
        "binary",
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        "c32a1d4ab5d03f1284b67883e8d87530",
        170052171,
    ),
    "python": OfficialArchive(
        "python",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        170498071,
    ),
}

# No CIFAR-10 copy is larger: the official archives are 170 MB and an uncompressed .tar of
# either is under 190 MB. Four times the largest is generous for repackaged copies, yet
# refuses a huge file (or an HTTP body that never ends) before it is read, hashed or kept.
MAX_SOURCE_BYTES = 4 * max(archive.size for archive in OFFICIAL.values())


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
class _Layout:
    """File names of one official layout, inside its single top folder."""

    folder: str
    train: tuple[str, ...]
    test: str
    meta: str

    @property
    def required(self) -> tuple[str, ...]:
        return (*self.train, self.test, self.meta)


LAYOUTS = {
    "binary": _Layout(
        "cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin", "batches.meta.txt"
    ),
    "python": _Layout(
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"
    ),
}
_FORMAT_OF_FOLDER = {layout.folder: fmt for fmt, layout in LAYOUTS.items()}
# Official archives ship readme.html; repackaged copies (like the shared stand-in) readme.txt.
_IGNORED = frozenset({"readme.html", "readme.txt"})


# --------------------------------------------------------------------------- finding


def is_url(source: str) -> bool:
    """True for an http:// or https:// address (anything else is a local path)."""
    return source.lower().startswith(("http://", "https://"))


# The archives as published, and as Keras keeps its download (~/.keras/datasets/cifar-10-batches-py.tar.gz).
ARCHIVE_NAMES = ("cifar-10-binary.tar.gz", "cifar-10-python.tar.gz", "cifar-10-batches-py.tar.gz")


def _default_search_dirs() -> list[Path]:
    # ./data is torchvision's usual root= (it keeps cifar-10-python.tar.gz and cifar-10-batches-py/ there);
    # Keras downloads and extracts under ~/.keras/datasets.
    return [Path("Datasets"), Path("datasets"), Path("data"), Path.home() / ".keras" / "datasets"]


def _is_complete(folder: Path, layout: _Layout) -> bool:
    return all((folder / name).is_file() for name in layout.required)


def archive_in(folder: Path) -> Path | None:
    """The first CIFAR-10 archive, by its published (or Keras') name, in ``folder`` (a symlink to one is fine)."""
    return next((Path(folder) / name for name in ARCHIVE_NAMES if (Path(folder) / name).is_file()), None)


def holds_batches(folder: Path) -> bool:
    """True when ``folder`` is, or directly holds, a folder with any official batch file."""
    try:
        _batches_folder(Path(folder))
    except CifarError:
        return False
    return True


def find_local_copy(search_dirs: list[Path] | None = None) -> Path | None:
    """In each search folder in turn: a ``cifar-10-batches-bin/`` or ``-py/`` folder holding every
    batch file, else an archive by its usual name; None when no folder has either."""
    for base in _default_search_dirs() if search_dirs is None else search_dirs:
        for layout in LAYOUTS.values():
            folder = Path(base) / layout.folder
            if _is_complete(folder, layout):
                return folder
        archive = archive_in(base)
        if archive is not None:
            return archive
    return None


# --------------------------------------------------------------------------- checksums


def _hashers() -> tuple:
    # md5 identifies the official archives; it is not used for security (FIPS builds care).
    return hashlib.md5(usedforsecurity=False), hashlib.sha256()


def _feed_file(path: Path, hashers, limit: int, what: str) -> None:
    with _open_regular(path, limit, what) as f:
        while chunk := f.read(_CHUNK):
            for h in hashers:
                h.update(chunk)


def checksums(path: Path) -> tuple[str, str]:
    """(md5, sha256) hex digests of a file; of a CIFAR folder, a stable pair over its files.

    For a folder the digests cover, in sorted order, each official file's name,
    its length and its bytes, so renaming or reordering on disk changes nothing
    but any change of content does.
    """
    path = Path(path)
    hashers = _hashers()
    try:
        if path.is_dir():
            folder, fmt = _batches_folder(path)
            for name in sorted(n for n in LAYOUTS[fmt].required if os.path.lexists(folder / n)):
                size = (folder / name).stat().st_size
                for h in hashers:
                    h.update(f"{name}\0{size}\0".encode())
                _feed_file(folder / name, hashers, _MAX_MEMBER, "batch file")
        else:
            _feed_file(path, hashers, MAX_SOURCE_BYTES, "archive")
    except OSError as exc:
        raise CifarError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return hashers[0].hexdigest(), hashers[1].hexdigest()


def content_sha256(dataset: Cifar10) -> str:
    """The dataset's identity: sha256 of its decoded arrays and class names, whatever file they came from.

    Hashed in a fixed order (train pixels, train labels, test pixels, test labels, each
    C-ordered uint8, behind a header with their shapes; then the class names as JSON), so a
    binary archive, a python archive and either extracted folder of the same images agree.
    """
    digest = hashlib.sha256()
    arrays = [
        np.ascontiguousarray(a, dtype=np.uint8)
        for a in (dataset.train_x, dataset.train_y, dataset.test_x, dataset.test_y)
    ]
    digest.update(f"cifar10-content-1 {[a.shape for a in arrays]}\0".encode())
    for array in arrays:
        digest.update(memoryview(array).cast("B"))
    digest.update(json.dumps(list(dataset.label_names), ensure_ascii=False).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- reading


def read_cifar10(path: Path, on_member: Callable[[str], None] | None = None) -> tuple[Cifar10, str]:
    """Read an official archive (``.tar.gz``, any name) or an extracted batches folder.

    The format is told from the content: gzip/tar magic bytes and the member
    names, never the file name. Returns (dataset, 'binary' | 'python').
    ``on_member`` is told the name of each official file as it is read.
    """
    path = Path(path)
    if path.is_dir():
        folder, fmt = _batches_folder(path)
        files = _read_folder_files(folder, LAYOUTS[fmt], on_member)
        return _build(fmt, files, lambda name: str(folder / name)), fmt
    fmt, files = _read_archive(path, on_member)
    folder = LAYOUTS[fmt].folder
    return _build(fmt, files, lambda name: f"{path.name}:{folder}/{name}"), fmt


def _batches_folder(path: Path) -> tuple[Path, str]:
    """(folder holding the batch files, format) for a batches folder or its parent."""
    for candidate in (path, *(path / layout.folder for layout in LAYOUTS.values())):
        for fmt, layout in LAYOUTS.items():
            # lexists, not is_file: a FIFO or device under an official name is refused by name later.
            if any(os.path.lexists(candidate / name) for name in layout.required):
                return candidate, fmt
    raise CifarError(
        f"{path} holds no CIFAR-10 batch files and no archive named {', '.join(ARCHIVE_NAMES)}",
        hint="expected a cifar-10-batches-py/ or cifar-10-batches-bin/ folder, or an archive",
    )


def _read_folder_files(folder: Path, layout: _Layout, on_member=None) -> dict[str, bytes]:
    """Bytes of each official file present; missing ones are reported by ``_build``."""
    files = {}
    for name in layout.required:
        file = folder / name
        if not os.path.lexists(file):
            continue
        if on_member is not None:
            on_member(name)
        try:
            with _open_regular(file, _MAX_MEMBER, "batch file") as f:
                files[name] = f.read()
        except OSError as exc:
            raise CifarError(f"cannot read {file}: {exc.strerror or exc}") from exc
    return files


# --------------------------------------------------------------------------- local sources

# What a path can be besides a regular file or a folder; each would block or never end when read.
_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a non-regular ``st_mode`` is, for an error message: "a FIFO (named pipe)", ..."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return next((name for is_kind, name in _KINDS if is_kind(mode)), "not a regular file")


def check_source(path: Path) -> None:
    """Refuse, from file metadata alone, a local source that cannot be a CIFAR-10 copy.

    Called before anything is hashed or read: a device (``/dev/zero``), a FIFO or a
    socket would block or never end, and a file far larger than any CIFAR-10 archive
    would take minutes to hash only to be refused. For a folder, every official file
    in it must be a regular file (a symlink to one is fine) no larger than a batch can be.
    """
    path = Path(path)
    st = _stat(path)
    if not stat.S_ISDIR(st.st_mode):
        _check_regular(path, st, MAX_SOURCE_BYTES, "archive")
        return
    folder, fmt = _batches_folder(path)
    for name in LAYOUTS[fmt].required:
        if os.path.lexists(folder / name):
            _check_regular(folder / name, _stat(folder / name), _MAX_MEMBER, "batch file")


def _stat(path: Path) -> os.stat_result:
    """``os.stat`` (following symlinks) with its failure as one line."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise CifarError(f"no such file or folder: {path}", setting="source") from None
    except OSError as exc:
        raise CifarError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _check_regular(path: Path, st: os.stat_result, limit: int, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise CifarError(
            f"{path} is {file_kind(st.st_mode)}, not a CIFAR-10 {what}; refusing to read it", hint=_COPY_HINT
        )
    if st.st_size > limit:
        raise CifarError(
            f"{path} is {human_size(st.st_size)}, far larger than any CIFAR-10 {what} "
            f"(at most {human_size(limit)}); refusing to read it",
            hint=_COPY_HINT,
        )


def _open_regular(path: Path, limit: int, what: str):
    """Open ``path`` for reading only when it is a regular file of at most ``limit`` bytes.

    Checked twice: by ``stat`` first, so a device is never even opened (opening some has
    side effects), then on the open descriptor, so a file swapped in between is caught.
    O_NONBLOCK makes that open return at once even if a FIFO was swapped in.
    """
    path = Path(path)
    _check_regular(path, _stat(path), limit, what)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _check_regular(path, os.fstat(fd), limit, what)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _is_gzip(path: Path) -> bool:
    """True for gzip, False for a plain tar, from the magic bytes; anything else is refused."""
    try:
        with _open_regular(path, MAX_SOURCE_BYTES, "archive") as f:
            head = f.read(512)
    except OSError as exc:
        raise CifarError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not head:
        raise CifarError(f"{path} is empty", setting="source")
    if head.startswith(b"\x1f\x8b"):
        return True
    if head[257:262] == b"ustar":
        return False
    raise CifarError(
        f"{path} is not a CIFAR-10 archive (neither gzip nor tar)",
        hint="expected cifar-10-binary.tar.gz, cifar-10-python.tar.gz or an extracted folder",
    )


def _read_archive(path: Path, on_member=None) -> tuple[str, dict[str, bytes]]:
    """(format, official file name -> bytes), reading the tar stream once, in memory."""
    gzipped = _is_gzip(path)
    try:
        with _open_regular(path, MAX_SOURCE_BYTES, "archive") as raw:
            # GzipFile rather than tarfile's own "r|gz": it checks the CRC and length
            # at the end of the stream, so damaged bytes cannot pass as a short archive.
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            with stream, tarfile.open(fileobj=stream, mode="r|", bufsize=_CHUNK) as tar:
                fmt, files = _read_members(tar, path, on_member)
                if gzipped:
                    _drain(stream, path)
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise CifarError(f"{path.name}: damaged or truncated archive ({exc})", setting="source") from exc
    if fmt is None:
        raise CifarError(
            f"{path.name}: archive holds no cifar-10-batches-bin/ or cifar-10-batches-py/ folder",
            hint="expected cifar-10-binary.tar.gz or cifar-10-python.tar.gz",
        )
    return fmt, files


def _read_members(tar: tarfile.TarFile, path: Path, on_member=None) -> tuple[str | None, dict[str, bytes]]:
    """Allow-list and read every member of a tar stream: (format or None, file name -> bytes)."""
    fmt = None
    files: dict[str, bytes] = {}
    for info in tar:
        fmt, name = _check_member(info, fmt)
        if name is None:
            continue
        if name in files:
            raise CifarError(f"{path.name}: archive member {info.name!r} appears twice")
        if on_member is not None:
            on_member(name)
        files[name] = tar.extractfile(info).read()
    return fmt, files


def _drain(stream, path: Path) -> None:
    """Read past the tar's end marker to the gzip trailer (which verifies the CRC).

    Only the tar's zero padding belongs there; a long tail is refused rather
    than decompressed, in case it is a bomb.
    """
    tail = 0
    while chunk := stream.read(_CHUNK):
        tail += len(chunk)
        if tail > _CHUNK:
            raise CifarError(f"{path.name}: unexpected data after the end of the archive")


def _check_member(info: tarfile.TarInfo, fmt: str | None) -> tuple[str, str | None]:
    """Allow-list one tar member: (format, official file name or None to skip it).

    Only regular files with official names under exactly one official top
    folder pass (and that folder itself); anything else is refused by name.
    """
    name = info.name
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts:
        raise CifarError(f"archive member {name!r} points outside the archive folder; refusing it")
    for is_kind, kind in ((info.issym, "a symlink"), (info.islnk, "a hard link"), (info.isdev, "a device or fifo")):
        if is_kind():
            raise CifarError(f"archive member {name!r} is {kind}; refusing it")
    member_fmt = _FORMAT_OF_FOLDER.get(parts[0]) if parts else None
    if member_fmt is None or len(parts) > 2 or (fmt is not None and member_fmt != fmt):
        raise CifarError(f"unexpected archive member {name!r} (not part of one CIFAR-10 folder)")
    if len(parts) == 1:
        if not info.isdir():
            raise CifarError(f"unexpected archive member {name!r} (not a folder)")
        return member_fmt, None
    file = parts[1]
    if not info.isreg() or (file not in LAYOUTS[member_fmt].required and file not in _IGNORED):
        raise CifarError(f"unexpected archive member {name!r} (not a CIFAR-10 file)")
    if info.size > _MAX_MEMBER:
        raise CifarError(f"archive member {name!r} is {info.size} bytes, far larger than a CIFAR-10 batch")
    return member_fmt, (None if file in _IGNORED else file)


def _build(fmt: str, files: Mapping[str, bytes], where: Callable[[str], str]) -> Cifar10:
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


# --------------------------------------------------------------------------- download


class _Transient(Exception):
    """A failure worth retrying (timeouts, cut connections, 5xx)."""


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urlsplit(req.full_url).scheme, urlsplit(newurl).scheme
        if new not in ("http", "https") or (old == "https" and new != "https"):
            fp.close()
            raise CifarError(
                f"refusing redirect from {req.full_url} to {newurl} (insecure or not HTTP)", setting="source"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _with_read_timeout(connection_class, read_timeout: float):
    """Connection factory: connect with urlopen's timeout, then wait ``read_timeout`` per read."""

    class Connection(connection_class):
        def connect(self):
            super().connect()
            self.sock.settimeout(read_timeout)

    return Connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float):
        super().__init__()
        self._connection = _with_read_timeout(http.client.HTTPConnection, read_timeout)

    def http_open(self, req):
        return self.do_open(self._connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float):
        super().__init__(context=ssl.create_default_context())
        self._connection = _with_read_timeout(http.client.HTTPSConnection, read_timeout)

    def https_open(self, req):
        return self.do_open(self._connection, req, context=self._context)


def download(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    expected_size: int | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    connect_timeout: float = 10,
    read_timeout: float = 60,
    retries: int = 4,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming, retrying and verifying.

    Nothing is ever left under ``dest`` unless its size and checksums (when
    given) match. A ``.part`` left by an interrupted run is resumed with an
    HTTP Range request. Transient failures are retried ``retries`` times with
    exponential back-off (an attempt that grew the file starts a fresh count).
    """
    if not is_url(url):
        raise CifarError(f"not an http(s) URL: {url}")
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, dest.parent, expected_size) from None
    opener = urllib.request.build_opener(_RedirectHandler, _HTTPHandler(read_timeout), _HTTPSHandler(read_timeout))
    failures = 0
    while True:
        before = _size(part)
        try:
            _fetch(opener, url, part, expected_size, on_progress, connect_timeout)
            break
        except _Transient as exc:
            failures = 1 if _size(part) > before else failures + 1
            if failures > retries:
                raise WorkFailed(
                    f"cannot download {url}: {exc} (gave up after {retries} retries)", setting="source"
                ) from exc
            time.sleep(backoff * 2 ** (failures - 1))
    _verify(url, part, md5, sha256, expected_size)
    os.replace(part, dest)
    return dest


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _fetch(
    opener,
    url: str,
    part: Path,
    expected_size: int | None,
    on_progress: Callable[[int, int | None], None] | None,
    timeout: float,
) -> None:
    """One attempt: append the rest of ``url`` to ``part`` (or rewrite it when the server restarts)."""
    offset = _size(part)
    if expected_size is not None and offset >= expected_size:
        if offset == expected_size:
            return  # an earlier run got every byte; verification decides
        offset = _discard(part)
    if offset > MAX_SOURCE_BYTES:  # grown past the cap (by an older version): no CIFAR-10 copy to resume
        offset = _discard(part)
    response, offset = _open(opener, url, part, offset, timeout)
    with response:
        total = _total_size(response, offset) or expected_size
        _check_response(url, part, response, total, expected_size)
        if on_progress:
            on_progress(offset, total)
        try:
            out = open(part, "ab" if offset else "wb")
        except OSError as exc:
            raise disk_error(exc, part, total - offset if total else None) from None
        with out:
            _stream(url, part, response, out, offset, total, expected_size, on_progress)


def _open(opener, url: str, part: Path, offset: int, timeout: float):
    """(response, offset to write at): resume from ``offset`` if the server honours the Range."""
    headers = {"User-Agent": f"cifarcli/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            # Our .part no longer fits the file on the server: start over.
            return _open(opener, url, part, _discard(part), timeout)
        raise _network_error(url, exc) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(url, exc) from exc
    if response.status != 206:
        return response, 0  # 200: the server ignored Range and sends the whole file
    if offset and _range_start(response) == offset:
        return response, offset
    response.close()
    _discard(part)
    raise _Transient("server answered with a range we did not ask for; starting over")


def _discard(part: Path) -> int:
    part.unlink(missing_ok=True)
    return 0


def _range_start(response) -> int | None:
    """Start offset of a ``Content-Range: bytes START-END/TOTAL`` header."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _total_size(response, offset: int) -> int | None:
    """Full file size: the total of a Content-Range, else offset + Content-Length."""
    if response.status == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length", "")
    return offset + int(length) if length.isdigit() else None


def _check_response(url: str, part: Path, response, total: int | None, expected_size: int | None) -> None:
    """Refuse, before reading the body, a web page or a file of the wrong size."""
    if response.headers.get_content_type() == "text/html":
        _discard(part)
        raise _html_error(url)
    if expected_size is not None and total is not None and total != expected_size:
        _discard(part)
        raise CifarError(f"{url} is {total} bytes, expected {expected_size}", setting="source")
    if total is not None and total > MAX_SOURCE_BYTES:
        _discard(part)
        raise CifarError(
            f"{url} is {human_size(total)}, far larger than any CIFAR-10 archive "
            f"(at most {human_size(MAX_SOURCE_BYTES)}); not downloading it",
            setting="source",
        )


def _html_error(url: str) -> CifarError:
    return CifarError(
        f"{url} served a web page instead of the archive",
        hint="the address may lead to a landing or login page",
        setting="source",
    )


def _stream(url, part, response, out, offset, total, expected_size, on_progress) -> None:
    """Copy the body to ``out`` chunk by chunk; network trouble becomes ``_Transient``."""
    first = offset == 0
    # The official size when known; else the cap. A Content-Length is enforced by http.client,
    # but a body without one (or chunked) could otherwise grow the .part until the disk is full.
    limit = expected_size if expected_size is not None else MAX_SOURCE_BYTES
    while True:
        try:
            chunk = response.read(_CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(_describe(exc)) from exc
        if not chunk:
            break
        if first and _looks_like_html(chunk):
            out.close()
            _discard(part)
            raise _html_error(url)
        first = False
        if offset + len(chunk) > limit:  # checked before writing: the .part never exceeds the limit
            out.close()
            _discard(part)
            raise _too_long(url, expected_size)
        try:
            out.write(chunk)
            if total is not None and offset + len(chunk) >= total:
                out.flush()  # a full disk shows here, not in the close after the loop
        except OSError as exc:
            raise disk_error(exc, part, total - offset if total else None) from None
        offset += len(chunk)
        if on_progress:
            on_progress(offset, total)
    # http.client returns b"" rather than raising when a body stops short of its length.
    if total is not None and offset < total:
        raise _Transient(f"connection closed after {offset} of {total} bytes")


def _too_long(url: str, expected_size: int | None) -> CifarError:
    if expected_size is not None:
        return CifarError(f"{url} sent more than the expected {expected_size} bytes", setting="source")
    return CifarError(
        f"{url} sent more than {human_size(MAX_SOURCE_BYTES)}, more than any CIFAR-10 archive; "
        "stopped and removed the partial download",
        setting="source",
    )


def _looks_like_html(chunk: bytes) -> bool:
    # Some hosts answer a missing file with a 200 page labelled application/octet-stream.
    return chunk[:512].lstrip().lower().startswith((b"<!doctype", b"<html"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed mid-download"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    return str(exc) or type(exc).__name__


def _network_error(url: str, exc: BaseException) -> Exception:
    """Classify a failure to get a response: ``_Transient`` to retry, else ``WorkFailed``."""
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code in (408, 429) or exc.code >= 500:
            return _Transient(f"HTTP {exc.code} {exc.reason}")
        if 300 <= exc.code < 400:
            return WorkFailed(f"cannot download {url}: too many redirects", setting="source")
        return WorkFailed(f"cannot download {url}: HTTP {exc.code} {exc.reason}", setting="source")
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(
        reason,
        (
            TimeoutError,
            socket.timeout,
            ConnectionResetError,
            ConnectionAbortedError,
            BrokenPipeError,
            http.client.HTTPException,
        ),
    ):
        return _Transient(_describe(reason))
    if isinstance(reason, socket.gaierror):
        return WorkFailed(f"cannot download {url}: host not found", setting="source")
    if isinstance(reason, ConnectionRefusedError):
        return WorkFailed(f"cannot download {url}: connection refused", setting="source")
    return WorkFailed(f"cannot download {url}: {reason}", setting="source")


def _verify(url: str, part: Path, md5: str | None, sha256: str | None, expected_size: int | None) -> None:
    """Check size and checksums of the finished ``.part``; delete it when they do not match."""
    size = _size(part)
    if expected_size is not None and size != expected_size:
        _discard(part)
        raise CifarError(f"{url} gave {size} bytes, expected {expected_size}", setting="source")
    if md5 is None and sha256 is None:
        return
    got_md5, got_sha256 = checksums(part)
    for kind, want, got in (("md5", md5, got_md5), ("sha256", sha256, got_sha256)):
        if want is not None and want.lower() != got:
            _discard(part)
            raise CifarError(
                f"checksum mismatch for {url}: expected {kind} {want.lower()}, got {got}",
                hint="the download is damaged or the file changed; retry",
                setting="source",
            )
