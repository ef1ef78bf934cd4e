"""The terminal around one command line: standard streams, signals, where output goes, and the error boundary.

Results go to stdout (rich renderables, or one JSON document with ``--json``);
progress, notices and the one red error line go to stderr. A broken or closed
stdout becomes one ``OutputFailed`` (or a silent ``StdoutGone`` when the reader
left), never a traceback. SIGTERM and SIGHUP stop a command as Ctrl-C does.
A ``CifarError`` is caught once, in ``CifarGroup.invoke``, and shown as one red
line with a hint, in the flags the user typed; exit code 2 for bad input or
usage, 1 for failed work, 130 when interrupted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from cifarcli.config import MIN_COLUMNS
from cifarcli.errors import CifarError, OutputFailed, StdoutGone, Terminated, interrupted
from cifarcli.options import as_typed

_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class _Console(Console):
    """A rich Console (soft-wrapped: a notice stays one line in logs) that leaves broken pipes to us.

    rich's own reaction to EPIPE is to point *stdout* at /dev/null and exit 1,
    whichever stream broke. Here a broken stdout raises (``write_stdout`` turns
    it into a silent exit), and a broken stderr just stops the notices.
    """

    def __init__(self, stderr: bool = False, quiet: bool = False):
        super().__init__(stderr=stderr, quiet=quiet, soft_wrap=True)
        self.width = max(self.width, MIN_COLUMNS)  # COLUMNS=0 or 5 must not squeeze the digits out of a table

    def on_broken_pipe(self) -> None:
        if not self.stderr:
            raise BrokenPipeError(32, "Broken pipe")
        self.quiet = True


class Output:
    """Where a command's output goes: stdout for results, stderr for everything else."""

    def __init__(self, as_json: bool = False, quiet: bool = False):
        self.as_json, self.quiet = as_json, quiet
        self.out = _Console()
        self.err = _Console(stderr=True, quiet=quiet)
        self.document: dict | None = None
        self.progress = None  # the live display (cli_setup.start), stopped before an error line is drawn

    def log(self, message: str) -> None:
        self.err.print(message, style="dim", markup=False, highlight=False)

    def result(self, document: dict, *renderables: Any) -> None:
        """Show a result: rendered now, or with --json kept so that one document is printed at the end."""
        if self.as_json:
            self.document = document
        else:
            for item in renderables:
                write_stdout(lambda item=item: self.out.print(item))

    def text(self, text: str) -> None:
        """Write ``text`` to stdout as it is (CSV, not a rendered table)."""
        write_stdout(lambda: (sys.stdout.write(text), sys.stdout.flush()))

    def flush(self) -> None:
        # Print the document once: `cifarcli cache ...` runs in a nested group, and each group flushes.
        if self.as_json and self.document is not None:
            document, self.document = self.document, None
            self.text(json.dumps(json_safe(document), indent=2, allow_nan=False, default=str) + "\n")

    def failed_in_part(self, message: str, hint: str, exit_code: int = 2) -> None:
        """Part of the work failed and said so on stderr: with --json, the document says so too."""
        if self.as_json:
            self.document = {**(self.document or {}), "exit_code": exit_code, "error": message, "hint": hint}
        self.flush()

    def fail(self, error: CifarError) -> None:
        if isinstance(error, StdoutGone):  # the reader left (`| head`): silence, as coreutils
            return
        if self.as_json and not isinstance(error, OutputFailed):  # stdout is dead after an OutputFailed
            # A gate failure keeps the measured numbers beside the error.
            self.document = {
                **(self.document or {}),
                "error": error.message,
                "hint": error.hint,
                "exit_code": error.exit_code,
            }
            try:
                self.flush()
            except OutputFailed:
                pass  # the error line below still says what went wrong
        if self.progress is not None:
            self.progress.close()  # else a bar still on screen would be redrawn below the error line
        # The error line is shown even with --quiet: a failure must never be silent.
        error_line(error.message, error.hint)


_current: Output | None = None  # the Output of the command line being run
_ARGS = "cifarcli.args"  # ctx.meta: the whole command line


def begin(as_json: bool, quiet: bool) -> Output:
    """The Output of the command that starts now (its failure is shown there too)."""
    global _current
    _current = Output(as_json, quiet)
    return _current


def _is_usage_error(error: Exception) -> bool:
    """A bad option or value found by the parser: click's UsageError protocol (Typer does not export the class)."""
    return getattr(error, "exit_code", None) == 2 and callable(getattr(error, "format_message", None))


class _FlagsWithoutType:
    """Help shows ``-h, --help`` as the flag it is, without a ``<bool>`` value type."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class CifarCommand(_FlagsWithoutType, TyperCommand):
    pass


class CifarGroup(_FlagsWithoutType, TyperGroup):
    """The CLI's one error boundary: every failure becomes one line (or one JSON document) and an exit code."""

    def parse_args(self, ctx, args):
        if ctx.parent is None:
            ctx.meta[_ARGS] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        global _current
        top = ctx.parent is None
        if top:  # a new command line (tests run many in one process)
            _current = None
        with command_line(top):
            try:
                result = super().invoke(ctx)
                if _current is not None:
                    _current.flush()
            except CifarError as error:
                _fail(error, ctx)
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (see command_line)
                ignore_signals()
                _fail(interrupted(exc), ctx)
            except OSError as exc:  # a file-system error no code path translated: still one line
                from cifarcli.errors import os_error

                _fail(os_error(exc), ctx)
            except Exception as error:
                if not _is_usage_error(error):
                    raise
                # A bad option or value: one line too, not click's usage box.
                where = _command_words(getattr(error, "ctx", None) or ctx)
                _fail(CifarError(error.format_message(), hint=" ".join(["see: cifarcli", *where, "--help"])), ctx)
        return result


def _command_words(ctx) -> list[str]:
    """The subcommand's words (``cache ls``), however the program was started (``python -m cifarcli``)."""
    words = []
    while ctx.parent is not None:
        words.insert(0, ctx.info_name)
        ctx = ctx.parent
    return words


def _fail(error: CifarError, ctx):
    """Show ``error``; before the command started (a bad option), --json on its command line still holds."""
    (_current or Output(as_json="--json" in ctx.meta.get(_ARGS, ()))).fail(as_typed(error))
    raise typer.Exit(error.exit_code) from None


def write_stdout(write) -> None:
    """Run ``write()`` (which writes the result to stdout); a failure becomes one OutputFailed.

    After a failure stdout is pointed at /dev/null, so that the interpreter's
    final flush of what is still buffered cannot print a traceback of its own.
    """
    if sys.stdout is None:  # started with stdout closed (`cifarcli ... >&-`)
        raise OutputFailed(
            "cannot write the result: stdout is closed", hint="redirect it to a file or /dev/null instead of closing it"
        )
    try:
        write()
    except BrokenPipeError:
        _stdout_to_devnull()
        raise StdoutGone("stdout was closed by its reader") from None
    except OSError as exc:
        _stdout_to_devnull()
        raise OutputFailed(
            f"cannot write the result to stdout: {exc.strerror or exc}",
            hint="stdout is full, closed or failing; redirect it elsewhere",
        ) from None


def _stdout_to_devnull() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (tests capture stdout in memory)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and ±inf floats as null (JSON has no NaN; a diverged run's history holds some)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def error_line(message: str, hint: str | None = None) -> None:
    """One red ``error:`` line on stderr, as ``Output.fail`` draws it, even with --quiet."""
    line = f"[bold red]error:[/] {escape(message)}"
    if hint:
        line += f" [dim]({escape(hint)})[/]"
    try:
        _Console(stderr=True).print(line, highlight=False)
    except (OSError, ValueError):  # stderr itself is gone (closed, hung up): the exit code still tells
        pass


@contextlib.contextmanager
def command_line(top: bool):
    """Around the outermost command: guarded standard streams, and SIGTERM/SIGHUP stopping it like Ctrl-C.

    Python's default for SIGTERM and SIGHUP is to die on the spot: no cleanup,
    no error line, and the joblib worker processes of ``report``/``sweep`` kept
    training. Raising ``Terminated`` (a KeyboardInterrupt) instead unwinds every
    stage as Ctrl-C does, and the parallel training stops its workers on it.
    The previous handlers are restored afterwards (tests run many commands in one process).
    """
    if not top or threading.current_thread() is not threading.main_thread():
        yield
        return
    _guard_streams()
    previous = {name: signal.getsignal(getattr(signal, name)) for name in _STOP_SIGNALS}
    for name in ("SIGTERM", "SIGHUP"):
        if previous[name] is not signal.SIG_IGN:  # `nohup cifarcli ...` asked for SIGHUP to be ignored
            signal.signal(getattr(signal, name), _terminate)
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler if handler is not None else signal.SIG_DFL)


def _terminate(signum, frame):
    raise Terminated(signum)


def ignore_signals() -> None:
    """A second signal while the error line is written must not print a traceback."""
    if threading.current_thread() is threading.main_thread():
        for name in _STOP_SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def _guard_streams() -> None:
    """Make the standard streams safe to use before anything is written.

    * A closed descriptor 0, 1 or 2 would be reused by the next file opened
      (a cache file would then receive the output, a worker process inherit
      it): it is plugged with /dev/null. ``sys.stdout`` stays None, so a
      result to print is then one error line (``Output``).
    * A stdout whose encoding cannot show a character (``PYTHONIOENCODING=ascii``
      and a λ in a table) shows ``?`` instead of raising: the result is still
      useful, and --json output is ASCII anyway (json.dumps escapes).
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            plug = os.open(os.devnull, os.O_RDWR)
            if plug != fd:
                os.dup2(plug, fd)
                os.close(plug)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")
