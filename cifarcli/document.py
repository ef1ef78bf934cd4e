"""The report's document, typed: what ``report`` assembles and the renderers (cifarcli.report) draw.

A ``ReportDocument`` holds the set-up, the gradient check, one ``RunSection``
per setting and, with a ``[sweep]`` table, a ``SweepSection``. It is cached
and handed to the renderers as plain JSON-able data (``to_dict``): the cache
admits no class of ours.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cifarcli import stages
from cifarcli.store import Artifact
from cifarcli.stages import Workspace


@dataclass
class RunSection:
    """One trained setting: its settings, history, test metrics and figures (none when it diverged)."""

    run_id: str
    label: str
    config: dict
    split_sizes: dict
    history: dict
    diverged_at: int | None
    train_seconds: float | None
    metrics: dict | None = None
    figures: dict[str, str] = field(default_factory=dict)   # name -> path relative to the reports folder
    chosen_epoch: int | None = None       # early stopping: the epoch whose weights were kept (None: off)

    def made_from(self) -> list[tuple[str, str]]:
        """The artifacts (stage, key) this section is made from: a change in any of them makes it stale."""
        made_from = [("train", self.run_id)]
        if self.metrics is not None:
            made_from += [(stage.name, stages.run_key(stage, self.run_id)) for stage in (stages.EVALUATE, stages.PLOT)]
        return made_from


@dataclass
class SweepSection:
    key: str
    grid: dict
    fixed: dict
    title: str
    points: list[dict]
    heatmap: str                          # relative to the reports folder
    best: RunSection | None = None        # the point chosen on validation accuracy, as a full section

    def made_from(self) -> list[tuple[str, str]]:
        return [("sweep", self.key), *(self.best.made_from() if self.best else [])]


@dataclass
class ComparisonSection:
    """Every run side by side: the overlaid validation curves and the weights grid (paths relative to
    the reports folder), cached as one "comparison" artifact keyed by the run IDs."""

    key: str
    figures: dict[str, str]               # "curves", "weights" -> path relative to the reports folder

    def made_from(self) -> list[tuple[str, str]]:
        return [("comparison", self.key)]


@dataclass
class ReportDocument:
    title: str
    cifarcli_version: str
    dataset: dict
    preprocessing: dict
    initialisation: dict
    gradcheck: dict
    runs: list[RunSection]
    sweep: SweepSection | None = None
    comparison: ComparisonSection | None = None
    ensemble: dict | None = None          # with an [ensemble] table: the ensemble artifact's payload and key

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        if self.comparison is None:
            del doc["comparison"]
        if self.ensemble is None:
            del doc["ensemble"]
        if self.sweep is None:
            del doc["sweep"]
        else:
            doc["sweep"]["best_run_id"] = self.sweep.best.run_id if self.sweep.best else None
        return doc


def run_section(ws: Workspace, run: Artifact) -> RunSection:
    """The report section of ``run``: evaluated and drawn (unless it diverged)."""
    config = stages.config_of(run)
    section = RunSection(run_id=run.key, label=stages.run_label(config), config=run.meta["params"],
                         split_sizes=run.meta["info"]["split_sizes"], history=run.payload["history"],
                         diverged_at=run.payload["diverged_at"],
                         train_seconds=run.meta["info"]["timings"].get("total_seconds"),
                         chosen_epoch=run.payload.get("chosen_epoch"))
    if run.payload["diverged_at"] is None:
        section.metrics = stages.evaluate(ws, run).payload
        figures = stages.plot(ws, run)
        section.figures = {name: path.relative_to(ws.reports_dir).as_posix() for name, path in figures.items()}
    return section


def comparison_section(ws: Workspace, runs: list[Artifact]) -> ComparisonSection | None:
    """The figures comparing ``runs`` (trained runs, in the report's order); None without runs."""
    if not runs:
        return None
    key, figures = stages.comparison(ws, runs)
    return ComparisonSection(key=key, figures={name: path.relative_to(ws.reports_dir).as_posix()
                                               for name, path in figures.items()})


def initialisation(runs: list[RunSection]) -> dict:
    seeds = sorted({run.config["seed"] for run in runs})
    if any(run.config.get("init", "normal") != "normal" for run in runs):
        return {"distribution": "normal, std 0.01 (init normal) or 1/√d (init xavier)", "std": None, "seed": seeds}
    return {"distribution": "normal", "std": 0.01, "seed": seeds}
