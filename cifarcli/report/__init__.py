"""The study report: ``report.md`` (GitHub) and a self-contained ``report.html``.

Pure rendering from an in-memory document (see ``render_markdown`` for its
shape); no cache and no CLI here. The module has three layers:

1. **Analysis** — small pure functions that read the measured numbers and return
   plain-text sentences (``gap_sentences``, ``stability_sentences``,
   ``effect_sentences``, ``best_run_sentences``, ...). No sentence is fixed
   prose: each one is computed from the document, so the analysis never
   contradicts the tables. An effect (of λ, of η) is described only for runs
   that differ in exactly that one setting.
2. **Blocks** — ``build_blocks(doc)`` turns the document into a neutral list of
   headings, paragraphs, tables and figures.
3. **Renderers** — the same blocks rendered as GitHub Markdown (images linked
   relative to the report) or as one HTML file (images inlined as base64 PNG,
   CSS inlined, no script, no external URL).

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

import base64
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union
from urllib.parse import quote

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

SPLITS = (("train", "train"), ("val", "validation"), ("test", "test"))
FIGURE_CAPTIONS = {
    "loss": "Loss and cost per epoch (train and validation).",
    "accuracy": "Accuracy per epoch (train and validation).",
    "weights": "Learnt weights W, one 32×32 image per class, each scaled to its own range.",
    "confusion": "Confusion matrix on the test set (rows: true class, columns: predicted).",
    "probabilities": "Probability the model gives the true class of each test image, correctly vs "
                     "incorrectly classified images, each as a share of its group.",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MINUS = "\u2212"


# ==========================================================================
# number formatting


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt_acc(x: Any) -> str:
    """Accuracy with 4 decimals, as in the study (0.3876); '—' when missing."""
    if x is None:
        return "—"
    return f"{float(x):.4f}" if _finite(x) else str(float(x))


fmt_loss = fmt_acc


def fmt_points(x: Any, signed: bool = False) -> str:
    """A difference of two accuracies in percentage points: 0.0692 -> '6.92'."""
    v = round(float(x) * 100, 2)
    if v == 0:
        v = 0.0                                   # no '-0.00'
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
    return f"{float(x):.2e}" if _finite(x) else str(x)


def fmt_share(x: Any) -> str:
    return f"{float(x) * 100:.1f} %" if _finite(x) else "—"


def fmt_seconds(x: Any) -> str:
    if not _finite(x):
        return "—"
    x = float(x)
    if x < 60:
        return f"{x:.1f} s"
    return f"{int(x // 60)} min {x % 60:.0f} s"


# ==========================================================================
# analysis: pure functions, numbers in, sentences out


def run_name(run: Mapping[str, Any]) -> str:
    """The human label of a run ('λ=0.1, η=0.001'), built from the config if absent."""
    if run.get("label"):
        return str(run["label"])
    c = run.get("config", {})
    return f"λ={fmt_num(c.get('lam'))}, η={fmt_num(c.get('eta'))}"


def _metrics(run: Mapping[str, Any]) -> Mapping[str, Any]:
    """The run's evaluation, {} when it has none (a diverged run is never evaluated: ``metrics`` is None)."""
    return run.get("metrics") or {}


def _acc(run: Mapping[str, Any], split: str) -> float | None:
    v = (_metrics(run).get(split) or {}).get("accuracy")
    return float(v) if _finite(v) else None


def accuracy_gap(run: Mapping[str, Any]) -> float | None:
    """Final train accuracy minus validation accuracy (a fraction)."""
    tr, va = _acc(run, "train"), _acc(run, "val")
    return None if tr is None or va is None else tr - va


def gap_sentences(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per run on its train–validation accuracy gap."""
    out = []
    for run in runs:
        tr, va, gap = _acc(run, "train"), _acc(run, "val"), accuracy_gap(run)
        if gap is None:
            continue
        if round(gap * 100, 2) > 0:
            tail = f"a gap of {fmt_points(gap)} percentage points"
        elif round(gap * 100, 2) < 0:
            tail = f"validation is above train by {fmt_points(-gap)} percentage points"
        else:
            tail = "no gap"
        out.append(f"{run_name(run)}: train accuracy {fmt_acc(tr)}, validation {fmt_acc(va)}: {tail}.")
    return out


def _history(run: Mapping[str, Any], key: str) -> list[float]:
    return [float(v) if v is not None else float("nan") for v in run.get("history", {}).get(key, [])]


def _epochs(run: Mapping[str, Any]) -> list[Any]:
    h = run.get("history", {})
    n = max((len(v) for v in h.values()), default=0)
    return list(h.get("epoch", range(n)))


def _upward_total(values: Sequence[float]) -> tuple[float, int, int]:
    """Sum of the epoch-to-epoch increases, how many steps went up, how many steps."""
    steps = [b - a for a, b in zip(values, values[1:])]
    ups = [s for s in steps if s > 0]
    return sum(ups), len(ups), len(steps)


@dataclass(frozen=True)
class Instability:
    """Why a run is called unstable: ``kind`` in {'diverged', 'rise', 'oscillation'}."""

    kind: str
    reason: str          # what the numbers say
    curve: str           # how it shows in the loss curve


def instability(run: Mapping[str, Any]) -> Instability | None:
    """Apply the module's instability rule to one run; None when stable."""
    epochs = _epochs(run)
    cost = _history(run, "train_cost")
    vloss = _history(run, "val_loss")
    div = run.get("diverged_at")
    if div is not None:
        return Instability("diverged", f"training diverged at epoch {div} (the cost became NaN or "
                           "infinite) and was stopped there",
                           f"its curves end at epoch {div}")
    for key in ("train_cost", "train_loss", "val_cost", "val_loss"):
        vals = _history(run, key)
        bad = [i for i, v in enumerate(vals) if not math.isfinite(v)]
        if bad:
            e = epochs[bad[0]] if bad[0] < len(epochs) else bad[0]
            return Instability("diverged", f"its {key.replace('_', ' ')} became non-finite at epoch {e}",
                               f"its curves break off at epoch {e}")
    def climb(vals):
        """(total of the upward steps after epoch 1, up steps, steps, direction reversals)."""
        body = [v for v in vals[1:]]                # the first step leaves the init: ignore it
        up, n_up, n = _upward_total(body)
        steps = [b - a for a, b in zip(body, body[1:]) if b != a]
        reversals = sum(1 for s, t in zip(steps, steps[1:]) if (s > 0) != (t > 0))
        return up, n_up, n, reversals

    def oscillation(vals, name, need_reversals):
        if len(vals) < 3 or min(vals) <= 0:
            return None
        lo = min(vals)
        up, n_up, n, rev = climb(vals)
        if up > OSCILLATION_TOL * lo and rev >= need_reversals:
            saw = rev >= MIN_REVERSALS
            return Instability(
                "oscillation" if saw else "rise",
                f"its {name} went up in {n_up} of {n} epochs, climbing {fmt_loss(up)} in total "
                f"({up / lo * 100:.0f} % of its minimum {fmt_loss(lo)})",
                "its loss curve is a saw-tooth instead of a steady decrease" if saw
                else "its loss curve climbs back up before it comes down again")
        return None

    found = oscillation(cost, "training cost", MIN_REVERSALS)
    if found:
        return found
    if len(cost) >= 2 and min(cost) > 0:
        lo = min(cost)
        i_lo = cost.index(lo)
        if cost[-1] > lo * (1 + RISE_TOL):
            rise = cost[-1] / lo - 1
            return Instability(
                "rise",
                f"its final training cost, {fmt_loss(cost[-1])}, is {rise * 100:.1f} % above the lowest "
                f"it reached, {fmt_loss(lo)} at epoch {epochs[i_lo]}",
                "its loss curve ends well above its lowest point")
    return oscillation(cost, "training cost", 0) or oscillation(vloss, "validation loss", MIN_REVERSALS)


def overfitting(run: Mapping[str, Any]) -> tuple[Any, float, float] | None:
    """(epoch of the lowest validation loss, that loss, relative rise by the end) or None."""
    vloss = _history(run, "val_loss")
    if len(vloss) < 2 or not all(math.isfinite(v) for v in vloss):
        return None
    lo = min(vloss)
    i = vloss.index(lo)
    rise = vloss[-1] / lo - 1 if lo > 0 else 0.0
    if rise > OVERFIT_TOL:
        return _epochs(run)[i], lo, rise
    return None


def stability_sentences(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Which runs the instability rule flags, why, and how it shows; then over-fitting."""
    out, stable = [], []
    for run in runs:
        inst = instability(run)
        if inst is None:
            stable.append(run_name(run))
        else:
            out.append(f"{run_name(run)} was unstable: {inst.reason}; {inst.curve}.")
    if stable and out:
        out.append(f"{_join(stable)} {'was' if len(stable) == 1 else 'were'} stable by the same rule.")
    elif stable:
        out.append(f"No run was unstable by this rule ({_join(stable)}).")
    for run in runs:
        if instability(run) is not None:
            continue
        of = overfitting(run)
        if of:
            e, lo, rise = of
            vloss = _history(run, "val_loss")
            out.append(f"{run_name(run)}: the validation loss was lowest at epoch {e} ({fmt_loss(lo)}) "
                       f"and ended {rise * 100:.1f} % higher ({fmt_loss(vloss[-1])}), a sign of over-fitting.")
    return out


def _join(names: Sequence[str]) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return "; ".join(names[:-1]) + " and " + names[-1]


_PARAM_WORDS = {"lam": "λ", "eta": "η", "n_batch": "n_batch", "n_epochs": "epochs",
                "seed": "seed", "split": "split", "dtype": "dtype"}


def _describe(setting: Mapping[str, Any]) -> str:
    return ", ".join(f"{_PARAM_WORDS.get(k, k)}={fmt_num(v)}" for k, v in setting.items())


def single_change_groups(runs: Sequence[Mapping[str, Any]], param: str
                         ) -> list[tuple[dict[str, Any], list[Mapping[str, Any]]]]:
    """Groups of runs whose configs agree on everything but ``param``.

    Returns ``[(fixed settings that vary elsewhere in the study, runs sorted by
    param)]`` for groups with at least two distinct values of ``param``.
    """
    configs = [r.get("config", {}) for r in runs]
    keys = sorted({k for c in configs for k in c})
    # Name the other main hyper-parameter always, and any other setting that varies.
    varying = [k for k in keys if k != param and
               (k in ("lam", "eta") or
                len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1)]
    varying.sort(key=lambda k: (k not in ("lam", "eta"), k))
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run, c in zip(runs, configs):
        if param not in c:
            continue
        rest = json.dumps({k: c.get(k) for k in keys if k != param}, sort_keys=True)
        groups.setdefault(rest, []).append(run)
    out = []
    for members in groups.values():
        seen, uniq = set(), []
        for r in sorted(members, key=lambda r: r["config"][param]):
            v = r["config"][param]
            if v not in seen:
                seen.add(v)
                uniq.append(r)
        if len(uniq) >= 2:
            fixed = {k: uniq[0]["config"].get(k) for k in varying}
            out.append((fixed, uniq))
    return out


def _change(verb_up: str, verb_down: str, a: float, b: float, what: str, fmt, unit: str) -> str:
    if fmt(a) == fmt(b):
        return f"left {what} unchanged at {fmt(a)}{unit}"
    verb = verb_up if b > a else verb_down
    return f"{verb} {what} from {fmt(a)} to {fmt(b)}{unit}"


def effect_sentences(runs: Sequence[Mapping[str, Any]], param: str) -> list[str]:
    """Effect of one hyper-parameter (``'lam'`` or ``'eta'``) at fixed other settings.

    Only pairs of runs that differ in exactly ``param`` are compared; with no
    such pair the list is empty (nothing is said rather than invented).
    """
    sym = _PARAM_WORDS.get(param, param)
    out = []
    for fixed, members in single_change_groups(runs, param):
        where = f"At {_describe(fixed)}" if fixed else "With all other settings fixed"
        for a, b in zip(members, members[1:]):
            va, vb = a["config"][param], b["config"][param]
            parts = []
            ta, tb = _acc(a, "test"), _acc(b, "test")
            if ta is not None and tb is not None:
                part = _change("raised", "lowered", ta, tb, "test accuracy", fmt_acc, "")
                if fmt_acc(ta) != fmt_acc(tb):
                    part += f" ({fmt_points(tb - ta, signed=True)} points)"
                parts.append(part)
            ga, gb = accuracy_gap(a), accuracy_gap(b)
            if ga is not None and gb is not None:
                parts.append(_change("widened", "shrank", ga, gb,
                                     "the train–validation gap",
                                     lambda g: fmt_points(g), " percentage points"))
            if not parts:
                continue
            sentence = f"{where}, raising {sym} from {fmt_num(va)} to {fmt_num(vb)} " + " and ".join(parts)
            ia, ib = instability(a), instability(b)
            if (ia is None) != (ib is None):
                bad, good = (va, vb) if ia else (vb, va)
                sentence += (f"; the run with {sym}={fmt_num(bad)} was unstable, "
                             f"the one with {sym}={fmt_num(good)} was not")
            out.append(sentence + ".")
    return out


def best_runs(runs: Sequence[Mapping[str, Any]], split: str) -> list[int]:
    """Indices of the runs with the highest accuracy on ``split`` (ties at 4 decimals)."""
    accs = [(_acc(r, split)) for r in runs]
    vals = [round(a, 4) for a in accs if a is not None]
    if not vals:
        return []
    top = max(vals)
    return [i for i, a in enumerate(accs) if a is not None and round(a, 4) == top]


def best_run_sentences(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Which run is best on test, and which on validation (the one to deploy)."""
    if not runs:
        return []
    best_test, best_val = best_runs(runs, "test"), best_runs(runs, "val")
    out = []
    if len(runs) == 1 and runs[0].get("diverged_at") is not None:
        return [f"One configuration was run ({run_name(runs[0])}); it diverged at epoch "
                f"{runs[0]['diverged_at']}, so there is no accuracy to report."]
    if len(runs) == 1:
        r = runs[0]
        out.append(f"One configuration was run ({run_name(r)}); it reached test accuracy "
                   f"{fmt_acc(_acc(r, 'test'))}, so there is nothing to compare.")
        return out
    if best_test:
        names = _join([run_name(runs[i]) for i in best_test])
        out.append(f"The highest test accuracy, {fmt_acc(_acc(runs[best_test[0]], 'test'))}, "
                   f"was reached by {names} (marked ★ in the table).")
    if best_val:
        names = _join([run_name(runs[i]) for i in best_val])
        same = ("the same choice" if set(best_val) == set(best_test)
                else "a different choice from the test ranking")
        out.append(f"Choosing on validation accuracy, as one must for deployment since the test set "
                   f"is kept unseen, selects {names} ({fmt_acc(_acc(runs[best_val[0]], 'val'))}): "
                   f"{same}.")
    return out


def class_sentences(run: Mapping[str, Any]) -> list[str]:
    """Easiest and hardest class of one run, from its per-class accuracy."""
    pca = _metrics(run).get("per_class_accuracy") or {}
    items = [(k, float(v)) for k, v in pca.items() if _finite(v)]
    if len(items) < 2:
        return []
    hi = max(items, key=lambda kv: kv[1])
    lo = min(items, key=lambda kv: kv[1])
    return [f"For {run_name(run)}, the easiest class was {hi[0]} ({fmt_acc(hi[1])}) and the "
            f"hardest {lo[0]} ({fmt_acc(lo[1])})."]


def loss_of(run: Mapping[str, Any]) -> str:
    """The run's training loss: "softmax" (the study; absent from the config) or "bce"."""
    return str((run.get("config") or {}).get("loss", "softmax"))


def probability_stats(run: Mapping[str, Any]) -> dict[str, float | None]:
    """Mean true-class probability on correct / misclassified test images and the share of
    confident mistakes, from the run's evaluate summary (None where missing)."""
    pr = _metrics(run).get("probabilities") or {}

    def num(x):
        return float(x) if _finite(x) else None

    return {"correct": num((pr.get("correct") or {}).get("mean")),
            "incorrect": num((pr.get("incorrect") or {}).get("mean")),
            "confident": num(pr.get("confident_mistakes")), "threshold": num(pr.get("threshold"))}


def loss_pairs(runs: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any], bool]]:
    """(softmax run, BCE run, same other settings) pairs to compare; [] unless both losses are present.

    Runs identical but for ``loss`` are paired; when there is no such pair, the
    best-on-validation run of each loss is compared instead (flagged False).
    Only evaluated runs count.
    """
    done = [r for r in runs if _metrics(r).get("test")]
    by_loss = {loss: [r for r in done if loss_of(r) == loss] for loss in ("softmax", "bce")}
    if not by_loss["softmax"] or not by_loss["bce"]:
        return []
    pairs, used = [], set()
    for soft in by_loss["softmax"]:
        rest = {k: v for k, v in soft["config"].items() if k != "loss"}
        for bce in by_loss["bce"]:
            if id(bce) not in used and {k: v for k, v in bce["config"].items() if k != "loss"} == rest:
                pairs.append((soft, bce, True))
                used.add(id(bce))
                break
    if pairs:
        return pairs

    def best(group):
        return max(group, key=lambda r: _acc(r, "val") if _acc(r, "val") is not None else -1.0)

    return [(best(by_loss["softmax"]), best(by_loss["bce"]), False)]


def _more_less(a: float, b: float, fmt, more: str, less: str, same: str) -> str:
    return same if fmt(a) == fmt(b) else more if a > b else less


def loss_sentences(soft: Mapping[str, Any], bce: Mapping[str, Any], same_settings: bool) -> list[str]:
    """How a BCE run compares with a softmax run: accuracy, true-class probabilities, confident mistakes."""
    out = []
    if same_settings:
        shared = {k: soft["config"].get(k) for k in ("lam", "eta")}
        where = f"At {_describe(shared)} with every other setting equal"
    else:
        where = (f"Comparing the best run of each loss on validation accuracy ({run_name(soft)} for softmax, "
                 f"{run_name(bce)} for BCE; their other settings differ)")
    ts, tb = _acc(soft, "test"), _acc(bce, "test")
    if ts is not None and tb is not None:
        if fmt_acc(ts) == fmt_acc(tb):
            out.append(f"{where}, both losses reached test accuracy {fmt_acc(ts)}.")
        else:
            out.append(f"{where}, BCE reached test accuracy {fmt_acc(tb)} against {fmt_acc(ts)} for softmax "
                       f"({fmt_points(tb - ts, signed=True)} points): "
                       f"{'BCE' if tb > ts else 'softmax'} classified more test images correctly.")
    ps, pb = probability_stats(soft), probability_stats(bce)
    if None not in (ps["correct"], pb["correct"], ps["incorrect"], pb["incorrect"]):
        out.append(f"The mean probability given to the true class was {fmt_acc(pb['correct'])} (BCE) and "
                   f"{fmt_acc(ps['correct'])} (softmax) on correctly classified images, "
                   f"{fmt_acc(pb['incorrect'])} and {fmt_acc(ps['incorrect'])} on misclassified ones.")
        gs, gb = ps["correct"] - ps["incorrect"], pb["correct"] - pb["incorrect"]
        if fmt_acc(gs) == fmt_acc(gb):
            out.append(f"Right and wrong answers are separated by the same margin, {fmt_acc(gs)}, with both losses.")
        else:
            wide, narrow = ("BCE", "softmax") if gb > gs else ("softmax", "BCE")
            out.append(f"The difference between the two means is {fmt_acc(gb)} with BCE and {fmt_acc(gs)} with "
                       f"softmax: {wide}'s probability of the true class tells right from wrong answers "
                       f"more clearly than {narrow}'s.")
    if ps["confident"] is not None and pb["confident"] is not None:
        t = ps["threshold"] if ps["threshold"] is not None else 0.1
        cs, cb = ps["confident"], pb["confident"]
        verdict = _more_less(cb, cs, fmt_share, "BCE makes more confident mistakes",
                             "BCE makes fewer confident mistakes", "the same share for both")
        out.append(f"Confident mistakes (a misclassified image whose true class gets p < {t:g}): "
                   f"{fmt_share(cb)} of BCE's mistakes against {fmt_share(cs)} of softmax's; {verdict}.")
    return out


def gradcheck_sentences(gc: Mapping[str, Any] | None) -> list[str]:
    """The largest relative error found and the verdict against the tolerance."""
    if not gc:
        return []
    tol = gc.get("tol")
    worst = None
    for res in gc.get("results", []):
        for p in ("W", "b"):
            m = res.get(p, {}).get("max")
            if _finite(m) and (worst is None or float(m) > worst[0]):
                worst = (float(m), p, res.get("lam"))
    if worst is None:
        return []
    verdict = gradcheck_passed(gc)
    rel = "below" if tol is not None and worst[0] <= float(tol) else "above"
    return [f"The largest relative gradient error was {fmt_err(worst[0])} (for {worst[1]} at "
            f"λ={fmt_num(worst[2])}), {rel} the tolerance {fmt_err(tol)}: "
            f"{'PASS' if verdict else 'FAIL'}."]


def gradcheck_passed(gc: Mapping[str, Any]) -> bool:
    """The document's verdict if given, else every max error ≤ tol."""
    if "passed" in gc and gc["passed"] is not None:
        return bool(gc["passed"])
    tol = float(gc.get("tol", 0))
    return all(float(res.get(p, {}).get("max", math.inf)) <= tol
               for res in gc.get("results", []) for p in ("W", "b"))


def analysis(doc: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """All analysis sentences, grouped under sub-headings; empty groups left out."""
    runs = list(doc.get("runs", []))
    groups = [
        ("Best run", best_run_sentences(runs)),
        ("Train–validation gap", gap_sentences(runs)),
        ("Stability", stability_sentences(runs)),
        ("Effect of λ (regularisation)", effect_sentences(runs, "lam")),
        ("Effect of η (learning rate)", effect_sentences(runs, "eta")),
    ]
    bv = best_runs(runs, "val")
    if bv:
        groups.append(("Classes", class_sentences(runs[bv[0]])))
    groups.append(("Gradient check", gradcheck_sentences(doc.get("gradcheck"))))
    return [(h, s) for h, s in groups if s]


# ==========================================================================
# blocks: a neutral document model shared by both renderers


@dataclass(frozen=True)
class Span:
    text: str
    bold: bool = False
    code: bool = False


Inline = Union[str, Span, Sequence[Union[str, Span]]]


@dataclass
class Heading:
    level: int
    text: str
    anchor: str


@dataclass
class Para:
    content: Inline
    kind: str = ""          # '', 'note', 'warn', 'pass', 'fail', 'meta'


@dataclass
class Bullets:
    items: list[Inline]


@dataclass
class Table:
    header: list[Inline]
    rows: list[list[Inline]]
    align: str = ""          # one 'l' or 'r' per column; default: first l, rest r
    caption: str = ""
    highlight: set[int] = field(default_factory=set)   # row indices to emphasise


@dataclass
class Figure:
    path: str                # relative to the reports folder
    alt: str
    caption: str


@dataclass
class FigureRow:
    figures: list[Figure]
    wide: bool = False       # HTML: use the full column width (weights grid)
    side_by_side: bool = False   # Markdown: one table row of images instead of one image after another


@dataclass
class Contents:
    entries: list[tuple[str, str]]   # (anchor, text); HTML only


def _anchor(text: str) -> str:
    a = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return a or "section"


def _setup_blocks(doc: Mapping[str, Any]) -> list:
    ds = doc.get("dataset") or {}
    pre = doc.get("preprocessing") or {}
    init = doc.get("initialisation") or {}
    rows: list[list[Inline]] = []

    def row(k: str, v: Inline) -> None:
        rows.append([k, v])

    if ds:
        row("data source", str(ds.get("source", "—")))
        if ds.get("format"):
            row("format", str(ds["format"]))
        for k, name in (("md5", "MD5"), ("sha256", "SHA-256")):
            if ds.get(k):
                row(name, Span(str(ds[k]), code=True))
        official = ds.get("official")
        if official is not None:
            row("official archive", "yes" if official else "no")
        if ds.get("n_train_total") is not None:
            row("training images available", str(ds["n_train_total"]))
        if ds.get("n_test") is not None:
            row("test images", str(ds["n_test"]))
    sizes = {json.dumps(r.get("split_sizes"), sort_keys=True) for r in doc.get("runs", [])
             if r.get("split_sizes")}
    splits = {str(r.get("config", {}).get("split")) for r in doc.get("runs", [])}
    if len(sizes) == 1:
        s = json.loads(sizes.pop())
        txt = " / ".join(str(s.get(k, "—")) for k in ("train", "val", "test"))
        if len(splits) == 1 and splits != {"None"}:
            txt += f" (split “{splits.pop()}”)"
        row("train / validation / test", txt)
    if pre.get("scale"):
        row("scaling", str(pre["scale"]))
    if pre.get("normalisation"):
        row("normalisation", str(pre["normalisation"]))
    if init:
        bits = [str(init.get("distribution", ""))]
        if init.get("std") is not None:
            bits.append(f"std {fmt_num(init['std'])}")
        if init.get("seed") is not None:
            bits.append(f"seed {init['seed']}")
        row("initialisation of W and b", ", ".join(b for b in bits if b))
    if doc.get("cifarcli_version"):
        row("cifarcli version", str(doc["cifarcli_version"]))
    if doc.get("created"):
        row("created", str(doc["created"]))
    blocks: list = [Heading(2, "Set-up", "setup")]
    if rows:
        blocks.append(Table(["item", "value"], rows, align="ll"))
    if ds.get("official") is False or ds.get("note"):
        note = ds.get("note") or "not the official archive"
        blocks.append(Para(f"Data: {note}.", "warn" if ds.get("official") is False else "note"))
    return blocks


def _gradcheck_blocks(gc: Mapping[str, Any] | None) -> list:
    blocks: list = [Heading(2, "Gradient check", "gradcheck")]
    if not gc:
        blocks.append(Para("The gradient check is not part of this report."))
        return blocks
    tol = gc.get("tol")
    ok = gradcheck_passed(gc)
    desc = ["Relative error |g_a − g_n| / max(eps, |g_a| + |g_n|) between the analytic and a "
            "centred-difference numerical gradient"]
    if gc.get("n_samples") is not None:
        desc.append(f", on {gc['n_samples']} examples")
    if gc.get("n_dims") is not None:
        desc.append(f" and {gc['n_dims']} input dimensions")
    if gc.get("h") is not None:
        desc.append(f", step h = {fmt_err(gc['h'])}")
    if gc.get("elapsed") is not None:
        desc.append(f" ({fmt_seconds(gc['elapsed'])})")
    blocks.append(Para("".join(desc) + "."))
    rows, bad = [], set()
    for res in gc.get("results", []):
        for p in ("W", "b"):
            st = res.get(p)
            if not st:
                continue
            passed = tol is not None and _finite(st.get("max")) and float(st["max"]) <= float(tol)
            if not passed:
                bad.add(len(rows))
            rows.append([fmt_num(res.get("lam")), Span(p, code=True), fmt_err(st.get("max")),
                         fmt_err(st.get("mean")), fmt_err(st.get("median")),
                         fmt_share(st.get("share_below_tol")),
                         Span("PASS" if passed else "FAIL", bold=True)])
    if rows:
        blocks.append(Table(["λ", "parameter", "max", "mean", "median", f"share < {fmt_err(tol)}", "result"],
                            rows, align="llrrrrl", highlight=bad))
    blocks.append(Para([Span(f"{'PASS' if ok else 'FAIL'}", bold=True),
                        f": every maximum relative error {'is' if ok else 'is not'} within the "
                        f"tolerance {fmt_err(tol)}."], "pass" if ok else "fail"))
    for res in gc.get("results", []):
        corner = (res.get("W") or {}).get("corner")
        if not corner:
            continue
        n = len(corner[0]) if corner else 0
        blocks.append(Table([""] + [f"j={j}" for j in range(n)],
                            [[f"k={i}"] + [fmt_err(v) for v in r] for i, r in enumerate(corner)],
                            caption=f"Relative error of W, top-left {len(corner)}×{n} corner "
                                    f"(λ={fmt_num(res.get('lam'))}); k = class, j = input dimension."))
    return blocks


def _run_anchor(run: Mapping[str, Any], i: int) -> str:
    rid = str(run.get("run_id") or i)
    return "run-" + _anchor(rid)


def _run_blocks(run: Mapping[str, Any], i: int) -> list:
    c = run.get("config", {})
    blocks: list = [Heading(3, f"Run {i + 1}: {run_name(run)}", _run_anchor(run, i))]
    settings = ", ".join(f"{_PARAM_WORDS.get(k, k)}={fmt_num(v)}" for k, v in c.items())
    meta: list[Union[str, Span]] = ["Run ID ", Span(str(run.get("run_id", "—")), code=True),
                                    f". Settings: {settings}."]
    if run.get("train_seconds") is not None:
        meta.append(f" Training took {fmt_seconds(run['train_seconds'])}.")
    blocks.append(Para(meta))
    m = _metrics(run)
    if run.get("diverged_at") is not None:
        blocks += _diverged_blocks(run)
    if m or run.get("diverged_at") is None:
        sizes = run.get("split_sizes") or {}
        rows = []
        for key, name in SPLITS:
            s = m.get(key) or {}
            rows.append([name, str(sizes.get(key, "—")), fmt_loss(s.get("loss")),
                         fmt_loss(s.get("cost")), fmt_acc(s.get("accuracy"))])
        blocks.append(Table(["split", "images", "loss", "cost", "accuracy"], rows))
    figs = run.get("figures") or {}
    for k in ("loss", "accuracy", "weights", "confusion", "probabilities"):
        if figs.get(k):
            what = f"{k} curves" if k in ("loss", "accuracy") else k
            caption = _probability_caption(run) if k == "probabilities" else FIGURE_CAPTIONS[k]
            blocks.append(FigureRow([Figure(figs[k], f"{what}, {run_name(run)}", caption)],
                                    wide=(k == "weights")))
    return blocks


def _diverged_blocks(run: Mapping[str, Any]) -> list:
    """A diverged run: when it diverged, and its history up to then (it has no metrics and no figures)."""
    epoch = run["diverged_at"]
    what = ("the metrics below are those of the last finite weights" if _metrics(run)
            else "the run was not evaluated and has no figures")
    blocks: list = [Para(f"Training diverged at epoch {epoch}: the cost became NaN or infinite and training "
                         f"was stopped; {what}. Its history up to epoch {epoch} is below; a smaller η "
                         "avoids the divergence.", "warn")]
    h = run.get("history") or {}
    columns = [("train_cost", "train cost"), ("val_cost", "val. cost"), ("train_acc", "train acc."),
               ("val_acc", "val. acc.")]
    rows = []
    for i, e in enumerate(_epochs(run)):
        if epoch is not None and _finite(e) and float(e) > float(epoch):
            break
        rows.append([fmt_num(e)] + [_fmt_history(h.get(key), i) for key, _ in columns])
    if rows:
        blocks.append(Table(["epoch"] + [name for _, name in columns], rows, align="rrrrr",
                            caption="History of the diverged run (epoch 0: the initial weights)."))
    return blocks


def _fmt_history(values: Any, i: int) -> str:
    """One history value: 4 decimals, 'NaN' / 'inf' where it blew up, '—' where there is none."""
    if not isinstance(values, (list, tuple)) or i >= len(values) or values[i] is None:
        return "—"
    try:
        return fmt_acc(float(values[i]))  # nan -> 'nan', inf -> 'inf': said as they are
    except (TypeError, ValueError):
        return "—"


def _probability_caption(run: Mapping[str, Any]) -> str:
    """The histogram's caption with the run's own numbers (kind of probability, the two means)."""
    kind = ("per-class sigmoid σ(s_y) of a BCE run; the ten do not sum to 1" if loss_of(run) == "bce"
            else "softmax")
    text = FIGURE_CAPTIONS["probabilities"].rstrip(".") + f" ({kind})."
    st = probability_stats(run)
    if st["correct"] is not None or st["incorrect"] is not None:
        text += (f" Mean {fmt_acc(st['correct'])} on correctly and {fmt_acc(st['incorrect'])} on "
                 "incorrectly classified images")
        if st["confident"] is not None:
            text += f"; {fmt_share(st['confident'])} of the mistakes have p < {st['threshold'] or 0.1:g}"
        text += "."
    return text


def _loss_comparison_blocks(runs: Sequence[Mapping[str, Any]]) -> list:
    """Softmax vs BCE: a table, the histograms side by side, sentences from the numbers; [] with one loss."""
    pairs = loss_pairs(runs)
    if not pairs:
        return []
    blocks: list = [Heading(3, "Softmax vs binary cross-entropy", "comparison-losses")]
    rows = []
    t = 0.1
    for soft, bce, _ in pairs:
        for r in (soft, bce):
            st = probability_stats(r)
            t = st["threshold"] if st["threshold"] is not None else t
            rows.append([run_name(r), loss_of(r), fmt_acc(_acc(r, "test")), fmt_acc(st["correct"]),
                         fmt_acc(st["incorrect"]), fmt_share(st["confident"]),
                         Span(str(r.get("run_id", "—")), code=True)])
    blocks.append(Table(["run", "loss", "test acc.", "mean p(true), correct", "mean p(true), misclassified",
                         f"confident mistakes (p(true) < {t:g})", "run ID"], rows, align="llrrrrl",
                        caption="Probability given to the true class on the test set. Softmax probabilities "
                                "sum to 1 over the classes; BCE's are one sigmoid per class and do not. "
                                "Confident mistakes: share of the misclassified images."))
    for soft, bce, same in pairs:
        figs = [(r, (r.get("figures") or {}).get("probabilities")) for r in (soft, bce)]
        if all(path for _, path in figs):
            blocks.append(FigureRow([Figure(path, f"true-class probability, {run_name(r)}, loss {loss_of(r)}",
                                            f"{loss_of(r)}: {run_name(r)}") for r, path in figs],
                                    side_by_side=True))
        blocks.append(Bullets(list(loss_sentences(soft, bce, same))))
    return blocks


def _comparison_blocks(runs: Sequence[Mapping[str, Any]]) -> list:
    blocks: list = [Heading(2, "Comparison of runs", "comparison")]
    if not runs:
        blocks.append(Para("No run is part of this report."))
        return blocks
    best = set(best_runs(runs, "test")) if len(runs) > 1 else set()
    rows = []
    for i, r in enumerate(runs):
        c = r.get("config", {})
        test = "diverged" if r.get("diverged_at") is not None else fmt_acc(_acc(r, "test"))
        rows.append([run_name(r), fmt_num(c.get("lam")), fmt_num(c.get("eta")), fmt_num(c.get("n_batch")),
                     fmt_num(c.get("n_epochs")), fmt_acc(_acc(r, "train")), fmt_acc(_acc(r, "val")),
                     Span(f"{test} ★", bold=True) if i in best else test,
                     Span(str(r.get("run_id", "—")), code=True)])
    blocks.append(Table(["run", "λ", "η", "n_batch", "epochs", "train acc.", "val. acc.",
                         "test acc.", "run ID"], rows, align="lrrrrrrrl", highlight=best))
    if len(runs) > 1:
        blocks.append(Para("★ marks the highest test accuracy. It is reported for comparison with "
                           "the study only: a model for deployment is chosen on validation accuracy, "
                           "with the test set kept unseen.", "note"))
    evaluated = [r for r in runs if _metrics(r).get("per_class_accuracy")]  # not the diverged ones
    pcs = [_metrics(r)["per_class_accuracy"] for r in evaluated]
    classes = list(dict.fromkeys(k for p in pcs for k in p))
    if classes:
        prow = [[cls] + [fmt_acc(p.get(cls)) for p in pcs] for cls in classes]
        blocks.append(Table(["class"] + [run_name(r) for r in evaluated], prow,
                            caption="Accuracy per class on the test set."))
    return blocks + _loss_comparison_blocks(runs)


def _sweep_blocks(sweep: Mapping[str, Any]) -> list:
    """The sweep: what was varied, the heat-map, the points by validation accuracy, the chosen run in full.

    ``sweep`` holds ``grid`` (lam, eta, n_batch, n_epochs lists), ``fixed``,
    ``points`` (sorted, best first; each with lam, eta, n_batch, n_epochs,
    train_acc, val_acc, train_cost, diverged_at, run_id), ``best_run_id``,
    ``best`` (a run entry as in ``runs``), ``heatmap`` (path relative to the
    reports folder) and ``title`` (the heat-map's).
    """
    blocks: list = [Heading(2, "Hyper-parameter sweep", "sweep")]
    grid, points = sweep.get("grid") or {}, list(sweep.get("points") or [])
    axes = [f"{_PARAM_WORDS.get(k, k)} ∈ {{{', '.join(fmt_num(v) for v in grid[k])}}}"
            for k in ("lam", "eta", "n_batch", "n_epochs") if grid.get(k)]
    fixed = sweep.get("fixed") or {}
    text = f"{len(points)} settings: " + "; ".join(axes)
    if fixed:
        text += "; fixed: " + _describe(fixed)
    text += (". Each point is an ordinary training run (run ID in the table). The setting is chosen on "
             "validation accuracy; only the chosen one is evaluated on the test set.")
    blocks.append(Para(text))
    if sweep.get("heatmap"):
        blocks.append(FigureRow([Figure(sweep["heatmap"], "validation accuracy heat-map over λ and η",
                                        f"{sweep.get('title') or 'Validation accuracy over λ × η'}; "
                                        "grey cells diverged, the chosen setting is outlined.")]))
    rows, best_row = [], set()
    for i, p in enumerate(points):
        diverged = p.get("diverged_at") is not None
        if p.get("run_id") == sweep.get("best_run_id"):
            best_row.add(i)
        val = "diverged" if diverged else fmt_acc(p.get("val_acc"))
        rows.append([fmt_num(p.get("lam")), fmt_num(p.get("eta")), fmt_num(p.get("n_batch")),
                     fmt_num(p.get("n_epochs")), "—" if diverged else fmt_acc(p.get("train_acc")),
                     Span(f"{val} ★", bold=True) if i in best_row else val,
                     "—" if diverged else fmt_loss(p.get("train_cost")),
                     Span(str(p.get("run_id", "—")), code=True)])
    if rows:
        blocks.append(Table(["λ", "η", "n_batch", "epochs", "train acc.", "val. acc.", "final cost", "run ID"],
                            rows, align="rrrrrrrl", highlight=best_row,
                            caption="Sweep points by validation accuracy (★: chosen); final cost on the "
                                    "training split."))
    best = sweep.get("best")
    if not best:
        blocks.append(Para("Every point diverged: no setting was chosen.", "warn"))
        return blocks
    blocks.append(Para(f"Chosen on validation accuracy: {run_name(best)} (validation accuracy "
                       f"{fmt_acc(_acc(best, 'val'))}); its test accuracy is {fmt_acc(_acc(best, 'test'))}.",
                       "note"))
    section = _run_blocks(best, 0)
    section[0] = Heading(3, f"Chosen setting: {run_name(best)}", "sweep-best")
    return blocks + section


def _analysis_blocks(doc: Mapping[str, Any]) -> list:
    blocks: list = [Heading(2, "Analysis", "analysis")]
    groups = analysis(doc)
    for title, sentences in groups:
        blocks.append(Heading(3, title, "analysis-" + _anchor(title)))
        blocks.append(Bullets(list(sentences)))
        if title == "Stability":
            blocks.append(Para(STABILITY_RULE, "note"))
    return blocks


def _summary(doc: Mapping[str, Any]) -> list:
    runs = list(doc.get("runs", []))
    bits = []
    if runs:
        bt = best_runs(runs, "test")
        bits.append(f"{len(runs)} run{'s' if len(runs) != 1 else ''}")
        diverged = [r for r in runs if r.get("diverged_at") is not None]
        if diverged:
            bits.append(f"{len(diverged)} diverged ({_join([run_name(r) for r in diverged])})")
        if bt:
            bits.append(f"best test accuracy {fmt_acc(_acc(runs[bt[0]], 'test'))} "
                        f"({run_name(runs[bt[0]])})")
    gc = doc.get("gradcheck")
    if gc:
        bits.append(f"gradient check {'PASS' if gradcheck_passed(gc) else 'FAIL'}")
    return [Para("Summary: " + "; ".join(bits) + ".")] if bits else []


def build_blocks(doc: Mapping[str, Any]) -> list:
    """The whole report as a list of blocks, in reading order."""
    runs = list(doc.get("runs", []))
    title = str(doc.get("title") or "One-layer network on CIFAR-10")
    meta = []
    if doc.get("cifarcli_version"):
        meta.append(f"cifarcli {doc['cifarcli_version']}")
    if doc.get("created"):
        meta.append(str(doc["created"]))
    blocks: list = [Heading(1, title, "top")]
    if meta:
        blocks.append(Para(" · ".join(meta), "meta"))
    blocks += _summary(doc)
    toc = [("setup", "Set-up"), ("gradcheck", "Gradient check"), ("runs", "Runs")]
    toc += [(_run_anchor(r, i), f"Run {i + 1}: {run_name(r)}") for i, r in enumerate(runs)]
    toc += [("comparison", "Comparison of runs")]
    toc += [("sweep", "Hyper-parameter sweep")] if doc.get("sweep") else []
    toc += [("analysis", "Analysis")]
    blocks.append(Contents(toc))
    blocks += _setup_blocks(doc)
    blocks += _gradcheck_blocks(doc.get("gradcheck"))
    blocks.append(Heading(2, "Runs", "runs"))
    if not runs:
        blocks.append(Para("No run is part of this report."))
    for i, r in enumerate(runs):
        blocks += _run_blocks(r, i)
    blocks += _comparison_blocks(runs)
    if doc.get("sweep"):
        blocks += _sweep_blocks(doc["sweep"])
    blocks += _analysis_blocks(doc)
    return blocks


# ==========================================================================
# Markdown


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#!~])")
_CODE_SAFE = re.compile(r"^[\w.\-/:+=]+$")


def _md_text(s: str) -> str:
    s = re.sub(r"\s+", " ", str(s))        # no newline may break a table or a paragraph
    return _MD_SPECIAL.sub(r"\\\1", s)


def _md_inline(x: Inline) -> str:
    if isinstance(x, str):
        return _md_text(x)
    if isinstance(x, Span):
        if x.code and _CODE_SAFE.match(x.text):
            t = f"`{x.text}`"
        else:
            t = _md_text(x.text)
        return f"**{t}**" if x.bold else t
    return "".join(_md_inline(p) for p in x)


def _md_link(path: str) -> str:
    return quote(Path(path).as_posix(), safe="/")


def _md_block(b) -> str:
    if isinstance(b, Heading):
        return f"{'#' * b.level} {_md_text(b.text)}"
    if isinstance(b, Para):
        text = _md_inline(b.content)
        if b.kind in ("warn", "fail"):
            return f"> **Warning:** {text}"
        if b.kind == "note":
            return f"> {text}"
        if b.kind == "meta":
            return f"*{text}*"
        return text
    if isinstance(b, Bullets):
        return "\n".join(f"- {_md_inline(i)}" for i in b.items)
    if isinstance(b, Table):
        align = b.align or "l" + "r" * (len(b.header) - 1)
        lines = []
        if b.caption:
            lines += [f"*{_md_text(b.caption)}*", ""]
        lines.append("| " + " | ".join(_md_inline(h) or " " for h in b.header) + " |")
        lines.append("|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|")
        for r in b.rows:
            lines.append("| " + " | ".join(_md_inline(c) for c in r) + " |")
        return "\n".join(lines)
    if isinstance(b, FigureRow) and b.side_by_side:
        cells = [f"![{_md_text(f.alt)}]({_md_link(f.path)})" for f in b.figures]
        return "\n".join(["| " + " | ".join(_md_text(f.caption) for f in b.figures) + " |",
                          "|" + "|".join(":---:" for _ in b.figures) + "|",
                          "| " + " | ".join(cells) + " |"])
    if isinstance(b, FigureRow):
        return "\n\n".join(f"![{_md_text(f.alt)}]({_md_link(f.path)})\n\n*{_md_text(f.caption)}*"
                           for f in b.figures)
    if isinstance(b, Contents):
        return ""
    raise TypeError(f"unknown block {b!r}")


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The report as GitHub Markdown; figure links relative to the report file.

    Figure paths in ``doc`` are relative to the reports folder, where
    ``report.md`` is written, so they are used as they are (URL-quoted).
    """
    parts = [_md_block(b) for b in build_blocks(doc)]
    return "\n\n".join(p for p in parts if p) + "\n"


# ==========================================================================
# HTML

CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --accent:#1f77b4; --bg:#ffffff;
        --zebra:#f9fafb; --warn:#b45309; --warnbg:#fffbeb; --ok:#047857; --okbg:#ecfdf5;
        --bad:#b91c1c; --badbg:#fef2f2; }
* { box-sizing: border-box; }
html { background: var(--bg); }
body { margin: 0; color: var(--fg); background: var(--bg);
       font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 60rem; margin: 0 auto; padding: 2rem 1.25rem 4rem; }
h1 { font-size: 1.9rem; margin: 0 0 .25rem; line-height: 1.2; }
h2 { font-size: 1.4rem; margin: 2.5rem 0 .75rem; padding-bottom: .3rem; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.12rem; margin: 1.8rem 0 .5rem; }
p { margin: .6rem 0; }
p.meta { color: var(--muted); margin-top: 0; }
code { font: .88em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       background: #f3f4f6; padding: .05em .3em; border-radius: 4px; word-break: break-all; }
nav.toc { background: var(--zebra); border: 1px solid var(--line); border-radius: 8px;
          padding: .6rem 1rem; margin: 1.2rem 0; font-size: .93rem; }
nav.toc ol { margin: .2rem 0; padding-left: 1.4rem; }
nav.toc a { color: var(--accent); text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
.callout { border-left: 4px solid var(--accent); background: #eff6ff; padding: .55rem .9rem; border-radius: 0 6px 6px 0; }
.callout.warn { border-color: var(--warn); background: var(--warnbg); }
.callout.pass { border-color: var(--ok); background: var(--okbg); }
.callout.fail { border-color: var(--bad); background: var(--badbg); }
.table-wrap { overflow-x: auto; margin: .9rem 0 1.2rem; }
table { border-collapse: collapse; font-size: .92rem; font-variant-numeric: tabular-nums; min-width: 50%; }
caption { caption-side: top; text-align: left; color: var(--muted); font-size: .88rem; padding-bottom: .35rem; }
th, td { padding: .38rem .75rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; border-bottom: 2px solid #d1d5db; text-align: left; }
tbody tr:nth-child(even) { background: var(--zebra); }
tbody tr.hl { background: #fff7e6; }
td.r, th.r { text-align: right; white-space: nowrap; }
td.l, th.l { text-align: left; }
figure { margin: 1rem 0 1.4rem; }
figure img { display: block; width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: .88rem; margin-top: .35rem; }
.figrow { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: 1rem; }
.figrow.single figure { max-width: 44rem; }
.figrow.single.wide figure { max-width: none; }
.missing { color: var(--bad); font-style: italic; }
ul { padding-left: 1.3rem; }
li { margin: .3rem 0; }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  nav.toc { display: none; }
  table, figure, .figrow, .callout, .table-wrap { break-inside: avoid; page-break-inside: avoid; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  .table-wrap { overflow: visible; }
  .figrow { display: block; }
  a { color: inherit; text-decoration: none; }
}
"""


def _h(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _html_inline(x: Inline) -> str:
    if isinstance(x, str):
        return _h(x)
    if isinstance(x, Span):
        t = _h(x.text)
        if x.code:
            t = f"<code>{t}</code>"
        return f"<strong>{t}</strong>" if x.bold else t
    return "".join(_html_inline(p) for p in x)


def _data_uri(figure_dir: Path, rel: str) -> str | None:
    """The PNG at ``figure_dir/rel`` as a data URI; None if missing, outside, or not a PNG."""
    base = Path(figure_dir).resolve()
    p = (base / rel).resolve()
    try:
        p.relative_to(base)
    except ValueError:
        return None
    try:
        data = p.read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_MAGIC):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _html_block(b, figure_dir: Path) -> str:
    if isinstance(b, Heading):
        return f'<h{b.level} id="{_h(b.anchor)}">{_h(b.text)}</h{b.level}>'
    if isinstance(b, Para):
        cls = {"warn": "callout warn", "fail": "callout fail", "pass": "callout pass",
               "note": "callout", "meta": "meta"}.get(b.kind, "")
        attr = f' class="{cls}"' if cls else ""
        lead = "<strong>Warning:</strong> " if b.kind == "warn" else ""
        return f"<p{attr}>{lead}{_html_inline(b.content)}</p>"
    if isinstance(b, Bullets):
        return "<ul>\n" + "\n".join(f"<li>{_html_inline(i)}</li>" for i in b.items) + "\n</ul>"
    if isinstance(b, Table):
        align = b.align or "l" + "r" * (len(b.header) - 1)
        out = ['<div class="table-wrap"><table>']
        if b.caption:
            out.append(f"<caption>{_h(b.caption)}</caption>")
        out.append("<thead><tr>" + "".join(f'<th class="{a}" scope="col">{_html_inline(h)}</th>'
                                          for h, a in zip(b.header, align)) + "</tr></thead>")
        out.append("<tbody>")
        for i, r in enumerate(b.rows):
            cls = ' class="hl"' if i in b.highlight else ""
            out.append(f"<tr{cls}>" + "".join(f'<td class="{a}">{_html_inline(c)}</td>'
                                              for c, a in zip(r, align)) + "</tr>")
        out.append("</tbody></table></div>")
        return "\n".join(out)
    if isinstance(b, FigureRow):
        items = []
        for f in b.figures:
            uri = _data_uri(figure_dir, f.path)
            if uri is None:
                items.append(f'<figure><p class="missing">Figure not available: {_h(f.path)}</p>'
                             f"<figcaption>{_h(f.caption)}</figcaption></figure>")
            else:
                items.append(f'<figure><img src="{uri}" alt="{_h(f.alt)}">'
                             f"<figcaption>{_h(f.caption)}</figcaption></figure>")
        cls = "figrow" + (" wide" if b.wide else "") + (" single" if len(items) == 1 else "")
        return f'<div class="{cls}">' + "\n".join(items) + "</div>"
    if isinstance(b, Contents):
        lis = []
        for anchor, text in b.entries:
            sub = anchor.startswith("run-")
            lis.append((sub, f'<li><a href="#{_h(anchor)}">{_h(text)}</a></li>'))
        out, in_sub = ["<nav class=\"toc\" aria-label=\"Contents\"><strong>Contents</strong><ol>"], False
        for sub, li in lis:
            if sub and not in_sub:
                out[-1] = out[-1].removesuffix("</li>")
                out.append("<ol>")
                in_sub = True
            elif not sub and in_sub:
                out.append("</ol></li>")
                in_sub = False
            out.append(li)
        if in_sub:
            out.append("</ol></li>")
        out.append("</ol></nav>")
        return "\n".join(out)
    raise TypeError(f"unknown block {b!r}")


def render_html(doc: Mapping[str, Any], figure_dir: Path) -> str:
    """The report as one self-contained HTML page.

    ``figure_dir`` is the folder the doc's figure paths are relative to (the
    reports folder). Each PNG is inlined as a ``data:image/png;base64,`` URI;
    a missing or non-PNG file shows as a visible placeholder. No script, no
    external URL: the page works offline and prints cleanly.
    """
    blocks = build_blocks(doc)
    title = str(doc.get("title") or "One-layer network on CIFAR-10")
    body = "\n".join(_html_block(b, Path(figure_dir)) for b in blocks)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_h(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            f"{body}\n</main>\n</body>\n</html>\n")


# ==========================================================================
# files


def write_report(doc: Mapping[str, Any], reports_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` in ``reports_dir``, each atomically.

    Returns ``{"md": <path of report.md>, "html": <path of report.html>}``.
    """
    from ..plots import atomic_write_bytes

    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    md = render_markdown(doc).encode("utf-8")
    page = render_html(doc, reports_dir).encode("utf-8")
    out = {
        "md": atomic_write_bytes(reports_dir / "report.md", lambda fh: fh.write(md)),
        "html": atomic_write_bytes(reports_dir / "report.html", lambda fh: fh.write(page)),
    }
    return out


__all__ = [
    "render_markdown", "render_html", "write_report", "build_blocks", "analysis",
    "gap_sentences", "stability_sentences", "effect_sentences", "best_run_sentences",
    "class_sentences", "gradcheck_sentences", "instability", "overfitting", "Instability",
    "single_change_groups", "best_runs", "accuracy_gap", "fmt_acc", "fmt_points",
]

