"""The study report: ``report.md`` (GitHub) and a self-contained ``report.html``.

Pure rendering from an in-memory document (see ``render_markdown`` for its
shape); no cache and no CLI here. One file per layer, each importing only the
ones above it in this list:

1. ``format.py`` — numbers and settings as text (``fmt_acc``, ``fmt_points``, ...).
2. ``measures.py`` — the numbers read from a run (``run_name``, ``accuracy_of``,
   ``PairTests``, ...); ``stability.py`` — the instability rule (``instability``,
   ``stability_label``) and its sentences; ``loss_comparison.py`` — another loss
   against the study's (``loss_pairs``, ``loss_sentences``, ``svm_sentences``);
   ``analysis.py`` — the analysis section's sentences (``analysis``,
   ``gap_sentences``, ``effect_sentences``, ...).
3. ``blocks.py`` — the neutral blocks: headings, paragraphs, tables, figures;
   ``section_*.py`` — one section each (set-up, gradient check, runs,
   comparison, other losses, sweep, ensemble, discussion); ``assemble.py`` —
   ``build_blocks(doc)``: the sections in reading order.
4. ``markdown.py`` / ``html.py`` — the same blocks as GitHub Markdown (images
   linked relative to the report) or as one HTML page (images inlined as
   base64 PNG, CSS inlined, no script, no external URL).
   ``typeset.py`` — the same blocks as Typst source for the A4 PDF (``render_typst``, ``compile_pdf``).

The flow: doc → ``build_blocks`` → ``render_markdown`` / ``render_html``.
"""

from __future__ import annotations

from .analysis import (
    analysis,
    best_run_sentences,
    best_runs,
    class_sentences,
    effect_sentences,
    gap_sentences,
    gradcheck_sentences,
    single_change_groups,
)
from .assemble import build_blocks, comparisons
from .blocks import Heading
from .format import fmt_acc, fmt_num, fmt_points
from .html import render_html
from .loss_comparison import loss_pairs, loss_sentences, svm_sentences
from .markdown import render_markdown
from .measures import accuracy_gap, margin_stats, run_name
from .section_discussion import discussion_blocks
from .stability import Instability, instability, overfitting, stability_label, stability_sentences

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
