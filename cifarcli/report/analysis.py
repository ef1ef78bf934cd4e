"""Layer 2 of the report: the analysis section's sentences, computed from the numbers.

They read the measured numbers of the document and return plain-text
sentences (``gap_sentences``, ``effect_sentences``, ``best_run_sentences``, ...);
``analysis`` groups them under the section's sub-headings. No sentence is fixed
prose: each one is computed from the document, so the analysis never
contradicts the tables. An effect (of λ, of η) is described only for runs that
differ in exactly that one setting. Stability has its own module
(``stability.py``), the numbers these read theirs (``measures.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..stats import wilson_interval
from .format import (
    PARAM_WORDS,
    describe_setting,
    finite,
    fmt_acc,
    fmt_acc_ci,
    fmt_err,
    fmt_num,
    fmt_p,
    fmt_points,
    join_names,
)
from .measures import (
    PairTests,
    accuracy_gap,
    accuracy_of,
    accuracy_text,
    gradcheck_passed,
    metrics_of,
    roughness_of,
    run_name,
    test_words,
)
from .stability import instability, stability_sentences


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
