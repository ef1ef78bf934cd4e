"""The report's list of settings: the study's four by default, or a TOML file.

A settings file looks like this (every key optional except each run's lam and eta)::

    [defaults]          # applies to every run below
    n_epochs = 40
    n_batch = 100

    [gradcheck]
    n_samples = 100
    lams = [0.0, 0.1]

    [[run]]
    lam = 0.0
    eta = 0.1

    [[run]]
    lam = 0.1
    eta = 0.001

    [sweep]             # optional: a λ × η grid (see cifarcli.sweep); [[run]] tables are then optional
    lam = [0, 0.01, 0.1, 1]
    eta = [0.001, 0.01]
    n_epochs = 40       # n_batch / n_epochs: a list or one value; other run keys are fixed values
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from cifarcli.errors import CifarError

STUDY = ({"lam": 0.0, "eta": 0.1}, {"lam": 0.0, "eta": 0.001}, {"lam": 0.1, "eta": 0.001}, {"lam": 1.0, "eta": 0.001})
GRADCHECK_DEFAULTS = {"n_samples": 100, "n_dims": None, "lams": [0.0, 0.1], "h": 1e-6, "seed": 42}


@dataclass
class ReportSettings:
    runs: list = field(default_factory=list)  # list[TrainConfig]
    gradcheck: dict = field(default_factory=lambda: dict(GRADCHECK_DEFAULTS))
    sweep: object = None  # cifarcli.sweep.SweepSpec when the file has a [sweep] table


def study_settings() -> ReportSettings:
    from cifarcli.train import TrainConfig

    return ReportSettings(runs=[TrainConfig(**run) for run in STUDY])


def load_settings(path: Path | None) -> ReportSettings:
    """The study's settings, or those of a TOML file, validated key by key."""
    if path is None:
        return study_settings()
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        document = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CifarError(f"no such settings file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CifarError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CifarError(f"{path} is not valid TOML: {exc}") from None
    _known(document, {"defaults", "gradcheck", "run", "sweep"}, f"{path}")
    defaults = _table(document, "defaults", path)
    runs = document.get("run", [])
    if not isinstance(runs, list) or not (runs or "sweep" in document) or \
            not all(isinstance(run, dict) for run in runs):
        raise CifarError(f"{path}: needs at least one [[run]] table (or a [sweep] table)",
                         hint="see the README's report section")
    configs = [_config({**defaults, **run}, f"{path}: run {i + 1}") for i, run in enumerate(runs)]
    gradcheck = _table(document, "gradcheck", path)
    _known(gradcheck, set(GRADCHECK_DEFAULTS), f"{path}: [gradcheck]")
    _check_gradcheck({**GRADCHECK_DEFAULTS, **gradcheck}, f"{path}: [gradcheck]")
    sweep = None
    if "sweep" in document:
        from cifarcli.sweep import spec_from_table

        sweep = spec_from_table(_table(document, "sweep", path), defaults, f"{path}: [sweep]")
    return ReportSettings(runs=configs, gradcheck={**GRADCHECK_DEFAULTS, **gradcheck}, sweep=sweep)


def _table(document: dict, name: str, path) -> dict:
    value = document.get(name, {})
    if not isinstance(value, dict):
        raise CifarError(f"{path}: {name} must be a table ([{name}])")
    return value


def _known(table: dict, allowed: set, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise CifarError(f"{where}: unknown key {key!r}", hint="known keys: " + ", ".join(sorted(allowed)))


def _config(values: dict, where: str):
    from cifarcli.train import TrainConfig

    _known(values, {f.name for f in fields(TrainConfig)}, where)
    for required in ("lam", "eta"):
        if required not in values:
            raise CifarError(f"{where}: missing key {required!r}")
    try:
        return TrainConfig(**values).validate()
    except CifarError as error:
        raise CifarError(f"{where}: {error.message}", error.hint) from None


def _check_gradcheck(table: dict, where: str) -> None:
    """The [gradcheck] keys, checked as ``cifarcli gradcheck`` checks its options, named as in the file."""
    from cifarcli.gradcheck import check_options

    check_options(table["n_samples"], table["n_dims"], table["lams"], table["h"], table["seed"],
                  names={key: f"{where} {key}" for key in GRADCHECK_DEFAULTS})
