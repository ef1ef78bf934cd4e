"""The one family of user-facing exceptions, caught once in the CLI.

A ``CifarError`` is shown as one red line (plus an optional hint), never as a
traceback. Its ``exit_code`` follows the CLI contract: 2 for bad input or
usage, 1 for work that was attempted and failed (network, divergence, gates).
"""

from __future__ import annotations

import errno
from pathlib import Path

# An error line quotes what the user gave, and a value can be megabytes (a 50 MB split name):
# longer texts keep their start and end. This module is the error family's own home for it.
MAX_ERROR_CHARS = 400


def clipped(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text``, or its start and end around a note of how much was left out."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 3
    return f"{text[:head]}…[{len(text) - head - tail} characters left out]…{text[-tail:]}"


def shown(value) -> str:
    """``repr(value)`` for an error line, bounded in length and depth (a value may nest 5000 deep)."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 3, 60, 60, 60
    try:
        return short.repr(value)
    except (ValueError, RecursionError):  # an int beyond Python's digit limit, a cycle reprlib missed
        return f"<{type(value).__name__}>"


class CifarError(Exception):
    """Bad input or bad usage: the user can fix it (exit code 2).

    The library never speaks in flags: a message or hint names a setting in
    backquotes (```seeds```), and ``setting`` names the one that fixes the error
    (``source``); the CLI turns both into its flags and command hints.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None, setting: str | None = None):
        message = clipped(message)
        super().__init__(message)
        self.message = message
        self.hint = None if hint is None else clipped(hint)
        self.setting = setting


class OptionError(CifarError):
    """A setting out of range, named by its field (``n_epochs``); the CLI shows it as ``--n-epochs``,
    a settings file as its key (exit code 2)."""

    def __init__(self, option: str, message: str, hint: str | None = None):
        super().__init__(message, hint, setting=option)
        self.option = option


class WorkFailed(CifarError):
    """The input was fine but the work failed (exit code 1)."""

    exit_code = 1


class GateFailed(WorkFailed):
    """A CI gate (``tol``, ``min_accuracy``) was not met (exit code 1)."""


class OutputFailed(WorkFailed):
    """The result could not be written to stdout (full disk, closed stream, I/O error): exit code 1."""


class StdoutGone(OutputFailed):
    """The reader of stdout went away (EPIPE, ``cifarcli ... | head``): silent, exit 141 as coreutils.

    141 is what a shell reports for a program killed by SIGPIPE (128 + 13), the
    coreutils' behaviour; Python ignores SIGPIPE, so this exit code says the same.
    """

    exit_code = 141


class Interrupted(CifarError):
    """Ctrl-C, SIGTERM or SIGHUP stopped the command (exit code 130); finished work is kept."""

    exit_code = 130


class Terminated(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM/SIGHUP handler, so those signals unwind like Ctrl-C.

    A KeyboardInterrupt, not an Exception: every ``except Exception`` on the way
    lets it through, and joblib stops its worker processes on it.
    """

    def __init__(self, signum: int):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name


def interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """The one line for Ctrl-C or a termination signal."""
    by = f" by {exc.signal_name}" if isinstance(exc, Terminated) else ""
    return Interrupted(f"interrupted{by}; finished work is kept", hint="rerun the same command to resume")


def human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)


def disk_error(exc: OSError, path, needed: int | None = None) -> CifarError:
    """Turn an OSError while writing ``path`` into one line the user can act on.

    No space: exit 1, naming the path and (when known) the bytes that write needed.
    Not allowed (permissions, read-only file system): exit 2, a bad choice of folder.
    """
    if exc.errno in _NO_SPACE:
        need = f"; about {human_size(needed)} needed" if needed else ""
        return WorkFailed(
            f"no space left writing {path}{need}",
            hint="free some disk space, or use `cache_dir` / `reports_dir` on another disk",
        )
    if exc.errno in _NOT_ALLOWED:
        return CifarError(
            f"cannot write to {path}: {exc.strerror}",
            hint="choose a folder you can write to with `cache_dir` / `reports_dir`",
        )
    if (
        exc.errno in (errno.ENOTDIR, errno.EEXIST)
        and path is not None
        and Path(path).exists()
        and not Path(path).is_dir()
    ):
        return CifarError(f"{path} is a file, not a folder", hint="give `cache_dir` / `reports_dir` a folder")
    return WorkFailed(f"cannot write {path}: {exc.strerror or exc}")


def os_error(exc: OSError) -> CifarError:
    """The one line for an OSError no code path translated (a last safety net, never a traceback)."""
    path = exc.filename if exc.filename is not None else "a file"
    if exc.errno in _NO_SPACE + _NOT_ALLOWED:
        return disk_error(exc, path)
    # A file where a folder is expected (e.g. the cache folder is a file): say which one.
    if exc.errno == errno.ENOTDIR:
        return CifarError(
            f"{path}: a file is in the way of a folder ({exc.strerror})",
            hint="give `cache_dir` / `reports_dir` a folder",
        )
    return WorkFailed(f"{path}: {exc.strerror or exc}")


def symlink_loop(path) -> bool:
    """True when ``path`` (or a folder on the way to it) is a loop of symbolic links."""
    try:
        Path(path).stat()
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False
