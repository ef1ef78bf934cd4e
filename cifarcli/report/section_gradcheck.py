"""Layer 3 of the report: the gradient check section (how it was measured, the errors, the verdict)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .blocks import Heading, Para, Span, Table
from .format import finite, fmt_err, fmt_num, fmt_seconds, fmt_share
from .measures import gradcheck_passed, loss_object


def gradcheck_blocks(gc: Mapping[str, Any] | None) -> list:
    """The section: how the errors were measured, their table, the hinge's kinks, the verdict, W's corner."""
    blocks: list = [Heading(2, "Gradient check", "gradcheck")]
    if not gc:
        blocks.append(Para("The gradient check is not part of this report."))
        return blocks
    blocks.append(Para(_method(gc)))
    kinked = not loss_object(gc.get("loss")).smooth
    blocks += _error_table(gc, kinked)
    if kinked:
        blocks.append(_kinks_note(gc))
    blocks.append(_verdict(gc))
    return blocks + _corner_tables(gc)


def _method(gc: Mapping[str, Any]) -> str:
    """What was measured, on how much, with which step, and how long it took."""
    desc = [
        "Relative error |g_a − g_n| / max(eps, |g_a| + |g_n|) between the analytic and a "
        "centred-difference numerical gradient"
    ]
    if gc.get("n_samples") is not None:
        desc.append(f", on {gc['n_samples']} examples")
    if gc.get("n_dims") is not None:
        desc.append(f" and {gc['n_dims']} input dimensions")
    if gc.get("h") is not None:
        desc.append(f", step h = {fmt_err(gc['h'])}")
    if gc.get("elapsed") is not None:
        desc.append(f" ({fmt_seconds(gc['elapsed'])})")
    return "".join(desc) + "."


def _error_table(gc: Mapping[str, Any], kinked: bool) -> list:
    """The errors of W and b at each λ, a failing row highlighted; with ``kinked``, the parameters left out."""
    tol = gc.get("tol")
    rows, bad = [], set()
    for res in gc.get("results", []):
        for p in ("W", "b"):
            st = res.get(p)
            if not st:
                continue
            passed = tol is not None and finite(st.get("max")) and float(st["max"]) <= float(tol)
            if not passed:
                bad.add(len(rows))
            kinks = [f"{(res.get('kinks') or {}).get(p, 0)} of {st.get('n', '—')}"] if kinked else []
            rows.append(
                [
                    fmt_num(res.get("lam")),
                    Span(p, code=True),
                    fmt_err(st.get("max")),
                    fmt_err(st.get("mean")),
                    fmt_err(st.get("median")),
                    fmt_share(st.get("share_below_tol")),
                    *kinks,
                    Span("PASS" if passed else "FAIL", bold=True),
                ]
            )
    if not rows:
        return []
    header = [
        "λ",
        "parameter",
        "max",
        "mean",
        "median",
        f"share < {fmt_err(tol)}",
        *(["within h of a kink (excluded)"] if kinked else []),
        "result",
    ]
    return [Table(header, rows, align="llrrrr" + ("r" if kinked else "") + "l", highlight=bad)]


def _kinks_note(gc: Mapping[str, Any]) -> Para:
    """Why the parameters next to one of the hinge's kinks are left out, and how many there are."""
    n_kinks = sum(sum((res.get("kinks") or {}).values()) for res in gc.get("results", []))
    return Para(
        f"The SVM's hinge has kinks: {n_kinks} checked parameter(s) lie within h of one "
        "(their ±h moves a margin across zero, where a centred difference is not a "
        "gradient). They are left out of max, mean, median and the verdict.",
        "note",
    )


def _verdict(gc: Mapping[str, Any]) -> Para:
    ok = gradcheck_passed(gc)
    return Para(
        [
            Span(f"{'PASS' if ok else 'FAIL'}", bold=True),
            f": every maximum relative error {'is' if ok else 'is not'} within the tolerance {fmt_err(gc.get('tol'))}.",
        ],
        "pass" if ok else "fail",
    )


def _corner_tables(gc: Mapping[str, Any]) -> list:
    """The relative error of W's top-left corner at each λ, one table each."""
    tables = []
    for res in gc.get("results", []):
        corner = (res.get("W") or {}).get("corner")
        if not corner:
            continue
        n = len(corner[0]) if corner else 0
        tables.append(
            Table(
                [""] + [f"j={j}" for j in range(n)],
                [[f"k={i}"] + [fmt_err(v) for v in r] for i, r in enumerate(corner)],
                caption=f"Relative error of W, top-left {len(corner)}×{n} corner "
                f"(λ={fmt_num(res.get('lam'))}); k = class, j = input dimension.",
            )
        )
    return tables
