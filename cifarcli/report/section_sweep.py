"""Layer 3 of the report: the hyper-parameter sweep section (the grid, the heat-map, the points, the chosen run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .analysis import best_versus_runner_up
from .blocks import Figure, FigureRow, Heading, Para, Span, Table
from .format import PARAM_WORDS, describe_setting, fmt_acc, fmt_loss, fmt_num
from .measures import PairTests, accuracy_text, run_name
from .section_runs import run_blocks


def sweep_blocks(sweep: Mapping[str, Any], tests: PairTests | None = None) -> list:
    """The sweep: what was varied, the heat-map, the points by validation accuracy, the chosen run in full.

    ``sweep`` holds ``grid`` (lam, eta, n_batch, n_epochs lists), ``fixed``,
    ``points`` (sorted, best first; each with lam, eta, n_batch, n_epochs,
    train_acc, val_acc, train_cost, diverged_at, run_id), ``best_run_id``,
    ``best`` (a run entry as in ``runs``), ``heatmap`` (path relative to the
    reports folder) and ``title`` (the heat-map's).
    """
    blocks: list = [Heading(2, "Hyper-parameter sweep", "sweep"), Para(_grid_text(sweep))]
    if sweep.get("heatmap"):
        blocks.append(
            FigureRow(
                [
                    Figure(
                        sweep["heatmap"],
                        "validation accuracy heat-map over λ and η",
                        f"{sweep.get('title') or 'Validation accuracy over λ × η'}; "
                        "grey cells diverged, the chosen setting is outlined.",
                    )
                ]
            )
        )
    blocks += _points_table(sweep)
    best = sweep.get("best")
    if not best:
        blocks.append(Para("Every point diverged: no setting was chosen.", "warn"))
        return blocks
    blocks.append(Para(_choice_text(sweep, best, tests), "note"))
    section = run_blocks(best, 0)
    section[0] = Heading(3, f"Chosen setting: {run_name(best)}", "sweep-best")
    return blocks + section


def _grid_text(sweep: Mapping[str, Any]) -> str:
    """How many settings, the values of each axis, the settings held fixed, how the best is chosen."""
    grid = sweep.get("grid") or {}
    axes = [
        f"{PARAM_WORDS.get(k, k)} ∈ {{{', '.join(fmt_num(v) for v in grid[k])}}}"
        for k in ("lam", "eta", "n_batch", "n_epochs")
        if grid.get(k)
    ]
    fixed = sweep.get("fixed") or {}
    text = f"{len(list(sweep.get('points') or []))} settings: " + "; ".join(axes)
    if fixed:
        text += "; fixed: " + describe_setting(fixed)
    return text + (
        ". Each point is an ordinary training run (run ID in the table). The setting is chosen on "
        "validation accuracy; only the chosen one is evaluated on the test set."
    )


def _points_table(sweep: Mapping[str, Any]) -> list:
    """Every point by validation accuracy, the chosen one starred and highlighted; [] without points."""
    rows, best_row = [], set()
    for i, p in enumerate(sweep.get("points") or []):
        diverged = p.get("diverged_at") is not None
        if p.get("run_id") == sweep.get("best_run_id"):
            best_row.add(i)
        val = "diverged" if diverged else fmt_acc(p.get("val_acc"))
        rows.append(
            [
                fmt_num(p.get("lam")),
                fmt_num(p.get("eta")),
                fmt_num(p.get("n_batch")),
                fmt_num(p.get("n_epochs")),
                "—" if diverged else fmt_acc(p.get("train_acc")),
                Span(f"{val} ★", bold=True) if i in best_row else val,
                "—" if diverged else fmt_loss(p.get("train_cost")),
                Span(str(p.get("run_id", "—")), code=True),
            ]
        )
    if not rows:
        return []
    return [
        Table(
            ["λ", "η", "n_batch", "epochs", "train acc.", "val. acc.", "final cost", "run ID"],
            rows,
            align="rrrrrrrl",
            highlight=best_row,
            caption="Sweep points by validation accuracy (★: chosen); final cost on the training split.",
        )
    ]


def _choice_text(sweep: Mapping[str, Any], best: Mapping[str, Any], tests: PairTests | None) -> str:
    """The chosen setting, its validation and test accuracy, and whether it beats the runner-up significantly."""
    chosen = (
        f"Chosen on validation accuracy: {run_name(best)} (validation accuracy "
        f"{accuracy_text(best, 'val')}); its test accuracy is {accuracy_text(best, 'test')}."
    )
    second = sweep.get("runner_up")
    if second:
        tested = best_versus_runner_up([best, second], tests, "val", "chosen setting")
        chosen += " " + (tested or "")
    return chosen.strip()
