"""The one family of user-facing exceptions, caught once in the CLI.

A ``CifarError`` is shown as one red line (plus an optional hint), never as a
traceback. Its ``exit_code`` follows the CLI contract: 2 for bad input or
usage, 1 for work that was attempted and failed (network, divergence, gates).
"""

from __future__ import annotations


class CifarError(Exception):
    """Bad input or bad usage: the user can fix it (exit code 2)."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class WorkFailed(CifarError):
    """The input was fine but the work failed (exit code 1)."""

    exit_code = 1


class GateFailed(WorkFailed):
    """A CI gate (``--tol``, ``--min-accuracy``) was not met (exit code 1)."""
