"""Files on disk: opened without trusting them (the one reader of small files, and of payloads),
listed and removed without following links, written atomically.

A file in the cache (or a settings file) may be a symbolic link to anywhere, a
FIFO that blocks ``open`` forever, a device such as /dev/zero that never ends,
or a sparse file of gigabytes. So, before anything is read: ``lstat`` (a link
inside the cache is never followed), then a non-blocking open without following
links, then ``fstat`` on the descriptor (a file swapped in between is caught),
and for a small file a size cap enforced on the bytes actually read.

Permission problems stay ``PermissionError``: unreadable is not damaged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, BinaryIO

from cifarcli.errors import disk_error

SMALL_FILE_LIMIT = 1 << 20  # meta.json, workspace.json, a settings file: a few kB in practice
JSON_DEPTH_LIMIT = 32  # our JSON documents nest 6 deep; deeper ones would exhaust the stack later
_CHUNK = 1 << 20


class UnsafeFile(Exception):
    """Not a regular file (a link, FIFO, device, folder), or larger than allowed: never read."""


def kind_of(mode: int) -> str:
    """In words, what kind of file an ``st_mode`` describes."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _require_regular(info: os.stat_result, limit: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(kind_of(info.st_mode))
    if limit is not None and info.st_size > limit:
        raise UnsafeFile(f"{info.st_size} bytes, more than the {limit} allowed")


def open_regular(path: Path, *, follow: bool = False, limit: int | None = None) -> BinaryIO:
    """``path`` opened for binary reading, when it is a regular file (of at most ``limit`` bytes).

    ``follow``: a link is followed (a path the user typed); otherwise a link is refused
    (a path found inside the cache). Raises ``UnsafeFile``, or ``OSError`` (a missing
    file, or ``PermissionError``).
    """
    _require_regular(os.stat(path) if follow else os.lstat(path), limit)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a link since the lstat
            raise UnsafeFile("a symbolic link") from None
        raise
    try:
        _require_regular(os.fstat(fd), limit)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_small(path: Path, *, follow: bool = False, limit: int = SMALL_FILE_LIMIT) -> bytes:
    """The bytes of a small regular file, never more than ``limit`` (a file growing while read is refused)."""
    with open_regular(path, follow=follow, limit=limit) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFile(f"more than the {limit} bytes allowed")
    return data


def read_json(path: Path, *, limit: int = SMALL_FILE_LIMIT) -> Any:
    """A small JSON file (never through a link), nested at most ``JSON_DEPTH_LIMIT`` deep.

    Raises ``UnsafeFile`` for a file that is not one, or a document that does not parse
    or nests too deep; ``OSError`` when it cannot be opened.
    """
    try:
        document = json.loads(read_small(path, limit=limit))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise UnsafeFile("not readable JSON") from None
    if depth(document) > JSON_DEPTH_LIMIT:
        raise UnsafeFile(f"JSON nested more than {JSON_DEPTH_LIMIT} deep")
    return document


def depth(value: Any) -> int:
    """How deep lists and dicts nest in ``value`` (0 for a scalar); iterative, so any depth is measured."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level + 1)
            todo.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(Path(path)) as handle:  # never through a link, never a FIFO or device
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    ``mode``: create the file with these permission bits less the umask, as ``open()`` does
    (for a file the user asked for, e.g. ``export --out``); None: 0600.
    The data goes first to ``.<name>.<pid>-<random>.tmp`` beside ``path``; the temporaries that a
    killed writer of the same ``path`` left there are removed first (their process is gone).
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temporaries(path)
        handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600 if mode is None else mode)
    except OSError as exc:
        raise disk_error(exc, path, len(data)) from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())  # whole on disk before its name is
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, path, len(data)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_dead_temporaries(path: Path) -> None:
    """Remove the ``write_atomic`` temporaries of ``path`` whose writer is gone (killed mid-write).

    Only regular files named as ``write_atomic`` names them, for this very ``path``, are touched;
    a temporary of a writer still running (or of another user's process) stays.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)-[0-9a-f]{{12}}\.tmp")
    for entry, mode in entries(path.parent):
        found = pattern.fullmatch(entry.name)
        if found and stat.S_ISREG(mode) and not process_alive(int(found.group(1))):
            entry.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without delivering anything)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # it exists, another user's
        pass
    return True


def entries(folder: Path) -> list[tuple[Path, int]]:
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


def remove_tree(path: Path) -> None:
    """Remove a folder and what it holds, or a file or a link (itself: a link is never followed)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)  # rmtree itself never follows a link inside
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
