"""The plot and comparison stages: figures drawn in a temporary folder inside the cache, stored as PNG bytes,
and written to ``reports/figures/`` when they differ from what is there."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cifarcli import plots, schemas
from cifarcli.config import TrainConfig
from cifarcli.errors import CifarError, disk_error
from cifarcli.files import write_atomic
from cifarcli.report.stability import instability
from cifarcli.store import Artifact

from .declarations import COMPARISON, PLOT, Stage, comparison_key, run_key
from .evaluation import evaluate
from .labels import run_label
from .runs import config_of
from .workspace import Workspace


def plot(ws: Workspace, run: Artifact, force: bool = False) -> dict[str, Path]:
    """The run's figures as PNG files under ``reports/figures/<run-id>/``; drawn once, then copied from the cache."""
    return materialise(ws.reports_dir / "figures" / run.key, plot_artifact(ws, run, force).payload)


def plot_artifact(ws: Workspace, run: Artifact, force: bool = False) -> Artifact:
    """The run's figures (PNG bytes by name) in the cache, evaluated first; nothing under ``reports/``.

    A worker process that trained the run calls this as soon as the training ends (execute.py).
    """
    evaluated = evaluate(ws, run)
    config = config_of(run)

    def compute():
        with drawing_folder(ws, PLOT, run_key(PLOT, run.key)) as folder:
            _draw_run_figures(ws, run, config, evaluated.payload, folder)
            return {name: (folder / f"{name}.png").read_bytes() for name in figure_names(config)}, {}

    return PLOT.get_or_compute(
        ws, {}, {"train": run.key}, compute, force=force, depends=[("train", run.key), ("evaluate", evaluated.key)]
    )


@contextmanager
def drawing_folder(ws: Workspace, stage: Stage, key: str) -> Iterator[Path]:
    """A temporary folder to draw the figures of ``stage``'s artifact ``key`` in, removed afterwards.

    It is inside the cache (a .tmp- folder of this key, which `cache gc` removes if we are
    killed), not in the system temp folder: nothing is ever written outside the cache.
    """
    stage_dir = ws.store.root / stage.name
    stage_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".tmp-{key}-draw-", dir=stage_dir) as tmp:
        yield Path(tmp)


def _draw_run_figures(ws: Workspace, run: Artifact, config: TrainConfig, metrics: dict, folder: Path) -> None:
    """One run's figures as PNG files in ``folder``: its curves, weights, confusion matrix, and the true class's
    probability (or, for a loss without probabilities, its margin); a progress step after each."""
    history, W, names = run.payload["history"], run.payload["W"], run.payload["label_names"]
    chosen = run.payload.get("chosen_epoch") if config.keep == "best" else None  # marked on the curves
    plots.plot_loss(history, folder / "loss.png", title=run_label(config), lam=config.lam, chosen_epoch=chosen)
    ws.progress.step()
    plots.plot_accuracy(history, folder / "accuracy.png", title=run_label(config), chosen_epoch=chosen)
    ws.progress.step()
    plots.plot_weights(W, names, folder / "weights.png")
    ws.progress.step()
    plots.plot_confusion(metrics["confusion_matrix"], names, folder / "confusion.png")
    ws.progress.step()
    if not config.loss_fn.gives_probabilities:  # scores: the true class's margin instead
        plots.plot_margins(
            metrics["margins"],
            folder / "margins.png",
            title=f"True-class margin on the test set, λ={config.lam:g}, η={config.eta:g}, loss svm",
        )
    else:
        plots.plot_probabilities(
            metrics["probabilities"],
            folder / "probabilities.png",
            title=f"True-class probability on the test set, λ={config.lam:g}, η={config.eta:g}, loss {config.loss}",
        )
    ws.progress.step()


def comparison(ws: Workspace, runs: list[Artifact], force: bool = False) -> tuple[str, dict[str, Path]]:
    """Every run's validation curves overlaid and their weights one row per run, as PNG files under
    ``reports/figures/comparison-<key>/``; drawn once per set of runs, then copied from the cache.
    Returns (key, {"curves": path, "weights": path})."""
    if not runs:
        raise CifarError("no run to compare")

    def compute():
        with drawing_folder(ws, COMPARISON, comparison_key(runs)) as folder:
            _draw_comparison(ws, runs, folder)
            return (
                {name: (folder / f"{name}.png").read_bytes() for name in schemas.COMPARISON_FIGURES},
                {"n_runs": len(runs)},
            )

    artifact = COMPARISON.get_or_compute(
        ws,
        {},
        {f"run{i}": run.key for i, run in enumerate(runs)},
        compute,
        force=force,
        depends=[("train", run.key) for run in runs],
    )
    return artifact.key, materialise(ws.reports_dir / "figures" / f"comparison-{artifact.key}", artifact.payload)


def _draw_comparison(ws: Workspace, runs: list[Artifact], folder: Path) -> None:
    """The comparison's two figures in ``folder``: every run's curves, and every run's weights one row per run."""
    labelled = [(run_label(config_of(run)), run) for run in runs]
    # The unstable runs (the report's rule) get a loss panel of their own: the stable ones stay apart.
    apart = [
        instability({"history": run.payload["history"], "diverged_at": run.payload["diverged_at"]}) is not None
        for run in runs
    ]
    plots.plot_comparison_curves(
        [(label + _diverged_note(run), run.payload["history"]) for label, run in labelled],
        folder / "curves.png",
        apart=apart,
    )
    ws.progress.step()
    plots.plot_comparison_weights(
        [(label, run.payload["W"]) for label, run in labelled],
        runs[0].payload["label_names"],
        folder / "weights.png",
    )
    ws.progress.step()


def _diverged_note(run: Artifact) -> str:
    at = run.payload["diverged_at"]
    return "" if at is None else f" (diverged at epoch {at})"


def figure_names(config: TrainConfig) -> tuple[str, ...]:
    """The figures of one run: the true-class probability, or for a loss without probabilities its margin."""
    return schemas.FIGURES if config.loss_fn.gives_probabilities else schemas.SVM_FIGURES


def figures_to_draw(ws: Workspace, runs: list[Artifact], compared: bool) -> int:
    """How many figures asking for these runs' plots (and, with ``compared``, their comparison) will draw."""
    count = sum(
        len(figure_names(config_of(run)))
        for run in runs
        if run.payload["diverged_at"] is None and PLOT.state(ws, run_key(PLOT, run.key))[0] != "cached"
    )
    if compared and runs and COMPARISON.state(ws, comparison_key(runs))[0] != "cached":
        count += len(schemas.COMPARISON_FIGURES)
    return count


def plotted(ws: Workspace, key: str) -> bool:
    """Whether the figures of run ``key`` are in the cache."""
    return ws.store.path(PLOT.name, run_key(PLOT, key)).is_dir()


def materialise(folder: Path, files: dict[str, bytes]) -> dict[str, Path]:
    """Write cached figure bytes to the reports folder unless an identical file is already there."""
    paths = {name: folder / f"{name}.png" for name in files}
    for name, path in paths.items():
        write_if_changed(path, files[name])
    return paths


def write_if_changed(path: Path, content: bytes) -> None:
    try:
        if not (path.is_file() and path.read_bytes() == content):
            write_atomic(path, content, mode=0o666)  # a file for the user (reports/): their umask applies
    except OSError as exc:
        raise disk_error(exc, path) from None
