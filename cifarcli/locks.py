"""Inter-process locks on files: ``fcntl.flock``, so the kernel releases a lock when its holder dies.

A killed process never blocks the others; the lock file itself stays, empty.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cifarcli.errors import disk_error


@contextmanager
def held(path: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold the exclusive lock on ``path`` (created if missing, never through a link);
    ``on_wait()`` is called once when another process holds it, before waiting for it."""
    try:
        handle = os.fdopen(
            os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666),
            "a+",
        )
    except OSError as exc:
        raise disk_error(exc, path.parent) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_held(path: Path) -> bool:
    """Whether another process holds the lock on ``path`` now (False when there is no such file)."""
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
