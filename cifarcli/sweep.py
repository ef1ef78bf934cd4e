"""Hyper-parameter sweeps: a grid of λ × η (× n_batch × n_epochs), every point an ordinary training run.

Each point is the ``TrainConfig`` that ``cifarcli train`` would build from the
same options (``config.SweepSpec``), so its run ID is the one ``train`` gives
it: sweeps and single runs share the cache, and an interrupted sweep resumes
with only the missing points. The points are trained by ``execute``, locally
or on Dask.

Selection is on validation accuracy (the final history row), never on test;
only the selected point is evaluated on the test split. Diverged points are
listed as diverged and never selected.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from cifarcli import execute, plots, stages
from cifarcli.config import SweepSpec
from cifarcli.document import SweepSection, run_section
from cifarcli.stages import Workspace


def run_sweep(ws: Workspace, spec: SweepSpec, backend: str = "local", scheduler: str | None = None) -> dict:
    """Train (or reuse) every point, select on validation accuracy, evaluate the best, draw the heat-map.

    Returns the JSON-able result (see ``cifarcli sweep --json``).
    """
    data_artifact = stages.dataset(ws)
    configs = spec.configs()
    for config in configs:  # every point checked before any is trained
        config.validate(stages.n_train(data_artifact, config))
    started = len(ws.events)
    execute.train_missing(ws, configs, backend, scheduler)
    runs = [stages.train(ws, config) for config in configs]
    computed = {k for stage, k, status in ws.events[started:] if stage == "train" and status == "computed"}
    points = [_point(run, config, i, run.key in computed) for i, (run, config) in enumerate(zip(runs, configs))]
    ranked = sorted(points, key=rank)
    best_point = next((p for p in ranked if p["diverged_at"] is None and p["val_acc"] is not None), None)
    best = None
    if best_point is not None:
        best_run = runs[best_point["index"]]
        metrics = stages.evaluate(ws, best_run).payload
        best = {
            "run_id": best_run.key,
            "config": best_run.meta["params"],
            **{f"{s}_acc": metrics[s]["accuracy"] for s in ("train", "val", "test")},
            "metrics": {s: metrics[s] for s in ("train", "val", "test")},
        }
    key, heatmap = draw_heatmap(ws, spec, points, data_artifact.key, best_point)
    return {
        "sweep": key,
        "grid": spec.axes(),
        "fixed": dict(spec.fixed),
        "backend": backend,
        "jobs": ws.jobs if backend == "local" else None,
        "scheduler": scheduler,
        "selection": "validation accuracy",
        "n_points": len(points),
        "computed": [p["run_id"] for p in points if p["status"] == "computed"],
        "points": [{k: v for k, v in p.items() if k != "index"} for p in ranked],
        "best": best,
        "heatmap": str(heatmap),
    }


def _point(run, config, index: int, computed: bool) -> dict:
    info = run.meta["info"]
    final = info.get("chosen") or info["final"]  # with --keep best: the metrics of the weights kept
    diverged = info["diverged_at"]
    return {
        "index": index,
        "run_id": run.key,
        "lam": config.lam,
        "eta": config.eta,
        "n_batch": config.n_batch,
        "n_epochs": config.n_epochs,
        "config": run.meta["params"],
        "train_acc": None if diverged is not None else final.get("train_acc"),
        "val_acc": None if diverged is not None else final.get("val_acc"),
        "train_cost": None if diverged is not None else final.get("train_cost"),
        "val_cost": None if diverged is not None else final.get("val_cost"),
        "diverged_at": diverged,
        "train_seconds": (info.get("timings") or {}).get("total_seconds"),
        "status": "computed" if computed else "cached",
    }


def rank(point: dict) -> tuple:
    """Best validation accuracy first, grid order among ties, diverged points last."""
    val = point["val_acc"]
    usable = point["diverged_at"] is None and val is not None
    return (not usable, -(val if usable else 0.0), point["index"])


def heatmap_matrix(spec: SweepSpec, points: list[dict]) -> np.ndarray:
    """λ × η validation accuracy, the max over n_batch and n_epochs per cell; NaN where every point diverged."""
    values = np.full((len(spec.lam), len(spec.eta)), np.nan)
    for p in points:
        if p["val_acc"] is None:
            continue
        i, j = spec.lam.index(p["lam"]), spec.eta.index(p["eta"])
        values[i, j] = p["val_acc"] if np.isnan(values[i, j]) else max(values[i, j], p["val_acc"])
    return values


def heatmap_title(spec: SweepSpec) -> str:
    title = "Validation accuracy over λ × η"
    varying = spec.varying()
    if varying:
        words = {"n_batch": "n_batch", "n_epochs": "epochs"}
        title += f" (max over {' and '.join(words[v] for v in varying)} per cell)"
    return title


def draw_heatmap(
    ws: Workspace, spec: SweepSpec, points: list[dict], data_key: str, best: dict | None
) -> tuple[str, Path]:
    """The heat-map PNG, cached as a "sweep" artifact keyed by the points' run IDs, under figures/sweep-<key>/."""
    by_index = sorted(points, key=lambda p: p["index"])
    inputs = {"dataset": data_key, **{f"run{p['index']:04d}": p["run_id"] for p in by_index}}
    params = {"grid": spec.axes()}

    def compute():
        ws.progress.phase("drawing the heat-map")
        values = heatmap_matrix(spec, by_index)
        cell = (spec.lam.index(best["lam"]), spec.eta.index(best["eta"])) if best else None
        with tempfile.TemporaryDirectory() as tmp:
            path = plots.plot_sweep_heatmap(
                list(spec.lam), list(spec.eta), values, Path(tmp) / "heatmap.png", title=heatmap_title(spec), best=cell
            )
            return {"heatmap": path.read_bytes()}, {"n_points": len(points)}

    artifact = stages.SWEEP.get_or_compute(
        ws, params, inputs, compute, depends=[("train", p["run_id"]) for p in by_index]
    )
    paths = stages.materialise(ws.reports_dir / "figures" / f"sweep-{artifact.key}", artifact.payload)
    ws.progress.phase_done()
    return artifact.key, paths["heatmap"]


def report_section(ws: Workspace, spec: SweepSpec) -> SweepSection:
    """The report's sweep section: points, the best run (a full run section), the heat-map."""
    result = run_sweep(ws, spec)
    best = run_section(ws, stages.find_run(ws, result["best"]["run_id"])) if result["best"] else None
    usable = [p for p in result["points"] if p["diverged_at"] is None and p["val_acc"] is not None]
    second = None
    if best is not None and len(usable) >= 2:  # the chosen point is tested against it (McNemar, validation)
        run = stages.find_run(ws, usable[1]["run_id"])
        second = {
            "run_id": run.key,
            "label": stages.run_label(stages.config_of(run)),
            "config": run.meta["params"],
            "metrics": {s: stages.evaluate(ws, run).payload[s] for s in ("train", "val", "test")},
        }
    return SweepSection(
        key=result["sweep"],
        grid=result["grid"],
        fixed=result["fixed"],
        title=heatmap_title(spec),
        points=result["points"],
        heatmap=Path(result["heatmap"]).relative_to(ws.reports_dir).as_posix(),
        best=best,
        runner_up=second,
    )
