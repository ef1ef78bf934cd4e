"""Layer 2 of the report: the instability rule, its verdict on a run, and the stability sentences.

Instability rule (``instability``): a run is *unstable* when any of

- it diverged (``diverged_at`` set, or a NaN/inf in its cost or loss history);
- its final training cost is more than ``RISE_TOL`` (5 %) above the lowest
  training cost it reached;
- its training cost climbs: the sum of its epoch-to-epoch *increases*
  (after epoch 1) exceeds ``OSCILLATION_TOL`` (10 %) of its minimum — called an
  *oscillation* when the direction reverses at least ``MIN_REVERSALS`` (4)
  times (a saw-tooth), a *rise* otherwise;
- its validation loss oscillates by the same measure (≥ 4 reversals). A
  smooth rise of the validation loss is over-fitting, not instability.

A validation loss that creeps up slowly while training goes on is reported
separately, as over-fitting, when it ends more than ``OVERFIT_TOL`` (1 %) above
its minimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .format import fmt_loss, join_names
from .measures import epochs_of, fmt_update, history_of, run_name, update_of

RISE_TOL = 0.05
OSCILLATION_TOL = 0.10
OVERFIT_TOL = 0.01
MIN_REVERSALS = 4
STABILITY_RULE = (
    f"Rule: a run is unstable when it diverged (NaN or infinite cost), when its final "
    f"training cost is more than {RISE_TOL:.0%} above its minimum, or when the "
    f"epoch-to-epoch increases of its training cost add up to more than "
    f"{OSCILLATION_TOL:.0%} of its minimum (the same for the validation loss when it "
    f"changes direction at least {MIN_REVERSALS} times). Over-fitting is reported when "
    f"the validation loss ends more than {OVERFIT_TOL:.0%} above its minimum."
)


def _upward_total(values: Sequence[float]) -> tuple[float, int, int]:
    """Sum of the epoch-to-epoch increases, how many steps went up, how many steps."""
    steps = [b - a for a, b in zip(values, values[1:])]
    ups = [s for s in steps if s > 0]
    return sum(ups), len(ups), len(steps)


@dataclass(frozen=True)
class Instability:
    """Why a run is called unstable: ``kind`` in {'diverged', 'rise', 'oscillation'}."""

    kind: str
    reason: str  # what the numbers say
    curve: str  # how it shows in the loss curve


def instability(run: Mapping[str, Any]) -> Instability | None:
    """Apply the module's instability rule to one run; None when stable."""
    cost = history_of(run, "train_cost")
    found = _divergence(run) or _oscillation(cost, "training cost", MIN_REVERSALS) or _final_rise(run, cost)
    if found:
        return found
    return _oscillation(cost, "training cost", 0) or _oscillation(
        history_of(run, "val_loss"), "validation loss", MIN_REVERSALS
    )


def _divergence(run: Mapping[str, Any]) -> Instability | None:
    """The run diverged: stopped for it, or a NaN or infinity in one of its cost or loss histories."""
    div = run.get("diverged_at")
    if div is not None:
        return Instability(
            "diverged",
            f"training diverged at epoch {div} (the cost became NaN or infinite) and was stopped there",
            f"its curves end at epoch {div}",
        )
    epochs = epochs_of(run)
    for key in ("train_cost", "train_loss", "val_cost", "val_loss"):
        vals = history_of(run, key)
        bad = [i for i, v in enumerate(vals) if not math.isfinite(v)]
        if bad:
            e = epochs[bad[0]] if bad[0] < len(epochs) else bad[0]
            return Instability(
                "diverged",
                f"its {key.replace('_', ' ')} became non-finite at epoch {e}",
                f"its curves break off at epoch {e}",
            )
    return None


def _climb(vals: Sequence[float]) -> tuple[float, int, int, int]:
    """(total of the upward steps after epoch 1, up steps, steps, direction reversals)."""
    body = [v for v in vals[1:]]  # the first step leaves the init: ignore it
    up, n_up, n = _upward_total(body)
    steps = [b - a for a, b in zip(body, body[1:]) if b != a]
    reversals = sum(1 for s, t in zip(steps, steps[1:]) if (s > 0) != (t > 0))
    return up, n_up, n, reversals


def _oscillation(vals: Sequence[float], name: str, need_reversals: int) -> Instability | None:
    """The curve ``vals`` climbs by more than ``OSCILLATION_TOL`` of its minimum, changing direction at least
    ``need_reversals`` times: an oscillation (a saw-tooth) from ``MIN_REVERSALS`` on, a rise below."""
    if len(vals) < 3 or min(vals) <= 0:
        return None
    lo = min(vals)
    up, n_up, n, rev = _climb(vals)
    if up > OSCILLATION_TOL * lo and rev >= need_reversals:
        saw = rev >= MIN_REVERSALS
        return Instability(
            "oscillation" if saw else "rise",
            f"its {name} went up in {n_up} of {n} epochs, climbing {fmt_loss(up)} in total "
            f"({up / lo * 100:.0f} % of its minimum {fmt_loss(lo)})",
            "its loss curve is a saw-tooth instead of a steady decrease"
            if saw
            else "its loss curve climbs back up before it comes down again",
        )
    return None


def _final_rise(run: Mapping[str, Any], cost: Sequence[float]) -> Instability | None:
    """The final training cost ends more than ``RISE_TOL`` above the lowest it reached."""
    if len(cost) < 2 or min(cost) <= 0:
        return None
    lo = min(cost)
    if cost[-1] <= lo * (1 + RISE_TOL):
        return None
    rise = cost[-1] / lo - 1
    return Instability(
        "rise",
        f"its final training cost, {fmt_loss(cost[-1])}, is {rise * 100:.1f} % above the lowest "
        f"it reached, {fmt_loss(lo)} at epoch {epochs_of(run)[cost.index(lo)]}",
        "its loss curve ends well above its lowest point",
    )


def stability_label(run: Mapping[str, Any]) -> str:
    """The rule's verdict in a table cell: 'stable', '⚠ unstable' or '⚠ diverged at epoch N'."""
    found = instability(run)
    if found is None:
        return "stable"
    if found.kind == "diverged":
        at = run.get("diverged_at")
        return "⚠ diverged" + (f" at epoch {at}" if at is not None else "")
    return "⚠ unstable"


def overfitting(run: Mapping[str, Any]) -> tuple[Any, float, float] | None:
    """(epoch of the lowest validation loss, that loss, relative rise by the end) or None."""
    vloss = history_of(run, "val_loss")
    if len(vloss) < 2 or not all(math.isfinite(v) for v in vloss):
        return None
    lo = min(vloss)
    i = vloss.index(lo)
    rise = vloss[-1] / lo - 1 if lo > 0 else 0.0
    if rise > OVERFIT_TOL:
        return epochs_of(run)[i], lo, rise
    return None


def update_sentences(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why an unstable run is unstable, measured: the size of one update relative to the weights it changes."""
    stable = [r for r in runs if instability(r) is None and update_of(r) is not None]
    out = []
    for run in runs:
        found, size = instability(run), update_of(run)
        if found is None or found.kind == "diverged" or size is None:
            continue
        text = (
            f"Why {run_name(run)} was unstable: one mini-batch update, η‖∂J/∂W‖/‖W‖ measured over an epoch "
            f"of batches at its final weights, moves W by {fmt_update(size)} of its own norm (median)"
        )
        # Set against the stable runs that differ from it in η alone, when there are any.
        same_but_eta = [
            r
            for r in stable
            if {k: v for k, v in r.get("config", {}).items() if k != "eta"}
            == {k: v for k, v in run.get("config", {}).items() if k != "eta"}
        ]
        for other in same_but_eta or stable:
            text += (
                f"; {fmt_update(update_of(other))} for the stable {run_name(other)} "
                f"({size / update_of(other):.0f} times less)"
            )
        out.append(
            text + ": each step is too large for the weights it changes, overshoots the minimum "
            "along the batch's gradient and undoes part of the previous steps, so the cost "
            "goes up and down."
        )
    return out


def stability_sentences(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Which runs the instability rule flags, why, and how it shows; then over-fitting."""
    out, stable = [], []
    for run in runs:
        inst = instability(run)
        if inst is None:
            stable.append(run_name(run))
        else:
            out.append(f"{run_name(run)} was unstable: {inst.reason}; {inst.curve}.")
    out += update_sentences(runs)
    if stable and out:
        out.append(f"{join_names(stable)} {'was' if len(stable) == 1 else 'were'} stable by the same rule.")
    elif stable:
        out.append(f"No run was unstable by this rule ({join_names(stable)}).")
    for run in runs:
        if instability(run) is not None:
            continue
        of = overfitting(run)
        if of:
            e, lo, rise = of
            vloss = history_of(run, "val_loss")
            out.append(
                f"{run_name(run)}: the validation loss was lowest at epoch {e} ({fmt_loss(lo)}) "
                f"and ended {rise * 100:.1f} % higher ({fmt_loss(vloss[-1])}), a sign of over-fitting."
            )
    return out
