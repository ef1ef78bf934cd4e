"""Layer 3 of the report: the comparison of every run (the table, the flags, the overlaid figures,
accuracy per class, then each other loss against the study's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .analysis import best_runs, best_versus_runner_up
from .blocks import Figure, FigureRow, Heading, Inline, Para, Span, Table
from .format import fmt_acc, fmt_num, join_names
from .measures import PairTests, accuracy_of, fmt_update, metrics_of, roughness_of, run_name, update_of
from .section_losses import loss_comparison_blocks
from .section_runs import accuracy_cell, epochs_cell
from .stability import instability, stability_label


def _stability_cell(run: Mapping[str, Any]) -> Inline:
    """'stable', or the flag of an unstable or diverged run (bold: it must catch the eye)."""
    label = stability_label(run)
    return label if label == "stable" else Span(label, bold=True, nowrap=True)


def _comparison_figure_blocks(runs: Sequence[Mapping[str, Any]], compared: Mapping[str, Any] | None) -> list:
    """The overlaid validation curves and the weights grid of every run (both full width)."""
    figs = (compared or {}).get("figures") or {}
    names = join_names([run_name(r) for r in runs])
    blocks: list = []
    if figs.get("curves"):
        blocks.append(
            FigureRow(
                [
                    Figure(
                        figs["curves"],
                        "validation loss and accuracy of every run, overlaid",
                        f"validation loss and accuracy of every run ({names}), per epoch, one "
                        "colour and mark per run (the same in the weights grid). An unstable "
                        "run's loss has a panel of its own, so the stable runs stay apart (their "
                        "panel is zoomed on where they differ). A diverged run's curves stop where "
                        "its cost became NaN or infinite.",
                    )
                ],
                wide=True,
            )
        )
    if figs.get("weights"):
        blocks.append(
            FigureRow(
                [
                    Figure(
                        figs["weights"],
                        "learnt weights of every run, one row per run",
                        "learnt weights of every run, one row per run (labelled λ, η, in the "
                        "run's colour), one 32×32 image per class, each scaled to its own range; "
                        "the comparison table gives each row's roughness.",
                    )
                ],
                wide=True,
            )
        )
    return blocks


ROUGHNESS_DEFINITION = (
    "Roughness of W: for each class template w (one row of W as a 3×32×32 image), the mean squared "
    "difference between horizontally or vertically neighbouring pixels of one colour, divided by twice the "
    "template's variance; the table gives the mean over the ten classes. Independent noise scores 1, a "
    "smooth image near 0: the lower, the more structured the templates in the weights grid."
)
# The comparison table's columns, and the alignment of each.
RUN_COLUMNS = (
    "run",
    "λ",
    "η",
    "n_batch",
    "epochs",
    "train acc.",
    "val. acc.",
    "test acc.",
    "roughness of W",
    "update / ‖W‖",
    "stability",
    "run ID",
)
RUN_ALIGN = "lrrrrrrrrrll"
SHAREABLE = ((3, "n_batch"), (4, "epochs"))  # columns said once, in the caption, when every run agrees


def comparison_blocks(
    runs: Sequence[Mapping[str, Any]],
    compared: Mapping[str, Any] | None = None,
    tests: PairTests | None = None,
    brief: bool = False,
) -> list:
    """The section: every run in one table, the flags and notes, the overlaid figures; unless ``brief``,
    the accuracy per class and each other loss against the study's."""
    blocks: list = [Heading(2, "Comparison of runs", "comparison")]
    if not runs:
        blocks.append(Para("No run is part of this report."))
        return blocks
    best = set(best_runs(runs, "test")) if len(runs) > 1 else set()
    blocks.append(_runs_table([_run_row(r, i in best) for i, r in enumerate(runs)], best))
    blocks += _instability_flags(runs)
    blocks += _table_notes(runs, tests)
    blocks += _comparison_figure_blocks(runs, compared)
    if brief:
        return blocks
    return blocks + _per_class_table(runs) + loss_comparison_blocks(runs, tests)


def _run_row(r: Mapping[str, Any], starred: bool) -> list[Inline]:
    """One run's row of the table, in the order of ``RUN_COLUMNS``; ``starred``: the best test accuracy."""
    c = r.get("config", {})
    test = (
        ["diverged"]
        if r.get("diverged_at") is not None
        else accuracy_cell(accuracy_of(r, "test"), (metrics_of(r).get("test") or {}).get("accuracy_ci"))
    )
    rough, step = roughness_of(r), update_of(r)
    return [
        Span(run_name(r), nowrap=True),
        fmt_num(c.get("lam")),
        fmt_num(c.get("eta")),
        fmt_num(c.get("n_batch")),
        epochs_cell(r),
        *(accuracy_cell(accuracy_of(r, s), (metrics_of(r).get(s) or {}).get("accuracy_ci")) for s in ("train", "val")),
        [Span(f"{test[0]} ★", bold=True), *test[1:]] if starred else test,
        "—" if rough is None else f"{rough:.2f}",
        "—" if step is None else fmt_update(step),
        _stability_cell(r),
        Span(str(r.get("run_id", "—")), code=True),
    ]


def _runs_table(rows: list[list[Inline]], best: set[int]) -> Table:
    """The table of every run, the best highlighted."""
    # A setting every run shares is said once, in the caption: the table stays within the page.
    shared = {k: rows[0][i] for i, k in SHAREABLE if len({str(row[i]) for row in rows}) == 1}
    keep = [i for i in range(len(RUN_COLUMNS)) if RUN_COLUMNS[i] not in shared]
    return Table(
        [RUN_COLUMNS[i] for i in keep],
        [[row[i] for i in keep] for row in rows],
        align="".join(RUN_ALIGN[i] for i in keep),
        highlight=best,
        caption=(f"Every run: {', '.join(f'{k} {v}' for k, v in shared.items())}. " if shared else "")
        + "Final accuracies with their 95 % Wilson intervals; roughness of W: "
        "how rough the ten weight templates are (1 = like noise, 0 = smooth; defined "
        "under the table); update / ‖W‖: the median size of one mini-batch update relative "
        "to the weights; ⚠ flags an unstable or diverged run (rule in the analysis).",
    )


def _instability_flags(runs: Sequence[Mapping[str, Any]]) -> list:
    """A warning for each run the instability rule flags: why, and how it shows."""
    flags = []
    for r in runs:
        found = instability(r)
        if found is None:
            continue
        flags.append(
            Para(
                [
                    Span(run_name(r), bold=True),
                    f" was {'unstable' if found.kind != 'diverged' else 'diverged'}: {found.reason}; {found.curve}.",
                ],
                "warn",
            )
        )
    return flags


def _table_notes(runs: Sequence[Mapping[str, Any]], tests: PairTests | None) -> list:
    """What the ★ means (and whether the best is significantly better), and what roughness is."""
    notes = []
    if len(runs) > 1:
        star = best_versus_runner_up(runs, tests)
        notes.append(
            Para(
                "★ marks the highest test accuracy. "
                + (star + " " if star else "")
                + "It is reported for comparison with "
                "the study only: a model for deployment is chosen on validation accuracy, "
                "with the test set kept unseen.",
                "note",
            )
        )
    if any(roughness_of(r) is not None for r in runs):
        notes.append(Para(ROUGHNESS_DEFINITION, "note"))
    return notes


def _per_class_table(runs: Sequence[Mapping[str, Any]]) -> list:
    """Each evaluated run's accuracy per class on the test set (a diverged run has none)."""
    evaluated = [r for r in runs if metrics_of(r).get("per_class_accuracy")]
    pcs = [metrics_of(r)["per_class_accuracy"] for r in evaluated]
    classes = list(dict.fromkeys(k for p in pcs for k in p))
    if not classes:
        return []
    prow = [[cls] + [fmt_acc(p.get(cls)) for p in pcs] for cls in classes]
    return [Table(["class"] + [run_name(r) for r in evaluated], prow, caption="Accuracy per class on the test set.")]
