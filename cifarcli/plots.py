"""Figures as PNG files: curves, weight images, confusion matrix.

Pure rendering from in-memory data (no cache, no CLI). matplotlib is imported
inside the functions, never at module import, so ``cifarcli --help`` does not
pay for it. Figures are built on ``matplotlib.figure.Figure`` with the Agg
canvas directly (no pyplot: no global figure registry, safe in threads).

Every ``plot_*`` function writes its PNG atomically (temporary file in the same
folder, then ``os.replace``) and returns the final path. Identical input gives
identical bytes: no timestamp or software tag is embedded.

Two layers, so that later figures (sweep heat-map, probability histograms)
reuse the plumbing:

- ``new_figure(figsize)`` -> a styled, canvas-attached ``Figure``;
- ``save_figure(fig, path)`` -> atomic, deterministic PNG.

The ``*_figure`` builders return the ``Figure`` without saving (handy in a
notebook and in tests); ``plot_*`` = builder + ``save_figure``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cifarcli.files import write_atomic

DPI = 150
CURVE_SIZE = (7.0, 4.5)  # inches -> 1050 x 675 px at 150 dpi
WEIGHTS_SIZE = (7.0, 3.4)  # 2 x 5 panels  -> 1050 x 510 px
CONFUSION_SIZE = (6.4, 5.6)  # -> 960 x 840 px

TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#d95f02"
MUTED = "#6b7280"

# --------------------------------------------------------------------------
# shared helpers


def new_figure(figsize: tuple[float, float] = CURVE_SIZE, *, dpi: int = DPI, layout: str | None = "constrained"):
    """A fresh ``Figure`` with an Agg canvas attached, white background."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout=layout, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def style_axes(ax) -> None:
    """Light, report-friendly axes: no top/right spines, faint grid."""
    ax.spines[["top", "right"]].set_visible(False)
    ax.spines[["left", "bottom"]].set_color("#9ca3af")
    ax.tick_params(colors="#374151", labelsize=9)
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)


def atomic_write_bytes(path: str | os.PathLike, write) -> Path:
    """Call ``write(fileobj)`` on an in-memory buffer, then write it to ``path`` atomically.

    One atomic write for the whole package (``cache.write_atomic``: a temporary
    file in the destination folder, then ``os.replace``), here with the mode a
    file the user asked for gets, 0666 less the umask (0644 under umask 022).
    A killed process leaves at worst a hidden ``.<name>.*.tmp`` file, never a
    half-written file under ``path``.
    """
    path = Path(path)
    buffer = io.BytesIO()
    write(buffer)
    write_atomic(path, buffer.getvalue(), mode=0o666)
    return path


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a deterministic PNG at ``path`` atomically."""
    return atomic_write_bytes(
        path,
        lambda fh: fig.savefig(
            fh, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor(), metadata={"Software": None}
        ),
    )


def _series(history: Mapping[str, Sequence[float]], key: str) -> np.ndarray:
    """History column as float array, non-finite values as NaN (not drawn)."""
    a = np.asarray(history[key], dtype=float)
    return np.where(np.isfinite(a), a, np.nan)


def _check_history(history: Mapping[str, Sequence[float]], keys) -> int:
    missing = [k for k in keys if k not in history]
    if missing:
        raise ValueError(f"history lacks {', '.join(missing)}")
    lengths = {k: len(history[k]) for k in keys}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"history columns differ in length: {lengths}")
    return next(iter(lengths.values()))


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _mark_non_finite(ax, epochs: np.ndarray, history, keys) -> None:
    """Dotted line + label at the first epoch where any series is NaN/inf."""
    bad = np.zeros(len(epochs), dtype=bool)
    for k in keys:
        bad |= ~np.isfinite(np.asarray(history[k], dtype=float))
    if bad.any():
        e = epochs[np.argmax(bad)]
        ax.axvline(e, color="#b91c1c", linestyle=":", linewidth=1.2)
        ax.annotate(
            f"non-finite from epoch {e:g}",
            xy=(e, 1),
            xycoords=("data", "axes fraction"),
            xytext=(-4, -4),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=8,
            color="#b91c1c",
        )


# --------------------------------------------------------------------------
# curves


def _mark_chosen(ax, chosen_epoch: int | None) -> None:
    """Early stopping: a vertical line at the epoch whose weights the run kept (--keep best)."""
    if chosen_epoch is not None:
        ax.axvline(
            chosen_epoch,
            color=MUTED,
            linestyle="-.",
            linewidth=1.2,
            label=f"kept: epoch {chosen_epoch} (best validation accuracy)",
        )


def cost_is_loss(history: Mapping[str, Sequence[float]], lam: float | None = None) -> bool:
    """Whether the cost curves coincide with the loss curves (λ = 0, or equal numbers when λ is not given)."""
    if lam is not None:
        return float(lam) == 0.0
    return all(
        np.allclose(_series(history, f"{s}_loss"), _series(history, f"{s}_cost"), rtol=1e-12, atol=0, equal_nan=True)
        for s in ("train", "val")
    )


def legend_labels(fig) -> list[str]:
    """The texts of every legend entry in ``fig`` (axes legends and figure legends), in order."""
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return [t.get_text() for legend in legends if legend is not None for t in legend.get_texts()]


def loss_figure(
    history: Mapping[str, Sequence[float]],
    title: str | None = None,
    lam: float | None = None,
    chosen_epoch: int | None = None,
):
    """Loss and cost per epoch, train and validation (4 lines); ``chosen_epoch`` (early stopping) marked when given.

    When the cost equals the loss (λ = 0; or, without ``lam``, equal numbers) each split is
    drawn and labelled once ("train loss = cost (λ = 0)"): no legend entry for a hidden line.
    """
    _check_history(history, ("epoch", "train_loss", "train_cost", "val_loss", "val_cost"))
    epochs = np.asarray(history["epoch"], dtype=float)
    fig = new_figure(CURVE_SIZE)
    ax = fig.add_subplot()
    style_axes(ax)
    if cost_is_loss(history, lam):
        why = " (λ = 0)" if lam is not None else ""
        lines = [
            ("train_loss", f"train loss = cost{why}", TRAIN_COLOUR, "-", 2.0),
            ("val_loss", f"validation loss = cost{why}", VAL_COLOUR, "-", 2.0),
        ]
    else:
        lines = [
            ("train_loss", "train loss", TRAIN_COLOUR, "-", 2.0),
            ("val_loss", "validation loss", VAL_COLOUR, "-", 2.0),
            ("train_cost", "train cost (loss + λ‖W‖²)", TRAIN_COLOUR, "--", 1.4),
            ("val_cost", "validation cost (loss + λ‖W‖²)", VAL_COLOUR, "--", 1.4),
        ]
    for key, label, colour, ls, lw in lines:
        ax.plot(epochs, _series(history, key), color=colour, linestyle=ls, linewidth=lw, label=label)
    finite = np.concatenate([_series(history, k) for k, *_ in lines])
    finite = finite[np.isfinite(finite)]
    # A diverging run spans decades: a log axis keeps the healthy part readable.
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 50:
        ax.set_yscale("log")
    _mark_non_finite(ax, epochs, history, [k for k, *_ in lines])
    _integer_epochs(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title or "Loss and cost per epoch", fontsize=11, loc="left")
    _mark_chosen(ax, chosen_epoch)
    ax.legend(frameon=False, fontsize=8.5, ncols=2, loc="best")
    return fig


def accuracy_figure(history: Mapping[str, Sequence[float]], title: str | None = None, chosen_epoch: int | None = None):
    """Accuracy per epoch, train and validation, with the chance level; ``chosen_epoch`` marked when given."""
    _check_history(history, ("epoch", "train_acc", "val_acc"))
    epochs = np.asarray(history["epoch"], dtype=float)
    fig = new_figure(CURVE_SIZE)
    ax = fig.add_subplot()
    style_axes(ax)
    ax.plot(epochs, _series(history, "train_acc"), color=TRAIN_COLOUR, linewidth=2.0, label="train")
    ax.plot(epochs, _series(history, "val_acc"), color=VAL_COLOUR, linewidth=2.0, label="validation")
    ax.axhline(0.1, color=MUTED, linestyle=":", linewidth=1.0, label="chance (0.1)")
    _mark_non_finite(ax, epochs, history, ["train_acc", "val_acc"])
    _integer_epochs(ax)
    vals = np.concatenate([_series(history, "train_acc"), _series(history, "val_acc")])
    top = np.nanmax(vals) if np.isfinite(vals).any() else 1.0
    ax.set_ylim(0, min(1.0, max(0.2, top * 1.15)))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "Accuracy per epoch", fontsize=11, loc="left")
    _mark_chosen(ax, chosen_epoch)
    ax.legend(frameon=False, fontsize=9, loc="lower right")
    return fig


def plot_loss(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    title: str | None = None,
    lam: float | None = None,
    chosen_epoch: int | None = None,
) -> Path:
    """Write the loss/cost curves to ``path`` (PNG, 1050×675 px)."""
    return save_figure(loss_figure(history, title, lam, chosen_epoch), path)


def plot_accuracy(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    title: str | None = None,
    chosen_epoch: int | None = None,
) -> Path:
    """Write the accuracy curves to ``path`` (PNG, 1050×675 px)."""
    return save_figure(accuracy_figure(history, title, chosen_epoch), path)


# --------------------------------------------------------------------------
# weights


def weight_images(W: Any) -> np.ndarray:
    """K×3072 weights -> K×32×32×3 images, each scaled to [0, 1] on its own.

    Rows follow the CIFAR record order (1024 red, 1024 green, 1024 blue, each
    32×32 row-major). A constant row becomes mid-grey instead of dividing by 0.
    """
    W = np.asarray(W, dtype=float)
    if W.ndim != 2 or W.shape[1] != 3072:
        raise ValueError(f"W must be K×3072, got shape {W.shape}")
    imgs = W.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    lo = imgs.min(axis=(1, 2, 3), keepdims=True)
    hi = imgs.max(axis=(1, 2, 3), keepdims=True)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (imgs - lo) / safe, 0.5)


def weights_figure(W: Any, label_names: Sequence[str]):
    """The K class templates as a 2×5 grid of images (K = 10)."""
    imgs = weight_images(W)
    k = imgs.shape[0]
    if len(label_names) != k:
        raise ValueError(f"{k} weight rows but {len(label_names)} label names")
    ncols = 5 if k == 10 else min(k, 5)
    nrows = -(-k // ncols)
    fig = new_figure(WEIGHTS_SIZE)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= k:
            ax.set_visible(False)
            continue
        ax.imshow(imgs[i], interpolation="nearest")
        ax.set_title(str(label_names[i]), fontsize=9.5, pad=3)
        for s in ax.spines.values():
            s.set_color("#d1d5db")
    fig.suptitle("Learnt weights, one image per class", fontsize=11, x=0.02, ha="left")
    return fig


def plot_weights(W: Any, label_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Write the class templates to ``path`` (PNG, 1050×510 px)."""
    return save_figure(weights_figure(W, label_names), path)


# --------------------------------------------------------------------------
# confusion matrix


def confusion_figure(matrix: Any, label_names: Sequence[str], title: str | None = None):
    """Counts heat-map, rows = true class, columns = predicted class."""
    m = np.asarray(matrix)
    k = len(label_names)
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix must be {k}×{k}, got shape {m.shape}")
    fig = new_figure(CONFUSION_SIZE)
    ax = fig.add_subplot()
    vmax = max(float(m.max()), 1.0)
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_xticks(range(k), [str(n) for n in label_names], rotation=40, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(k), [str(n) for n in label_names], fontsize=9)
    ax.set_xlabel("predicted", fontsize=10)
    ax.set_ylabel("true", fontsize=10)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    # Thin white grid between cells.
    ax.set_xticks(np.arange(-0.5, k, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, k, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)
    fontsize = 8 if m.max() < 1000 else 7
    for i in range(k):
        for j in range(k):
            v = m[i, j]
            dark = v / vmax > 0.55
            # Out of the layout: each count sits inside its cell, inside the axes, so the constrained
            # layout measured 100 texts for nothing (same pixels either way).
            ax.text(
                j,
                i,
                f"{v:g}" if np.issubdtype(m.dtype, np.floating) else f"{int(v)}",
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if dark else "#111827",
                fontweight="bold" if i == j else "normal",
                in_layout=False,
            )
    cbar = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    cbar.ax.tick_params(labelsize=8)
    cbar.outline.set_visible(False)
    cbar.set_label("count", fontsize=9)
    total = m.sum()
    acc = np.trace(m) / total if total else float("nan")
    ax.set_title(title or f"Confusion matrix (accuracy {acc:.4f})", fontsize=11, loc="left")
    return fig


def plot_confusion(matrix: Any, label_names: Sequence[str], path: str | os.PathLike, title: str | None = None) -> Path:
    """Write the confusion matrix to ``path`` (PNG, 960×840 px)."""
    return save_figure(confusion_figure(matrix, label_names, title), path)


# --------------------------------------------------------------------------
# sweep heat-map

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
    for i in range(len(lams)):
        for j in range(len(etas)):
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
    if best is not None:
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="#dc2626", linewidth=3))
    cbar = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
    cbar.ax.tick_params(labelsize=8)
    cbar.outline.set_visible(False)
    cbar.set_label("validation accuracy", fontsize=9)
    ax.set_title(title or "Validation accuracy over λ × η", fontsize=11, loc="left")
    return fig


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


# --------------------------------------------------------------------------
# true-class probability histograms

PROBABILITY_SIZE = (7.0, 4.5)  # -> 1050 x 675 px
CORRECT_COLOUR = "#15803d"
WRONG_COLOUR = "#b91c1c"


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
    threshold = summary.get("threshold")
    if threshold is not None:
        ax.axvline(
            threshold,
            color=MUTED,
            linestyle=":",
            linewidth=1.0,
            label=f"p = {threshold:g} (mistakes left of it: confident)",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, None)
    kind = "sigmoid σ(s_y)" if summary.get("kind") == "sigmoid" else "softmax"
    ax.set_xlabel(f"probability given to the true class ({kind})")
    ax.set_ylabel("share of the group's test images")
    ax.set_title(title or "Probability of the true class on the test set", fontsize=11, loc="left")
    ax.legend(frameon=True, framealpha=0.9, edgecolor="white", fontsize=8.5, loc="best")
    return fig


def plot_probabilities(summary: Mapping[str, Any], path: str | os.PathLike, title: str | None = None) -> Path:
    """Write the true-class probability histograms to ``path`` (PNG, 1050×675 px)."""
    return save_figure(probabilities_figure(summary, title), path)


# --------------------------------------------------------------------------
# comparison of runs: curves overlaid, weights side by side

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
        _check_history(history, ("epoch", "val_loss", "val_acc"))
    apart = [bool(a) for a in (apart or [False] * len(runs))]
    split = any(apart) and not all(apart)
    fig = new_figure((COMPARISON_CURVES_SIZE[0] * (1.25 if split else 1), COMPARISON_CURVES_SIZE[1] + 0.5))
    axes = fig.subplots(1, 3 if split else 2)
    loss_axes = {False: axes[0], True: axes[1] if split else axes[0]}
    acc_ax = axes[-1]
    for ax in axes:
        style_axes(ax)
        _integer_epochs(ax)
        ax.set_xlabel("epoch")
    for i, (label, history) in enumerate(runs):
        epochs = np.asarray(history["epoch"], dtype=float)
        marks = {"markevery": max(1, len(epochs) // 8)}
        loss_axes[apart[i]].plot(
            epochs, _series(history, "val_loss"), linewidth=1.6, label=label, **marks, **run_style(i)
        )
        acc_ax.plot(epochs, _series(history, "val_acc"), linewidth=1.6, **marks, **run_style(i))
    for flag in {False, True} if split else {False}:
        members = [h for (_, h), a in zip(runs, apart) if a == flag or not split]
        losses = np.concatenate([_series(h, "val_loss") for h in members])
        losses = losses[np.isfinite(losses)]
        if losses.size and losses.min() > 0 and losses.max() / losses.min() > 50:
            loss_axes[flag].set_yscale("log")
        elif not flag:
            _zoom_on_the_end(loss_axes[flag], members)
        loss_axes[flag].set_ylabel("validation loss")
    accs = np.concatenate([_series(h, "val_acc") for _, h in runs])
    top = np.nanmax(accs) if np.isfinite(accs).any() else 1.0
    acc_ax.axhline(0.1, color=MUTED, linestyle=":", linewidth=1.0, label="chance (0.1)")
    acc_ax.set_ylim(0, min(1.0, max(0.2, top * 1.15)))
    acc_ax.set_ylabel("validation accuracy")
    if split:
        loss_axes[False].set_title("Validation loss, stable runs (zoomed)", fontsize=11, loc="left")
        loss_axes[True].set_title("Validation loss, unstable runs (own scale)", fontsize=11, loc="left")
    else:
        loss_axes[False].set_title("Validation loss per epoch", fontsize=11, loc="left")
    acc_ax.set_title("Validation accuracy per epoch", fontsize=11, loc="left")
    handles = [h for ax in axes for h in ax.get_lines() if not h.get_label().startswith("_")]
    fig.legend(
        handles=handles,
        labels=[h.get_label() for h in handles],
        loc="outside lower center",
        ncol=min(len(handles), 5),
        frameon=False,
        fontsize=8.5,
    )
    if title:
        fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    return fig


def _zoom_on_the_end(ax, histories) -> None:
    """Zoom the stable runs' loss axis on where they differ: every value after the first tenth of the epochs
    (at least two) is in view; the steep first epochs may leave the top of the panel."""
    tails = [_series(h, "val_loss")[max(2, len(h["epoch"]) // 10) :] for h in histories]
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


# an SVM's true-class margin histograms (an SVM has no probabilities)


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
    threshold = summary.get("threshold")
    if threshold is not None:
        ax.axvline(
            threshold,
            color=MUTED,
            linestyle=":",
            linewidth=1.0,
            label=f"margin = {threshold:g} (mistakes left of it: confident)",
        )
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, None)
    open_ends = " (outer bins include everything beyond)" if summary.get("open_ends") else ""
    ax.set_xlabel(f"margin of the true class, s_y − max_(j≠y) s_j (SVM scores){open_ends}")
    ax.set_ylabel("share of the group's test images")
    ax.set_title(title or "Margin of the true class on the test set", fontsize=11, loc="left")
    ax.legend(frameon=True, framealpha=0.9, edgecolor="white", fontsize=8.5, loc="best")
    return fig


def plot_margins(summary: Mapping[str, Any], path: str | os.PathLike, title: str | None = None) -> Path:
    """Write the true-class margin histograms of an SVM run to ``path`` (PNG, 1050×675 px)."""
    return save_figure(margins_figure(summary, title), path)
