"""Layer 1 of the report: how numbers and settings are written as text.

Every value in a table or a sentence goes through one of these, so the
analysis and the tables print the same number the same way (an accuracy with
4 decimals, a difference in percentage points with a true minus sign, a
missing value as '—').
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MINUS = "\u2212"


def finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt_acc(x: Any) -> str:
    """Accuracy with 4 decimals, as in the study (0.3876); '—' when missing."""
    if x is None:
        return "—"
    return f"{float(x):.4f}" if finite(x) else str(float(x))


fmt_loss = fmt_acc


def fmt_ci(ci: Any) -> str:
    """A 95 % interval as '[0.3794, 0.3985]'; '' when missing."""
    if not ci or len(ci) != 2 or not all(finite(v) for v in ci):
        return ""
    return f"[{float(ci[0]):.4f}, {float(ci[1]):.4f}]"


def fmt_acc_ci(x: Any, ci: Any) -> str:
    """An accuracy with its 95 % Wilson interval: '0.3889 [0.3794, 0.3985]' (the accuracy alone without one)."""
    interval = fmt_ci(ci)
    return fmt_acc(x) + (f" {interval}" if interval and finite(x) else "")


def fmt_p(p: Any) -> str:
    """A p-value: 'p = 0.012', 'p = 0.41', 'p < 0.0001'."""
    if not finite(p):
        return "p = —"
    p = float(p)
    if p < 1e-4:
        return "p < 0.0001"
    return f"p = {p:.2g}" if p < 0.01 else f"p = {p:.2f}" if p < 0.995 else "p = 1"


def fmt_points(x: Any, signed: bool = False) -> str:
    """A difference of two accuracies in percentage points: 0.0692 -> '6.92'."""
    v = round(float(x) * 100, 2)
    if v == 0:
        v = 0.0  # no '-0.00'
    s = f"{abs(v):.2f}"
    if signed:
        return ("+" if v > 0 else MINUS if v < 0 else "±") + s
    return (MINUS if v < 0 else "") + s


def fmt_num(x: Any) -> str:
    """A hyper-parameter: 0.001 -> '0.001', 0.0 -> '0', 1.0 -> '1'."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    return f"{x:g}"


def fmt_err(x: Any) -> str:
    """A relative error: 1.234e-08 -> '1.23e-08'."""
    return f"{float(x):.2e}" if finite(x) else str(x)


def fmt_share(x: Any) -> str:
    return f"{float(x) * 100:.1f} %" if finite(x) else "—"


def fmt_seconds(x: Any) -> str:
    if not finite(x):
        return "—"
    x = float(x)
    if x < 60:
        return f"{x:.1f} s"
    return f"{int(x // 60)} min {x % 60:.0f} s"


def join_names(names: Sequence[str]) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return "; ".join(names[:-1]) + " and " + names[-1]


PARAM_WORDS = {
    "lam": "λ",
    "eta": "η",
    "n_batch": "n_batch",
    "n_epochs": "epochs",
    "seed": "seed",
    "split": "split",
    "dtype": "dtype",
}


def describe_setting(setting: Mapping[str, Any]) -> str:
    return ", ".join(f"{PARAM_WORDS.get(k, k)}={fmt_num(v)}" for k, v in setting.items())
