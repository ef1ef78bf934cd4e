"""A CIFAR-10 source as a file: what it may be, opening it safely, and its checksums.

A source is an http(s) address or a local path: an official archive (or a repackaged
copy) or an extracted batches folder. Local input is untrusted: devices, FIFOs, sockets
and files far larger than any CIFAR-10 copy are refused from their metadata, before a
byte is read.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cifarcli.batches import LAYOUTS
from cifarcli.errors import CifarError, human_size

_COPY_HINT = "give a CIFAR-10 archive or an extracted cifar-10-batches-* folder"
CHUNK = 1 << 20
MAX_MEMBER = 256 << 20  # an official batch is ~31 MB; refuse gzip bombs early


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

# The archives as published, and as Keras keeps its download (~/.keras/datasets/cifar-10-batches-py.tar.gz).
ARCHIVE_NAMES = ("cifar-10-binary.tar.gz", "cifar-10-python.tar.gz", "cifar-10-batches-py.tar.gz")


def is_url(source: str) -> bool:
    """True for an http:// or https:// address (anything else is a local path)."""
    return source.lower().startswith(("http://", "https://"))


def batches_folder(path: Path) -> tuple[Path, str]:
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
    folder, fmt = batches_folder(path)
    for name in LAYOUTS[fmt].required:
        if os.path.lexists(folder / name):
            _check_regular(folder / name, _stat(folder / name), MAX_MEMBER, "batch file")


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


def open_regular(path: Path, limit: int, what: str):
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


def _hashers() -> tuple:
    # md5 identifies the official archives; it is not used for security (FIPS builds care).
    return hashlib.md5(usedforsecurity=False), hashlib.sha256()


def _feed_file(path: Path, hashers, limit: int, what: str) -> None:
    with open_regular(path, limit, what) as f:
        while chunk := f.read(CHUNK):
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
            folder, fmt = batches_folder(path)
            for name in sorted(n for n in LAYOUTS[fmt].required if os.path.lexists(folder / n)):
                size = (folder / name).stat().st_size
                for h in hashers:
                    h.update(f"{name}\0{size}\0".encode())
                _feed_file(folder / name, hashers, MAX_MEMBER, "batch file")
        else:
            _feed_file(path, hashers, MAX_SOURCE_BYTES, "archive")
    except OSError as exc:
        raise CifarError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return hashers[0].hexdigest(), hashers[1].hexdigest()
