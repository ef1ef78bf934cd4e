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
from cifarcli.evaluate import without_predictions
from cifarcli.stages import Workspace
from cifarcli.store import Artifact


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
    figures: dict[str, str] = field(default_factory=dict)  # name -> path relative to the reports folder
    chosen_epoch: int | None = None  # early stopping: the epoch whose weights were kept (None: off)

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
    heatmap: str  # relative to the reports folder
    best: RunSection | None = None  # the point chosen on validation accuracy, as a full section
    runner_up: dict | None = None  # the next point on validation: run_id, label, config, metrics

    def made_from(self) -> list[tuple[str, str]]:
        return [("sweep", self.key), *(self.best.made_from() if self.best else [])]


@dataclass
class ComparisonSection:
    """Every run side by side: the overlaid validation curves and the weights grid (paths relative to
    the reports folder), cached as one "comparison" artifact keyed by the run IDs."""

    key: str
    figures: dict[str, str]  # "curves", "weights" -> path relative to the reports folder

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
    ensemble: dict | None = None  # with an [ensemble] table: the ensemble artifact's payload and key
    discordant: list[dict] = field(default_factory=list)  # discordant_pairs: what McNemar's test reads
    discussion: str | None = None  # the author's own words (a Markdown subset), from --discussion FILE
    brief: bool = False  # the assignment's layout (report --brief)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        if self.discussion is None:
            del doc["discussion"]
        if self.comparison is None:
            del doc["comparison"]
        if self.ensemble is None:
            del doc["ensemble"]
        if self.sweep is None:
            del doc["sweep"]
        else:
            doc["sweep"]["best_run_id"] = self.sweep.best.run_id if self.sweep.best else None
        return doc


def run_section(ws: Workspace, run: Artifact, name: str | None = None) -> RunSection:
    """The report section of ``run`` (labelled with its ``name`` when it has one): evaluated and drawn
    (unless it diverged)."""
    config = stages.config_of(run)
    label = stages.run_label(config)
    section = RunSection(
        run_id=run.key,
        label=f"{name} ({label})" if name else label,
        config=run.meta["params"],
        split_sizes=run.meta["info"]["split_sizes"],
        history=run.payload["history"],
        diverged_at=run.payload["diverged_at"],
        train_seconds=run.meta["info"]["timings"].get("total_seconds"),
        chosen_epoch=run.payload.get("chosen_epoch"),
    )
    if run.payload["diverged_at"] is None:
        section.metrics = without_predictions(stages.evaluate(ws, run).payload)
        figures = stages.plot(ws, run)
        section.figures = {name: path.relative_to(ws.reports_dir).as_posix() for name, path in figures.items()}
    return section


def comparison_section(ws: Workspace, runs: list[Artifact]) -> ComparisonSection | None:
    """The figures comparing ``runs`` (trained runs, in the report's order); None without runs."""
    if not runs:
        return None
    key, figures = stages.comparison(ws, runs)
    return ComparisonSection(
        key=key, figures={name: path.relative_to(ws.reports_dir).as_posix() for name, path in figures.items()}
    )


def initialisation(runs: list[RunSection]) -> dict:
    seeds = sorted({run.config["seed"] for run in runs})
    if any(run.config.get("init", "normal") != "normal" for run in runs):
        return {"distribution": "normal, std 0.01 (init normal) or 1/√d (init xavier)", "std": None, "seed": seeds}
    return {"distribution": "normal", "std": 0.01, "seed": seeds}


def discordant_pairs(ws: Workspace, runs: list[Artifact], split: str) -> list[dict]:
    """For each pair of converged ``runs`` scored on the same images of ``split``: how many images only
    the first classifies correctly (``a_only``) and how many only the second (``b_only``), from the
    predicted classes ``evaluate`` keeps. McNemar's test (``stats.mcnemar_exact``) needs nothing else."""
    from cifarcli.stats import discordant_counts

    groups: dict[tuple, list[Artifact]] = {}
    for run in {run.key: run for run in runs}.values():
        if run.payload["diverged_at"] is None:
            c = stages.config_of(run)
            same_images = (run.meta["inputs"]["dataset"],) + ((c.split, c.val_size) if split != "test" else ())
            groups.setdefault(same_images, []).append(run)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        c = stages.config_of(members[0])
        labels = getattr(
            stages.prepared(
                stages.dataset_by_key(ws, members[0].meta["inputs"]["dataset"]), c.split, c.val_size, c.dtype
            ),
            f"y_{split}",
        )
        predicted = [stages.evaluate(ws, run).payload["predictions"][split] for run in members]
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                a_only, b_only = discordant_counts(predicted[i], predicted[j], labels)
                out.append(
                    {"a": members[i].key, "b": members[j].key, "split": split, "a_only": a_only, "b_only": b_only}
                )
    return out
