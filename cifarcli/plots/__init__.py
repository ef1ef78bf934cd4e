"""Figures as PNG files: a run's curves, weights, confusion matrix and true-class histograms, the
comparison of runs, and the sweep's heat-map.

Pure rendering from in-memory data (no cache, no CLI); matplotlib is imported inside the functions only,
so importing this package stays cheap. One module per kind of figure:

- ``figure.py`` — the shared plumbing: ``new_figure``, ``style_axes``, ``save_figure`` (a deterministic
  PNG written atomically), ``atomic_write_bytes``, the history's columns, ``legend_labels``;
- ``run_figures.py`` — one run: loss and accuracy curves, learnt weights, confusion matrix;
- ``histograms.py`` — one run's true-class probability (softmax, BCE) or margin (SVM) on the test set;
- ``comparison_figures.py`` — several runs: validation curves overlaid, weights one row per run
  (``run_style``: one look per run), and the sweep's λ × η heat-map.

Each ``*_figure`` builder returns the figure without saving it; ``plot_*`` = builder + ``save_figure``.
"""

from __future__ import annotations

from .comparison_figures import (
    comparison_curves_figure,
    comparison_weights_figure,
    plot_comparison_curves,
    plot_comparison_weights,
    plot_sweep_heatmap,
    run_style,
    sweep_heatmap_figure,
)
from .figure import atomic_write_bytes, legend_labels, new_figure, save_figure, style_axes
from .histograms import margins_figure, plot_margins, plot_probabilities, probabilities_figure
from .run_figures import (
    accuracy_figure,
    confusion_figure,
    cost_is_loss,
    loss_figure,
    plot_accuracy,
    plot_confusion,
    plot_loss,
    plot_weights,
    weight_images,
    weights_figure,
)

__all__ = [
    "new_figure",
    "style_axes",
    "save_figure",
    "atomic_write_bytes",
    "legend_labels",
    "cost_is_loss",
    "loss_figure",
    "accuracy_figure",
    "plot_loss",
    "plot_accuracy",
    "weight_images",
    "weights_figure",
    "plot_weights",
    "confusion_figure",
    "plot_confusion",
    "probabilities_figure",
    "plot_probabilities",
    "margins_figure",
    "plot_margins",
    "run_style",
    "comparison_curves_figure",
    "comparison_weights_figure",
    "plot_comparison_curves",
    "plot_comparison_weights",
    "sweep_heatmap_figure",
    "plot_sweep_heatmap",
]
