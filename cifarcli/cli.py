"""The command line: parse options, call one pipeline function, render the result.

No math and no file formats here. Results go to stdout (a rich table, or one
JSON document with ``--json``); progress and notices go to stderr. A
``CifarError`` is caught once, in ``CifarGroup.invoke``, and shown as one red
line with a hint; exit code 2 for bad input or usage, 1 for failed work.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from cifarcli.config import GRADCHECK_DEFAULTS, GRADCHECK_TOL, GRID, STAGE_NAMES, TRAIN_DEFAULTS, GradcheckConfig, TrainConfig, \
    train_fields
from cifarcli.errors import CifarError, GateFailed, OptionError, OutputFailed, StdoutGone, Terminated, interrupted

_output: "Output | None" = None


# Typer exports BadParameter but not its base, click's UsageError (which Typer now vendors).
UsageError = typer.BadParameter.__bases__[0]


class CifarGroup(TyperGroup):
    """The CLI's one error boundary: every failure becomes one line (or one JSON document) and an exit code."""

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            tidy_help(command, ctx)
        return command

    def format_help(self, ctx, formatter):
        tidy_help(self, ctx)
        return super().format_help(ctx, formatter)

    def invoke(self, ctx):
        global _output
        top = ctx.parent is None
        if top:  # a new command line (tests run many in one process)
            _output = None
        args = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # what the subcommand will parse
        with _command_line(top):
            try:
                result = super().invoke(ctx)
                if _output is not None:
                    _output.flush()
            except UsageError as error:  # a bad option or value: one line too, not click's usage box
                command = ctx.command_path.split()[1:] + [name for name in args[:1] if name in self.list_commands(ctx)]
                error = CifarError(error.format_message(), hint=" ".join(["see: cifarcli", *command, "--help"]))
                _fail(error, Output(as_json="--json" in args))
            except OptionError as error:  # the library names the setting; here it is the flag the user typed
                _fail(CifarError(f"{flag_of(error.option)}: {error.message}", error.hint))
            except CifarError as error:
                _fail(error)
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (see _command_line)
                _ignore_signals()  # a second signal while the line is written must not print a traceback
                _fail(interrupted(exc))
            except OSError as exc:  # a file-system error no code path translated: still one line
                from cifarcli.errors import os_error

                _fail(os_error(exc))
        return result


# The help panels every command groups its options into, by parameter name. Every other
# training setting (TrainConfig's fields, newer ones included) goes into BEYOND.
STUDY, BEYOND, OUTPUT = "The study", "Beyond the study", "Output and cache"
STUDY_OPTIONS = ("lam", "eta", "n_epochs", "n_batch", "seed", "split", "val_size", "dtype")
OUTPUT_OPTIONS = ("cache_dir", "reports_dir", "force", "as_json", "quiet", "jobs")


def tidy_help(command, ctx) -> None:
    """Group a command's options into the three panels, and show flags without a value type.

    Typer's rich help prints ``<bool>`` after every flag (``--force``, ``--shuffle/--no-shuffle``,
    ``--help``), as if it took a value; an empty metavar leaves its type column blank.
    """
    for param in [*command.params, command.get_help_option(ctx)]:
        if param is None or getattr(param, "param_type_name", None) != "option":
            continue
        if param.is_flag and param.metavar is None:
            param.metavar = ""
        if getattr(param, "rich_help_panel", None) is None:
            param.rich_help_panel = (STUDY if param.name in STUDY_OPTIONS else OUTPUT if param.name in OUTPUT_OPTIONS
                                     else BEYOND if param.name in train_fields() else None)


def examples(*lines: str) -> str:
    """A command's help epilog: 2–3 real command lines (rich help keeps paragraphs, so one per paragraph)."""
    return "\n\n".join(["Examples:", *(f"  {line}" for line in lines)])


def _version(value: bool) -> None:
    if value:
        from cifarcli import __version__

        print(f"cifarcli {__version__}")
        raise typer.Exit(0)


# Settings whose flag is not their field name with dashes.
_FLAGS = {"lams": "--lam"}


def flag_of(option: str) -> str:
    """The command-line flag of a setting: ``n_epochs`` -> ``--n-epochs``."""
    return _FLAGS.get(option, "--" + option.replace("_", "-"))


def _fail(error: CifarError, output: "Output | None" = None):
    (output or _output or Output()).fail(error)
    raise typer.Exit(error.exit_code) from None


_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


@contextlib.contextmanager
def _command_line(top: bool):
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


def _ignore_signals() -> None:
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


HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}   # inherited by every subcommand's context
app = typer.Typer(cls=CifarGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  context_settings=HELP_OPTIONS,
                  help="Reproduce the one-layer softmax network on CIFAR-10, end to end, with every stage cached.",
                  epilog=examples("cifarcli report                # the whole study → reports/report.html",
                                  "cifarcli fetch --source cifar-10-binary.tar.gz   # offline: import a copy",
                                  "cifarcli runs                  # compare the runs you trained"))
cache_app = typer.Typer(cls=CifarGroup, no_args_is_help=True, help="Inspect and prune the artifact cache.",
                        context_settings=HELP_OPTIONS)
app.add_typer(cache_app, name="cache")


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


class Output:
    """Where a command's output goes: stdout for results, stderr for everything else."""

    def __init__(self, as_json: bool = False, quiet: bool = False):
        self.as_json, self.quiet = as_json, quiet
        self.out = _console()
        self.err = _console(stderr=True, quiet=quiet)
        self.document: dict | None = None

    def log(self, message: str) -> None:
        self.err.print(message, style="dim", markup=False, highlight=False)

    def result(self, document: dict, *renderables: Any) -> None:
        """Show a result: rendered now, or with --json kept so that one document is printed at the end."""
        if self.as_json:
            self.document = document
        else:
            for item in renderables:
                _write_stdout(lambda: self.out.print(item))

    def flush(self) -> None:
        # Print the document once: `cifarcli cache ...` runs in a nested group, and each group flushes.
        if self.as_json and self.document is not None:
            document, self.document = self.document, None
            text = json.dumps(_json_safe(document), indent=2, allow_nan=False, default=str) + "\n"
            _write_stdout(lambda: (sys.stdout.write(text), sys.stdout.flush()))

    def fail(self, error: CifarError) -> None:
        if isinstance(error, StdoutGone):  # the reader left (`| head`): silence, as coreutils
            return
        if self.as_json and not isinstance(error, OutputFailed):  # stdout is dead after an OutputFailed
            # A gate failure keeps the measured numbers beside the error.
            self.document = {**(self.document or {}), "error": error.message, "hint": error.hint,
                             "exit_code": error.exit_code}
            try:
                self.flush()
            except OutputFailed:
                pass  # the error line below still says what went wrong
        # The error line is shown even with --quiet: a failure must never be silent.
        _error_line(error.message, error.hint)


def _console(stderr: bool = False, quiet: bool = False):
    """A rich Console (soft-wrapped: a notice stays one line in logs) that leaves broken pipes to us.

    rich's own reaction to EPIPE is to point *stdout* at /dev/null and exit 1,
    whichever stream broke. Here a broken stdout raises (``_write_stdout``
    turns it into a silent exit), and a broken stderr just stops the notices.
    """
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            if not stderr:
                raise BrokenPipeError(32, "Broken pipe")
            self.quiet = True

    return _Console(stderr=stderr, quiet=quiet, soft_wrap=True)


def _write_stdout(write) -> None:
    """Run ``write()`` (which writes the result to stdout); a failure becomes one OutputFailed.

    After a failure stdout is pointed at /dev/null, so that the interpreter's
    final flush of what is still buffered cannot print a traceback of its own.
    """
    if sys.stdout is None:  # started with stdout closed (`cifarcli ... >&-`)
        raise OutputFailed("cannot write the result: stdout is closed",
                           hint="redirect it to a file or /dev/null instead of closing it")
    try:
        write()
    except BrokenPipeError:
        _stdout_to_devnull()
        raise StdoutGone("stdout was closed by its reader") from None
    except OSError as exc:
        _stdout_to_devnull()
        raise OutputFailed(f"cannot write the result to stdout: {exc.strerror or exc}",
                           hint="stdout is full, closed or failing; redirect it elsewhere") from None


def _stdout_to_devnull() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (tests capture stdout in memory)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and ±inf floats as null (JSON has no NaN; a diverged run's history holds some)."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _error_line(message: str, hint: str | None = None) -> None:
    """One red ``error:`` line on stderr, as ``Output.fail`` draws it, even with --quiet."""
    line = f"[bold red]error:[/] {_escape(message)}"
    if hint:
        line += f" [dim]({_escape(hint)})[/]"
    try:
        _console(stderr=True).print(line, highlight=False)
    except (OSError, ValueError):  # stderr itself is gone (closed, hung up): the exit code still tells
        pass


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _start(as_json: bool, quiet: bool, cache_dir: Path, reports_dir: Path = Path("reports"), jobs: int = 1):
    """Set up output and the workspace for one command."""
    global _output
    from cifarcli import views
    from cifarcli.stages import Workspace

    _output = Output(as_json, quiet)
    for option, folder in (("--cache-dir", cache_dir), ("--reports-dir", reports_dir)):
        if folder.exists() and not folder.is_dir():
            raise CifarError(f"{option} {folder} is a file, not a folder", hint=f"give {option} a folder")
    progress = views.progress_for(_output.err)
    return _output, Workspace(cache_dir, reports_dir, log=_output.log, progress=progress, jobs=jobs)


# -- shared options ------------------------------------------------------------

T, G = TRAIN_DEFAULTS, GRADCHECK_DEFAULTS   # every default is config's

CacheDir = Annotated[Path, typer.Option("--cache-dir", envvar="CIFARCLI_CACHE_DIR", help="Artifact cache folder.")]
ReportsDir = Annotated[Path, typer.Option("--reports-dir", help="Folder for figures and reports.")]
Force = Annotated[bool, typer.Option("--force", help="Recompute this stage even when it is cached.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notices on stderr.")]

Lam = Annotated[float, typer.Option("--lam", help="L2 penalty λ on W.")]
Eta = Annotated[float, typer.Option("--eta", help="Learning rate η.")]
Epochs = Annotated[int, typer.Option("--n-epochs", help="Passes over the training split.")]
Batch = Annotated[int, typer.Option("--n-batch", help="Images per mini-batch.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the weight initialisation.")]
Split = Annotated[str, typer.Option("--split", help="seed (batch 1, 80/20), dd2424 (batch 1 / batch 2) or full.")]
ValSize = Annotated[int, typer.Option("--val-size", help="Validation images with --split full.")]
Dtype = Annotated[str, typer.Option("--dtype", help="float32 or float64.")]
RunId = Annotated[Optional[str], typer.Option("--run", help="Use this run ID (or a unique prefix) instead of the training options.")]
# Beyond the study (all off by default; a run ID changes only when one is set):
Shuffle = Annotated[bool, typer.Option("--shuffle/--no-shuffle", help="Visit the training images in a new seeded order every epoch.")]
Flip = Annotated[float, typer.Option("--flip", metavar="P", help="Mirror each training image left-right with probability P every epoch (0: off).")]
DecayEvery = Annotated[int, typer.Option("--decay-every", metavar="K", help="Step decay: multiply η by --decay-factor every K epochs (0: off).")]
DecayFactor = Annotated[float, typer.Option("--decay-factor", metavar="F", help="Step-decay factor in (0, 1], e.g. 0.1.")]
Init = Annotated[str, typer.Option("--init", help="Initialisation: normal (N(0, 0.01²), the study) or xavier (N(0, 1/d)).")]
Patience = Annotated[int, typer.Option("--patience", metavar="P", help="Early stopping: stop when validation accuracy has not improved for P epochs (0: off).")]
Keep = Annotated[str, typer.Option("--keep", help="Weights to keep: last (the last epoch's) or best (the epoch with the highest validation accuracy; ties: the earliest).")]
Loss = Annotated[str, typer.Option("--loss", help="softmax (cross-entropy), bce (multiple binary cross-entropy, sigmoid outputs) or svm (multi-class hinge loss, margin 1; scores, no probabilities).")]


def _config(options: dict) -> TrainConfig:
    """The TrainConfig of a command's training options: pass it the command's ``locals()``.

    Every command taking training options declares them with the aliases above
    under TrainConfig's field names; other locals (cache_dir, force, ...) are ignored.
    """
    return TrainConfig(**{name: options[name] for name in train_fields() if name in options})


def _run(ws, run_id, config):
    from cifarcli import stages

    # `--run ""` (an unset shell variable) is an error, not a silent 40-epoch training run.
    return stages.find_run(ws, run_id) if run_id is not None else stages.train(ws, config)


# -- commands --------------------------------------------------------------------


@app.command(epilog=examples("cifarcli fetch                     # a local copy, else download",
                               "cifarcli fetch --source cifar-10-binary.tar.gz",
                               "cifarcli fetch --format python --json"))
def fetch(
    source: Annotated[Optional[str], typer.Option("--source", help="URL, archive or extracted cifar-10-batches-* folder.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Archive to download when no source is given: binary or python.")] = "binary",
    md5: Annotated[Optional[str], typer.Option("--md5", help="Expected md5 of the source.")] = None,
    sha256: Annotated[Optional[str], typer.Option("--sha256", help="Expected sha256 of the source.")] = None,
    cache_dir: CacheDir = Path("cache"), force: Force = False, as_json: Json = False, quiet: Quiet = False,
):
    """Obtain CIFAR-10: import a copy you have, find one in the usual places, or download it."""
    from cifarcli import stages, views

    out, ws = _start(as_json, quiet, cache_dir)
    artifact = stages.fetch(ws, source, fmt, md5, sha256, force)
    out.result(views.dataset_json(artifact), *views.dataset_view(artifact))


@app.command(epilog=examples("cifarcli gradcheck                 # verdict against 1e-06",
                               "cifarcli gradcheck --tol 1e-6        # CI gate: exit 1 above it",
                               "cifarcli gradcheck --n-samples 20 --n-dims 100 --lam 0.5 --loss bce"))
def gradcheck(
    n_samples: Annotated[int, typer.Option("--n-samples", help="Training images in the batch.")] = G.n_samples,
    n_dims: Annotated[Optional[int], typer.Option("--n-dims", help="Use only the first D input dimensions (default: all).")] = G.n_dims,
    lam: Annotated[Optional[list[float]], typer.Option("--lam", help="λ to check (repeatable; default 0 and 0.1).")] = None,
    h: Annotated[float, typer.Option("--h", help="Finite-difference step.")] = G.h,
    tol: Annotated[Optional[float], typer.Option("--tol", help=f"Gate: exit 1 when the max relative error exceeds it (the verdict uses {GRADCHECK_TOL:g} without it).")] = None,
    seed: Seed = G.seed,
    loss: Annotated[str, typer.Option("--loss", help="Check the gradients of softmax (cross-entropy), bce (multiple binary cross-entropy) or svm (hinge; parameters within h of a kink are counted and left out of the verdict).")] = G.loss,
    cache_dir: CacheDir = Path("cache"), force: Force = False, as_json: Json = False, quiet: Quiet = False,
):
    """Compare analytic and numerical gradients for every parameter of W and b."""
    from cifarcli import stages, views

    out, ws = _start(as_json, quiet, cache_dir)
    if tol is not None and not (math.isfinite(tol) and tol >= 0):  # `worst > nan` is never true: a silent pass
        raise OptionError("tol", f"must be a finite number >= 0, got {tol}", hint="CI uses --tol 1e-6")
    config = GradcheckConfig(n_samples, n_dims, tuple(lam) if lam else G.lams, h, seed, loss).validate()
    artifact = stages.gradcheck(ws, config, force)
    out.result(views.gradcheck_json(artifact, tol), *views.gradcheck_view(artifact, tol),
               views.gradcheck_verdict(artifact, GRADCHECK_TOL if tol is None else tol))
    worst = artifact.payload["max_error"]
    if tol is not None and not worst <= tol:  # a NaN error fails the gate too
        raise GateFailed(f"gradient check failed: max relative error {worst:.2e} exceeds --tol {tol:g}")


@app.command(epilog=examples("cifarcli train --lam 0.1 --eta 0.001    # the study's best setting",
                               "cifarcli train --lam 0 --eta 0.1 --n-epochs 40 --json",
                               "cifarcli train --split full --shuffle --flip 0.5 --decay-every 10 --decay-factor 0.3"))
def train(
    lam: Lam = T.lam, eta: Eta = T.eta, n_epochs: Epochs = T.n_epochs, n_batch: Batch = T.n_batch, seed: Seed = T.seed,
    split: Split = T.split, val_size: ValSize = T.val_size, dtype: Dtype = T.dtype,
    shuffle: Shuffle = T.shuffle, flip: Flip = T.flip, decay_every: DecayEvery = T.decay_every,
    decay_factor: DecayFactor = T.decay_factor, init: Init = T.init, loss: Loss = T.loss,
    patience: Patience = T.patience, keep: Keep = T.keep,
    cache_dir: CacheDir = Path("cache"), force: Force = False, as_json: Json = False, quiet: Quiet = False,
):
    """Train one configuration with mini-batch gradient descent (resumes an interrupted run)."""
    from cifarcli import stages, views

    out, ws = _start(as_json, quiet, cache_dir)
    run = stages.train(ws, _config(locals()), force)
    out.result(views.run_json(run), *views.run_view(run))
    stages.require_converged(run)


@app.command(epilog=examples("cifarcli evaluate --lam 0.1 --eta 0.001",
                               "cifarcli evaluate --run 51a620ab --min-accuracy 0.38   # CI gate",
                               "cifarcli evaluate --lam 1 --eta 0.001 --json"))
def evaluate(
    lam: Lam = T.lam, eta: Eta = T.eta, n_epochs: Epochs = T.n_epochs, n_batch: Batch = T.n_batch, seed: Seed = T.seed,
    split: Split = T.split, val_size: ValSize = T.val_size, dtype: Dtype = T.dtype, run_id: RunId = None,
    shuffle: Shuffle = T.shuffle, flip: Flip = T.flip, decay_every: DecayEvery = T.decay_every,
    decay_factor: DecayFactor = T.decay_factor, init: Init = T.init, loss: Loss = T.loss,
    patience: Patience = T.patience, keep: Keep = T.keep,
    min_accuracy: Annotated[Optional[float], typer.Option("--min-accuracy", help="Gate: exit 1 when test accuracy is below it.")] = None,
    cache_dir: CacheDir = Path("cache"), force: Force = False, as_json: Json = False, quiet: Quiet = False,
):
    """Loss, cost and accuracy on train/validation/test, per-class accuracy, confusion matrix."""
    from cifarcli import stages, views

    out, ws = _start(as_json, quiet, cache_dir)
    if min_accuracy is not None and not math.isfinite(min_accuracy):  # `accuracy < nan` never fails the gate
        raise OptionError("min_accuracy", f"must be a finite number, got {min_accuracy}", hint="e.g. --min-accuracy 0.38")
    run = _run(ws, run_id, _config(locals()))
    metrics = stages.evaluate(ws, run, force)
    out.result(views.metrics_json(run, metrics, min_accuracy), *views.metrics_view(run, metrics))
    accuracy = metrics.payload["test"]["accuracy"]
    if min_accuracy is not None and accuracy < min_accuracy:
        raise GateFailed(f"test accuracy {accuracy:.4f} is below --min-accuracy {min_accuracy:g}")


@app.command(epilog=examples("cifarcli plot --lam 0.1 --eta 0.001   # → reports/figures/<run id>/",
                               "cifarcli plot --run 51a620ab --reports-dir out"))
def plot(
    lam: Lam = T.lam, eta: Eta = T.eta, n_epochs: Epochs = T.n_epochs, n_batch: Batch = T.n_batch, seed: Seed = T.seed,
    split: Split = T.split, val_size: ValSize = T.val_size, dtype: Dtype = T.dtype, run_id: RunId = None,
    shuffle: Shuffle = T.shuffle, flip: Flip = T.flip, decay_every: DecayEvery = T.decay_every,
    decay_factor: DecayFactor = T.decay_factor, init: Init = T.init, loss: Loss = T.loss,
    patience: Patience = T.patience, keep: Keep = T.keep,
    cache_dir: CacheDir = Path("cache"), reports_dir: ReportsDir = Path("reports"),
    force: Force = False, as_json: Json = False, quiet: Quiet = False,
):
    """Draw loss and accuracy curves, the learnt weights and the confusion matrix as PNG."""
    from cifarcli import stages

    out, ws = _start(as_json, quiet, cache_dir, reports_dir)
    run = _run(ws, run_id, _config(locals()))
    paths = stages.plot(ws, run, force)
    out.result({"run_id": run.key, "figures": {name: str(path) for name, path in paths.items()}},
               *[str(path) for path in paths.values()])


@app.command(epilog=examples("cifarcli predict cat.jpg dog.png --lam 0.1 --eta 0.001",
                               "cifarcli predict photos/*.jpg --run 51a620ab --json"))
def predict(
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE", help="Image files (PNG, JPEG, ...; any size).",
                                                 show_default=False)],
    lam: Lam = T.lam, eta: Eta = T.eta, n_epochs: Epochs = T.n_epochs, n_batch: Batch = T.n_batch, seed: Seed = T.seed,
    split: Split = T.split, val_size: ValSize = T.val_size, dtype: Dtype = T.dtype, run_id: RunId = None,
    shuffle: Shuffle = T.shuffle, flip: Flip = T.flip, decay_every: DecayEvery = T.decay_every,
    decay_factor: DecayFactor = T.decay_factor, init: Init = T.init, loss: Loss = T.loss,
    patience: Patience = T.patience, keep: Keep = T.keep,
    cache_dir: CacheDir = Path("cache"), as_json: Json = False, quiet: Quiet = False,
):
    """Classify image files with a trained model: the top 3 classes and their probabilities.

    Each image is converted to RGB and resized to 32×32 (area average when shrinking).
    An unreadable file is one error line naming it; the others are still classified (exit code 2).
    """
    from cifarcli import views, workflows

    out, ws = _start(as_json, quiet, cache_dir)
    read = workflows.read_images(images)
    bad = [image for image in read if "error" in image]
    for image in bad:  # one line per bad file, shown even with --quiet
        _error_line(image["error"])
    if len(bad) < len(read):
        config = _config(locals())
        run = _run(ws, run_id, config)
        if run_id is None and config == TRAIN_DEFAULTS:  # nothing chosen: say which run that is
            settings = ", ".join(f"{k}={v}" for k, v in run.meta["params"].items())
            out.log(f"using run {run.key} ({settings}), the default training options; pick another with "
                    "--run ID or training options such as --lam 0.1 --eta 0.001 (list runs: cifarcli runs)")
        result = workflows.predict(ws, run, read)
    else:  # nothing to classify: no need to find (or train) the run
        result = {"images": [{"path": image["path"], "error": image["error"]} for image in read]}
    out.result(result, *views.predict_view(result))
    if bad:
        if as_json:
            names = ", ".join(image["path"] for image in bad)
            out.document = {**(out.document or {}), "exit_code": 2,
                            "error": f"{len(bad)} of {len(read)} image(s) could not be read: {names}",
                            "hint": "give PNG or JPEG files"}
        out.flush()
        raise typer.Exit(2)


@app.command(epilog=examples("cifarcli export --lam 0.1 --eta 0.001    # → model-<run id>.npz",
                               "cifarcli export --run 51a620ab --out model.npz"))
def export(
    lam: Lam = T.lam, eta: Eta = T.eta, n_epochs: Epochs = T.n_epochs, n_batch: Batch = T.n_batch, seed: Seed = T.seed,
    split: Split = T.split, val_size: ValSize = T.val_size, dtype: Dtype = T.dtype, run_id: RunId = None,
    shuffle: Shuffle = T.shuffle, flip: Flip = T.flip, decay_every: DecayEvery = T.decay_every,
    decay_factor: DecayFactor = T.decay_factor, init: Init = T.init, loss: Loss = T.loss,
    patience: Patience = T.patience, keep: Keep = T.keep,
    path: Annotated[Optional[Path], typer.Option("--out", help="The .npz file to write (default: model-<run id>.npz).")] = None,
    cache_dir: CacheDir = Path("cache"), as_json: Json = False, quiet: Quiet = False,
):
    """Write a trained model as a plain .npz (W, b, mean, std, class names, loss, settings) for numpy alone."""
    from cifarcli import views, workflows

    out, ws = _start(as_json, quiet, cache_dir)
    run = _run(ws, run_id, _config(locals()))
    result = workflows.export(ws, run, path if path is not None else Path(f"model-{run.key}.npz"))
    out.result(result, *views.export_view(result))


def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``: distinct integer seeds (config checks their range)."""
    try:
        seeds = [int(item.strip()) for item in str(text).split(",")]
    except ValueError:
        raise OptionError("seeds", f"{text!r} is not a comma list of integers", hint="e.g. --seeds 1,2,3,4,5") from None
    if len(set(seeds)) != len(seeds) or len(seeds) < 2:
        raise OptionError("seeds", f"needs at least two different seeds, got {text!r}", hint="e.g. --seeds 1,2,3,4,5")
    return seeds


@app.command(epilog=examples("cifarcli ensemble --run 33cb83e2 --run b4ecfb7d --run e06a55e3",
                               "cifarcli ensemble --lam 0.1 --eta 0.001 --seeds 1,2,3,4,5",
                               "cifarcli ensemble --loss svm --lam 0.1 --eta 0.001 --seeds 1,2,3 --json"))
def ensemble(
    run_ids: Annotated[Optional[list[str]], typer.Option("--run", help="A member run ID (or unique prefix); repeat it.")] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="Comma list of seeds: the training options below at each seed (missing members are trained).")] = None,
    lam: Lam = T.lam, eta: Eta = T.eta, n_epochs: Epochs = T.n_epochs, n_batch: Batch = T.n_batch,
    split: Split = T.split, val_size: ValSize = T.val_size, dtype: Dtype = T.dtype,
    shuffle: Shuffle = T.shuffle, flip: Flip = T.flip, decay_every: DecayEvery = T.decay_every,
    decay_factor: DecayFactor = T.decay_factor, init: Init = T.init, loss: Loss = T.loss,
    patience: Patience = T.patience, keep: Keep = T.keep,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Train up to this many missing members at once.")] = 2,
    cache_dir: CacheDir = Path("cache"), force: Force = False, as_json: Json = False, quiet: Quiet = False,
):
    """Combine trained runs: majority vote and mean probabilities (scores for SVM) on validation and test.

    A tied vote goes to the lowest class index. Members: --run A --run B ..., or training options plus --seeds.
    """
    from cifarcli import views, workflows

    out, ws = _start(as_json, quiet, cache_dir, jobs=jobs)
    if jobs < 1:
        raise OptionError("jobs", f"must be at least 1, got {jobs}")
    result = workflows.ensemble(ws, run_ids, _config(locals()), parse_seeds(seeds) if seeds is not None else None,
                                force)
    out.result(result, *views.ensemble_view(result))


@app.command(epilog=examples("cifarcli report                      # the study's four settings",
                               "cifarcli report --config my-study.toml --jobs 1",
                               "cifarcli report --reports-dir out --json"))
def report(
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file listing the settings (default: the study's four).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Train up to this many settings at once.")] = 2,
    cache_dir: CacheDir = Path("cache"), reports_dir: ReportsDir = Path("reports"),
    force: Force = False, as_json: Json = False, quiet: Quiet = False,
):
    """Run or reuse every stage for every setting and write reports/report.md and report.html."""
    from cifarcli import views, workflows

    out, ws = _start(as_json, quiet, cache_dir, reports_dir, jobs)
    if jobs < 1:
        raise OptionError("jobs", f"must be at least 1, got {jobs}")
    result = workflows.report(ws, config, force)
    out.result(result, *views.report_view(result))
    _require_a_converged_run(out, result)


def _require_a_converged_run(out: Output, result: dict) -> None:
    """A diverged run is a finding the report shows (exit 0); a report in which every run diverged failed (exit 1).

    The same rule as ``sweep``: the report was written either way, but with no
    converged run it holds no accuracy to compare, which a CI job must notice.
    """
    from cifarcli.errors import WorkFailed

    runs = result.get("runs") or []
    diverged = [run for run in runs if run.get("diverged_at") is not None]
    for run in diverged:
        out.log(f"run {run['run_id']} ({run['label']}) diverged at epoch {run['diverged_at']}; "
                "its section in the report says so")
    sweep = result.get("sweep")
    if runs and len(diverged) == len(runs) and not (sweep and sweep.get("best")):
        raise WorkFailed(f"every run of the report diverged ({len(runs)} of {len(runs)}); the report was written",
                         hint="try smaller eta values")


@app.command(epilog=examples("cifarcli status --lam 0.1 --eta 0.001",
                               "cifarcli status --lam 0 --eta 0.1 --json"))
def status(
    lam: Lam = T.lam, eta: Eta = T.eta, n_epochs: Epochs = T.n_epochs, n_batch: Batch = T.n_batch, seed: Seed = T.seed,
    split: Split = T.split, val_size: ValSize = T.val_size, dtype: Dtype = T.dtype,
    shuffle: Shuffle = T.shuffle, flip: Flip = T.flip, decay_every: DecayEvery = T.decay_every,
    decay_factor: DecayFactor = T.decay_factor, init: Init = T.init, loss: Loss = T.loss,
    patience: Patience = T.patience, keep: Keep = T.keep,
    cache_dir: CacheDir = Path("cache"), as_json: Json = False,
):
    """Show, for these training options, which stages are cached, missing, partial or damaged."""
    from cifarcli import stages, views

    out, ws = _start(as_json, False, cache_dir)
    rows = stages.status(ws, _config(locals()))
    out.result({"cache_dir": str(ws.cache_dir), "stages": rows}, views.status_view(rows))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             epilog=examples("cifarcli sweep --lam 0,0.01,0.1,1 --eta 0.001,0.01",
                             "cifarcli sweep --lam 0,0.1 --eta 0.001 --n-epochs 20,40 --jobs 2",
                             "cifarcli sweep --lam 0,0.1 --eta 0.001 --shuffle --scheduler tcp://host:8786"))
def sweep(
    ctx: typer.Context,
    lam: Annotated[str, typer.Option("--lam", help="Comma list of λ, e.g. 0,0.001,0.01,0.1,1.")],
    eta: Annotated[str, typer.Option("--eta", help="Comma list of η, e.g. 0.001,0.01,0.1.")],
    n_batch: Annotated[Optional[str], typer.Option("--n-batch", help="Comma list of mini-batch sizes (default 100).")] = None,
    n_epochs: Annotated[Optional[str], typer.Option("--n-epochs", help="Comma list of epoch counts (default 40).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the weight initialisation (fixed; default 42).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="seed, dd2424 or full (fixed; default seed).")] = None,
    val_size: Annotated[Optional[int], typer.Option("--val-size", help="Validation images with --split full (fixed).")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="float32 or float64 (fixed).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Train up to this many points at once on this machine.")] = 2,
    backend: Annotated[str, typer.Option("--backend", help="local (joblib processes) or dask (an existing cluster).")] = "local",
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786 (implies --backend dask).")] = None,
    cache_dir: CacheDir = Path("cache"), reports_dir: ReportsDir = Path("reports"),
    as_json: Json = False, quiet: Quiet = False,
):
    """Train a grid of settings (each an ordinary cached run), pick the best on validation accuracy.

    Any other training option of `cifarcli train` can be given as a fixed value.
    """
    from cifarcli import sweep as sweeping
    from cifarcli import views
    from cifarcli.config import make_spec
    from cifarcli.errors import WorkFailed

    out, ws = _start(as_json, quiet, cache_dir, reports_dir, jobs)
    if jobs < 1:
        raise OptionError("jobs", f"must be at least 1, got {jobs}")
    fixed = {k: v for k, v in (("seed", seed), ("split", split), ("val_size", val_size), ("dtype", dtype))
             if v is not None}
    fixed.update(parse_extra_options(list(ctx.args)))
    axes = {name: parse_grid(name, text) for name, text in (("lam", lam), ("eta", eta), ("n_batch", n_batch),
                                                       ("n_epochs", n_epochs)) if text is not None}
    spec = make_spec(axes, fixed)
    if scheduler and backend == "local":
        backend = "dask"
    result = sweeping.run_sweep(ws, spec, backend, scheduler)
    out.result(result, *views.sweep_view(result))
    if result["best"] is None:
        raise WorkFailed("every point of the sweep diverged", hint="try smaller --eta values")


_GRID_EXAMPLES = {"lam": "0,0.01,0.1,1", "eta": "0.001,0.01,0.1", "n_batch": "50,100", "n_epochs": "20,40"}


def parse_grid(name: str, text: str) -> list[float]:
    """``"0,0.01,0.1"`` -> ``[0.0, 0.01, 0.1]`` (config.make_spec checks the values)."""
    example = f"e.g. {flag_of(name)} {_GRID_EXAMPLES[name]}"
    items = [item.strip() for item in str(text).split(",")]
    if not str(text).strip():
        raise OptionError(name, "empty grid", hint=f"give a comma list, {example}")
    values = []
    for item in items:
        if not item:
            raise OptionError(name, f"empty item in {text!r}", hint=example)
        try:
            values.append(float(item))
        except ValueError:
            raise OptionError(name, f"{item!r} is not a number", hint=example) from None
    return values


def parse_extra_options(args: list[str]) -> dict:
    """Training options not declared on the sweep command (``--name value``, ``--flag``, ``--no-flag``).

    Lets a sweep fix any option TrainConfig has, including ones added after
    this command was written.
    """
    known = {name: kind for name, kind in train_fields().items() if name not in GRID}
    fixed: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise CifarError(f"unexpected argument {arg!r}", hint="see cifarcli sweep --help")
        name, has_value, value = arg[2:].partition("=")
        field_name = name.replace("-", "_")
        if field_name.startswith("no_") and known.get(field_name[3:]) is bool and not has_value:
            fixed[field_name[3:]] = False
            i += 1
            continue
        if field_name not in known:
            raise CifarError(f"no such option: --{name}", hint="see cifarcli sweep --help; "
                             "training options: " + ", ".join(flag_of(k) for k in known))
        if not has_value:
            if known[field_name] is bool and (i + 1 == len(args) or args[i + 1].startswith("--")):
                fixed[field_name] = True
                i += 1
                continue
            if i + 1 == len(args):
                raise OptionError(field_name, "needs a value")
            value = args[i + 1]
            i += 1
        fixed[field_name] = typed_option(field_name, known[field_name], value)
        i += 1
    return fixed


def typed_option(name: str, kind: type, text: str):
    """The value of ``--name TEXT`` in the type of TrainConfig's field ``name``."""
    if "," in text and kind is not str:
        raise OptionError(name, f"takes one value in a sweep, got {text!r}",
                          hint="only --lam, --eta, --n-batch and --n-epochs take lists")
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            return lowered in ("true", "1", "yes", "on")
        return kind(text)
    except ValueError:
        raise OptionError(name, f"{text!r} is not a valid {kind.__name__}") from None


# -- runs ------------------------------------------------------------------------


@app.command(epilog=examples("cifarcli runs                           # every run, best validation accuracy first",
                             "cifarcli runs --where lam=0.1 --where 'eta<0.01' --sort created",
                             "cifarcli runs --diff 51a620ab 5091cb19   # two runs side by side"))
def runs(
    where: Annotated[Optional[list[str]], typer.Option(
        "--where", metavar="FIELD=VALUE",
        help="Only runs where a setting or metric has this value (repeatable; also !=, <, <=, >, >=), "
             "e.g. lam=0.1, shuffle=true, val_acc>=0.38.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Only runs on this split (seed, dd2424 or full).")] = None,
    sort: Annotated[str, typer.Option("--sort", metavar="FIELD",
                                      help="Sort by a setting (lam, eta, …) or val_acc, train_acc, test_acc, train_cost, "
                                           "val_cost, created, seconds, run_id; metrics best first, newest first.")] = "val_acc",
    reverse: Annotated[bool, typer.Option("--reverse", help="Reverse the order of --sort.")] = False,
    all_params: Annotated[bool, typer.Option("--all-params", help="Show every setting, not only those that differ.")] = False,
    diff: Annotated[Optional[tuple[str, str]], typer.Option("--diff", metavar="A B",
                                                            help="Show two runs (IDs or unique prefixes) side by side.")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV on stdout (full run ID, every setting and metric).",
                                         rich_help_panel=OUTPUT)] = False,
    cache_dir: CacheDir = Path("cache"), as_json: Json = False,
):
    """List the trained runs: the settings that differ, final accuracy and cost, test accuracy where evaluated.

    Reads only the runs' meta.json files. The run ID shown is the shortest prefix that is unique (at least
    8 characters); any command's --run takes it.
    """
    from cifarcli import runs as listing
    from cifarcli import views

    out, ws = _start(as_json, False, cache_dir)
    if as_csv and as_json:
        raise OptionError("csv", "cannot be combined with --json", hint="choose one output format")
    if diff is not None:
        result = listing.diff_runs(ws, *diff)
        out.result(result, *views.runs_diff_view(result))
        return
    result = listing.list_runs(ws, where, split, sort, reverse)
    if as_csv:
        text = views.runs_csv(result)
        _write_stdout(lambda: (sys.stdout.write(text), sys.stdout.flush()))
        return
    out.result(result, *views.runs_view(result, out.out.width, all_params))


# -- cache -----------------------------------------------------------------------

def _known_stage(stage: Optional[str]) -> Optional[str]:
    if stage is not None and stage not in STAGE_NAMES:
        raise typer.BadParameter(f"unknown stage {stage!r}; one of: {', '.join(STAGE_NAMES)}")
    return stage


Stage = Annotated[Optional[str], typer.Option("--stage", callback=_known_stage,
                                              help=f"Only this stage ({', '.join(STAGE_NAMES)}).")]


@cache_app.command("ls", epilog=examples("cifarcli cache ls --stage train", "cifarcli cache ls --json"))
def cache_ls(stage: Stage = None, cache_dir: CacheDir = Path("cache"), as_json: Json = False):
    """List cached artifacts (reads only their meta.json)."""
    from cifarcli import views

    out, ws = _start(as_json, False, cache_dir)
    rows = ws.cache_listing(stage)
    out.result({"cache_dir": str(ws.cache_dir), "artifacts": rows}, views.cache_table(rows))


@cache_app.command("clear", epilog=examples("cifarcli cache clear --dry-run", "cifarcli cache clear --stage plot --yes",
                                            "cifarcli cache clear --keep-data --yes"))
def cache_clear(stage: Stage = None, cache_dir: CacheDir = Path("cache"), as_json: Json = False, quiet: Quiet = False,
                yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking (needed without a terminal).")] = False,
                dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
                keep_data: Annotated[bool, typer.Option("--keep-data", help="Keep the dataset and its download.")] = False):
    """Remove cached artifacts (all, or one stage) and any leftovers of interrupted writes; lists them and asks first."""
    from cifarcli import views

    out, ws = _start(as_json, quiet, cache_dir)
    plan = ws.clear_plan(stage, keep_data=keep_data)
    if dry_run:
        out.result({"dry_run": True, **plan}, *views.clear_plan_view(plan, ws.cache_dir))
        return
    if (plan["stages"] or plan["links"]) and not yes:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise CifarError(f"cache clear would remove {views.plan_summary(plan)} from {ws.cache_dir}, and asks first",
                             hint="add --yes to remove them without a terminal, or --dry-run to list them")
        out.err.print(*views.clear_plan_view(plan, ws.cache_dir), sep="\n")
        if not typer.confirm("Remove them?", default=False, err=True):
            out.result({"removed": 0}, "nothing removed")
            return
    removed = ws.clear_cache(stage, keep_data=keep_data)
    out.result({"removed": removed}, f"removed {removed} artifact(s) from {ws.cache_dir}")


@cache_app.command("gc", epilog=examples("cifarcli cache gc", "cifarcli cache gc --json"))
def cache_gc(cache_dir: CacheDir = Path("cache"), as_json: Json = False, quiet: Quiet = False):
    """Remove temporary files left by interrupted writes; artifacts are kept."""
    out, ws = _start(as_json, quiet, cache_dir)
    removed = [str(p) for p in ws.collect_garbage()]
    out.result({"removed": removed}, f"removed {len(removed)} leftover(s)")


@cache_app.command("verify", epilog=examples("cifarcli cache verify", "cifarcli cache verify --stage train --json"))
def cache_verify(stage: Stage = None, cache_dir: CacheDir = Path("cache"), as_json: Json = False, quiet: Quiet = False):
    """Re-hash every payload and report damaged artifacts (exit 1 if any)."""
    from cifarcli import views
    from cifarcli.errors import WorkFailed

    out, ws = _start(as_json, quiet, cache_dir)
    rows = ws.verify_cache(stage)
    damaged = [row for row in rows if not row["ok"]]
    out.result({"checked": len(rows), "damaged": damaged}, views.verify_view(rows))
    if damaged:
        named = ", ".join(f"{row['stage']}/{row['key']}" for row in damaged[:3]) + (" …" if len(damaged) > 3 else "")
        raise WorkFailed(f"{len(damaged)} damaged artifact(s): {named}",
                         hint="they are recomputed on next use, or run cifarcli cache clear")


def main() -> None:
    app()
