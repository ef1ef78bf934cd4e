"""The study report: ``report.md`` (GitHub) and a self-contained ``report.html``.

Pure rendering from an in-memory document (see ``render_markdown`` for its
shape); no cache and no CLI here. One file per layer, each importing only the
ones above it in this list:

1. ``format.py`` — numbers and settings as text (``fmt_acc``, ``fmt_points``, ...).
2. ``analysis.py`` — sentences computed from the numbers (``analysis``,
   ``instability``, ``gap_sentences``, ...), and the instability rule.
3. ``blocks.py`` — ``build_blocks(doc)``: the document as a neutral list of
   headings, paragraphs, tables and figures.
4. ``markdown.py`` / ``html.py`` — the same blocks as GitHub Markdown (images
   linked relative to the report) or as one HTML page (images inlined as
   base64 PNG, CSS inlined, no script, no external URL).
   ``typeset.py`` — the same blocks as Typst source for the A4 PDF (``render_typst``, ``compile_pdf``).

The flow: doc → ``build_blocks`` → ``render_markdown`` / ``render_html``.
"""

from __future__ import annotations

from .analysis import (
    Instability,
    accuracy_gap,
    analysis,
    best_run_sentences,
    best_runs,
    class_sentences,
    effect_sentences,
    gap_sentences,
    gradcheck_sentences,
    instability,
    loss_pairs,
    loss_sentences,
    margin_stats,
    overfitting,
    run_name,
    single_change_groups,
    stability_label,
    stability_sentences,
    svm_sentences,
)
from .blocks import Heading, build_blocks, comparisons, discussion_blocks
from .format import fmt_acc, fmt_num, fmt_points
from .html import render_html
from .markdown import render_markdown

__all__ = [
    "render_markdown",
    "render_html",
    "build_blocks",
    "analysis",
    "gap_sentences",
    "stability_sentences",
    "effect_sentences",
    "best_run_sentences",
    "class_sentences",
    "gradcheck_sentences",
    "instability",
    "stability_label",
    "overfitting",
    "Instability",
    "single_change_groups",
    "best_runs",
    "accuracy_gap",
    "fmt_acc",
    "fmt_points",
    "fmt_num",
    "run_name",
    "comparisons",
    "discussion_blocks",
    "loss_pairs",
    "loss_sentences",
    "margin_stats",
    "svm_sentences",
    "Heading",
]
