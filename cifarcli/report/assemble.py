"""Layer 3 of the report: the whole document as blocks, section after section, in reading order.

``build_blocks(doc)`` puts the sections (``section_*.py``) in order: the full report (comparison
first, then set-up, gradient check, each run, sweep, ensemble, analysis, discussion) or, with
``doc["brief"]``, the assignment's layout. ``comparisons(doc)`` lists every statistical comparison
the report's sentences rest on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .analysis import analysis, best_runs
from .blocks import Bullets, Contents, FigureRow, Heading, Para, anchor
from .format import fmt_acc, join_names
from .measures import PairTests, accuracy_of, gradcheck_passed, run_name
from .section_comparison import comparison_blocks
from .section_discussion import discussion_section
from .section_ensemble import ensemble_blocks
from .section_gradcheck import gradcheck_blocks
from .section_runs import run_anchor, run_blocks
from .section_setup import setup_blocks
from .section_sweep import sweep_blocks
from .stability import STABILITY_RULE


def _analysis_blocks(doc: Mapping[str, Any], tests: PairTests | None = None) -> list:
    blocks: list = [Heading(2, "Analysis", "analysis")]
    groups = analysis(doc, tests)
    for title, sentences in groups:
        blocks.append(Heading(3, title, "analysis-" + anchor(title)))
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
            bits.append(f"{len(diverged)} diverged ({join_names([run_name(r) for r in diverged])})")
        if bt:
            bits.append(f"best test accuracy {fmt_acc(accuracy_of(runs[bt[0]], 'test'))} ({run_name(runs[bt[0]])})")
    gc = doc.get("gradcheck")
    if gc:
        bits.append(f"gradient check {'PASS' if gradcheck_passed(gc) else 'FAIL'}")
    return [Para("Summary: " + "; ".join(bits) + ".")] if bits else []


def build_blocks(doc: Mapping[str, Any], tests: PairTests | None = None) -> list:
    """The whole report as a list of blocks, in reading order.

    Every comparison is tested with ``tests`` (default: a ``PairTests`` of the document's discordant counts),
    which records the comparisons used. With ``doc["brief"]`` the assignment's layout: set-up, gradient
    check, each run (its table, curves and weights), the comparison, the analysis, the discussion.
    """
    runs = list(doc.get("runs", []))
    tests = tests if tests is not None else PairTests(doc.get("discordant") or [])
    if doc.get("brief"):
        return number_figures(_brief_blocks(doc, runs, tests))
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
    toc = [("comparison", "Comparison of runs"), ("setup", "Set-up"), ("gradcheck", "Gradient check"), ("runs", "Runs")]
    toc += [(run_anchor(r, i), f"Run {i + 1}: {run_name(r)}") for i, r in enumerate(runs)]
    toc += [("sweep", "Hyper-parameter sweep")] if doc.get("sweep") else []
    toc += [("ensemble", "Ensemble")] if doc.get("ensemble") else []
    toc += [("analysis", "Analysis")]
    toc += [("discussion", "Discussion")] if doc.get("discussion") else []
    blocks.append(Contents(toc))
    # The study's central result first: every run side by side, then how it was made, then each run.
    blocks += comparison_blocks(runs, doc.get("comparison"), tests)
    blocks += setup_blocks(doc)
    blocks += gradcheck_blocks(doc.get("gradcheck"))
    blocks.append(Heading(2, "Runs", "runs"))
    if not runs:
        blocks.append(Para("No run is part of this report."))
    for i, r in enumerate(runs):
        blocks += run_blocks(r, i)
    if doc.get("sweep"):
        blocks += sweep_blocks(doc["sweep"], tests)
    if doc.get("ensemble"):
        blocks += ensemble_blocks(doc["ensemble"])
    blocks += _analysis_blocks(doc, tests)
    blocks += discussion_section(doc)
    return number_figures(blocks)


def _title_blocks(doc: Mapping[str, Any]) -> list:
    title = str(doc.get("title") or "One-layer network on CIFAR-10")
    meta = [f"cifarcli {doc['cifarcli_version']}"] if doc.get("cifarcli_version") else []
    meta += [str(doc["created"])] if doc.get("created") else []
    return [Heading(1, title, "top")] + ([Para(" · ".join(meta), "meta")] if meta else [])


def _brief_blocks(doc: Mapping[str, Any], runs: list, tests: PairTests) -> list:
    """The assignment's layout: set-up, gradient check, per run its table with curves and weights, the
    comparison, the analysis, the discussion (no per-class, probability or confusion figures)."""
    blocks = _title_blocks(doc) + setup_blocks(doc) + gradcheck_blocks(doc.get("gradcheck"))
    blocks.append(Heading(2, "Runs", "runs"))
    for i, r in enumerate(runs):
        blocks += run_blocks(r, i, brief=True)
    blocks += comparison_blocks(runs, doc.get("comparison"), tests, brief=True)
    if doc.get("sweep"):
        blocks += sweep_blocks(doc["sweep"], tests)
    return blocks + _analysis_blocks(doc, tests) + discussion_section(doc)


def comparisons(doc: Mapping[str, Any]) -> list[dict]:
    """Every comparison a sentence of the report rests on: ``{"a", "b", "split", "a_only", "b_only", "p",
    "significant"}``, in reading order, each pair once (``report --json``'s "comparisons")."""
    tests = PairTests(doc.get("discordant") or [])
    build_blocks(doc, tests)
    return tests.used


def number_figures(blocks: list) -> list:
    """Number every figure in reading order: its caption starts "Figure n: "."""
    n = 0
    for b in blocks:
        if isinstance(b, FigureRow):
            for f in b.figures:
                n += 1
                f.caption = f"Figure {n}: {f.caption}"
    return blocks
