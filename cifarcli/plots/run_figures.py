"""A run's figures: its loss and accuracy curves, its learnt weights, its confusion matrix."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .figure import (
    CURVE_SIZE,
    MUTED,
    TRAIN_COLOUR,
    VAL_COLOUR,
    check_history,
    integer_epochs,
    new_figure,
    save_figure,
    series,
    style_axes,
)

WEIGHTS_SIZE = (7.0, 3.4)  # 2 x 5 panels  -> 1050 x 510 px
CONFUSION_SIZE = (6.4, 5.6)  # -> 960 x 840 px


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
        np.allclose(series(history, f"{s}_loss"), series(history, f"{s}_cost"), rtol=1e-12, atol=0, equal_nan=True)
        for s in ("train", "val")
    )


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
    check_history(history, ("epoch", "train_loss", "train_cost", "val_loss", "val_cost"))
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
        ax.plot(epochs, series(history, key), color=colour, linestyle=ls, linewidth=lw, label=label)
    finite = np.concatenate([series(history, k) for k, *_ in lines])
    finite = finite[np.isfinite(finite)]
    # A diverging run spans decades: a log axis keeps the healthy part readable.
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 50:
        ax.set_yscale("log")
    _mark_non_finite(ax, epochs, history, [k for k, *_ in lines])
    integer_epochs(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title or "Loss and cost per epoch", fontsize=11, loc="left")
    _mark_chosen(ax, chosen_epoch)
    ax.legend(frameon=False, fontsize=8.5, ncols=2, loc="best")
    return fig


def accuracy_figure(history: Mapping[str, Sequence[float]], title: str | None = None, chosen_epoch: int | None = None):
    """Accuracy per epoch, train and validation, with the chance level; ``chosen_epoch`` marked when given."""
    check_history(history, ("epoch", "train_acc", "val_acc"))
    epochs = np.asarray(history["epoch"], dtype=float)
    fig = new_figure(CURVE_SIZE)
    ax = fig.add_subplot()
    style_axes(ax)
    ax.plot(epochs, series(history, "train_acc"), color=TRAIN_COLOUR, linewidth=2.0, label="train")
    ax.plot(epochs, series(history, "val_acc"), color=VAL_COLOUR, linewidth=2.0, label="validation")
    ax.axhline(0.1, color=MUTED, linestyle=":", linewidth=1.0, label="chance (0.1)")
    _mark_non_finite(ax, epochs, history, ["train_acc", "val_acc"])
    integer_epochs(ax)
    vals = np.concatenate([series(history, "train_acc"), series(history, "val_acc")])
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
