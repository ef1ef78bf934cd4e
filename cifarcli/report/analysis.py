"""Layer 2 of the report: small pure functions, numbers in, sentences out.

They read the measured numbers of the document and return plain-text
sentences (``gap_sentences``, ``stability_sentences``, ``effect_sentences``,
``best_run_sentences``, ...). No sentence is fixed prose: each one is computed
from the document, so the analysis never contradicts the tables. An effect (of
λ, of η) is described only for runs that differ in exactly that one setting.

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

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import LOSSES, TRAIN_DEFAULTS, loss_named
from ..stats import ALPHA, mcnemar_exact, wilson_interval
from .format import (
    PARAM_WORDS,
    describe_setting,
    finite,
    fmt_acc,
    fmt_acc_ci,
    fmt_err,
    fmt_loss,
    fmt_num,
    fmt_p,
    fmt_points,
    fmt_share,
    join_names,
)

if TYPE_CHECKING:
    from ..losses import Loss

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


def run_name(run: Mapping[str, Any]) -> str:
    """The human label of a run ('λ=0.1, η=0.001'), built from the config if absent.

    Every label of a run in the report (tables, sentences, captions) comes from here."""
    if run.get("label"):
        return str(run["label"])
    c = run.get("config", {})
    return f"λ={fmt_num(c.get('lam'))}, η={fmt_num(c.get('eta'))}"


def metrics_of(run: Mapping[str, Any]) -> Mapping[str, Any]:
    """The run's evaluation, {} when it has none (a diverged run is never evaluated: ``metrics`` is None)."""
    return run.get("metrics") or {}


def accuracy_of(run: Mapping[str, Any], split: str) -> float | None:
    v = (metrics_of(run).get(split) or {}).get("accuracy")
    return float(v) if finite(v) else None


def accuracy_text(run: Mapping[str, Any], split: str) -> str:
    """The run's accuracy on ``split`` with its 95 % Wilson interval, as printed in sentences and tables."""
    return fmt_acc_ci(accuracy_of(run, split), (metrics_of(run).get(split) or {}).get("accuracy_ci"))


class PairTests:
    """McNemar's exact test between two runs on the same images, from the document's discordant counts.

    ``doc["discordant"]`` lists ``{"a", "b", "split", "a_only", "b_only"}`` (run IDs). ``test(a, b, split)``
    returns the comparison oriented as asked, with ``p`` and ``significant`` (p < ``ALPHA``), and records it
    in ``used``: the comparisons the report's sentences rest on, in order, each once (``report --json``).
    """

    def __init__(self, discordant: Sequence[Mapping[str, Any]] = ()):
        self.counts = {}
        for d in discordant:
            self.counts[(d["a"], d["b"], d["split"])] = (int(d["a_only"]), int(d["b_only"]))
            self.counts[(d["b"], d["a"], d["split"])] = (int(d["b_only"]), int(d["a_only"]))
        self.used: list[dict] = []

    def test(self, a: Mapping[str, Any], b: Mapping[str, Any], split: str) -> dict | None:
        found = self.counts.get((a.get("run_id"), b.get("run_id"), split))
        if found is None:
            return None
        p = mcnemar_exact(*found)
        result = {
            "a": a["run_id"],
            "b": b["run_id"],
            "split": split,
            "a_only": found[0],
            "b_only": found[1],
            "p": p,
            "significant": p < ALPHA,
        }
        if not any({x["a"], x["b"], x["split"]} == {result["a"], result["b"], split} for x in self.used):
            self.used.append(result)
        return result


def test_words(t: Mapping[str, Any], a_name: str, b_name: str) -> str:
    """The discordant counts of a test: '120 images right only with A, 146 only with B'."""
    return f"{t['a_only']} images right only with {a_name}, {t['b_only']} only with {b_name}"


def roughness_of(run: Mapping[str, Any]) -> float | None:
    """The roughness of the run's ten weight templates (``evaluate.template_roughness``), None if not measured."""
    r = (metrics_of(run).get("weights") or {}).get("roughness")
    return float(r) if finite(r) else None


def accuracy_gap(run: Mapping[str, Any]) -> float | None:
    """Final train accuracy minus validation accuracy (a fraction)."""
    tr, va = accuracy_of(run, "train"), accuracy_of(run, "val")
    return None if tr is None or va is None else tr - va


def gap_sentences(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per run on its train–validation accuracy gap."""
    out = []
    for run in runs:
        gap = accuracy_gap(run)
        if gap is None:
            continue
        if round(gap * 100, 2) > 0:
            tail = f"a gap of {fmt_points(gap)} percentage points"
        elif round(gap * 100, 2) < 0:
            tail = f"validation is above train by {fmt_points(-gap)} percentage points"
        else:
            tail = "no gap"
        out.append(
            f"{run_name(run)}: train accuracy {accuracy_text(run, 'train')}, validation "
            f"{accuracy_text(run, 'val')}: {tail}."
        )
    return out


def _history(run: Mapping[str, Any], key: str) -> list[float]:
    return [float(v) if v is not None else float("nan") for v in run.get("history", {}).get(key, [])]


def epochs_of(run: Mapping[str, Any]) -> list[Any]:
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
    reason: str  # what the numbers say
    curve: str  # how it shows in the loss curve


def instability(run: Mapping[str, Any]) -> Instability | None:
    """Apply the module's instability rule to one run; None when stable."""
    epochs = epochs_of(run)
    cost = _history(run, "train_cost")
    vloss = _history(run, "val_loss")
    div = run.get("diverged_at")
    if div is not None:
        return Instability(
            "diverged",
            f"training diverged at epoch {div} (the cost became NaN or infinite) and was stopped there",
            f"its curves end at epoch {div}",
        )
    for key in ("train_cost", "train_loss", "val_cost", "val_loss"):
        vals = _history(run, key)
        bad = [i for i, v in enumerate(vals) if not math.isfinite(v)]
        if bad:
            e = epochs[bad[0]] if bad[0] < len(epochs) else bad[0]
            return Instability(
                "diverged",
                f"its {key.replace('_', ' ')} became non-finite at epoch {e}",
                f"its curves break off at epoch {e}",
            )

    def climb(vals):
        """(total of the upward steps after epoch 1, up steps, steps, direction reversals)."""
        body = [v for v in vals[1:]]  # the first step leaves the init: ignore it
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
                "its loss curve is a saw-tooth instead of a steady decrease"
                if saw
                else "its loss curve climbs back up before it comes down again",
            )
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
                "its loss curve ends well above its lowest point",
            )
    return oscillation(cost, "training cost", 0) or oscillation(vloss, "validation loss", MIN_REVERSALS)


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
    vloss = _history(run, "val_loss")
    if len(vloss) < 2 or not all(math.isfinite(v) for v in vloss):
        return None
    lo = min(vloss)
    i = vloss.index(lo)
    rise = vloss[-1] / lo - 1 if lo > 0 else 0.0
    if rise > OVERFIT_TOL:
        return epochs_of(run)[i], lo, rise
    return None


def update_of(run: Mapping[str, Any]) -> float | None:
    """Median size of one mini-batch update relative to W, η‖∂J/∂W‖/‖W‖ (``evaluate.update_sizes``), or None."""
    v = (metrics_of(run).get("update") or {}).get("median")
    return float(v) if finite(v) else None


def fmt_update(r: float) -> str:
    return f"{r * 100:.2g} %" if r < 0.1 else f"{r * 100:.0f} %"


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
            vloss = _history(run, "val_loss")
            out.append(
                f"{run_name(run)}: the validation loss was lowest at epoch {e} ({fmt_loss(lo)}) "
                f"and ended {rise * 100:.1f} % higher ({fmt_loss(vloss[-1])}), a sign of over-fitting."
            )
    return out


def single_change_groups(
    runs: Sequence[Mapping[str, Any]], param: str
) -> list[tuple[dict[str, Any], list[Mapping[str, Any]]]]:
    """Groups of runs whose configs agree on everything but ``param``.

    Returns ``[(fixed settings that vary elsewhere in the study, runs sorted by
    param)]`` for groups with at least two distinct values of ``param``.
    """
    configs = [r.get("config", {}) for r in runs]
    keys = sorted({k for c in configs for k in c})
    # Name the other main hyper-parameter always, and any other setting that varies.
    varying = [
        k
        for k in keys
        if k != param and (k in ("lam", "eta") or len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1)
    ]
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


def _tested_change(
    a: Mapping[str, Any], b: Mapping[str, Any], ta: float, tb: float, tests: PairTests | None, a_name: str, b_name: str
) -> str:
    """Test accuracy from a to b in words that follow McNemar's test: "raised"/"lowered" only when p < 0.05."""
    t = tests.test(a, b, "test") if tests is not None else None
    moved = f"{accuracy_text(a, 'test')} to {accuracy_text(b, 'test')} ({fmt_points(tb - ta, signed=True)} points"
    if t is None:
        return _change("raised", "lowered", ta, tb, "test accuracy", fmt_acc, "") + (
            f" ({fmt_points(tb - ta, signed=True)} points)" if fmt_acc(ta) != fmt_acc(tb) else ""
        )
    words = test_words(t, a_name, b_name)
    if t["significant"]:
        verb = "raised" if t["b_only"] > t["a_only"] else "lowered"
        return f"{verb} test accuracy (McNemar {fmt_p(t['p'])}) from {moved}; {words})"
    return f"made no significant difference to test accuracy (McNemar {fmt_p(t['p'])}): {moved}; {words})"


def effect_sentences(runs: Sequence[Mapping[str, Any]], param: str, tests: PairTests | None = None) -> list[str]:
    """Effect of one hyper-parameter (``'lam'`` or ``'eta'``) at fixed other settings.

    Only pairs of runs that differ in exactly ``param`` are compared; with no
    such pair the list is empty (nothing is said rather than invented). With
    ``tests`` the test-accuracy change is worded by McNemar's test on the two
    runs' test predictions; for λ the weights' roughness is compared too.
    """
    sym = PARAM_WORDS.get(param, param)
    out = []
    for fixed, members in single_change_groups(runs, param):
        where = f"At {describe_setting(fixed)}" if fixed else "With all other settings fixed"
        for a, b in zip(members, members[1:]):
            va, vb = a["config"][param], b["config"][param]
            parts = []
            ta, tb = accuracy_of(a, "test"), accuracy_of(b, "test")
            if ta is not None and tb is not None:
                parts.append(_tested_change(a, b, ta, tb, tests, f"{sym}={fmt_num(va)}", f"{sym}={fmt_num(vb)}"))
            ga, gb = accuracy_gap(a), accuracy_gap(b)
            if ga is not None and gb is not None:
                parts.append(
                    _change(
                        "widened",
                        "shrank",
                        ga,
                        gb,
                        "the train–validation gap",
                        lambda g: fmt_points(g),
                        " percentage points",
                    )
                )
            ra, rb = roughness_of(a), roughness_of(b)
            if param == "lam" and ra is not None and rb is not None:
                parts.append(
                    _change(
                        "raised",
                        "lowered",
                        ra,
                        rb,
                        "the roughness of the weight templates",
                        lambda r: f"{r:.2f}",
                        " (1 = noise, 0 = smooth: see the weights grid of the comparison)",
                    )
                )
            if not parts:
                continue
            sentence = f"{where}, raising {sym} from {fmt_num(va)} to {fmt_num(vb)} " + " and ".join(parts)
            ia, ib = instability(a), instability(b)
            if (ia is None) != (ib is None):
                bad, good = (va, vb) if ia else (vb, va)
                sentence += (
                    f"; the run with {sym}={fmt_num(bad)} was unstable, the one with {sym}={fmt_num(good)} was not"
                )
            out.append(sentence + ".")
    return out


def best_runs(runs: Sequence[Mapping[str, Any]], split: str) -> list[int]:
    """Indices of the runs with the highest accuracy on ``split`` (ties at 4 decimals)."""
    accs = [(accuracy_of(r, split)) for r in runs]
    vals = [round(a, 4) for a in accs if a is not None]
    if not vals:
        return []
    top = max(vals)
    return [i for i, a in enumerate(accs) if a is not None and round(a, 4) == top]


def runner_up(runs: Sequence[Mapping[str, Any]], split: str) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """(the best run on ``split``, the next best), by accuracy; None with fewer than two evaluated runs."""
    ranked = sorted((r for r in runs if accuracy_of(r, split) is not None), key=lambda r: -accuracy_of(r, split))
    return (ranked[0], ranked[1]) if len(ranked) >= 2 else None


def best_versus_runner_up(
    runs: Sequence[Mapping[str, Any]], tests: PairTests | None, split: str = "test", what: str = "★ run"
) -> str | None:
    """Whether the best run on ``split`` is significantly better than the runner-up (McNemar), in one sentence."""
    pair = runner_up(runs, split)
    t = tests.test(pair[0], pair[1], split) if pair and tests is not None else None
    if t is None:
        return None
    best, second = pair
    words = test_words(t, run_name(best), run_name(second))
    if t["significant"] and t["a_only"] > t["b_only"]:
        return (
            f"The {what} is significantly better than the runner-up, {run_name(second)} "
            f"({accuracy_text(second, split)}): McNemar {fmt_p(t['p'])}; {words}."
        )
    return (
        f"The {what} is not significantly better than the runner-up, {run_name(second)} "
        f"({accuracy_text(second, split)}): no significant difference (McNemar {fmt_p(t['p'])}; {words})."
    )


def best_run_sentences(runs: Sequence[Mapping[str, Any]], tests: PairTests | None = None) -> list[str]:
    """Which run is best on test (and whether significantly, with ``tests``), and which on validation."""
    if not runs:
        return []
    best_test, best_val = best_runs(runs, "test"), best_runs(runs, "val")
    out = []
    if len(runs) == 1 and runs[0].get("diverged_at") is not None:
        return [
            f"One configuration was run ({run_name(runs[0])}); it diverged at epoch "
            f"{runs[0]['diverged_at']}, so there is no accuracy to report."
        ]
    if len(runs) == 1:
        r = runs[0]
        out.append(
            f"One configuration was run ({run_name(r)}); it reached test accuracy "
            f"{accuracy_text(r, 'test')}, so there is nothing to compare."
        )
        return out
    if best_test:
        names = join_names([run_name(runs[i]) for i in best_test])
        out.append(
            f"The highest test accuracy, {accuracy_text(runs[best_test[0]], 'test')}, "
            f"was reached by {names} (marked ★ in the table)."
        )
        star = best_versus_runner_up(runs, tests)
        if star is not None:
            out.append(star)
    if best_val:
        names = join_names([run_name(runs[i]) for i in best_val])
        same = "the same choice" if set(best_val) == set(best_test) else "a different choice from the test ranking"
        out.append(
            f"Choosing on validation accuracy, as one must for deployment since the test set "
            f"is kept unseen, selects {names} ({accuracy_text(runs[best_val[0]], 'val')}): "
            f"{same}."
        )
    return out


def class_sentences(run: Mapping[str, Any]) -> list[str]:
    """Easiest and hardest class of one run, from its per-class accuracy."""
    pca = metrics_of(run).get("per_class_accuracy") or {}
    items = [(k, float(v)) for k, v in pca.items() if finite(v)]
    if len(items) < 2:
        return []
    hi = max(items, key=lambda kv: kv[1])
    lo = min(items, key=lambda kv: kv[1])
    names = list(pca)
    totals = [sum(row) for row in metrics_of(run).get("confusion_matrix") or []]

    def acc(name: str, value: float) -> str:  # with its interval over the class's test images
        i = names.index(name)
        n = totals[i] if i < len(totals) else 0
        return fmt_acc_ci(value, wilson_interval(round(value * n), n) if n else None)

    return [f"For {run_name(run)}, the easiest class was {hi[0]} ({acc(*hi)}) and the hardest {lo[0]} ({acc(*lo)})."]


def loss_of(run: Mapping[str, Any]) -> str:
    """The run's training loss: "softmax" (the study; absent from the config) or "bce"."""
    return str((run.get("config") or {}).get("loss", "softmax"))


def loss_object(name: str | None) -> Loss:
    """The loss (losses.py) a payload names; the study's when it names none, or one unknown here."""
    return loss_named(name if name in LOSSES else TRAIN_DEFAULTS.loss)


def probability_stats(run: Mapping[str, Any]) -> dict[str, float | None]:
    """Mean true-class probability on correct / misclassified test images and the share of
    confident mistakes, from the run's evaluate summary (None where missing)."""
    pr = metrics_of(run).get("probabilities") or {}

    def num(x):
        return float(x) if finite(x) else None

    return {
        "correct": num((pr.get("correct") or {}).get("mean")),
        "incorrect": num((pr.get("incorrect") or {}).get("mean")),
        "confident": num(pr.get("confident_mistakes")),
        "threshold": num(pr.get("threshold")),
    }


def margin_stats(run: Mapping[str, Any]) -> dict[str, float | None]:
    """An SVM run's mean true-class margin on correct / misclassified test images and the share of
    confident mistakes (margin below the threshold), from its evaluate summary (None where missing)."""
    mg = metrics_of(run).get("margins") or {}

    def num(x):
        return float(x) if finite(x) else None

    return {
        "correct": num((mg.get("correct") or {}).get("mean")),
        "incorrect": num((mg.get("incorrect") or {}).get("mean")),
        "confident": num(mg.get("confident_mistakes")),
        "threshold": num(mg.get("threshold")),
    }


def loss_pairs(
    runs: Sequence[Mapping[str, Any]], other: str = "bce"
) -> list[tuple[Mapping[str, Any], Mapping[str, Any], bool]]:
    """(softmax run, ``other``-loss run, same other settings) pairs to compare; [] unless both losses are present.

    ``other`` is "bce" or "svm". Runs identical but for ``loss`` are paired; when
    there is no such pair, the best-on-validation run of each loss is compared
    instead (flagged False). Only evaluated runs count.
    """
    done = [r for r in runs if metrics_of(r).get("test")]
    by_loss = {loss: [r for r in done if loss_of(r) == loss] for loss in ("softmax", other)}
    if not by_loss["softmax"] or not by_loss[other]:
        return []
    pairs, used = [], set()
    for soft in by_loss["softmax"]:
        rest = {k: v for k, v in soft["config"].items() if k != "loss"}
        for bce in by_loss[other]:
            if id(bce) not in used and {k: v for k, v in bce["config"].items() if k != "loss"} == rest:
                pairs.append((soft, bce, True))
                used.add(id(bce))
                break
    if pairs:
        return pairs

    def best(group):
        return max(group, key=lambda r: accuracy_of(r, "val") if accuracy_of(r, "val") is not None else -1.0)

    return [(best(by_loss["softmax"]), best(by_loss[other]), False)]


def _test_accuracy_sentences(
    soft: Mapping[str, Any], other: Mapping[str, Any], name: str, same_settings: bool, tests: PairTests | None = None
) -> list[str]:
    """The sentence comparing a softmax run's test accuracy with another loss's run (``name``: "BCE", "the SVM")."""
    if same_settings:
        shared = {k: soft["config"].get(k) for k in ("lam", "eta")}
        where = f"At {describe_setting(shared)} with every other setting equal"
    else:
        where = (
            f"Comparing the best run of each loss on validation accuracy ({run_name(soft)} for softmax, "
            f"{run_name(other)} for {name}; their other settings differ)"
        )
    ts, to = accuracy_of(soft, "test"), accuracy_of(other, "test")
    if ts is None or to is None:
        return []
    t = tests.test(other, soft, "test") if tests is not None else None
    if t is not None:
        counts = test_words(t, name, "softmax")
        if not t["significant"]:
            return [
                f"{where}, {name} and softmax made no significant difference to test accuracy (McNemar "
                f"{fmt_p(t['p'])}): {accuracy_text(other, 'test')} against {accuracy_text(soft, 'test')}; "
                f"{counts}."
            ]
        return [
            f"{where}, {name} reached test accuracy {accuracy_text(other, 'test')} against "
            f"{accuracy_text(soft, 'test')} for softmax ({fmt_points(to - ts, signed=True)} points; McNemar "
            f"{fmt_p(t['p'])}; {counts}): {name if t['a_only'] > t['b_only'] else 'softmax'} classified "
            f"significantly more test images correctly."
        ]
    if fmt_acc(ts) == fmt_acc(to):
        return [f"{where}, both losses reached test accuracy {fmt_acc(ts)}."]
    return [
        f"{where}, {name} reached test accuracy {fmt_acc(to)} against {fmt_acc(ts)} for softmax "
        f"({fmt_points(to - ts, signed=True)} points): "
        f"{name if to > ts else 'softmax'} classified more test images correctly."
    ]


def svm_sentences(
    soft: Mapping[str, Any], svm: Mapping[str, Any], same_settings: bool, tests: PairTests | None = None
) -> list[str]:
    """How an SVM run compares with a softmax run: validation and test accuracy, the SVM's margins."""
    out = _test_accuracy_sentences(soft, svm, "the SVM", same_settings, tests)
    vs, vv = accuracy_of(soft, "val"), accuracy_of(svm, "val")
    if vs is not None and vv is not None:
        verdict = _more_less(vv, vs, fmt_acc, "the SVM is ahead", "softmax is ahead", "the two are level")
        out.append(
            f"On validation, the split to choose on, the SVM reached {fmt_acc(vv)} and softmax "
            f"{fmt_acc(vs)}: {verdict}."
        )
    ms = margin_stats(svm)
    if ms["correct"] is not None and ms["incorrect"] is not None:
        out.append(
            f"The SVM gives scores, not probabilities: the mean margin of the true class "
            f"(its score minus the best other score) was {fmt_loss(ms['correct'])} on correctly and "
            f"{fmt_loss(ms['incorrect'])} on misclassified test images."
        )
    if ms["confident"] is not None:
        t = ms["threshold"] if ms["threshold"] is not None else -1.0
        out.append(
            f"{fmt_share(ms['confident'])} of the SVM's mistakes are confident: another class beats "
            f"the true one by more than {fmt_num(-t)}, the hinge's margin."
        )
    return out


def _more_less(a: float, b: float, fmt, more: str, less: str, same: str) -> str:
    return same if fmt(a) == fmt(b) else more if a > b else less


def loss_sentences(
    soft: Mapping[str, Any], bce: Mapping[str, Any], same_settings: bool, tests: PairTests | None = None
) -> list[str]:
    """How a BCE run compares with a softmax run: accuracy, true-class probabilities, confident mistakes."""
    out = _test_accuracy_sentences(soft, bce, "BCE", same_settings, tests)
    ps, pb = probability_stats(soft), probability_stats(bce)
    if None not in (ps["correct"], pb["correct"], ps["incorrect"], pb["incorrect"]):
        out.append(
            f"The mean probability given to the true class was {fmt_acc(pb['correct'])} (BCE) and "
            f"{fmt_acc(ps['correct'])} (softmax) on correctly classified images, "
            f"{fmt_acc(pb['incorrect'])} and {fmt_acc(ps['incorrect'])} on misclassified ones."
        )
        gs, gb = ps["correct"] - ps["incorrect"], pb["correct"] - pb["incorrect"]
        if fmt_acc(gs) == fmt_acc(gb):
            out.append(f"Right and wrong answers are separated by the same margin, {fmt_acc(gs)}, with both losses.")
        else:
            wide, narrow = ("BCE", "softmax") if gb > gs else ("softmax", "BCE")
            out.append(
                f"The difference between the two means is {fmt_acc(gb)} with BCE and {fmt_acc(gs)} with "
                f"softmax: {wide}'s probability of the true class tells right from wrong answers "
                f"more clearly than {narrow}'s."
            )
    if ps["confident"] is not None and pb["confident"] is not None:
        t = ps["threshold"] if ps["threshold"] is not None else 0.1
        cs, cb = ps["confident"], pb["confident"]
        verdict = _more_less(
            cb,
            cs,
            fmt_share,
            "BCE makes more confident mistakes",
            "BCE makes fewer confident mistakes",
            "the same share for both",
        )
        out.append(
            f"Confident mistakes (a misclassified image whose true class gets p < {t:g}): "
            f"{fmt_share(cb)} of BCE's mistakes against {fmt_share(cs)} of softmax's; {verdict}."
        )
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
            if finite(m) and (worst is None or float(m) > worst[0]):
                worst = (float(m), p, res.get("lam"))
    if worst is None:
        return []
    verdict = gradcheck_passed(gc)
    rel = "below" if tol is not None and worst[0] <= float(tol) else "above"
    return [
        f"The largest relative gradient error was {fmt_err(worst[0])} (for {worst[1]} at "
        f"λ={fmt_num(worst[2])}), {rel} the tolerance {fmt_err(tol)}: "
        f"{'PASS' if verdict else 'FAIL'}."
    ]


def gradcheck_passed(gc: Mapping[str, Any]) -> bool:
    """The document's verdict if given, else every max error ≤ tol."""
    if "passed" in gc and gc["passed"] is not None:
        return bool(gc["passed"])
    tol = float(gc.get("tol", 0))
    return all(float(res.get(p, {}).get("max", math.inf)) <= tol for res in gc.get("results", []) for p in ("W", "b"))


def analysis(doc: Mapping[str, Any], tests: PairTests | None = None) -> list[tuple[str, list[str]]]:
    """All analysis sentences, grouped under sub-headings; empty groups left out.

    Comparisons are tested with ``tests`` (default: a ``PairTests`` of the document's discordant counts).
    """
    runs = list(doc.get("runs", []))
    tests = tests if tests is not None else PairTests(doc.get("discordant") or [])
    groups = [
        ("Best run", best_run_sentences(runs, tests)),
        ("Train–validation gap", gap_sentences(runs)),
        ("Stability", stability_sentences(runs)),
        ("Effect of λ (regularisation)", effect_sentences(runs, "lam", tests)),
        ("Effect of η (learning rate)", effect_sentences(runs, "eta", tests)),
    ]
    bv = best_runs(runs, "val")
    if bv:
        groups.append(("Classes", class_sentences(runs[bv[0]])))
    groups.append(("Gradient check", gradcheck_sentences(doc.get("gradcheck"))))
    return [(h, s) for h, s in groups if s]
