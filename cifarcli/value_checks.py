"""Checks of a setting's value: its kind (number, integer, boolean) and the refusal naming the setting.

``numbers.*`` admit numpy's scalars too, and this module imports no numpy: the CLI reads
its defaults through ``config.py``, and ``cifarcli --help`` must stay instant.
"""

from __future__ import annotations

import numbers

from .errors import OptionError


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
