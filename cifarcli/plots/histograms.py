"""A run's true-class histograms on the test set: the probability it gives (softmax, BCE) or its margin (SVM)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .figure import CORRECT_COLOUR, MUTED, WRONG_COLOUR, new_figure, save_figure, style_axes

PROBABILITY_SIZE = (7.0, 4.5)  # -> 1050 x 675 px


def _group_shares(ax, summary: Mapping[str, Any]) -> np.ndarray:
    """Draw the correct and the misclassified group of a summary as filled steps, each as the share of
    its own group (so a few mistakes stay visible beside many hits); returns the bin edges."""
    edges = np.asarray(summary["bins"], dtype=float)
    for key, label, colour in (
        ("correct", "correctly classified", CORRECT_COLOUR),
        ("incorrect", "misclassified", WRONG_COLOUR),
    ):
        group = summary[key]
        counts = np.asarray(group["counts"], dtype=float)
        if counts.shape != (len(edges) - 1,):
            raise ValueError(f"{key}: {counts.size} counts for {len(edges) - 1} bins")
        share = counts / counts.sum() if counts.sum() else counts
        mean = f", mean {group['mean']:.3f}" if group.get("mean") is not None else ""
        ax.stairs(share, edges, fill=True, alpha=0.3, color=colour)
        ax.stairs(share, edges, color=colour, linewidth=1.6, label=f"{label} (n={group['n']}{mean})")
    return edges


def probabilities_figure(summary: Mapping[str, Any], title: str | None = None):
    """Histograms of the probability given to the true class, correct vs incorrect test images.

    ``summary`` is ``evaluate.probability_summary``'s dict: the bin edges on
    [0, 1] and per group (``correct``, ``incorrect``) the counts over those
    bins. Both groups share the bins and are drawn overlaid as filled steps, each
    as the share of its own group (so a few mistakes stay visible beside many hits).
    """
    fig = new_figure(PROBABILITY_SIZE)
    ax = fig.add_subplot()
    style_axes(ax)
    _group_shares(ax, summary)
    _mark_threshold(ax, summary.get("threshold"), "p")
    ax.set_xlim(0, 1)
    kind = "sigmoid σ(s_y)" if summary.get("kind") == "sigmoid" else "softmax"
    xlabel = f"probability given to the true class ({kind})"
    _label(ax, xlabel, title or "Probability of the true class on the test set")
    return fig


def plot_probabilities(summary: Mapping[str, Any], path: str | os.PathLike, title: str | None = None) -> Path:
    """Write the true-class probability histograms to ``path`` (PNG, 1050×675 px)."""
    return save_figure(probabilities_figure(summary, title), path)


# --------------------------------------------------------------------------
# an SVM's true-class margin (an SVM has no probabilities)


def margins_figure(summary: Mapping[str, Any], title: str | None = None):
    """Histograms of the true class's margin m = s_y − max_{j≠y} s_j, correct vs incorrect test images.

    ``summary`` is ``evaluate.margin_summary``'s dict (bin edges on [-5, 5], open
    outer bins); drawn as ``probabilities_figure`` draws its summary, each group
    as the share of its own group. m > 0 is a correct answer; the dotted line is
    the threshold of a confident mistake (another class wins by more than the margin 1).
    """
    fig = new_figure(PROBABILITY_SIZE)
    ax = fig.add_subplot()
    style_axes(ax)
    edges = _group_shares(ax, summary)
    ax.axvline(0, color=MUTED, linestyle="-", linewidth=0.8)
    _mark_threshold(ax, summary.get("threshold"), "margin")
    ax.set_xlim(edges[0], edges[-1])
    open_ends = " (outer bins include everything beyond)" if summary.get("open_ends") else ""
    xlabel = f"margin of the true class, s_y − max_(j≠y) s_j (SVM scores){open_ends}"
    _label(ax, xlabel, title or "Margin of the true class on the test set")
    return fig


def plot_margins(summary: Mapping[str, Any], path: str | os.PathLike, title: str | None = None) -> Path:
    """Write the true-class margin histograms of an SVM run to ``path`` (PNG, 1050×675 px)."""
    return save_figure(margins_figure(summary, title), path)


def _mark_threshold(ax, threshold: float | None, what: str) -> None:
    """The dotted line of a confident mistake's threshold, when the summary has one."""
    if threshold is not None:
        label = f"{what} = {threshold:g} (mistakes left of it: confident)"
        ax.axvline(threshold, color=MUTED, linestyle=":", linewidth=1.0, label=label)


def _label(ax, xlabel: str, title: str) -> None:
    """What both histograms share: counts from 0 as shares of each group, the title and the legend."""
    ax.set_ylim(0, None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of the group's test images")
    ax.set_title(title, fontsize=11, loc="left")
    ax.legend(frameon=True, framealpha=0.9, edgecolor="white", fontsize=8.5, loc="best")
