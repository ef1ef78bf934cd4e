"""Layer 3 of the report: the ensemble section (each member, the two combined rules, sentences)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .blocks import Bullets, Heading, Para, Span, Table
from .format import finite, fmt_acc, fmt_points


def ensemble_blocks(ens: Mapping[str, Any]) -> list:
    """The [ensemble] section: each member's accuracy, the majority vote's and the mean's, sentences."""
    combined = "scores" if ens.get("combined") == "scores" else "probabilities"
    members = list(ens.get("members") or [])
    blocks: list = [
        Heading(2, "Ensemble", "ensemble"),
        Para(
            f"{len(members)} runs of one setting at different seeds, combined on the validation and "
            f"test sets by majority vote ({ens.get('tie_rule', '')}) and by the mean of their "
            f"{combined}{' (an SVM has no probabilities)' if combined == 'scores' else ''}."
        ),
    ]
    rows = [
        [str(m.get("label")), fmt_acc(m.get("val")), fmt_acc(m.get("test")), Span(str(m.get("run_id")), code=True)]
        for m in members
    ]
    val, test = ens.get("val") or {}, ens.get("test") or {}
    for key, name in (("vote", "majority vote"), ("mean", f"mean of the {combined}")):
        rows.append([Span(name, bold=True), fmt_acc(val.get(key)), fmt_acc(test.get(key)), "—"])
    blocks.append(
        Table(
            ["member", "val. acc.", "test acc.", "run ID"],
            rows,
            align="lrrl",
            highlight={len(members), len(members) + 1},
        )
    )
    sentences = []
    if members and finite(val.get("vote")) and finite(val.get("mean")):
        best_member = max(members, key=lambda m: m.get("val") or 0)
        rule = "vote" if val["vote"] > val["mean"] else "mean"  # a tie: the mean (it uses more information)
        chosen = (val[rule], test.get(rule))
        if val["vote"] == val["mean"]:
            sentences.append(
                f"On validation the majority vote and the mean are level at {fmt_acc(chosen[0])}; "
                f"on test the vote reached {fmt_acc(test.get('vote'))} and the mean "
                f"{fmt_acc(test.get('mean'))}."
            )
        else:
            sentences.append(
                f"On validation the {'majority vote' if rule == 'vote' else 'mean'} is the better rule "
                f"({fmt_acc(chosen[0])} against {fmt_acc(val['mean' if rule == 'vote' else 'vote'])}); "
                f"its test accuracy is {fmt_acc(chosen[1])}."
            )
        gain = chosen[0] - float(best_member.get("val") or 0)
        sentences.append(
            f"The best member on validation, {best_member.get('label')}, reached {fmt_acc(best_member.get('val'))} "
            f"(test {fmt_acc(best_member.get('test'))}): the ensemble is "
            f"{fmt_points(abs(gain))} points {'above' if gain >= 0 else 'below'} it on validation."
        )
        if finite(val.get("vote_ties")):
            sentences.append(f"{val['vote_ties']} of {val.get('n')} validation images had a tied vote.")
    if sentences:
        blocks.append(Bullets(sentences))
    return blocks
