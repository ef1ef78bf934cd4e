"""Progress on screen while a command works: live rich bars on a terminal, one plain line per phase in a log.

``progress_for`` picks the display for a console. ``RichProgress`` draws a download, one training run,
a spinner for a slow phase, a bar over things made one after another, or one bar per setting trained
elsewhere; ``PlainProgress`` writes one line as each phase starts, nothing that redraws.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from cifarcli.markup import literal
from cifarcli.stages import Progress


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
            literal(self._run_label),
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
            self._steps_bars.update(self._steps, status=literal(what) if len(what) <= room else "")
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
            self._spinner = self._spinner_bars.add_task(literal(what))
        self._spinner_bars.update(self._spinner, description=literal(what))

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
        self._steps = self._steps_bars.add_task(literal(what), total=total, count=f"0/{total}", status="")

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
            "trained", total=n_settings, count=f"0/{n_settings}", status=literal(f"settings on {where}")
        )

    def setting(self, run_id: str, label: str, epoch: int, n_epochs: int, latest: dict) -> None:
        if self._settings is None:
            return
        count = f"epoch {epoch}/{n_epochs}"
        self._widest = max(self._widest, len(label))
        room = self._room(" " * self._widest, f"epoch {n_epochs}/{n_epochs}")
        status = _metrics(latest, room) if latest else "[dim]started[/]"
        if run_id not in self._tasks:
            self._tasks[run_id] = self._settings.add_task(literal(label), total=n_epochs, count=count, status=status)
        self._settings.update(self._tasks[run_id], completed=epoch, count=count, status=status)

    def setting_busy(self, run_id: str, label: str, n_epochs: int, what: str) -> None:
        if self._settings is None:
            return
        self.setting(run_id, label, n_epochs, n_epochs, {})
        fits = len(what) <= self._room(" " * self._widest, f"epoch {n_epochs}/{n_epochs}")
        self._settings.update(self._tasks[run_id], status=f"[dim]{literal(what)}[/]" if fits else "")

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
