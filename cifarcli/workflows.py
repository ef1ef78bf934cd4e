"""What the commands above the stages do: the whole study's report, and using a trained model.

``report`` trains what is missing (``execute``), asks for every stage of
every setting, assembles the typed document (``document``) and renders it;
``predict`` and ``export`` use one trained run.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from cifarcli import __version__, execute, source_files, stages
from cifarcli.config import GRADCHECK_TOL, TRAIN_DEFAULTS, ReportSettings, check_seeds, load_settings, train_fields
from cifarcli.document import (
    ComparisonSection,
    ReportDocument,
    RunSection,
    SweepSection,
    comparison_section,
    discordant_pairs,
    initialisation,
    run_section,
)
from cifarcli.errors import CifarError, OptionError, WorkFailed, disk_error
from cifarcli.files import write_atomic
from cifarcli.gradcheck import verdict
from cifarcli.predict import RESAMPLE, ImageError, classify, export_arrays, load_image, top_k
from cifarcli.report import comparisons, render_html, render_markdown
from cifarcli.report.typeset import compile_pdf, render_typst
from cifarcli.stages import Workspace
from cifarcli.store import Artifact
from cifarcli.sweep import report_section

PDF_INSTALL = "pip install 'cifarcli[pdf]'   (or: pip install typst)"
DISCUSSION_MAX_BYTES = 1_000_000


def read_discussion(path: Path) -> str:
    """The author's discussion file (UTF-8 text, at most ``DISCUSSION_MAX_BYTES``); one CifarError line if not."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(DISCUSSION_MAX_BYTES + 1)
    except FileNotFoundError:
        raise CifarError(f"no such discussion file: {path}", hint="give a Markdown file with `discussion`") from None
    except IsADirectoryError:
        raise CifarError(f"the discussion {path} is a folder, not a file") from None
    except OSError as exc:
        raise CifarError(f"cannot read the discussion {path}: {exc.strerror or exc}") from None
    if len(raw) > DISCUSSION_MAX_BYTES:
        raise CifarError(f"the discussion {path} is larger than {DISCUSSION_MAX_BYTES // 1000} kB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CifarError(f"the discussion {path} is not UTF-8 text") from None


def _require_typst() -> None:
    try:
        import typst  # noqa: F401
    except ImportError:
        raise CifarError("`pdf` needs the typst package, which is not installed", hint=PDF_INSTALL) from None


@dataclass
class _Study:
    """What the report is made of, each part asked of its stage."""

    dataset_info: dict
    check: Artifact
    runs: list[RunSection]
    names: dict[str, str]  # run ID -> name, for the named runs of the report
    compared: ComparisonSection | None
    swept: SweepSection | None
    combined: Artifact | None
    discordant: list[dict]

    def inputs(self) -> dict[str, str]:
        """The inputs the report's key names: the gradient check, every run, and the sections made from them."""
        inputs = {"gradcheck": self.check.key, **{f"run{i}": run.run_id for i, run in enumerate(self.runs)}}
        if self.swept is not None:
            inputs["sweep"] = self.swept.key
        if self.compared is not None:
            inputs["comparison"] = self.compared.key
        if self.combined is not None:
            inputs["ensemble"] = self.combined.key
        return inputs

    def made_from(self) -> list[tuple[str, str]]:
        """Made from more than its key names: every run's metrics and figures, and the sweep's best run."""
        return [
            ("gradcheck", self.check.key),
            *(d for run in self.runs for d in run.made_from()),
            *(self.swept.made_from() if self.swept is not None else []),
            *(self.compared.made_from() if self.compared is not None else []),
            *([("ensemble", self.combined.key)] if self.combined is not None else []),
        ]


def report(
    ws: Workspace,
    settings_path: Path | None = None,
    force: bool = False,
    discussion: Path | None = None,
    brief: bool | None = None,
    pdf: bool = False,
) -> dict:
    """The whole study: every stage for every setting, then reports/report.md and report.html (and with
    ``pdf`` report.typ and an A4 report.pdf). ``discussion`` (a file) and ``brief`` override the settings
    file's ``[report]`` table."""
    settings = load_settings(settings_path)
    if pdf:
        _require_typst()
    discussion = discussion if discussion is not None else settings.discussion
    words = read_discussion(discussion) if discussion is not None else None
    brief = settings.brief if brief is None else brief
    study = _study(ws, settings)
    document = _document(study, words, brief)
    artifact = stages.REPORT.get_or_compute(
        ws,
        _report_params(study.names, brief, words),
        study.inputs(),
        lambda: _rendered(ws, document),
        force=force,
        depends=study.made_from(),
    )
    paths = _write_report(ws, artifact, pdf)
    return {
        **artifact.payload["doc"],
        "comparisons": comparisons(artifact.payload["doc"]),
        "paths": {k: str(v) for k, v in paths.items()},
        "stages": [{"stage": s, "key": k, "status": st} for s, k, st in ws.events],
    }


def _study(ws: Workspace, settings: ReportSettings) -> _Study:
    """Every stage the report needs, asked for in order: the dataset, the gradient check, the runs (the
    missing ones trained first), their sections and figures, the comparison, the sweep and the ensemble."""
    data_artifact = stages.dataset(ws)
    check = stages.gradcheck(ws, settings.gradcheck)
    ws.log(f"gradient check: {verdict(check.payload, GRADCHECK_TOL)}")
    # Each run's evaluation and figures are made by the worker that trained it, as soon as it is trained.
    execute.train_missing(ws, settings.runs + (settings.ensemble or []), figures=settings.runs)
    trained = [stages.train(ws, config) for config in settings.runs]
    to_draw = stages.figures_to_draw(ws, trained, compared=True)
    if to_draw:
        ws.progress.steps("drawing figures", to_draw)
    named = stages.run_names(ws)
    names = {run.key: named[run.key] for run in trained if run.key in named}
    runs = [run_section(ws, run, names.get(run.key)) for run in trained]
    compared = comparison_section(ws, trained)
    swept = report_section(ws, settings.sweep) if settings.sweep is not None else None
    combined = (
        stages.ensemble(ws, [stages.train(ws, config) for config in settings.ensemble]) if settings.ensemble else None
    )
    return _Study(
        dataset_info=data_artifact.meta["info"],
        check=check,
        runs=runs,
        names=names,
        compared=compared,
        swept=swept,
        combined=combined,
        discordant=_discordant(ws, trained, swept),
    )


def _discordant(ws: Workspace, trained: list[Artifact], swept: SweepSection | None) -> list[dict]:
    """The pairs of runs McNemar's test compares: the study's runs on test, the sweep's best two on validation."""
    discordant = discordant_pairs(ws, trained, "test")
    if swept is not None and swept.best is not None and swept.runner_up is not None:
        discordant += discordant_pairs(
            ws, [stages.find_run(ws, swept.best.run_id), stages.find_run(ws, swept.runner_up["run_id"])], "val"
        )
    return discordant


def _document(study: _Study, words: str | None, brief: bool) -> ReportDocument:
    """The typed report document, before it is rendered."""
    info = study.dataset_info
    return ReportDocument(
        title="One-layer network on CIFAR-10",
        cifarcli_version=__version__,
        dataset={
            "source": info["source"],
            "format": info["format"],
            "md5": info["md5"],
            "sha256": info["sha256"],
            "official": info["official"],
            "note": info["note"],
            "n_train_total": info["n_train"],
            "n_test": info["n_test"],
        },
        preprocessing={"scale": "pixels / 255", "normalisation": "per-dimension mean and std of the training split"},
        initialisation=initialisation(study.runs),
        gradcheck={
            **study.check.payload,
            "tol": GRADCHECK_TOL,
            "passed": study.check.payload["max_error"] <= GRADCHECK_TOL,
        },
        runs=study.runs,
        sweep=study.swept,
        comparison=study.compared,
        ensemble={"key": study.combined.key, **study.combined.payload} if study.combined else None,
        discordant=study.discordant,
        discussion=words,
        brief=brief,
    )


def _report_params(names: dict[str, str], brief: bool, words: str | None) -> dict:
    """The report's key parameters. The names are printed in the labels (a renamed run re-renders the report;
    run IDs never move), and the discussion's content and the layout are part of what the report is made from."""
    return {
        **({"names": names} if names else {}),
        **({"brief": True} if brief else {}),
        **({"discussion_sha256": hashlib.sha256(words.encode()).hexdigest()} if words is not None else {}),
    }


def _rendered(ws: Workspace, document: ReportDocument) -> tuple[dict, dict]:
    """The report artifact's payload: the document as data, Markdown, HTML and Typst source."""
    ws.progress.phase("rendering the report (Markdown, HTML)")
    doc = {**document.to_dict(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return {
        "doc": doc,
        "report.md": render_markdown(doc),
        "report.html": render_html(doc, ws.reports_dir),
        "report.typ": render_typst(doc),
    }, {}


def _write_report(ws: Workspace, artifact: Artifact, pdf: bool) -> dict[str, Path]:
    """Write the rendered report under ``reports/`` (with ``pdf``, its Typst source and the typeset PDF)."""
    paths = {name: ws.reports_dir / name for name in ("report.md", "report.html", *(("report.typ",) if pdf else ()))}
    ws.progress.phase(f"writing {', '.join(str(path) for path in paths.values())}")
    for name, path in paths.items():
        stages.write_if_changed(path, artifact.payload[name].encode())
    if pdf:
        paths["report.pdf"] = ws.reports_dir / "report.pdf"
        try:
            stages.write_if_changed(paths["report.pdf"], compile_pdf(artifact.payload["report.typ"], ws.reports_dir))
        except RuntimeError as exc:  # typst's own error: a bug of ours, or a figure missing from reports/
            raise WorkFailed(f"typst could not typeset {paths['report.typ']}: {str(exc).splitlines()[0]}") from None
    ws.progress.phase_done()
    return paths


def ensemble_members(ws: Workspace, run_ids: list[str] | None, config=None, seeds: list[int] | None = None) -> list:
    """The member runs of an ensemble: the runs ``run_ids``, or ``config`` at each of ``seeds`` (the missing
    ones trained first, at once where ``ws.jobs`` allows, through ``execute.train_missing``)."""
    if run_ids:
        if seeds:
            raise OptionError("seeds", "give either `run` (existing runs) or `seeds` (with training options), not both")
        # Training options beside --run would be ignored without a word: the runs are what they are.
        changed = [
            name
            for name in train_fields()
            if config is not None and getattr(config, name) != getattr(TRAIN_DEFAULTS, name)
        ]
        if changed:
            raise OptionError(
                changed[0],
                "is a training option; the runs given with `run` are used as trained",
                hint="train other settings with `seeds`, or leave the option out",
            )
        return [stages.find_run(ws, run_id) for run_id in run_ids]
    if not seeds:
        raise OptionError("seeds", "an ensemble needs its members", hint="give `run` A `run` B, or `seeds` 1,2,3")
    check_seeds(seeds)
    configs = [replace(config, seed=seed).validate() for seed in seeds]
    execute.train_missing(ws, configs)
    return [stages.train(ws, c) for c in configs]


def ensemble(
    ws: Workspace, run_ids: list[str] | None, config=None, seeds: list[int] | None = None, force: bool = False
) -> dict:
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
        P = classify(np.stack([images[i]["record"] for i in good]), p["W"], p["b"], p["mean"], p["std"], config.loss)
        svm = not config.loss_fn.gives_probabilities  # an SVM gives scores: its JSON says "score"
        for j, (i, top) in enumerate(zip(good, top_k(P, names, 3))):
            if svm:
                top = [{"class": t["class"], "score": t["probability"]} for t in top]
            results[i] = {
                "path": images[i]["path"],
                "top3": top,
                "scores" if svm else "probabilities": {name: float(P[k, j]) for k, name in enumerate(names)},
            }
    return {
        "run_id": run.key,
        "loss": config.loss,
        "output": dict(config.loss_fn.output_words),
        "preprocessing": f"RGB, resized to 32×32 ({RESAMPLE}), pixels / 255, normalised with the "
        "run's training mean and std",
        "images": results,
    }


def export(ws: Workspace, run: Artifact, out: Path) -> dict:
    """Write ``run``'s model as a plain ``.npz`` at ``out`` (atomically: temp file beside it, then rename)."""
    stages.require_converged(run)
    out = Path(out)
    _check_export_target(out)
    config, p = stages.config_of(run), run.payload
    arrays = export_arrays(
        p["W"], p["b"], p["mean"], p["std"], p["label_names"], config.loss, asdict(config), run.key, __version__
    )  # every setting, defaults included
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(out, buffer.getvalue(), mode=0o666)  # a file for the user: their umask applies
    return {
        "run_id": run.key,
        "path": str(out),
        "bytes": len(buffer.getvalue()),
        "loss": config.loss,
        "arrays": {name: {"shape": list(a.shape), "dtype": a.dtype.str} for name, a in arrays.items()},
    }


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
        raise OptionError(
            "out",
            f"{out} is a symlink; refusing to replace it or write through it",
            hint=f"to write its target, name it: {os.path.realpath(out)}; else give a new file name",
        )
    if mode is not None and not stat.S_ISREG(mode):
        raise OptionError(
            "out",
            f"{out} is {source_files.file_kind(mode)}, not a regular file; refusing to replace it",
            hint=_OUT_HINT,
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in out.parents if os.path.lexists(p)), out.parent)  # nearest existing one
        raise OptionError("out", f"{out}: {blocker} is not a folder", hint=_OUT_HINT) from None
    except OSError as exc:
        raise disk_error(exc, out.parent) from None
