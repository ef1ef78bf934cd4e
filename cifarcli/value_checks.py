"""Checks of a setting's value: its kind (number, integer, boolean), a grid axis, and the refusal naming the setting.

``numbers.*`` admit numpy's scalars too, and this module imports no numpy: the CLI reads
its defaults through ``config.py``, and ``cifarcli --help`` must stay instant.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import OptionError, shown


def is_real(x) -> bool:
    """An int or float (numpy's too), not a bool."""
    return isinstance(x, numbers.Real) and not is_bool(x)


def is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not is_bool(x)


def is_bool(x) -> bool:
    return isinstance(x, bool) or type(x).__name__ == "bool_"  # numpy.bool_ is no int subclass


def require(ok: bool, option: str, message: str, hint: str | None = None) -> None:
    """Raise ``OptionError`` naming ``option`` unless ``ok``."""
    if not ok:
        raise OptionError(option, message, hint)


def grid_values(option: str, values: Any, kind: type) -> list:
    """A grid axis given as a list or one number, checked and typed; OptionError naming ``option``."""
    if not isinstance(values, list):
        values = [values]
    require(len(values) > 0, option, "empty grid", "give one value or more")
    out = []
    for value in values:
        require(is_real(value) and math.isfinite(value), option, f"{shown(value)} is not a finite number")
        if kind is int:
            require(value == int(value) and value >= 1, option, f"{shown(value)} is not an integer >= 1")
            value = int(value)
        else:
            value = float(value)
            require(option != "eta" or value > 0, option, f"the learning rate must be > 0, got {value:g}")
            require(option != "lam" or value >= 0, option, f"the regularisation must be >= 0, got {value:g}")
        require(value not in out, option, f"{value:g} is listed twice", "each value once")
        out.append(value)
    return out
