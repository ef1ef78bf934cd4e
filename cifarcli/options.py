"""The options the commands share, declared once, and how the library's settings read as flags.

Training options come from one table of TrainConfig's fields through the ``training_options``
decorator (as sqlite-utils' ``output_options``); every default is config's. Help panels are
set here with ``rich_help_panel``. The library names settings, not flags (``OptionError("seeds", …)``,
a setting in backquotes in a message, ``setting="source"``); ``as_typed`` turns such an error into the
flags and command hints of this command line.
"""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from cifarcli.config import GRADCHECK_DEFAULTS, GRADCHECK_TOL, GRID, STAGE_NAMES, TRAIN_DEFAULTS, TrainConfig
from cifarcli.errors import CifarError, OptionError

# -- settings as flags -------------------------------------------------------------

# Settings whose flag is not their name with dashes.
_FLAGS = {"lams": "--lam"}
# What to do about a setting, added to the hint of an error the library raised about it.
COMMAND_HINTS = {
    "source": "import a copy you have with: cifarcli fetch --source PATH",
    "force": "import it again with: cifarcli fetch --force",
}


def flag_of(setting: str) -> str:
    """The command-line flag of a setting: ``n_epochs`` -> ``--n-epochs``."""
    return _FLAGS.get(setting, "--" + setting.replace("_", "-"))


def in_flags(text: str) -> str:
    """A library text with the settings it names in backquotes named by their flags (``--seeds``)."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda match: flag_of(match.group(1)), text)


def as_typed(error: CifarError) -> CifarError:
    """``error`` as the user typed the command: flags for settings, the command hint for its setting."""
    error.message = in_flags(error.message)
    if isinstance(error, OptionError):
        error.message = f"{flag_of(error.option)}: {error.message}"
    hints = [in_flags(error.hint) if error.hint else None, COMMAND_HINTS.get(error.setting)]
    error.hint = "; ".join(hint for hint in hints if hint) or None
    return error


# -- shared options ------------------------------------------------------------------

STUDY, BEYOND, OUTPUT = "The study", "Beyond the study", "Output and cache"  # the help panels
T = TRAIN_DEFAULTS  # every default is config's
JOBS = 2  # processes training at once, unless --jobs says otherwise
KEYWORD = inspect.Parameter.KEYWORD_ONLY


def output_option(*names: str, flag: bool = False, **kwargs):
    """An option of the "Output and cache" panel; a flag shows no value type."""
    return typer.Option(*names, rich_help_panel=OUTPUT, **({"metavar": ""} if flag else {}), **kwargs)


@dataclass(frozen=True)
class Common:
    """Where a command reads and writes, and how it talks: the options every command shares."""

    cache_dir: Path | None = None  # None: the nearest workspace here or above, else ./cache
    reports_dir: Path | None = None  # None: beside the cache
    force: bool = False
    as_json: bool = False
    quiet: bool = False


_COMMON = {
    "cache_dir": (
        Path,
        output_option(
            "--cache-dir",
            envvar="CIFARCLI_CACHE_DIR",
            help="Artifact cache folder [default: the nearest cache/ here or above].",
        ),
    ),
    "reports_dir": (
        Path,
        output_option("--reports-dir", help="Folder for figures and reports [default: beside the cache]."),
    ),
    "force": (bool, output_option("--force", flag=True, help="Recompute this stage even when it is cached.")),
    "as_json": (
        bool,
        output_option("--json", flag=True, help="Print one JSON document on stdout and nothing else there."),
    ),
    "quiet": (bool, output_option("--quiet", "-q", flag=True, help="No progress or notices on stderr.")),
}


def common_options(*extra: str):
    """Give a command --cache-dir, --json and the ``extra`` ones of --reports-dir, --force, --quiet (by field
    name); it receives them as ``common: Common``."""
    names = [name for name in _COMMON if name in ("cache_dir", "as_json", *extra)]
    parameters = [
        inspect.Parameter(
            name, KEYWORD, default=getattr(Common, name), annotation=Annotated[_COMMON[name][0], _COMMON[name][1]]
        )
        for name in names
    ]
    return _options_into("common", parameters, lambda values: Common(**values))


def _options_into(into: str, parameters: list[inspect.Parameter], make):
    """A decorator: the command's parameter ``into`` becomes ``parameters`` (in its signature, so in its help),
    and the command receives ``make(their values)`` there."""

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        names = [parameter.name for parameter in parameters]
        own = []
        for parameter in signature.parameters.values():
            own += parameters if parameter.name == into else [parameter.replace(kind=KEYWORD)]

        @functools.wraps(command)
        def with_options(**kwargs):
            values = {name: kwargs.pop(name) for name in names}
            return command(**{into: make(values)}, **kwargs)

        with_options.__signature__ = signature.replace(parameters=own)
        with_options.__annotations__ = {parameter.name: parameter.annotation for parameter in own}
        return with_options

    return decorate


RunId = Annotated[
    str | None,
    typer.Option("--run", help="Use this run (its name, ID or a unique prefix) instead of the training options."),
]

# TrainConfig's fields as options: (flags, help, extra typer.Option arguments). The first eight are the study's.
TRAINING = {
    "lam": (("--lam",), "L2 penalty λ on W.", {}),
    "eta": (("--eta",), "Learning rate η.", {}),
    "n_epochs": (("--n-epochs",), "Passes over the training split.", {}),
    "n_batch": (("--n-batch",), "Images per mini-batch.", {}),
    "seed": (("--seed",), "Seed of the weight initialisation.", {}),
    "split": (("--split",), "seed (batch 1, 80/20), dd2424 (batch 1 / batch 2) or full.", {}),
    "val_size": (("--val-size",), "Validation images with --split full.", {}),
    "dtype": (("--dtype",), "float32 or float64.", {}),
    # Beyond the study (all off by default; a run ID changes only when one is set):
    "shuffle": (
        ("--shuffle/--no-shuffle",),
        "Visit the training images in a new seeded order every epoch.",
        {"metavar": ""},
    ),
    "flip": (
        ("--flip",),
        "Mirror each training image left-right with probability P every epoch (0: off).",
        {"metavar": "P"},
    ),
    "decay_every": (
        ("--decay-every",),
        "Step decay: multiply η by --decay-factor every K epochs (0: off).",
        {"metavar": "K"},
    ),
    "decay_factor": (("--decay-factor",), "Step-decay factor in (0, 1], e.g. 0.1.", {"metavar": "F"}),
    "init": (("--init",), "Initialisation: normal (N(0, 0.01²), the study) or xavier (N(0, 1/d)).", {}),
    "loss": (
        ("--loss",),
        "softmax (cross-entropy), bce (multiple binary cross-entropy, sigmoid outputs) or svm "
        "(multi-class hinge loss, margin 1; scores, no probabilities).",
        {},
    ),
    "patience": (
        ("--patience",),
        "Early stopping: stop when validation accuracy has not improved for P epochs (0: off).",
        {"metavar": "P"},
    ),
    "keep": (
        ("--keep",),
        "Weights to keep: last (the last epoch's) or best (the epoch with the highest "
        "validation accuracy; ties: the earliest).",
        {},
    ),
}
_STUDY_FIELDS = ("lam", "eta", "n_epochs", "n_batch", "seed", "split", "val_size", "dtype")


Seed = Annotated[int, typer.Option(*TRAINING["seed"][0], rich_help_panel=STUDY, help=TRAINING["seed"][1])]


def _training_parameter(name: str, fixed: bool) -> inspect.Parameter:
    """The option of TrainConfig's field ``name``: its default, or with ``fixed`` (sweep) unset unless given."""
    flags, help_text, extra = TRAINING[name]
    kind, default = type(getattr(T, name)), getattr(T, name)
    panel = STUDY if name in _STUDY_FIELDS else BEYOND
    if not fixed:
        option = typer.Option(*flags, help=help_text, rich_help_panel=panel, **extra)
        return inspect.Parameter(name, KEYWORD, default=default, annotation=Annotated[kind, option])
    help_text = f"{help_text[:-1]} (fixed; default {default})."
    parser = {} if kind is bool else {"parser": functools.partial(_one_value, name, kind)}
    option = typer.Option(*flags, help=help_text, rich_help_panel=panel, show_default=False, **extra, **parser)
    return inspect.Parameter(name, KEYWORD, default=None, annotation=Annotated[kind | None, option])


def _one_value(name: str, kind: type, text: str):
    """Sweep's value of a fixed training option: one value of the field's type, not a list."""
    if "," in text and kind is not str:
        *lists, last = [flag_of(axis) for axis in GRID]
        raise OptionError(
            name, f"takes one value in a sweep, got {text!r}", hint=f"only {', '.join(lists)} and {last} take lists"
        )
    try:
        return kind(text)
    except ValueError:
        raise OptionError(name, f"{text!r} is not a valid {kind.__name__}") from None


def training_options(command=None, *, exclude: tuple[str, ...] = (), fixed: bool = False):
    """Give a command TrainConfig's options, as sqlite-utils' ``output_options`` gives its output options.

    The command declares ``config``, where the options go in its help, and receives their TrainConfig.
    With ``fixed`` (sweep), the grid's axes are left out and ``config`` is a dict of the options given.
    """

    def given(values: dict) -> dict:
        return {name: value for name, value in values.items() if value is not None}

    names = [name for name in TRAINING if name not in exclude and not (fixed and name in GRID)]
    parameters = [_training_parameter(name, fixed) for name in names]
    decorate = _options_into("config", parameters, given if fixed else lambda values: TrainConfig(**values))
    return decorate(command) if command is not None else decorate


def _jobs(help_text: str):
    return Annotated[int, output_option("--jobs", "-j", help=help_text)]


ReportJobs = _jobs("Train up to this many settings at once.")
SweepJobs = _jobs("Train up to this many points at once on this machine.")
EnsembleJobs = _jobs("Train up to this many missing members at once.")


def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``: distinct integer seeds (config checks their range)."""
    try:
        seeds = [int(item.strip()) for item in str(text).split(",")]
    except ValueError:
        raise OptionError("seeds", f"{text!r} is not a comma list of integers", hint="e.g. --seeds 1,2,3,4,5") from None
    if len(set(seeds)) != len(seeds) or len(seeds) < 2:
        raise OptionError("seeds", f"needs at least two different seeds, got {text!r}", hint="e.g. --seeds 1,2,3,4,5")
    return seeds


def _grid(name: str, help_text: str):
    return Annotated[str | None, typer.Option(flag_of(name), rich_help_panel=STUDY, help=help_text)]


GridLam = _grid("lam", "Comma list of λ, e.g. 0,0.001,0.01,0.1,1.")
GridEta = _grid("eta", "Comma list of η, e.g. 0.001,0.01,0.1.")
GridBatch = _grid("n_batch", f"Comma list of mini-batch sizes (default {T.n_batch}).")
GridEpochs = _grid("n_epochs", f"Comma list of epoch counts (default {T.n_epochs}).")


_GRID_EXAMPLES = {"lam": "0,0.01,0.1,1", "eta": "0.001,0.01,0.1", "n_batch": "50,100", "n_epochs": "20,40"}


def parse_grid(name: str, text: str) -> list[float]:
    """``"0,0.01,0.1"`` -> ``[0.0, 0.01, 0.1]`` (config.make_spec checks the values)."""
    example = f"e.g. {flag_of(name)} {_GRID_EXAMPLES[name]}"
    if not str(text).strip():
        raise OptionError(name, "empty grid", hint=f"give a comma list, {example}")
    values = []
    for item in (item.strip() for item in str(text).split(",")):
        if not item:
            raise OptionError(name, f"empty item in {text!r}", hint=example)
        try:
            values.append(float(item))
        except ValueError:
            raise OptionError(name, f"{item!r} is not a number", hint=example) from None
    return values


def _known_stage(stage: str | None) -> str | None:
    if stage is not None and stage not in STAGE_NAMES:
        raise typer.BadParameter(f"unknown stage {stage!r}; one of: {', '.join(STAGE_NAMES)}")
    return stage


Stage = Annotated[
    str | None, typer.Option("--stage", callback=_known_stage, help=f"Only this stage ({', '.join(STAGE_NAMES)}).")
]


# -- each command's own options --------------------------------------------------


def _option(kind, *names: str, **kwargs):
    return Annotated[kind, typer.Option(*names, **kwargs)]


Source = _option(str | None, "--source", help="URL, archive or extracted cifar-10-batches-* folder.")
Format = _option(str, "--format", help="Archive to download when no source is given: binary or python.")
Md5 = _option(str | None, "--md5", help="Expected md5 of the source.")
Sha256 = _option(str | None, "--sha256", help="Expected sha256 of the source.")

NSamples = _option(int, "--n-samples", help="Training images in the batch.")
NDims = _option(
    int | None, "--n-dims", help="Use only the first D input dimensions (default: all).", show_default=False
)
Lams = _option(
    list[float] | None,
    "--lam",
    rich_help_panel=STUDY,
    show_default=False,
    help=f"λ to check (repeatable; default {' and '.join(f'{lam:g}' for lam in GRADCHECK_DEFAULTS.lams)}).",
)
Step = _option(float, "--h", help="Finite-difference step.")
Tol = _option(
    float | None,
    "--tol",
    help=f"Gate: exit 1 when the max relative error exceeds it (the verdict uses {GRADCHECK_TOL:g} without it).",
)
GradcheckLoss = _option(
    str,
    "--loss",
    rich_help_panel=BEYOND,
    help="Check the gradients of softmax "
    "(cross-entropy), bce (multiple binary cross-entropy) or svm (hinge; parameters within h of "
    "a kink are counted and left out of the verdict).",
)

MinAccuracy = _option(float | None, "--min-accuracy", help="Gate: exit 1 when test accuracy is below it.")
Images = Annotated[
    list[Path], typer.Argument(metavar="IMAGE", help="Image files (PNG, JPEG, ...; any size).", show_default=False)
]
Out = _option(Path | None, "--out", help="The .npz file to write (default: model-<run id>.npz).", show_default=False)
Members = _option(list[str] | None, "--run", help="A member run ID (or unique prefix); repeat it.")
Seeds = _option(
    str | None,
    "--seeds",
    help="Comma list of seeds: the training options below at each seed (missing members are trained).",
)
Settings = _option(
    Path | None, "--config", help="TOML file listing the settings (default: the study's four).", show_default=False
)
Backend = _option(str, "--backend", help="local (joblib processes) or dask (an existing cluster).")
Scheduler = _option(
    str | None, "--scheduler", help="Dask scheduler address, e.g. tcp://host:8786 (implies --backend dask)."
)

Where = _option(
    list[str] | None,
    "--where",
    metavar="FIELD=VALUE",
    help="Only runs where a setting or metric has this value (repeatable; also !=, <, <=, >, >=), "
    "e.g. lam=0.1, shuffle=true, val_acc>=0.38.",
)
RunsSplit = _option(
    str | None, "--split", rich_help_panel=STUDY, help="Only runs on this split (seed, dd2424 or full)."
)
Sort = _option(
    str,
    "--sort",
    metavar="FIELD",
    help="Sort by a setting (lam, eta, …) or val_acc, train_acc, "
    "test_acc, train_cost, val_cost, created, seconds, run_id; metrics best first, newest first.",
)
Reverse = _option(bool, "--reverse", metavar="", help="Reverse the order of --sort.")
AllParams = _option(bool, "--all-params", metavar="", help="Show every setting, not only those that differ.")
Discussion = _option(
    Path | None,
    "--discussion",
    help="Your own discussion (Markdown: paragraphs, lists, emphasis, code), added after the analysis.",
)
Brief = _option(
    bool | None,
    "--brief/--full",
    show_default=False,
    metavar="",
    help="The assignment's layout: set-up, gradient check, each run with curves and weights, comparison, "
    "analysis, discussion.",
)
Pdf = _option(
    bool,
    "--pdf",
    metavar="",
    help="Also write reports/report.pdf (A4) and report.typ, typeset with Typst (pip install 'cifarcli[pdf]').",
)
RunName = _option(str | None, "--name", help="Name the run; any --run accepts the name (never part of the run ID).")
Diff = _option(
    tuple[str, str] | None, "--diff", metavar="A B", help="Show two runs (IDs or unique prefixes) side by side."
)
Csv = Annotated[
    bool, output_option("--csv", flag=True, help="Print CSV on stdout (full run ID, every setting and metric).")
]
