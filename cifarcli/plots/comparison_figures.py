"""Figures across runs: the validation curves overlaid, the weights one row per run, the sweep's heat-map."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .figure import MUTED, WRONG_COLOUR, check_history, integer_epochs, new_figure, save_figure, series, style_axes
from .run_figures import weight_images

COMPARISON_CURVES_SIZE = (9.0, 3.4)  # two panels -> 1350 x 510 px
RUN_COLOURS = ("#1f77b4", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
RUN_STYLES = ("-", "--", "-.", ":")
RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # lines that nearly coincide stay apart by their marks


def run_style(i: int) -> dict:
    """Colour, then line style once the colours are used up: every run has its own look."""
    return {
        "color": RUN_COLOURS[i % len(RUN_COLOURS)],
        "linestyle": RUN_STYLES[(i // len(RUN_COLOURS)) % len(RUN_STYLES)],
        "marker": RUN_MARKERS[i % len(RUN_MARKERS)],
        "markersize": 4.5,
    }


def comparison_curves_figure(
    runs: Sequence[tuple[str, Mapping[str, Sequence[float]]]],
    title: str | None = None,
    apart: Sequence[bool] | None = None,
):
    """Every run's validation loss and validation accuracy per epoch, overlaid, one colour per run
    (``run_style(i)``, the i-th run's colour in every comparison figure).

    ``runs`` is a sequence of (label, history). The runs flagged in ``apart`` (the unstable ones) get a loss
    panel of their own, so that their large loss cannot squash the others' into one line; the loss axis
    also turns logarithmic when the runs of one panel span more than a factor 50. Non-finite values (a
    diverged run) are not drawn. The legend sits below the panels, off the data.
    """
    if not runs:
        raise ValueError("no run to compare")
    for _, history in runs:
        check_history(history, ("epoch", "val_loss", "val_acc"))
    apart = [bool(a) for a in (apart or [False] * len(runs))]
    split = any(apart) and not all(apart)
    fig = new_figure((COMPARISON_CURVES_SIZE[0] * (1.25 if split else 1), COMPARISON_CURVES_SIZE[1] + 0.5))
    axes = fig.subplots(1, 3 if split else 2)
    loss_axes = {False: axes[0], True: axes[1] if split else axes[0]}
    acc_ax = axes[-1]
    for ax in axes:
        style_axes(ax)
        integer_epochs(ax)
        ax.set_xlabel("epoch")
    for i, (label, history) in enumerate(runs):
        epochs = np.asarray(history["epoch"], dtype=float)
        marks = {"markevery": max(1, len(epochs) // 8)}
        loss_axes[apart[i]].plot(
            epochs, series(history, "val_loss"), linewidth=1.6, label=label, **marks, **run_style(i)
        )
        acc_ax.plot(epochs, series(history, "val_acc"), linewidth=1.6, **marks, **run_style(i))
    _scale_loss_panels(loss_axes, runs, apart, split)
    _accuracy_panel(acc_ax, runs)
    _title_panels(loss_axes, acc_ax, split)
    _legend_below(fig, axes)
    if title:
        fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    return fig


def _scale_loss_panels(loss_axes: dict, runs, apart: Sequence[bool], split: bool) -> None:
    """Each loss panel logarithmic when its runs span more than a factor 50; else the stable one zoomed."""
    for flag in {False, True} if split else {False}:
        members = [h for (_, h), a in zip(runs, apart) if a == flag or not split]
        losses = np.concatenate([series(h, "val_loss") for h in members])
        losses = losses[np.isfinite(losses)]
        if losses.size and losses.min() > 0 and losses.max() / losses.min() > 50:
            loss_axes[flag].set_yscale("log")
        elif not flag:
            _zoom_on_the_end(loss_axes[flag], members)
        loss_axes[flag].set_ylabel("validation loss")


def _accuracy_panel(acc_ax, runs) -> None:
    """The chance level, and a range from 0 to a little above the best accuracy."""
    accs = np.concatenate([series(h, "val_acc") for _, h in runs])
    top = np.nanmax(accs) if np.isfinite(accs).any() else 1.0
    acc_ax.axhline(0.1, color=MUTED, linestyle=":", linewidth=1.0, label="chance (0.1)")
    acc_ax.set_ylim(0, min(1.0, max(0.2, top * 1.15)))
    acc_ax.set_ylabel("validation accuracy")


def _title_panels(loss_axes: dict, acc_ax, split: bool) -> None:
    if split:
        loss_axes[False].set_title("Validation loss, stable runs (zoomed)", fontsize=11, loc="left")
        loss_axes[True].set_title("Validation loss, unstable runs (own scale)", fontsize=11, loc="left")
    else:
        loss_axes[False].set_title("Validation loss per epoch", fontsize=11, loc="left")
    acc_ax.set_title("Validation accuracy per epoch", fontsize=11, loc="left")


def _legend_below(fig, axes) -> None:
    """One legend for every panel's labelled lines, below the panels."""
    handles = [h for ax in axes for h in ax.get_lines() if not h.get_label().startswith("_")]
    fig.legend(
        handles=handles,
        labels=[h.get_label() for h in handles],
        loc="outside lower center",
        ncol=min(len(handles), 5),
        frameon=False,
        fontsize=8.5,
    )


def _zoom_on_the_end(ax, histories) -> None:
    """Zoom the stable runs' loss axis on where they differ: every value after the first tenth of the epochs
    (at least two) is in view; the steep first epochs may leave the top of the panel."""
    tails = [series(h, "val_loss")[max(2, len(h["epoch"]) // 10) :] for h in histories]
    tail = np.concatenate(tails) if tails else np.array([])
    tail = tail[np.isfinite(tail)]
    if tail.size >= 2 and tail.max() > tail.min():
        pad = 0.08 * (tail.max() - tail.min())
        ax.set_ylim(tail.min() - pad, tail.max() + pad)


def comparison_weights_figure(runs: Sequence[tuple[str, Any]], label_names: Sequence[str]):
    """One row per run: its K class templates side by side, the row labelled with the run.

    ``runs`` is a sequence of (label, W); a W of None (a diverged run without weights) gives a
    row that says so. Each image is scaled to its own range, as in ``weights_figure``.
    """
    if not runs:
        raise ValueError("no run to compare")
    k = len(label_names)
    images = [None if W is None else weight_images(W) for _, W in runs]
    for img in images:
        if img is not None and img.shape[0] != k:
            raise ValueError(f"{img.shape[0]} weight rows but {k} label names")
    fig = new_figure((9.0, 0.35 + 0.95 * len(runs)))
    axes = fig.subplots(len(runs), k, squeeze=False)
    for r, ((label, _), img) in enumerate(zip(runs, images)):
        for j, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_color("#d1d5db")
            if r == 0:
                ax.set_title(str(label_names[j]), fontsize=8.5, pad=3)
            if img is not None:
                ax.imshow(img[j], interpolation="nearest")
            elif j == 0:
                ax.text(
                    0.0,
                    0.5,
                    "no weights (diverged)",
                    transform=ax.transAxes,
                    fontsize=8.5,
                    color=WRONG_COLOUR,
                    va="center",
                    ha="left",
                    style="italic",
                )
            if img is None:
                ax.spines[:].set_visible(False)
        # The run's colour in the curves is its row label's: one colour per run in every comparison figure.
        axes[r][0].set_ylabel(
            label,
            fontsize=8.5,
            rotation=0,
            ha="right",
            va="center",
            labelpad=6,
            color=run_style(r)["color"],
            fontweight="bold",
        )
    return fig


def plot_comparison_curves(
    runs: Sequence[tuple[str, Mapping[str, Sequence[float]]]],
    path: str | os.PathLike,
    title: str | None = None,
    apart: Sequence[bool] | None = None,
) -> Path:
    """Write the overlaid validation curves of several runs to ``path`` (PNG; the unstable runs ``apart``)."""
    return save_figure(comparison_curves_figure(runs, title, apart), path)


def plot_comparison_weights(
    runs: Sequence[tuple[str, Any]], label_names: Sequence[str], path: str | os.PathLike
) -> Path:
    """Write the grid of every run's class templates to ``path`` (PNG, 1350 px wide, one row per run)."""
    return save_figure(comparison_weights_figure(runs, label_names), path)


HEATMAP_SIZE = (6.4, 4.8)  # -> 960 x 720 px


def sweep_heatmap_figure(
    lams: Sequence[float],
    etas: Sequence[float],
    values: Any,
    title: str | None = None,
    best: tuple[int, int] | None = None,
):
    """Validation accuracy per (λ, η) cell: rows λ, columns η; NaN cells are drawn as diverged.

    ``best`` (row, column) is outlined and starred.
    """
    v = np.asarray(values, dtype=float)
    if v.shape != (len(lams), len(etas)):
        raise ValueError(f"values must be {len(lams)}×{len(etas)} (λ × η), got shape {v.shape}")
    fig = new_figure(HEATMAP_SIZE)
    ax = fig.add_subplot()
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-3:
        lo, hi = lo - 0.005, hi + 0.005
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#e5e7eb")
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cmap, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest")
    _grid_axes(ax, lams, etas)
    _write_cells(ax, v, lo, hi, best)
    if best is not None:
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="#dc2626", linewidth=3))
    cbar = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
    cbar.ax.tick_params(labelsize=8)
    cbar.outline.set_visible(False)
    cbar.set_label("validation accuracy", fontsize=9)
    ax.set_title(title or "Validation accuracy over λ × η", fontsize=11, loc="left")
    return fig


def _grid_axes(ax, lams: Sequence[float], etas: Sequence[float]) -> None:
    """η along, λ down, each value a tick; no spines, white lines between the cells."""
    ax.set_xticks(range(len(etas)), [f"{e:g}" for e in etas], fontsize=9)
    ax.set_yticks(range(len(lams)), [f"{x:g}" for x in lams], fontsize=9)
    ax.set_xlabel("learning rate η", fontsize=10)
    ax.set_ylabel("regularisation λ", fontsize=10)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_xticks(np.arange(-0.5, len(etas), 1), minor=True)
    ax.set_yticks(np.arange(-0.5, len(lams), 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)


def _write_cells(ax, v: np.ndarray, lo: float, hi: float, best: tuple[int, int] | None) -> None:
    """Each cell's accuracy (the best starred and bold), legible on its colour; "diverged" where NaN."""
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            if np.isfinite(v[i, j]):
                dark = (v[i, j] - lo) / (hi - lo) < 0.6
                text = f"{v[i, j]:.4f}" + (" ★" if best == (i, j) else "")
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8.5,
                    color="white" if dark else "#111827",
                    fontweight="bold" if best == (i, j) else "normal",
                )
            else:
                ax.text(j, i, "diverged", ha="center", va="center", fontsize=8.5, color="#b91c1c", style="italic")


def plot_sweep_heatmap(
    lams: Sequence[float],
    etas: Sequence[float],
    values: Any,
    path: str | os.PathLike,
    title: str | None = None,
    best: tuple[int, int] | None = None,
) -> Path:
    """Write the sweep's validation-accuracy heat-map to ``path`` (PNG, 960×720 px)."""
    return save_figure(sweep_heatmap_figure(lams, etas, values, title, best), path)
