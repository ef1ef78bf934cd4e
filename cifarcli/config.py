"""Every setting of the study and its default, defined once: training, the gradient check, sweeps, report files.

The CLI and the settings-file reader take their defaults from here. A bad value
raises ``OptionError`` naming the setting by its field name (``n_epochs``); the
CLI shows it as its flag (``--n-epochs``), the settings reader as the key of
the file, so nothing here speaks in flags. Reading the settings file itself
(TOML, its tables and keys) is ``settings_file.py``'s; what its values mean is here.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import CifarError, OptionError, shown
from .settings_file import check_known, ensemble_seeds, named, no_duplicate_runs, read_document, report_options, table
from .value_checks import grid_values, is_bool, is_int, is_real, require

STAGE_NAMES = ("dataset", "gradcheck", "train", "evaluate", "plot", "report", "sweep", "comparison", "ensemble")
SPLITS = ("seed", "dd2424", "full")
DTYPES = ("float32", "float64")
INITS = ("normal", "xavier")
KEEPS = ("last", "best")  # --keep: the weights of the last epoch, or of the best on validation
HISTORY_KEYS = ("epoch", "train_loss", "train_cost", "train_acc", "val_loss", "val_cost", "val_acc")  # a run's rows
# float32 by measurement: test accuracy equal to float64 within 1e-4 on the stable settings and
# about twice as fast (`benchmarks/bench_train.py --compare-dtypes`); the unstable setting moves as with
# any rounding change.
DEFAULT_DTYPE = "float32"
GRADCHECK_TOL = 1e-6  # the verdict's bound on the max relative error (the course's)
MAX_EPOCHS = 100_000  # bounds far beyond any real use: a typo is an error, not days of training
MAX_SEED = 2**63 - 1  # a seed fits the int64 that `export` writes
MAX_LAM = 1e10  # near 1e38, λ‖W‖² overflows float32 and the initial cost is already inf
MAX_SEEDS = 100  # runs one --seeds / [ensemble] starts: 5,000 seeds were 5,000 trainings
MIN_COLUMNS = 40  # a narrower terminal (COLUMNS=0 printed nothing, 1-20 tables lost their digits) wraps
ORPHAN_CHECK_SECONDS = 0.5  # how often a worker process checks that its parent is alive (kill -9 left them training)

# A run's name (``train --name``, ``cifarcli name``): plain characters, and never all hex digits,
# so that no name can read as a run-ID prefix.
RUN_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
RUN_NAME_MAX = 64


def run_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a run, or None when it can."""
    if not isinstance(name, str) or not 1 <= len(name) <= RUN_NAME_MAX or not set(name) <= RUN_NAME_CHARS:
        return f"a run name is 1 to {RUN_NAME_MAX} of the characters A-Z a-z 0-9 . _ -"
    if all(c in "0123456789abcdefABCDEF" for c in name):
        return "a run name of hex digits only would read as a run ID"
    return None


# Options added after the study: key_params() leaves out any of them at its default (TrainConfig's
# field default), so existing run IDs stay stable.
_OPTIONAL = ("shuffle", "flip", "decay_every", "decay_factor", "init", "loss", "patience", "keep")
# Each loss's name and its class in losses.py: the one place a loss name is mapped to its behaviour.
_LOSS_CLASSES = {"softmax": "Softmax", "bce": "BinaryCrossEntropy", "svm": "MulticlassSVM"}
LOSSES = tuple(_LOSS_CLASSES)


@functools.cache
def loss_named(name: str):
    """The ``losses.Loss`` object of a loss's name (imported only here: this module imports no numpy)."""
    if name not in _LOSS_CLASSES:
        raise ValueError(f"unknown loss {name!r}; use one of {', '.join(LOSSES)}")
    from . import losses

    return getattr(losses, _LOSS_CLASSES[name])()


# The settings that take one of a few names: what each may be, and what one of its values is called.
CHOICES = {"split": SPLITS, "dtype": DTYPES, "init": INITS, "loss": LOSSES, "keep": KEEPS}
_CHOICE_NOUNS = {"split": "split", "dtype": "dtype", "init": "initialisation", "loss": "loss", "keep": "choice"}


def require_choice(option: str, value) -> None:
    """Refuse, naming ``option`` and its choices, a value that is not one of ``CHOICES[option]``."""
    choices = CHOICES[option]
    require(
        value in choices, option, f"unknown {_CHOICE_NOUNS[option]} {shown(value)}", f"use one of: {', '.join(choices)}"
    )


# The settings that count epochs: (their lowest value, what it means, a hint).
_EPOCH_COUNTS = {
    "n_epochs": (1, "", "the study uses 40"),
    "decay_every": (0, " (no decay)", "e.g. every 10 epochs, with a decay factor of 0.1"),
    "patience": (0, " (off)", "stop when validation accuracy has not improved for this many epochs, e.g. 20"),
}


def _require_epochs(option: str, value) -> None:
    """An epoch count from its lowest value in ``_EPOCH_COUNTS`` to ``MAX_EPOCHS``."""
    low, meaning, hint = _EPOCH_COUNTS[option]
    require(
        is_int(value) and low <= value <= MAX_EPOCHS,
        option,
        f"must be an integer from {low}{meaning} to {MAX_EPOCHS}, got {shown(value)}",
        hint,
    )


# -- training -------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Its key parameters (``key_params``) are its run ID."""

    lam: float = 0.0
    eta: float = 0.001
    n_epochs: int = 40
    n_batch: int = 100
    seed: int = 42
    split: str = "seed"
    val_size: int = 1000
    dtype: str = DEFAULT_DTYPE
    shuffle: bool = False
    flip: float = 0.0
    decay_every: int = 0
    decay_factor: float = 1.0
    init: str = "normal"
    loss: str = "softmax"
    patience: int = 0  # early stopping: stop when validation accuracy has not improved for this many epochs
    keep: str = "last"  # "best": keep the weights of the epoch with the highest validation accuracy

    @property
    def stops_early(self) -> bool:
        """Whether early stopping is on: patience > 0 or keep best (the training loop then tracks the best epoch)."""
        return self.patience > 0 or self.keep == "best"

    @property
    def loss_fn(self):
        """The loss object (losses.py) of ``loss``."""
        return loss_named(self.loss)

    @property
    def decays(self) -> bool:
        """Whether the step decay changes anything (it needs both decay_every > 0 and decay_factor < 1)."""
        return self.decay_every > 0 and self.decay_factor < 1

    def validate(self, n_train: int | None = None) -> TrainConfig:
        """Raise OptionError naming the setting when a value is out of range (checked in field order)."""
        self._check_optimisation(n_train)
        self._check_data()
        self._check_decay()
        require_choice("init", self.init)
        require_choice("loss", self.loss)
        self._check_stopping()
        return self

    def _check_optimisation(self, n_train: int | None) -> None:
        require(
            is_real(self.eta) and math.isfinite(self.eta) and self.eta > 0,
            "eta",
            f"the learning rate must be a finite number > 0, got {shown(self.eta)}",
            "the study uses 0.001 (and 0.1)",
        )
        require(
            is_real(self.lam) and math.isfinite(self.lam) and 0 <= self.lam <= MAX_LAM,
            "lam",
            f"the regularisation must be a finite number from 0 to {MAX_LAM:g}, got {shown(self.lam)}",
            "the study uses 0, 0.1 and 1",
        )
        _require_epochs("n_epochs", self.n_epochs)
        require(
            is_int(self.n_batch) and self.n_batch >= 1,
            "n_batch",
            f"must be an integer >= 1, got {shown(self.n_batch)}",
            "the study uses 100",
        )
        require(
            n_train is None or self.n_batch <= n_train,
            "n_batch",
            f"{self.n_batch} is larger than the training split ({n_train} images)",
            f"use at most {n_train}",
        )

    def _check_data(self) -> None:
        require(
            is_int(self.seed) and 0 <= self.seed <= MAX_SEED,
            "seed",
            f"must be an integer from 0 to {MAX_SEED} (2**63 - 1), got {shown(self.seed)}",
            "the default is 42",
        )
        require_choice("split", self.split)
        require(
            is_int(self.val_size) and 1 <= self.val_size <= MAX_SEED,
            "val_size",
            f"must be an integer >= 1, got {shown(self.val_size)}",
            "the default is 1000",
        )
        require_choice("dtype", self.dtype)
        require(is_bool(self.shuffle), "shuffle", f"must be true or false, got {shown(self.shuffle)}")
        require(
            is_real(self.flip) and 0 <= self.flip <= 1,
            "flip",
            f"the flip probability must be a number in [0, 1], got {shown(self.flip)}",
            "0 turns flipping off; the course uses 0.5",
        )

    def _check_decay(self) -> None:
        _require_epochs("decay_every", self.decay_every)
        require(
            is_real(self.decay_factor) and 0 < self.decay_factor <= 1,
            "decay_factor",
            f"must be a number in (0, 1], got {shown(self.decay_factor)}",
            "η is multiplied by it at every decay step; e.g. 0.1",
        )

    def _check_stopping(self) -> None:
        _require_epochs("patience", self.patience)
        require_choice("keep", self.keep)

    def key_params(self) -> dict:
        """Canonical parameters for the cache key (the run ID).

        val_size only matters for split "full"; the options in _OPTIONAL
        are included only when they differ from their default (as the default's
        type, so flip=1 and flip=1.0 are one run), and the two decay options
        only when the decay is on (both set), since otherwise they change nothing.
        """
        params = {
            "lam": float(self.lam),
            "eta": float(self.eta),
            "n_epochs": int(self.n_epochs),
            "n_batch": int(self.n_batch),
            "seed": int(self.seed),
            "split": self.split,
            "dtype": self.dtype,
        }
        if self.split == "full":
            params["val_size"] = int(self.val_size)
        for setting in fields(self):
            name, default = setting.name, setting.default
            if name not in _OPTIONAL or (name in ("decay_every", "decay_factor") and not self.decays):
                continue
            value = getattr(self, name)
            if value != default:
                params[name] = type(default)(value)
        return params

    def to_dict(self) -> dict:
        return asdict(self)


TRAIN_DEFAULTS = TrainConfig()


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """η used in ``epoch`` (1-based): η · f^⌊(epoch - 1)/k⌋ with step decay, else η."""
    if not config.decays:
        return float(config.eta)
    return float(config.eta) * float(config.decay_factor) ** ((int(epoch) - 1) // int(config.decay_every))


def train_fields() -> dict[str, type]:
    """TrainConfig's fields and their plain types (``bool``, ``int``, ``float``, ``str``)."""
    return {f.name: type(f.default) for f in fields(TrainConfig)}


# -- the gradient check ---------------------------------------------------------------


@dataclass(frozen=True)
class GradcheckConfig:
    """The gradient check: the first ``n_samples`` training images, the first ``n_dims`` dimensions."""

    n_samples: int = 100
    n_dims: int | None = None  # None: all 3072
    lams: tuple = (0.0, 0.1)
    h: float = 1e-6
    seed: int = 42
    loss: str = "softmax"

    def validate(self) -> GradcheckConfig:
        """Refuse, naming the setting and its range, any value the check cannot use.

        An empty ``lams`` is refused: it used to report a PASS with nothing checked.
        """
        require(
            is_int(self.n_samples) and self.n_samples >= 1,
            "n_samples",
            f"must be an integer >= 1 (images), got {shown(self.n_samples)}",
            "the default is 100",
        )
        require(
            self.n_dims is None or (is_int(self.n_dims) and self.n_dims >= 1),
            "n_dims",
            f"must be an integer >= 1 (input dimensions), got {shown(self.n_dims)}",
            "leave it out to check all 3072",
        )
        require(
            isinstance(self.lams, (list, tuple)) and len(self.lams) > 0,
            "lams",
            f"must list at least one λ, got {shown(self.lams)}",
            "e.g. 0 and 0.1",
        )
        for lam in self.lams:
            require(
                is_real(lam) and math.isfinite(lam) and lam >= 0,
                "lams",
                f"each λ must be a finite number >= 0, got {shown(lam)}",
                "e.g. 0 and 0.1",
            )
        require(
            is_real(self.h) and math.isfinite(self.h) and 0 < self.h <= 1,
            "h",
            f"the finite-difference step must be a number in (0, 1], got {shown(self.h)}",
            "the default is 1e-6",
        )
        require(
            is_int(self.seed) and 0 <= self.seed <= MAX_SEED,
            "seed",
            f"must be an integer from 0 to 2**63 - 1, got {shown(self.seed)}",
            "the default is 42",
        )
        require_choice("loss", self.loss)
        return self

    def key_params(self) -> dict:
        params = {
            "n_samples": self.n_samples,
            "n_dims": self.n_dims,
            "lams": [float(lam) for lam in self.lams],
            "h": self.h,
            "seed": self.seed,
        }
        if self.loss != "softmax":  # only a non-default loss enters the key: existing gradcheck keys stay
            params["loss"] = self.loss
        return params


GRADCHECK_DEFAULTS = GradcheckConfig()


# -- sweeps ---------------------------------------------------------------------------


GRID = {"lam": float, "eta": float, "n_batch": int, "n_epochs": int}  # the axes, and their types


@dataclass(frozen=True)
class SweepSpec:
    """The grid and the options every point shares."""

    lam: tuple
    eta: tuple
    n_batch: tuple = (TRAIN_DEFAULTS.n_batch,)
    n_epochs: tuple = (TRAIN_DEFAULTS.n_epochs,)
    fixed: dict = field(default_factory=dict)

    def axes(self) -> dict[str, list]:
        return {name: list(getattr(self, name)) for name in GRID}

    def configs(self) -> list[TrainConfig]:
        """One TrainConfig per point, in grid order (λ slowest, epochs fastest)."""
        return [
            TrainConfig(lam=lam, eta=eta, n_batch=nb, n_epochs=ne, **self.fixed)
            for lam, eta, nb, ne in itertools.product(self.lam, self.eta, self.n_batch, self.n_epochs)
        ]

    def varying(self) -> list[str]:
        """The axes besides λ and η that take more than one value."""
        return [name for name in ("n_batch", "n_epochs") if len(getattr(self, name)) > 1]


def make_spec(axes: dict[str, Any], fixed: dict | None = None) -> SweepSpec:
    """A SweepSpec from each axis's values (a list or one number; lam and eta required) and fixed options."""
    values = {}
    for name, kind in GRID.items():
        raw = axes.get(name)
        if raw is None:
            require(name not in ("lam", "eta"), name, "missing", "e.g. 0,0.01,0.1 (a list of values)")
            values[name] = [getattr(TRAIN_DEFAULTS, name)]
        else:
            values[name] = grid_values(name, raw, kind)
    fixed = dict(fixed or {})
    unknown = [k for k in fixed if k not in train_fields() or k in GRID]
    if unknown:
        raise OptionError(
            unknown[0], "is not a training option a sweep can fix", hint="known: " + ", ".join(sorted(train_fields()))
        )
    spec = SweepSpec(**{k: tuple(v) for k, v in values.items()}, fixed=fixed)
    spec.configs()[0].validate()  # the fixed options, named as in `cifarcli train`
    return spec


# -- the report's settings file ------------------------------------------------------


STUDY = (
    TrainConfig(lam=0.0, eta=0.1),
    TrainConfig(lam=0.0, eta=0.001),
    TrainConfig(lam=0.1, eta=0.001),
    TrainConfig(lam=1.0, eta=0.001),
)


@dataclass
class ReportSettings:
    runs: list = field(default_factory=lambda: list(STUDY))  # list[TrainConfig]
    gradcheck: GradcheckConfig = GRADCHECK_DEFAULTS
    sweep: SweepSpec | None = None  # with a [sweep] table
    ensemble: list | None = None  # with an [ensemble] table: its members' TrainConfigs
    discussion: Path | None = None  # [report] discussion = "FILE" (beside the settings)
    brief: bool = False  # [report] brief = true


def load_settings(path: Path | None) -> ReportSettings:
    """The study's settings, or those of a TOML file, validated key by key."""
    if path is None:
        return ReportSettings()
    document = read_document(path)
    defaults = table(document, "defaults", path)
    runs = document.get("run", [])
    if (
        not isinstance(runs, list)
        or not (runs or "sweep" in document or "ensemble" in document)
        or not all(isinstance(run, dict) for run in runs)
    ):
        raise CifarError(
            f"{path}: needs at least one [[run]] table (or a [sweep] table)",
            hint="see docs/report.md, the settings file",
        )
    configs = [_run_config({**defaults, **run}, f"{path}: run {i + 1}") for i, run in enumerate(runs)]
    no_duplicate_runs(configs, path)
    gradcheck = _gradcheck_config(table(document, "gradcheck", path), f"{path}: [gradcheck]")
    sweep = _sweep_spec(table(document, "sweep", path), defaults, f"{path}: [sweep]") if "sweep" in document else None
    ensemble = (
        _ensemble_configs(table(document, "ensemble", path), defaults, f"{path}: [ensemble]")
        if "ensemble" in document
        else None
    )
    discussion, brief = report_options(document, path)
    return ReportSettings(
        runs=configs, gradcheck=gradcheck, sweep=sweep, ensemble=ensemble, discussion=discussion, brief=brief
    )


def check_seeds(seeds: list[int]) -> list[int]:
    """An ensemble's seeds, one training each: at most ``MAX_SEEDS`` of them."""
    if len(seeds) > MAX_SEEDS:
        raise OptionError(
            "seeds",
            f"at most {MAX_SEEDS} seeds (one training each), got {len(seeds)}",
            hint="an ensemble gains little beyond a few members",
        )
    return seeds


def _ensemble_configs(values: dict, defaults: dict, where: str) -> list[TrainConfig]:
    """The ``[ensemble]`` table: ``seeds`` (two or more) and the options of one run, each at every seed."""
    check_known(values, {*train_fields(), "seeds"}, where)
    seeds = ensemble_seeds(values, where)
    named(where, lambda: check_seeds(seeds))
    run = {k: v for k, v in values.items() if k != "seeds"}
    return [_run_config({**defaults, **run, "seed": seed}, where) for seed in seeds]


def _run_config(values: dict, where: str) -> TrainConfig:
    check_known(values, train_fields(), where)
    for required in ("lam", "eta"):
        if required not in values:
            raise CifarError(f"{where}: missing key {required!r}")
    return named(where + ":", lambda: TrainConfig(**values).validate())


def _gradcheck_config(values: dict, where: str) -> GradcheckConfig:
    check_known(values, {f.name for f in fields(GradcheckConfig)}, where)
    values = {**values, **({"lams": tuple(values["lams"])} if isinstance(values.get("lams"), list) else {})}
    return named(where, lambda: GradcheckConfig(**values).validate())


def _sweep_spec(values: dict, defaults: dict, where: str) -> SweepSpec:
    """The ``[sweep]`` table (``[defaults]`` fill the options it leaves out)."""
    check_known(values, train_fields(), where)
    merged = {**{k: v for k, v in defaults.items() if k not in ("lam", "eta")}, **values}
    axes = {k: v for k, v in merged.items() if k in GRID}
    return named(where, lambda: make_spec(axes, {k: v for k, v in merged.items() if k not in GRID}))
