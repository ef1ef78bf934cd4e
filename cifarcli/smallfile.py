"""Opening files found on disk without trusting them: the one reader of small files, and of payloads.

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
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

SMALL_FILE_LIMIT = 1 << 20   # meta.json, workspace.json, a settings file: a few kB in practice
JSON_DEPTH_LIMIT = 32        # our JSON documents nest 6 deep; deeper ones would exhaust the stack later


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
