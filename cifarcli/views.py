"""Rendering for the CLI: rich tables, JSON documents and progress bars.

Pure presentation: every function turns artifacts into something to show.
Imported only by ``cli.py``, and only inside commands, so ``--help`` stays fast.

Every string shown here that comes from outside this module (class names read from
an archive, paths, parameters and reasons from the cache) goes through ``_t``: rich
would otherwise read ``[/]`` or ``[bold red]`` in it as markup, and crash or restyle.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cifarcli.config import GRADCHECK_TOL, TRAIN_DEFAULTS, loss_named
from cifarcli.errors import human_size
from cifarcli.gradcheck import verdict, verdict_line
from cifarcli.stages import Progress
from cifarcli.store import Artifact

SPLITS = (("train", "training"), ("val", "validation"), ("test", "test"))


def _t(value: Any) -> str:
    """``value`` as literal text inside rich markup."""
    return escape(str(value))


def _params(params: dict) -> str:
    return _t(", ".join(f"{k}={v}" for k, v in params.items()))


# -- progress ----------------------------------------------------------------------


def progress_for(console: Console) -> Progress:
    """Live bars on a terminal; one plain line per phase otherwise (no control characters in logs); none quiet."""
    if console.quiet:
        return Progress()
    if not console.is_terminal:
        return PlainProgress(console)
    return RichProgress(console)


class PlainProgress(Progress):
    """Without a terminal (a log, CI): one plain line as each phase starts, nothing that redraws."""

    def __init__(self, console: Console):
        self.console = console

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def run_started(self, run_id: str, n_epochs: int, n_batches: int, start_epoch: int, label: str = "") -> None:
        self._line(f"training {label or run_id[:12]}: {n_epochs} epochs")

    def phase(self, what: str) -> None:
        self._line(what)

    def steps(self, what: str, total: int) -> None:
        self._line(f"{what}: {total}")


_ELAPSED = len("elapsed 0:00:00")


class RichProgress(Progress):
    """rich bars on stderr: a download, one training run, a spinner, one bar per setting trained elsewhere
    (under one bar counting them), or a bar over the figures to draw.

    Only one live display at a time: each kind starts its own and stops it when done. Every row fits
    the terminal's width by construction (the metrics shown shrink to the room left), so rich never
    squeezes a label or wraps a row. Every time column counts up and says so ("elapsed").
    """

    def __init__(self, console: Console):
        self.console = console
        self._download = self._run = self._spinner = self._settings = self._steps = None
        self._tasks: dict[str, Any] = {}
        self._last_batch = 0.0
        self._run_label = ""

    def _bar_width(self) -> int:
        return 10 if self.console.width < 100 else 12 if self.console.width < 120 else 24

    def _room(self, description: str, count: str) -> int:
        """Columns left for the metrics on a row with this description and count (spinner, bar, elapsed,
        the spaces between the columns and one spare column, so a row never touches the right edge)."""
        return self.console.width - 2 - len(description) - self._bar_width() - len(count) - _ELAPSED - 6

    def _columns(self):
        from rich import progress as rp

        return (
            rp.SpinnerColumn(),
            rp.TextColumn("{task.description}"),
            rp.BarColumn(bar_width=self._bar_width()),
            rp.TextColumn("{task.fields[count]}"),
            rp.TextColumn("{task.fields[status]}"),
            rp.TextColumn("elapsed"),
            rp.TimeElapsedColumn(),
        )

    def download(self, done: int, total: int | None) -> None:
        if self._download is None:
            from rich import progress as rp

            self._download_bars = rp.Progress(
                rp.TextColumn("download"),
                rp.BarColumn(),
                rp.DownloadColumn(),
                rp.TransferSpeedColumn(),
                rp.TextColumn("left"),
                rp.TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._download_bars.start()
            self._download = self._download_bars.add_task("download", total=total)
        self._download_bars.update(self._download, completed=done, total=total)
        if total is not None and done >= total:
            self._download_bars.stop()
            self._download = None

    # -- one run trained here: one bar that advances within each epoch ----------------------------

    def run_started(self, run_id: str, n_epochs: int, n_batches: int, start_epoch: int, label: str = "") -> None:
        from rich import progress as rp

        self._run_label = f"train {label or run_id[:12]}"
        self._run_bars = rp.Progress(*self._columns(), console=self.console, transient=True)
        self._run_bars.start()
        self._run = self._run_bars.add_task(
            _t(self._run_label),
            total=n_epochs,
            completed=start_epoch,
            count=f"epoch {start_epoch}/{n_epochs}",
            status="",
        )

    def batch(self, epoch: int, index: int, n_batches: int) -> None:
        import time

        now = time.monotonic()
        if self._run is None or (now - self._last_batch < 0.1 and index + 1 < n_batches):
            return
        self._last_batch = now
        self._run_bars.update(self._run, completed=epoch - 1 + (index + 1) / n_batches)  # epoch counts from 1

    def epoch(self, epoch: int, history: dict) -> None:
        if self._run is not None:
            count = f"epoch {epoch}/{self._run_bars.tasks[0].total:g}"
            self._run_bars.update(
                self._run,
                count=count,
                status=_metrics({k: v[-1] for k, v in history.items() if v}, self._room(self._run_label, count)),
            )

    def run_finished(self, run_id: str) -> None:
        if self._run is not None:
            self._run_bars.stop()
            self._run = None

    # -- a spinner: something slow without steps to count -------------------------------------------

    def working(self, what: str) -> None:
        if self._steps is not None:  # one live display at a time: inside the bar over the figures, on its row
            room = self._room(
                "drawing figures", f"{self._steps_bars.tasks[0].total:g}/{self._steps_bars.tasks[0].total:g}"
            )
            self._steps_bars.update(self._steps, status=_t(what) if len(what) <= room else "")
            return
        if self._spinner is None:
            from rich import progress as rp

            self._spinner_bars = rp.Progress(
                rp.SpinnerColumn(),
                rp.TextColumn("{task.description}"),
                rp.TextColumn("elapsed"),
                rp.TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._spinner_bars.start()
            self._spinner = self._spinner_bars.add_task(_t(what))
        self._spinner_bars.update(self._spinner, description=_t(what))

    def done_working(self) -> None:
        if self._steps is not None:
            self._steps_bars.update(self._steps, status="")
        if self._spinner is not None:
            self._spinner_bars.stop()
            self._spinner = None

    def phase(self, what: str) -> None:
        self.working(what)

    def phase_done(self) -> None:
        self.done_working()

    # -- things to make one after another: a bar over them ---------------------------------------

    def steps(self, what: str, total: int) -> None:
        from rich import progress as rp

        self.done_working()
        if self._steps is not None:
            self._steps_bars.stop()
        self._steps_bars = rp.Progress(*self._columns(), console=self.console, transient=True)
        self._steps_bars.start()
        self._steps = self._steps_bars.add_task(_t(what), total=total, count=f"0/{total}", status="")

    def step(self) -> None:
        if self._steps is None:
            return
        task = self._steps_bars.tasks[0]
        done = int(task.completed) + 1
        self._steps_bars.update(self._steps, completed=done, count=f"{done}/{task.total:g}")
        if done >= task.total:
            self._steps_bars.stop()
            self._steps = None

    # -- settings trained elsewhere: a bar each while it trains, under one counting them ----------

    def settings_started(self, n_settings: int, where: str) -> None:
        from rich import progress as rp

        self._settings = rp.Progress(*self._columns(), console=self.console, transient=True)
        self._settings.start()  # at once: the workers take a moment to start, the count shows meanwhile
        self._tasks = {}
        self._widest = len("trained")  # the rows share their columns: the widest label sets the room
        self._overall = self._settings.add_task(
            "trained", total=n_settings, count=f"0/{n_settings}", status=_t(f"settings on {where}")
        )

    def setting(self, run_id: str, label: str, epoch: int, n_epochs: int, latest: dict) -> None:
        if self._settings is None:
            return
        count = f"epoch {epoch}/{n_epochs}"
        self._widest = max(self._widest, len(label))
        room = self._room(" " * self._widest, f"epoch {n_epochs}/{n_epochs}")
        status = _metrics(latest, room) if latest else "[dim]started[/]"
        if run_id not in self._tasks:
            self._tasks[run_id] = self._settings.add_task(_t(label), total=n_epochs, count=count, status=status)
        self._settings.update(self._tasks[run_id], completed=epoch, count=count, status=status)

    def setting_busy(self, run_id: str, label: str, n_epochs: int, what: str) -> None:
        if self._settings is None:
            return
        self.setting(run_id, label, n_epochs, n_epochs, {})
        fits = len(what) <= self._room(" " * self._widest, f"epoch {n_epochs}/{n_epochs}")
        self._settings.update(self._tasks[run_id], status=f"[dim]{_t(what)}[/]" if fits else "")

    def setting_finished(self, run_id: str, label: str, n_epochs: int, latest: dict) -> None:
        if self._settings is None:
            return
        self.setting(run_id, label, n_epochs, n_epochs, latest)
        self._settings.refresh()  # its last frame says epoch N/N before the bar goes
        self._settings.remove_task(self._tasks.pop(run_id))
        overall = self._settings.tasks[0]
        done = int(overall.completed) + 1
        self._settings.update(self._overall, completed=done, count=f"{done}/{overall.total:g}")

    def settings_finished(self) -> None:
        if self._settings is not None:
            self._settings.stop()
            self._settings = None

    def close(self) -> None:
        for bars, attribute in (
            (getattr(self, "_download_bars", None), "_download"),
            (getattr(self, "_run_bars", None), "_run"),
            (getattr(self, "_spinner_bars", None), "_spinner"),
            (getattr(self, "_steps_bars", None), "_steps"),
        ):
            if bars is not None and getattr(self, attribute) is not None:
                bars.stop()
                setattr(self, attribute, None)
        self.settings_finished()


def _metrics(latest: dict, room: int) -> str:
    """The latest epoch's labelled metrics, as many as fit ``room`` columns: ``train acc 0.459 · val acc 0.374``,
    the losses beside them when there is room, only ``val acc 0.374`` when narrow, nothing when narrower."""

    def value(name: str) -> str:
        number = latest.get(name)
        return "—" if not isinstance(number, (int, float)) else f"{number:.3f}"

    train_acc, val_acc = f"train acc {value('train_acc')}", f"val acc {value('val_acc')}"
    train_loss, val_loss = f"train loss {value('train_loss')}", f"val loss {value('val_loss')}"
    for parts in (
        (train_acc, val_acc, train_loss, val_loss),
        (train_acc, val_acc, val_loss),
        (train_acc, val_acc),
        (val_acc,),
    ):
        text = " · ".join(parts)
        if len(text) <= room:
            return text
    return ""


# -- dataset -------------------------------------------------------------------------


def dataset_json(artifact: Artifact) -> dict:
    return {"dataset": artifact.key, "cached": artifact.status == "hit", **artifact.meta["info"]}


def dataset_view(artifact: Artifact) -> list[Any]:
    info = artifact.meta["info"]
    status = "official archive" if info["official"] else "not the official archive (structure valid)"
    summary = Table.grid(padding=(0, 2))
    summary.add_row("dataset", _t(artifact.key) + ("  (cached)" if artifact.status == "hit" else ""))
    summary.add_row("source", _t(info["source"]))
    summary.add_row("format", _t(info["format"]))
    summary.add_row("md5", f"{_t(info['md5'])}  [{'green' if info['official'] else 'yellow'}]{status}[/]")
    summary.add_row("sha256", _t(info["sha256"]))
    counts = Table(title="Images per class")
    counts.add_column("class")
    counts.add_column("train", justify="right")
    counts.add_column("test", justify="right")
    for name, n_train, n_test in zip(info["label_names"], info["per_class"]["train"], info["per_class"]["test"]):
        counts.add_row(_t(name), str(n_train), str(n_test))
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
    return f"[bold {'green' if line.startswith('PASS') else 'red'}]{_t(line)}[/]"


def gradcheck_view(artifact: Artifact, tol: float | None) -> list[Any]:
    result = artifact.payload
    kinked = not _loss_of(result).smooth  # the hinge's kinks: counted, and left out of the verdict
    table = Table(
        title=f"Relative error |g_a − g_n| / max(eps, |g_a| + |g_n|)  (h={result['h']:g}, "
        f"{result['n_samples']} images, {result['n_dims']} dims, {result['elapsed']:.2f} s"
        f"{', loss ' + _t(result['loss']) if not _loss_of(result).is_study else ''})"
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
    table = Table(title=f"run {_t(run.key)}  " + _params(params))
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
    out: list[Any] = [table, f"run ID [bold]{_t(run.key)}[/]  ({note})"]
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
    table = Table(title=f"run {_t(run.key)}  " + _params(run.meta["params"]))
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
        confusion.add_column(_t(name[:4]), justify="right", no_wrap=True)
    confusion.add_column("acc", justify="right", no_wrap=True)
    for name, row in zip(names, m["confusion_matrix"]):
        confusion.add_row(_t(name), *(str(v) for v in row), f"{m['per_class_accuracy'][name]:.2f}")
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
    what = f"{_t(kind)}, not probabilities" if svm else f"{_t(kind)} probabilities"
    table = Table(title=f"Top 3 classes, run {_t(result['run_id'])} ({what})")
    table.add_column("image", overflow="fold")
    for rank in ("1st", "2nd", "3rd"):
        table.add_column(rank, justify="right", no_wrap=True)
    value = "score" if svm else "probability"
    for image in rows:
        table.add_row(_t(image["path"]), *(f"{_t(top['class'])} {top[value]:.3f}" for top in image["top3"]))
    out: list[Any] = [table]
    if not result["output"]["sums_to_one"]:
        out.append(f"[yellow]note:[/] {_t(result['output']['note'])}")
    return out


def export_view(result: dict) -> list[Any]:
    shapes = ", ".join(
        f"{name} {'×'.join(map(str, a['shape'])) or 'scalar'}"
        for name, a in result["arrays"].items()
        if name in ("W", "b", "mean", "std", "class_names")
    )
    return [
        f"wrote {_t(result['path'])} ({result['bytes'] / 1e3:.0f} kB; run {_t(result['run_id'])}, "
        f"loss {_t(result['loss'])}): {_t(shapes)}"
    ]


# -- report and cache ----------------------------------------------------------------------


def report_view(result: dict) -> list[Any]:
    # Compact, and no cell wraps or is cut: a run ID is typed back (--run), so all of its 12 characters stay.
    table = Table(title="The study", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    for column in ("run", "λ", "η", "batch", "epochs", "train acc", "val acc", "test acc"):
        table.add_column(column, justify="right", no_wrap=True, min_width=12 if column == "run" else None)
    best = max((run["metrics"]["test"]["accuracy"] for run in result["runs"] if run["metrics"]), default=None)
    for run in result["runs"]:
        c, m = run["config"], run["metrics"]
        accs = [f"{m[s]['accuracy']:.4f}" for s in ("train", "val", "test")] if m else ["diverged"] * 3
        if m and m["test"]["accuracy"] == best:
            accs[2] = f"[bold green]{accs[2]} ★[/]"
        table.add_row(
            _t(run["run_id"][:12]), f"{c['lam']:g}", f"{c['eta']:g}", str(c["n_batch"]), str(c["n_epochs"]), *accs
        )
    check = result["gradcheck"]
    return [
        table,
        f"gradient check: {gradcheck_verdict_of(check, check['tol'])}",
        *(f"wrote {_t(path)}" for path in result["paths"].values()),
    ]


def cache_table(rows: list[dict]) -> Table:
    table = Table(title="Cached artifacts")
    for column in ("stage", "key", "params", "size", "created"):
        table.add_column(column)
    for row in rows:
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        params = f"run {row['run'][:8]}: {params}" if row.get("run") else params  # made from that run alone
        size = human_size(row["size"]) if row["size"] is not None else "?"
        table.add_row(
            _t(row["stage"]),
            _t(row["key"]),
            _t(params if len(params) < 60 else params[:57] + "…"),
            size,
            _t(row.get("damaged") or row["created"] or ""),
        )
    return table


def plan_summary(plan: dict) -> str:
    n_bytes = sum(stage["bytes"] for stage in plan["stages"].values())
    n_artifacts = sum(stage["artifacts"] for stage in plan["stages"].values())
    links = f" and {len(plan['links'])} link(s) (not their targets)" if plan["links"] else ""
    return f"{n_artifacts} artifact(s), {human_size(n_bytes)}{links}"


def clear_plan_view(plan: dict, cache_dir) -> list:
    """What `cache clear` removes: artifacts and MB per stage, and the links it unlinks."""
    table = Table(title=f"To remove from {_t(cache_dir)}")
    for column, justify in (("stage", "left"), ("artifacts", "right"), ("size", "right")):
        table.add_column(column, justify=justify)
    for name, stage in plan["stages"].items():
        table.add_row(_t(name), str(stage["artifacts"]), human_size(stage["bytes"]))
    return [
        table,
        *(f"the link {_t(path)} (its target is left alone)" for path in plan["links"]),
        f"in all {plan_summary(plan)}",
    ]


def verify_view(rows: list[dict]) -> Table:
    table = Table(title=f"Verified {len(rows)} artifact(s)")
    for column in ("stage", "key", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(_t(row["stage"]), _t(row["key"]), "[green]ok[/]" if row["ok"] else f"[red]{_t(row['reason'])}[/]")
    return table


def status_view(rows: list[dict]) -> Table:
    colours = {
        "cached": "green",
        "missing": "yellow",
        "partial": "cyan",
        "damaged": "red",
        "stale": "magenta",
        "unreadable": "red",
    }
    table = Table(title="Pipeline status")
    for column in ("stage", "key", "state"):
        table.add_column(column)
    for row in rows:
        state = f"[{colours[row['state']]}]{row['state']}[/]" + (f" ({_t(row['reason'])})" if row["reason"] else "")
        table.add_row(_t(row["stage"]), _t(row["key"] or "-"), state)
    return table


# -- sweep -------------------------------------------------------------------------------------


def sweep_view(result: dict) -> list[Any]:
    """The points sorted by validation accuracy (selection), the best with its test accuracy, the heat-map."""
    grid = result["grid"]
    shape = " × ".join(
        str(len(grid[k])) for k in ("lam", "eta", "n_batch", "n_epochs") if len(grid[k]) > 1 or k in ("lam", "eta")
    )
    table = Table(
        title=f"Sweep {_t(result['sweep'])}: {result['n_points']} points ({shape}), "
        "sorted by validation accuracy (cost: final training cost)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
    )
    for column in ("λ", "η", "batch", "epochs", "train acc", "val acc", "cost", "run ID"):
        table.add_column(column, justify="right", no_wrap=True)
    best = (result.get("best") or {}).get("run_id")
    for p in result["points"]:
        if p["diverged_at"] is not None:
            accs = ["[red]diverged[/]", f"[red]at epoch {p['diverged_at']}[/]", "—"]
        else:
            accs = [f"{p['train_acc']:.4f}", f"{p['val_acc']:.4f}", f"{p['train_cost']:.4f}"]
        if p["run_id"] == best:
            accs[1] = f"[bold green]{accs[1]}★[/]"
        run_id = _t(p["run_id"]) if p["status"] == "computed" else f"[dim]{_t(p['run_id'])}[/]"
        table.add_row(f"{p['lam']:g}", f"{p['eta']:g}", str(p["n_batch"]), str(p["n_epochs"]), *accs, run_id)
    out: list[Any] = [table]
    if result.get("best"):
        b = result["best"]
        c = b["config"]
        out.append(
            f"best on validation: λ={c['lam']:g}, η={c['eta']:g}, n_batch={c['n_batch']}, "
            f"epochs={c['n_epochs']}: val acc [bold]{b['val_acc']:.4f}[/], "
            f"test acc [bold]{b['test_acc']:.4f}[/], run ID [bold]{_t(b['run_id'])}[/]"
        )
    else:
        out.append("[red]every point diverged: nothing to select[/]")
    out.append(
        f"trained {len(result['computed'])} of {result['n_points']} points (cached ones dimmed); "
        f"heat-map {_t(result['heatmap'])}"
    )
    return out


# -- runs --------------------------------------------------------------------------------------

_SETTING_HEADERS = {
    "lam": "λ",
    "eta": "η",
    "n_epochs": "epochs",
    "n_batch": "batch",
    "val_size": "val\nsize",
    "decay_every": "decay\nevery",
    "decay_factor": "decay\nfactor",
}
_METRIC_HEADERS = {
    "train_acc": "train\nacc",
    "val_acc": "val\nacc",
    "test_acc": "test\nacc",
    "train_cost": "train\ncost",
    "val_cost": "val\ncost",
    "seconds": "time",
    "created": "created",
}
# Dropped first when the terminal is too narrow, then settings the runs share (--all-params), then
# train_acc, test_acc and stability (a diverged run's accuracy cells still say so), then the differing
# settings from the right; never the run ID or val_acc.
_DROP_FIRST, _DROP_LATER = ("created", "seconds", "train_cost", "val_cost"), ("train_acc", "test_acc", "stability")


def _setting_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _created(text: str | None) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).astimezone().strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return "?"


def _run_cells(row: dict) -> dict[str, str]:
    """The plain text of a row's metric cells; a diverged run says where instead of its accuracies."""

    def number(value: float | None) -> str:
        return "—" if value is None else f"{value:.4f}"

    cells = {name: number(row[name]) for name in ("train_acc", "val_acc", "train_cost", "val_cost")}
    cells["test_acc"] = number(row["test_acc"]) if row["evaluated"] else "—"
    if row["diverged_at"] is not None:
        cells.update(train_acc="diverged", val_acc=f"at epoch {row['diverged_at']}", train_cost="—", val_cost="—")
    cells["seconds"] = _duration(row["seconds"])
    cells["created"] = _created(row["created"])
    return cells


def _widths(columns: list[tuple[str, str, list[str]]]) -> list[int]:
    from rich.cells import cell_len

    return [
        max([cell_len(line) for line in header.split("\n")] + [cell_len(cell) for cell in cells])
        for _, header, cells in columns
    ]


def _table_width(columns: list[tuple[str, str, list[str]]]) -> int:
    """The width of ``_fixed_table`` for these columns: the cells, two spaces between columns."""
    widths = _widths(columns)
    return sum(widths) + 2 * (len(widths) - 1) if widths else 0


def _fixed_table(columns: list[tuple[str, str, list[str]]], rows: list[dict], best: bool, left: set[str]):
    """The runs table as one rich Text: one line per run, cells padded to their column's width.

    Drawn here, not with rich's Table: every cell is one line of known width (the columns were
    chosen to fit), and laying out thousands of rows through Table takes seconds.
    """
    from rich.cells import cell_len
    from rich.text import Text

    widths = _widths(columns)
    depth = max(header.count("\n") + 1 for _, header, _ in columns)
    text = Text(no_wrap=True, overflow="ignore")

    def cell(value: str, width: int, name: str) -> str:
        pad = " " * (width - cell_len(value))
        return value + pad if name in left else pad + value

    for level in range(depth):
        parts = []
        for (name, header, _), width in zip(columns, widths):
            lines = header.split("\n")
            lines = [""] * (depth - len(lines)) + lines  # headers sit on the bottom line
            parts.append(cell(lines[level], width, name))
        text.append("  ".join(parts).rstrip() + "\n", style="bold")
    text.append("─" * (sum(widths) + 2 * (len(widths) - 1)) + "\n", style="dim")
    for i, row in enumerate(rows):
        for j, ((name, _, cells), width) in enumerate(zip(columns, widths)):
            style = None
            if row["diverged_at"] is not None and name in ("train_acc", "val_acc"):
                style = "red"
            elif best and i == 0 and name == "val_acc":
                style = "bold green"
            elif name == "stability" and not row["stable"]:
                style = "bold yellow"
            value = cell(cells[i], width, name)
            text.append(value.rstrip() if j == len(columns) - 1 else value + "  ", style=style)
        text.append("\n")
    text.rstrip()
    return text


def runs_view(result: dict, width: int = 80, all_params: bool = False) -> list[Any]:
    """One row per run: its ID, the settings that differ (all with ``all_params``), the final metrics,
    test accuracy where evaluated, time and creation; columns are dropped, never wrapped, to fit ``width``."""
    rows = result["runs"]
    if not rows:
        where = f" matching {', '.join(result['where'])}" if result["where"] else ""
        return [
            f"no trained runs{_t(where)} in {_t(result['cache_dir'])} "
            f"({result['n_total']} in all; train one with: cifarcli train)"
        ]
    shown = list(result["changed"]) if not all_params else [name for name in result["runs"][0]["settings"]]
    cells = [_run_cells(row) for row in rows]
    columns: list[tuple[str, str, list[str]]] = [("id", "run ID", [row["id"] for row in rows])]
    if any(row["name"] for row in rows):
        columns.append(("name", "name", [_t(row["name"] or "") for row in rows]))
    columns += [
        (name, _SETTING_HEADERS.get(name, name), [_setting_text(row["settings"][name]) for row in rows])
        for name in shown
    ]
    metrics = ["train_acc", "val_acc"] + (["test_acc"] if any(row["evaluated"] for row in rows) else [])
    columns += [(name, _METRIC_HEADERS[name], [c[name] for c in cells]) for name in metrics]
    # "⚠ diverged" alone: the accuracy cells already say at which epoch
    columns.append(("stability", "stability", [row["stability"].split(" at ")[0] for row in rows]))
    columns += [
        (name, _METRIC_HEADERS[name], [c[name] for c in cells])
        for name in ("train_cost", "val_cost", "seconds", "created")
    ]
    dropped: list[str] = []
    shared = [name for name in reversed(shown) if name not in result["changed"]]
    changed = [name for name in reversed(shown) if name in result["changed"]]
    for name in (*_DROP_FIRST, *shared, *_DROP_LATER, *changed):
        if _table_width(columns) <= width:
            break
        if any(column[0] == name for column in columns):
            columns = [column for column in columns if column[0] != name]
            dropped.append(name)
            if name == "train_acc":  # "diverged | at epoch N" lose their first half: say it in one cell
                columns = [
                    (
                        n,
                        h,
                        [
                            f"diverged at epoch {row['diverged_at']}"
                            if n == "val_acc" and row["diverged_at"] is not None
                            else cell
                            for row, cell in zip(rows, cs)
                        ],
                    )
                    for n, h, cs in columns
                ]
    table = _fixed_table(
        columns,
        rows,
        best=result["sort"] == "val_acc" and not result["reverse"],
        left={"id", "name", "stability", "created", *shown},
    )
    order = "reversed " if result["reverse"] else ""
    lines = [
        f"{result['n_runs']} of {result['n_total']} run(s), sorted by {order}{_t(result['sort'])}"
        + (f", where {_t(', '.join(result['where']))}" if result["where"] else "")
    ]
    kept = {column[0] for column in columns}
    same = ", ".join(f"{k}={_setting_text(v)}" for k, v in result["same"].items() if k not in kept)
    if same:
        lines.append(f"same in all: {same}")
    dropped = [name for name in dropped if name not in result["same"]]
    if dropped:
        lines.append(f"hidden to fit {width} columns: {', '.join(dropped)} (wider terminal, --json or --csv)")
    return [table, *(_t(line) for line in _wrap(lines, width))]


def _wrap(lines: list[str], width: int) -> list[str]:
    """Notes below the table, broken at spaces to ``width`` (the console itself never wraps)."""
    import textwrap

    return [part for line in lines for part in textwrap.wrap(line, width, subsequent_indent="  ") or [""]]


def runs_csv(result: dict) -> str:
    """The listing as CSV for spreadsheets: the full run ID, every setting, every metric (empty when missing)."""
    import csv
    import io

    buffer = io.StringIO()
    names = list(result["runs"][0]["settings"]) if result["runs"] else []
    header = [
        "run_id",
        *names,
        "train_acc",
        "val_acc",
        "test_acc",
        "train_cost",
        "val_cost",
        "diverged_at",
        "created",
        "seconds",
    ]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in result["runs"]:
        writer.writerow(
            map(
                _inert,
                [
                    row["run_id"],
                    *(row["settings"][n] for n in names),
                    *("" if row[k] is None else row[k] for k in header[len(names) + 1 :]),
                ],
            )
        )
    return buffer.getvalue()


def _inert(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (``=HYPERLINK(…)`` in a doctored ``created``)
    gets a leading ``'``, as OWASP's CSV-injection rule says; numbers stay numbers."""
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def runs_diff_view(result: dict) -> list[Any]:
    """Two runs side by side: settings (the differing ones marked), then final metrics."""
    a, b = result["a"], result["b"]
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, show_edge=False, pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column(_t(a["id"]), no_wrap=True, justify="right")
    table.add_column(_t(b["id"]), no_wrap=True, justify="right")
    table.add_column("", no_wrap=True)
    table.add_column("B − A", no_wrap=True, justify="right")
    for s in result["settings"]:
        marker = "" if s["same"] else "[yellow]≠[/]"
        cell = (lambda v: _t(_setting_text(v))) if s["same"] else (lambda v: f"[bold yellow]{_t(_setting_text(v))}[/]")
        table.add_row(
            _t(s["name"]) if s["same"] else f"[bold]{_t(s['name'])}[/]", cell(s["a"]), cell(s["b"]), marker, ""
        )
    table.add_section()
    ca, cb = _run_cells(a), _run_cells(b)
    delta = {m["name"]: m["delta"] for m in result["metrics"]}

    def signed(name: str, text: str) -> str:
        return "—" if delta[name] is None else _t(text.format(delta[name]))

    table.add_row("name", _t(a["name"] or "—"), _t(b["name"] or "—"), "", "")
    for name in ("train_acc", "val_acc", "test_acc", "train_cost", "val_cost"):
        table.add_row(_t(name), _t(ca[name]), _t(cb[name]), "", signed(name, "{:+.4f}"))
    table.add_row("stability", _t(a["stability"]), _t(b["stability"]), "", "")
    table.add_row(
        "diverged at", _t(a["diverged_at"] or "—"), _t(b["diverged_at"] or "—"), "", signed("diverged_at", "{:+d}")
    )
    table.add_row("time", _t(ca["seconds"]), _t(cb["seconds"]), "", signed("seconds", "{:+.1f} s"))
    table.add_row("created", _t(ca["created"]), _t(cb["created"]), "", "")
    changed = ", ".join(result["changed"]) or "none"
    return [table, f"settings that differ: {_t(changed)}"]


# -- ensemble ----------------------------------------------------------------------------------


def ensemble_view(result: dict) -> list[Any]:
    """Each member's accuracy, then the majority vote's and the mean's, on validation and test."""
    combined = "scores" if result["combined"] == "scores" else "probabilities"
    table = Table(
        title=f"Ensemble {_t(result['ensemble'])}: {result['n_members']} members, loss {_t(result['loss'])}",
        box=box.SIMPLE_HEAD,
    )
    for column in ("", "val acc", "test acc", "run ID"):
        table.add_column(column, justify="right" if column.endswith("acc") else "left")
    for member in result["members"]:
        table.add_row(_t(member["label"]), f"{member['val']:.4f}", f"{member['test']:.4f}", _t(member["run_id"]))
    best_val = max(result["val"]["vote"], result["val"]["mean"])
    for key, name in (("vote", "majority vote"), ("mean", f"mean of the {combined}")):
        val, test = result["val"][key], result["test"][key]
        mark = " ★" if val == best_val else ""
        table.add_row(f"[bold]{name}[/]", f"[bold]{val:.4f}{mark}[/]", f"[bold]{test:.4f}[/]", "")
    return [
        table,
        f"ties: {_t(result['tie_rule'])} ({result['val']['vote_ties']} tied votes on validation, "
        f"{result['test']['vote_ties']} on test); ★ the better rule on validation"
        + ("  (cached)" if result.get("cached") else ""),
    ]
