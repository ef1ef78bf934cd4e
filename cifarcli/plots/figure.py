"""The plumbing every figure shares: a styled figure, the history's columns, a deterministic PNG saved atomically.

Pure rendering from in-memory data (no cache, no CLI). matplotlib is imported
inside the functions, never at module import, so ``cifarcli --help`` does not
pay for it. Figures are built on ``matplotlib.figure.Figure`` with the Agg
canvas directly (no pyplot: no global figure registry, safe in threads).

Every ``plot_*`` function writes its PNG atomically (temporary file in the same
folder, then ``os.replace``) and returns the final path. Identical input gives
identical bytes: no timestamp or software tag is embedded.

Two layers, which every figure module of this package uses:

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

import numpy as np

from cifarcli.files import write_atomic

DPI = 150
CURVE_SIZE = (7.0, 4.5)  # inches -> 1050 x 675 px at 150 dpi

TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#d95f02"
MUTED = "#6b7280"
CORRECT_COLOUR = "#15803d"
WRONG_COLOUR = "#b91c1c"


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


def series(history: Mapping[str, Sequence[float]], key: str) -> np.ndarray:
    """History column as float array, non-finite values as NaN (not drawn)."""
    a = np.asarray(history[key], dtype=float)
    return np.where(np.isfinite(a), a, np.nan)


def check_history(history: Mapping[str, Sequence[float]], keys) -> int:
    missing = [k for k in keys if k not in history]
    if missing:
        raise ValueError(f"history lacks {', '.join(missing)}")
    lengths = {k: len(history[k]) for k in keys}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"history columns differ in length: {lengths}")
    return next(iter(lengths.values()))


def integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def legend_labels(fig) -> list[str]:
    """The texts of every legend entry in ``fig`` (axes legends and figure legends), in order."""
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return [t.get_text() for legend in legends if legend is not None for t in legend.get_texts()]
