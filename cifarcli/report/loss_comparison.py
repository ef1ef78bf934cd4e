"""Layer 2 of the report: a run of another loss set against a run of the study's loss.

``loss_pairs`` finds the runs to compare (same settings but the loss, else the best of each on
validation); ``loss_sentences`` (a loss with probabilities) and ``svm_sentences`` (a loss with scores)
say how they compare, from the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..config import TRAIN_DEFAULTS
from .format import describe_setting, fmt_acc, fmt_loss, fmt_num, fmt_p, fmt_points, fmt_share
from .measures import (
    PairTests,
    accuracy_of,
    accuracy_text,
    loss_of,
    margin_stats,
    metrics_of,
    probability_stats,
    run_name,
    test_words,
)


def loss_pairs(
    runs: Sequence[Mapping[str, Any]], other: str
) -> list[tuple[Mapping[str, Any], Mapping[str, Any], bool]]:
    """(study-loss run, ``other``-loss run, same other settings) pairs to compare; [] unless both losses are present.

    The study's loss (``TRAIN_DEFAULTS.loss``) is the reference every other loss is
    compared with; ``other`` is the name of another loss. Runs identical but for
    ``loss`` are paired; when there is no such pair, the best-on-validation run of
    each loss is compared instead (flagged False). Only evaluated runs count.
    """
    done = [r for r in runs if metrics_of(r).get("test")]
    references = [r for r in done if loss_of(r) == TRAIN_DEFAULTS.loss]
    others = [r for r in done if loss_of(r) == other]
    if not references or not others:
        return []
    pairs, used = [], set()
    for reference in references:
        rest = {k: v for k, v in reference["config"].items() if k != "loss"}
        for candidate in others:
            if id(candidate) not in used and {k: v for k, v in candidate["config"].items() if k != "loss"} == rest:
                pairs.append((reference, candidate, True))
                used.add(id(candidate))
                break
    if pairs:
        return pairs

    def best(group):
        return max(group, key=lambda r: accuracy_of(r, "val") if accuracy_of(r, "val") is not None else -1.0)

    return [(best(references), best(others), False)]


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
