"""What the commands above the stages do: the whole study's report, and using a trained model.

``report`` trains what is missing (``execute``), asks for every stage of
every setting, assembles the typed document (``document``) and renders it;
``predict`` and ``export`` use one trained run.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cifarcli import __version__, data, execute, stages
from cifarcli.errors import disk_error
from cifarcli.files import write_atomic
from cifarcli.store import Artifact
from cifarcli.config import GRADCHECK_TOL, load_settings
from cifarcli.document import ReportDocument, comparison_section, initialisation, run_section
from cifarcli.errors import OptionError
from cifarcli.predict import RESAMPLE, ImageError, classify, export_arrays, load_image, top_k
from cifarcli.report import render_html, render_markdown
from cifarcli.stages import Workspace
from cifarcli.sweep import report_section


def report(ws: Workspace, settings_path: Path | None = None, force: bool = False) -> dict:
    """The whole study: every stage for every setting, then reports/report.md and report.html."""
    settings = load_settings(settings_path)
    data_artifact = stages.dataset(ws)
    check = stages.gradcheck(ws, settings.gradcheck)
    execute.train_missing(ws, settings.runs + (settings.ensemble or []))
    trained = [stages.train(ws, config) for config in settings.runs]
    runs = [run_section(ws, run) for run in trained]
    compared = comparison_section(ws, trained)
    swept = report_section(ws, settings.sweep) if settings.sweep is not None else None
    combined = (stages.ensemble(ws, [stages.train(ws, config) for config in settings.ensemble])
                if settings.ensemble else None)
    info = data_artifact.meta["info"]
    document = ReportDocument(
        title="One-layer network on CIFAR-10", cifarcli_version=__version__,
        dataset={"source": info["source"], "format": info["format"], "md5": info["md5"], "sha256": info["sha256"],
                 "official": info["official"], "note": info["note"], "n_train_total": info["n_train"],
                 "n_test": info["n_test"]},
        preprocessing={"scale": "pixels / 255", "normalisation": "per-dimension mean and std of the training split"},
        initialisation=initialisation(runs),
        gradcheck={**check.payload, "tol": GRADCHECK_TOL, "passed": check.payload["max_error"] <= GRADCHECK_TOL},
        runs=runs, sweep=swept, comparison=compared,
        ensemble={"key": combined.key, **combined.payload} if combined else None)
    inputs = {"gradcheck": check.key, **{f"run{i}": run.run_id for i, run in enumerate(runs)}}
    if swept is not None:
        inputs["sweep"] = swept.key
    if compared is not None:
        inputs["comparison"] = compared.key
    if combined is not None:
        inputs["ensemble"] = combined.key

    def compute():
        doc = {**document.to_dict(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        return {"doc": doc, "report.md": render_markdown(doc), "report.html": render_html(doc, ws.reports_dir)}, {}

    # Made from more than its key names: every run's metrics and figures, and the sweep's best run.
    depends = [("gradcheck", check.key), *(d for run in runs for d in run.made_from()),
               *(swept.made_from() if swept is not None else []),
               *(compared.made_from() if compared is not None else []),
               *([("ensemble", combined.key)] if combined is not None else [])]
    artifact = stages.REPORT.get_or_compute(ws, {}, inputs, compute, force=force, depends=depends)
    paths = {}
    for name in ("report.md", "report.html"):
        paths[name] = ws.reports_dir / name
        stages.write_if_changed(paths[name], artifact.payload[name].encode())
    return {**artifact.payload["doc"], "paths": {k: str(v) for k, v in paths.items()},
            "stages": [{"stage": s, "key": k, "status": st} for s, k, st in ws.events]}


def ensemble_members(ws: Workspace, run_ids: list[str] | None, config=None, seeds: list[int] | None = None) -> list:
    """The member runs of an ensemble: the runs ``run_ids``, or ``config`` at each of ``seeds`` (the missing
    ones trained first, at once where ``ws.jobs`` allows, through ``execute.train_missing``)."""
    from dataclasses import replace

    if run_ids:
        if seeds:
            raise OptionError("seeds", "give either --run (existing runs) or --seeds (with training options), "
                              "not both")
        return [stages.find_run(ws, run_id) for run_id in run_ids]
    if not seeds:
        raise OptionError("seeds", "an ensemble needs its members", hint="give --run A --run B, or --seeds 1,2,3")
    configs = [replace(config, seed=seed).validate() for seed in seeds]
    execute.train_missing(ws, configs)
    return [stages.train(ws, c) for c in configs]


def ensemble(ws: Workspace, run_ids: list[str] | None, config=None, seeds: list[int] | None = None,
             force: bool = False) -> dict:
    """The ensemble's result document: its key, the members' and the ensemble's accuracies."""
    artifact = stages.ensemble(ws, ensemble_members(ws, run_ids, config, seeds), force)
    return {"ensemble": artifact.key, "cached": artifact.status == "hit", **artifact.payload}


def read_images(paths) -> list[dict]:
    """Each path with its CIFAR record (``record``), or the one line saying why it is unreadable (``error``)."""
    images = []
    for path in paths:
        try:
            images.append({"path": str(path), "record": load_image(path)})
        except ImageError as bad:
            images.append({"path": str(path), "error": bad.message})
    return images


def predict(ws: Workspace, run: Artifact, images: list[dict]) -> dict:
    """The top-3 classes of every readable image in ``images`` (from ``read_images``) under ``run``'s model.

    Returns ``{"run_id", "loss", "output": {"kind", "sums_to_one", "note"}, "preprocessing", "images": [
    {"path", "top3": [{"class", "probability"}] × 3, "probabilities": {class: p}} or {"path", "error"}]}``.
    """
    stages.require_converged(run)
    config, p = stages.config_of(run), run.payload
    names = list(p["label_names"])
    results: list[dict] = [{"path": im["path"], "error": im.get("error")} for im in images]
    good = [i for i, im in enumerate(images) if "record" in im]
    if good:
        P = classify(np.stack([images[i]["record"] for i in good]), p["W"], p["b"], p["mean"], p["std"],
                     config.loss)
        svm = config.loss == "svm"   # an SVM gives scores, not probabilities: its JSON says "score"
        for j, (i, top) in enumerate(zip(good, top_k(P, names, 3))):
            if svm:
                top = [{"class": t["class"], "score": t["probability"]} for t in top]
            results[i] = {"path": images[i]["path"], "top3": top,
                          "scores" if svm else "probabilities": {name: float(P[k, j]) for k, name in enumerate(names)}}
    kind = {"kind": "sigmoid", "sums_to_one": False,
            "note": "bce run: each class has its own sigmoid probability (a yes/no answer per class); "
                    "they do not sum to 1"} if config.loss == "bce" else \
        {"kind": "svm scores", "sums_to_one": False, "scores": True,
         "note": "svm run: these are class scores s = Wx + b, not probabilities; the highest wins, and only "
                 "their order and differences (margins) mean anything"} if config.loss == "svm" else \
        {"kind": "softmax", "sums_to_one": True, "note": "softmax over the 10 classes: they sum to 1"}
    return {"run_id": run.key, "loss": config.loss, "output": kind,
            "preprocessing": f"RGB, resized to 32×32 ({RESAMPLE}), pixels / 255, normalised with the "
                             "run's training mean and std", "images": results}


def export(ws: Workspace, run: Artifact, out: Path) -> dict:
    """Write ``run``'s model as a plain ``.npz`` at ``out`` (atomically: temp file beside it, then rename)."""
    stages.require_converged(run)
    out = Path(out)
    _check_export_target(out)
    config, p = stages.config_of(run), run.payload
    arrays = export_arrays(p["W"], p["b"], p["mean"], p["std"], p["label_names"], config.loss,
                           asdict(config), run.key, __version__)  # every setting, defaults included
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(out, buffer.getvalue(), mode=0o666)  # a file for the user: their umask applies
    return {"run_id": run.key, "path": str(out), "bytes": len(buffer.getvalue()), "loss": config.loss,
            "arrays": {name: {"shape": list(a.shape), "dtype": a.dtype.str} for name, a in arrays.items()}}


_OUT_HINT = "give a new file name or a regular file, e.g. model.npz"


def _check_export_target(out: Path) -> None:
    """Refuse an ``out`` that the atomic rename would destroy; make sure its folder exists.

    The rename replaces whatever is at ``out``: a device node (``/dev/null``, as root), a FIFO or
    a socket would be swapped for a regular file. Only a regular file (replaced whole) or nothing
    is accepted. A symlink is refused, never followed or replaced: writing through it would
    change a file the user did not name, replacing it would silently drop the link; naming the
    link's target is explicit.
    """
    try:
        mode = os.lstat(out).st_mode
    except (FileNotFoundError, NotADirectoryError):  # absent (a file in a folder's place: below)
        mode = None
    except OSError as exc:
        raise OptionError("out", f"{out}: {exc.strerror or exc}", hint=_OUT_HINT) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise OptionError("out", f"{out} is a folder", hint="give a file name, e.g. model.npz")
    if mode is not None and stat.S_ISLNK(mode):
        raise OptionError("out", f"{out} is a symlink; refusing to replace it or write through it",
                          hint=f"to write its target, name it: {os.path.realpath(out)}; else give a new file name")
    if mode is not None and not stat.S_ISREG(mode):
        raise OptionError("out", f"{out} is {data.file_kind(mode)}, not a regular file; refusing to replace it",
                         hint=_OUT_HINT)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in out.parents if os.path.lexists(p)), out.parent)  # nearest existing one
        raise OptionError("out", f"{out}: {blocker} is not a folder", hint=_OUT_HINT) from None
    except OSError as exc:
        raise disk_error(exc, out.parent) from None
