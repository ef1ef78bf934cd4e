"""The result of one command about one thing, on screen: the dataset, a gradient check, a run, its
evaluation, its predictions and its export; rich tables and summaries, and the JSON documents beside them.

Pure presentation: every function turns artifacts into something to show. Imported only by the
command line, and only inside commands, so ``--help`` stays fast. Results that compare several runs
are drawn in ``comparison_views``, the `runs` listing in ``runs_table``, the cache's contents in
``cache_views``, progress in ``progress_bars``.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from cifarcli.config import GRADCHECK_TOL, TRAIN_DEFAULTS, loss_named
from cifarcli.gradcheck import verdict, verdict_line
from cifarcli.markup import literal
from cifarcli.store import Artifact

SPLITS = (("train", "training"), ("val", "validation"), ("test", "test"))


def _params(params: dict) -> str:
    return literal(", ".join(f"{k}={v}" for k, v in params.items()))


# -- dataset -------------------------------------------------------------------------


def dataset_json(artifact: Artifact) -> dict:
    return {"dataset": artifact.key, "cached": artifact.status == "hit", **artifact.meta["info"]}


def dataset_view(artifact: Artifact) -> list[Any]:
    info = artifact.meta["info"]
    status = "official archive" if info["official"] else "not the official archive (structure valid)"
    summary = Table.grid(padding=(0, 2))
    summary.add_row("dataset", literal(artifact.key) + ("  (cached)" if artifact.status == "hit" else ""))
    summary.add_row("source", literal(info["source"]))
    summary.add_row("format", literal(info["format"]))
    summary.add_row("md5", f"{literal(info['md5'])}  [{'green' if info['official'] else 'yellow'}]{status}[/]")
    summary.add_row("sha256", literal(info["sha256"]))
    counts = Table(title="Images per class")
    counts.add_column("class")
    counts.add_column("train", justify="right")
    counts.add_column("test", justify="right")
    for name, n_train, n_test in zip(info["label_names"], info["per_class"]["train"], info["per_class"]["test"]):
        counts.add_row(literal(name), str(n_train), str(n_test))
    counts.add_row("[bold]total", f"[bold]{info['n_train']}", f"[bold]{info['n_test']}")
    return [summary, counts]


# -- gradcheck -----------------------------------------------------------------------


def gradcheck_json(artifact: Artifact, tol: float | None) -> dict:
    from cifarcli.gradcheck import n_checked

    worst, checked = artifact.payload["max_error"], n_checked(artifact.payload)
    document = {
        "gradcheck": artifact.key,
        "cached": artifact.status == "hit",
        **artifact.payload,
        "max_error": worst,
        "n_checked": checked,
        "tol": tol,
        "passed": None if tol is None else bool(checked) and worst <= tol,
        "verdict": verdict_line(worst, GRADCHECK_TOL if tol is None else tol, checked, artifact.payload["h"]),
    }
    if not _loss_of(artifact.payload).smooth:  # how many parameters the verdict leaves out, and why
        document["kinks"] = {
            "total": sum(sum((e.get("kinks") or {}).values()) for e in artifact.payload["results"]),
            "excluded_from_verdict": True,
            "rule": "a parameter whose ±h moves a margin across zero (a kink of the hinge)",
        }
    return document


def _loss_of(gradcheck: dict):
    """The loss a gradcheck payload checked (the study's when it names none)."""
    return loss_named(gradcheck.get("loss", TRAIN_DEFAULTS.loss))


def gradcheck_verdict(artifact: Artifact, bound: float) -> str:
    return gradcheck_verdict_of(artifact.payload, bound)


def gradcheck_verdict_of(report: dict, bound: float) -> str:
    """The verdict line of a gradient check's report in green (PASS) or red (FAIL, NOT CHECKED)."""
    line = verdict(report, bound)
    return f"[bold {'green' if line.startswith('PASS') else 'red'}]{literal(line)}[/]"


def gradcheck_view(artifact: Artifact, tol: float | None) -> list[Any]:
    result = artifact.payload
    kinked = not _loss_of(result).smooth  # the hinge's kinks: counted, and left out of the verdict
    table = Table(
        title=f"Relative error |g_a − g_n| / max(eps, |g_a| + |g_n|)  (h={result['h']:g}, "
        f"{result['n_samples']} images, {result['n_dims']} dims, {result['elapsed']:.2f} s"
        f"{', loss ' + literal(result['loss']) if not _loss_of(result).is_study else ''})"
    )
    columns = ("λ", "param", "max", "mean", "median", "share < 1e-6") + (("within h of a kink",) if kinked else ())
    for column in columns:
        table.add_column(column, justify="right")
    for entry in result["results"]:
        for name in ("W", "b"):
            stats = entry[name]
            bad = tol is not None and stats["max"] > tol
            kinks = [f"{(entry.get('kinks') or {}).get(name, 0)} of {stats['n']} (excluded)"] if kinked else []
            if stats["n_excluded"] == stats["n"]:  # nothing measured: no number to show
                table.add_row(f"{entry['lam']:g}", name, "—", "—", "—", "—", *kinks)
                continue
            table.add_row(
                f"{entry['lam']:g}",
                name,
                f"[{'red' if bad else 'green'}]{stats['max']:.2e}[/]",
                f"{stats['mean']:.2e}",
                f"{stats['median']:.2e}",
                f"{stats['share_below_tol']:.1%}",
                *kinks,
            )
    corner = Table(
        title=f"Corner of the relative-error matrix of W (λ={result['results'][0]['lam']:g})", show_header=False
    )
    for row in result["results"][0]["W"]["corner"]:
        corner.add_row(*(f"{value:.1e}" for value in row))
    out: list[Any] = [table, corner]
    if kinked:
        n_kinks = sum(sum((entry.get("kinks") or {}).values()) for entry in result["results"])
        out.append(
            f"{n_kinks} checked parameter(s) lie within h of a kink of the hinge, where a centred "
            "difference is not a gradient: they are left out of max, mean, median and the verdict"
        )
    return out


# -- training and evaluation -----------------------------------------------------------


def run_json(run: Artifact) -> dict:
    info = run.meta["info"]
    return {
        "run_id": run.key,
        "cached": run.status == "hit",
        "config": run.meta["params"],
        "split_sizes": info["split_sizes"],
        "diverged_at": info["diverged_at"],
        "final": info["final"],
        "timings": info["timings"],
        "history": run.payload["history"],
        "unstable": run_instability(run),
        **({"chosen_epoch": info.get("chosen_epoch"), "chosen": info.get("chosen")} if "chosen_epoch" in info else {}),
    }


def run_instability(run: Artifact) -> str | None:
    """Why the run is unstable by the report's rule (``report.instability``), or None when it is not."""
    from cifarcli.report import instability

    found = instability({"history": run.payload["history"], "diverged_at": run.meta["info"]["diverged_at"]})
    return None if found is None else found.reason


def run_view(run: Artifact) -> list[Any]:
    info, params = run.meta["info"], run.meta["params"]
    final = info["final"]
    table = Table(title=f"run {literal(run.key)}  " + _params(params))
    for column in ("", "loss", "cost", "accuracy"):
        table.add_column(column, justify="right")
    for prefix, name in SPLITS[:2]:
        table.add_row(
            name, f"{final[prefix + '_loss']:.4f}", f"{final[prefix + '_cost']:.4f}", f"{final[prefix + '_acc']:.4f}"
        )
    seconds = info["timings"].get("total_seconds")
    note = "cached" if run.status == "hit" else f"trained in {seconds:.1f} s" if seconds else "trained"
    if info["diverged_at"] is not None:
        note = f"[red]diverged at epoch {info['diverged_at']}[/]"
    out: list[Any] = [table, f"run ID [bold]{literal(run.key)}[/]  ({note})"]
    if info.get("chosen") and "chosen_epoch" in info:  # early stopping: which epoch's weights were kept
        trained = run.payload["history"]["epoch"][-1]
        out.append(
            f"early stopping: trained {trained} of {params['n_epochs']} epochs; kept the weights of epoch "
            f"[bold]{info['chosen_epoch']}[/] (validation accuracy {info['chosen']['val_acc']:.4f})"
        )
    return out


def metrics_json(run: Artifact, metrics: Artifact, min_accuracy: float | None) -> dict:
    from cifarcli.evaluate import without_predictions

    document = {"run_id": run.key, "config": run.meta["params"], **without_predictions(metrics.payload)}
    if min_accuracy is not None:
        document["min_accuracy"] = min_accuracy
        document["passed"] = metrics.payload["test"]["accuracy"] >= min_accuracy
    return document


def metrics_view(run: Artifact, metrics: Artifact) -> list[Any]:
    m = metrics.payload
    table = Table(title=f"run {literal(run.key)}  " + _params(run.meta["params"]))
    for column in ("", "loss", "cost", "accuracy"):
        table.add_column(column, justify="right")
    for prefix, name in SPLITS:
        table.add_row(name, f"{m[prefix]['loss']:.4f}", f"{m[prefix]['cost']:.4f}", f"{m[prefix]['accuracy']:.4f}")
    names = list(m["per_class_accuracy"])
    confusion = Table(
        title="Test confusion matrix (rows: true class, columns: predicted)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
    )
    confusion.add_column("", no_wrap=True)
    for name in names:
        confusion.add_column(literal(name[:4]), justify="right", no_wrap=True)
    confusion.add_column("acc", justify="right", no_wrap=True)
    for name, row in zip(names, m["confusion_matrix"]):
        confusion.add_row(literal(name), *(str(v) for v in row), f"{m['per_class_accuracy'][name]:.2f}")
    out: list[Any] = [table, confusion]
    pr = m.get("probabilities")
    if pr:

        def mean(group: str) -> str:
            return "—" if pr[group]["mean"] is None else f"{pr[group]['mean']:.3f}"

        line = (
            f"probability of the true class ({pr['kind']}): mean {mean('correct')} on the "
            f"{pr['correct']['n']} correct, {mean('incorrect')} on the {pr['incorrect']['n']} misclassified"
        )
        if pr["confident_mistakes"] is not None:
            line += f"; {pr['confident_mistakes']:.1%} of the mistakes with p < {pr['threshold']:g}"
        out.append(line)
    mg = m.get("margins")
    if mg:  # an SVM run: scores, no probabilities

        def mean_margin(group: str) -> str:
            return "—" if mg[group]["mean"] is None else f"{mg[group]['mean']:.3f}"

        line = (
            f"margin of the true class (svm scores, s_y − max other): mean {mean_margin('correct')} on the "
            f"{mg['correct']['n']} correct, {mean_margin('incorrect')} on the {mg['incorrect']['n']} misclassified"
        )
        if mg["confident_mistakes"] is not None:
            line += f"; {mg['confident_mistakes']:.1%} of the mistakes with margin < {mg['threshold']:g}"
        out.append(line)
    return out


# -- using the model -------------------------------------------------------------------------


def predict_view(result: dict) -> list[Any]:
    """One row per classified image: its three most probable classes (unreadable files went to stderr)."""
    rows = [image for image in result["images"] if "top3" in image]
    if not rows:
        return []
    kind = result["output"]["kind"]
    svm = result["output"].get("scores", False)  # an SVM run: scores, not probabilities
    what = f"{literal(kind)}, not probabilities" if svm else f"{literal(kind)} probabilities"
    table = Table(title=f"Top 3 classes, run {literal(result['run_id'])} ({what})")
    table.add_column("image", overflow="fold")
    for rank in ("1st", "2nd", "3rd"):
        table.add_column(rank, justify="right", no_wrap=True)
    value = "score" if svm else "probability"
    for image in rows:
        table.add_row(literal(image["path"]), *(f"{literal(top['class'])} {top[value]:.3f}" for top in image["top3"]))
    out: list[Any] = [table]
    if not result["output"]["sums_to_one"]:
        out.append(f"[yellow]note:[/] {literal(result['output']['note'])}")
    return out


def export_view(result: dict) -> list[Any]:
    shapes = ", ".join(
        f"{name} {'×'.join(map(str, a['shape'])) or 'scalar'}"
        for name, a in result["arrays"].items()
        if name in ("W", "b", "mean", "std", "class_names")
    )
    return [
        f"wrote {literal(result['path'])} ({result['bytes'] / 1e3:.0f} kB; run {literal(result['run_id'])}, "
        f"loss {literal(result['loss'])}): {literal(shapes)}"
    ]
