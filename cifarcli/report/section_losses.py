"""Layer 3 of the report: each other loss set against the study's (a table, the histograms, sentences)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..config import LOSSES, loss_named
from .blocks import Bullets, Figure, FigureRow, Heading, Span, Table
from .format import fmt_acc, fmt_loss, fmt_share
from .loss_comparison import loss_pairs, loss_sentences, svm_sentences
from .measures import PairTests, accuracy_of, loss_object, loss_of, margin_stats, probability_stats, run_name


def loss_comparison_blocks(runs: Sequence[Mapping[str, Any]], tests: PairTests | None = None) -> list:
    """Each other loss against the study's, in the order of ``LOSSES``: a loss with probabilities
    compared by them, a loss with scores by its margins; [] for a loss no run was trained with."""
    blocks: list = []
    for name in LOSSES:
        loss = loss_named(name)
        if loss.is_study:
            continue
        compare = _probability_loss_blocks if loss.gives_probabilities else _score_loss_blocks
        blocks += compare(runs, name, tests)
    return blocks


def _score_loss_blocks(runs: Sequence[Mapping[str, Any]], other: str, tests: PairTests | None = None) -> list:
    """Softmax vs SVM: a table of accuracies and the SVM's margins, the figures, sentences; [] without both."""
    pairs = loss_pairs(runs, other)
    if not pairs:
        return []
    blocks: list = [Heading(3, "Softmax vs SVM", "comparison-svm")]
    rows = []
    for soft, svm, _ in pairs:
        for r in (soft, svm):
            scores_only = not loss_object(loss_of(r)).gives_probabilities
            st = margin_stats(r) if scores_only else {"correct": None, "incorrect": None}
            rows.append(
                [
                    run_name(r),
                    loss_of(r),
                    fmt_acc(accuracy_of(r, "val")),
                    fmt_acc(accuracy_of(r, "test")),
                    fmt_loss(st["correct"]) if st["correct"] is not None else "—",
                    fmt_loss(st["incorrect"]) if st["incorrect"] is not None else "—",
                    Span(str(r.get("run_id", "—")), code=True),
                ]
            )
    blocks.append(
        Table(
            ["run", "loss", "val. acc.", "test acc.", "mean margin, correct", "mean margin, misclassified", "run ID"],
            rows,
            align="llrrrrl",
            caption="The multi-class SVM (hinge loss, margin 1) against softmax. The SVM gives "
            "scores, not probabilities: its margin is the true class's score minus the "
            "best other score, on the test set.",
        )
    )
    for soft, svm, same in pairs:
        blocks += _side_by_side([(soft, "probabilities"), (svm, "margins")], "true class")
        blocks.append(Bullets(list(svm_sentences(soft, svm, same, tests))))
    return blocks


def _probability_loss_blocks(runs: Sequence[Mapping[str, Any]], other: str, tests: PairTests | None = None) -> list:
    """Softmax vs BCE: a table, the histograms side by side, sentences from the numbers; [] with one loss."""
    pairs = loss_pairs(runs, other)
    if not pairs:
        return []
    blocks: list = [Heading(3, "Softmax vs binary cross-entropy", "comparison-losses")]
    rows = []
    t = 0.1
    for soft, bce, _ in pairs:
        for r in (soft, bce):
            st = probability_stats(r)
            t = st["threshold"] if st["threshold"] is not None else t
            rows.append(
                [
                    run_name(r),
                    loss_of(r),
                    fmt_acc(accuracy_of(r, "test")),
                    fmt_acc(st["correct"]),
                    fmt_acc(st["incorrect"]),
                    fmt_share(st["confident"]),
                    Span(str(r.get("run_id", "—")), code=True),
                ]
            )
    blocks.append(
        Table(
            [
                "run",
                "loss",
                "test acc.",
                "mean p(true), correct",
                "mean p(true), misclassified",
                f"confident mistakes (p(true) < {t:g})",
                "run ID",
            ],
            rows,
            align="llrrrrl",
            caption="Probability given to the true class on the test set. Softmax probabilities "
            "sum to 1 over the classes; BCE's are one sigmoid per class and do not. "
            "Confident mistakes: share of the misclassified images.",
        )
    )
    for soft, bce, same in pairs:
        blocks += _side_by_side([(soft, "probabilities"), (bce, "probabilities")], "true-class probability")
        blocks.append(Bullets(list(loss_sentences(soft, bce, same, tests))))
    return blocks


def _side_by_side(figures: list[tuple[Mapping[str, Any], str]], what: str) -> list:
    """One row of the named figure of each run, side by side; [] when a run has none."""
    paths = [(run, (run.get("figures") or {}).get(name)) for run, name in figures]
    if not all(path for _, path in paths):
        return []
    row = [
        Figure(path, f"{what}, {run_name(r)}, loss {loss_of(r)}", f"{loss_of(r)}: {run_name(r)}") for r, path in paths
    ]
    return [FigureRow(row, side_by_side=True)]
