"""The report's settings file as a document: read safely, parsed as TOML, its tables and keys checked.

What each value means, and its default, is ``config.py``'s (``load_settings``); here
is only the file. A settings file looks like this (every key optional except each run's lam and eta)::

    [defaults]          # applies to every run below
    n_epochs = 40
    n_batch = 100

    [gradcheck]
    n_samples = 100
    lams = [0.0, 0.1]

    [[run]]
    lam = 0.0
    eta = 0.1

    [sweep]             # optional: a λ × η grid; [[run]] tables are then optional
    lam = [0, 0.01, 0.1, 1]
    eta = [0.001, 0.01]
    n_epochs = 40       # n_batch / n_epochs: a list or one value; other run keys are fixed values

    [ensemble]          # optional: one setting at several seeds, combined (cifarcli ensemble)
    seeds = [1, 2, 3]
    lam = 0.1           # any key of a [[run]]; [defaults] fill the others
    eta = 0.001
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import CifarError, OptionError, shown
from .files import UnsafeFile, read_small
from .value_checks import is_int

SETTINGS_HINT = "a settings file holds [defaults], [gradcheck], [[run]], [sweep] and [ensemble] tables of plain values"
_TABLES = {"defaults", "gradcheck", "run", "sweep", "ensemble", "report"}


def read_document(path: Path) -> dict:
    """The file's TOML document, its top-level tables checked; each failure is one CifarError."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        document = tomllib.loads(read_small(Path(path), follow=True).decode())
    except FileNotFoundError:
        raise CifarError(f"no such settings file: {path}") from None
    except (OSError, UnicodeDecodeError, UnsafeFile) as exc:
        raise CifarError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CifarError(f"{path} is not valid TOML: {exc}") from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise CifarError(f"{path}: values nested too deeply to read", hint=SETTINGS_HINT) from None
    except ValueError:  # an integer of thousands of digits (Python's int-from-text limit)
        raise CifarError(f"{path}: a number has too many digits to read", hint=SETTINGS_HINT) from None
    check_known(document, _TABLES, f"{path}")
    return document


def table(document: dict, name: str, path) -> dict:
    """The table ``name`` of the document (empty when absent)."""
    value = document.get(name, {})
    if not isinstance(value, dict):
        raise CifarError(f"{path}: {name} must be a table ([{name}])")
    return value


def check_known(values: dict, allowed, where: str) -> None:
    """Refuse the first key of ``values`` not in ``allowed``, listing the known ones."""
    for key in values:
        if key not in allowed:
            raise CifarError(f"{where}: unknown key {shown(key)}", hint="known keys: " + ", ".join(sorted(allowed)))


def named(where: str, make):
    """``make()``, with an OptionError re-raised as one CifarError naming the file's key."""
    try:
        return make()
    except OptionError as error:
        raise CifarError(f"{where} {error.option}: {error.message}", error.hint) from None
    except TypeError as error:  # a key of the wrong kind that the dataclass itself refused
        raise CifarError(f"{where}: {error}") from None


def report_options(document: dict, path) -> tuple[Path | None, bool]:
    """The ``[report]`` table: (the discussion file, beside the settings, or None; brief)."""
    report = table(document, "report", path)
    check_known(report, {"discussion", "brief"}, f"{path}: [report]")
    if not isinstance(report.get("discussion", ""), str) or not isinstance(report.get("brief", False), bool):
        raise CifarError(f"{path}: [report] discussion must be a file name (a string) and brief true or false")
    discussion = Path(path).parent / report["discussion"] if report.get("discussion") else None
    return discussion, report.get("brief", False)


def no_duplicate_runs(configs: list, path) -> None:
    """Two [[run]] tables with the same settings (defaults applied) would be one run reported twice."""
    seen: dict[str, int] = {}
    for i, config in enumerate(configs):
        key = json.dumps(config.key_params(), sort_keys=True)
        if key in seen:
            raise CifarError(
                f"{path}: run {seen[key] + 1} and run {i + 1} are the same setting "
                f"(λ={config.lam:g}, η={config.eta:g})",
                hint="remove one of the two [[run]] tables",
            )
        seen[key] = i


def ensemble_seeds(values: dict, where: str) -> list:
    """The ``seeds`` of an ``[ensemble]`` table: two or more different integers, and no lone ``seed`` beside them."""
    if "seed" in values:  # each member's seed is one of seeds: a lone seed would be dropped without a word
        raise CifarError(f"{where}: seed is taken from seeds; leave it out", hint="e.g. seeds = [5, 6, 7]")
    seeds = values.get("seeds")
    if (
        not isinstance(seeds, list)
        or len(seeds) < 2
        or not all(is_int(s) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise CifarError(
            f"{where}: seeds must list two or more different integers, got {shown(seeds)}",
            hint="e.g. seeds = [1, 2, 3, 4, 5]",
        )
    return seeds
