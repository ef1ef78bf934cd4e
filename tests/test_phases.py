"""Every phase on screen, and the glitches of issue 20, under a real pseudo-terminal.

A command runs with stderr on the slave side of a pty (``os.openpty``) at a
given width; the test reads what it draws from the master side, as a terminal
would receive it, and may act on it (Ctrl-C once a bar is seen). A wrapped line
is the terminal's doing, so a line longer than the width is a wrap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
from pathlib import Path

import pytest

from procs import COLOURS, SPINNER, Terminal, bar_lines, cli_process, copied_workspace, frames, on_terminal

SETTINGS = (
    "[defaults]\nn_epochs = 60\nn_batch = 5\n[gradcheck]\nn_samples = 5\nn_dims = 20\n"
    "[[run]]\nlam = 0.0\neta = 0.001\n[[run]]\nlam = 0.1\neta = 0.001\n"
)


@pytest.fixture
def work(tmp_path, imported) -> Path:
    return copied_workspace(tmp_path, imported, SETTINGS)


@pytest.fixture(scope="module")
def report_at_80(tmp_path_factory, imported) -> tuple[Path, str, str]:
    """A cold report on 2 processes, stderr on a terminal of 80 columns, stdout a pipe (COLUMNS=80)."""
    work = copied_workspace(tmp_path_factory.mktemp("report80"), imported, SETTINGS)
    code, out, drawn = on_terminal(work, "report", "--config", "s.toml", "--jobs", "2", "--cache-dir", "cache")
    assert code == 0, drawn[-3000:]
    return work, out, drawn


def test_report_shows_every_phase_in_order(report_at_80):
    _, _, drawn = report_at_80
    text = "\n".join(frames(drawn))
    # the gradient check and its verdict, the trainings, their figures, the comparison's, the report files
    order = [
        "checking gradients",
        "gradient check: PASS: max relative error",
        "training 2 settings",
        "evaluating, figures",
        "drawing figures",
        "rendering the report",
        "writing reports/report.md",
    ]
    positions = [text.find(phase) for phase in order]
    assert -1 not in positions and positions == sorted(positions), list(zip(order, positions))


def test_report_lines_fit_80_columns(report_at_80):
    """No line wider than the terminal (it would wrap: a lone ")" on the next line); no label cut by rich."""
    _, _, drawn = report_at_80
    shown = frames(drawn)
    assert all(len(line) <= 80 for line in shown), [line for line in shown if len(line) > 80]
    assert any(re.match(r"\[\d/2\] trained λ=0.1, η=0.001: epoch 60/60, val acc ", line) for line in shown), shown
    rows = [SPINNER.sub("", line) for line in shown if "━" in line]
    assert rows and not any("…" in row for row in rows), rows


def test_every_time_column_counts_up_and_says_so(report_at_80):
    _, _, drawn = report_at_80
    rows = [line for line in frames(drawn) if "━" in line or re.search(r"\d:\d\d:\d\d", line)]
    assert rows and all(re.search(r"elapsed \d:\d\d:\d\d", row) for row in rows), rows


def test_study_table_keeps_run_ids_whole_and_gives_the_verdict(report_at_80):
    work, out, _ = report_at_80
    doc = json.loads(cli_process(work, "report", "--config", "s.toml", "--cache-dir", "cache", "--json").stdout)
    for run_section in doc["runs"]:
        assert re.search(rf"^\s*{run_section['run_id'][:12]}\s", out, re.M), out
    assert "…" not in out
    assert re.search(r"^gradient check: PASS: max relative error \S+ ≤ 1e-06$", out, re.M), out


def test_report_on_one_process_at_a_terminal_shows_evaluations_inside_the_figures_bar(work):
    """--jobs 1: every run evaluated and drawn here, one live display at a time (rich allows no second)."""
    code, out, drawn = on_terminal(work, "report", "--config", "s.toml", "--jobs", "1", "--cache-dir", "cache")
    assert code == 0, drawn[-3000:]
    rows = [SPINNER.sub("", line) for line in frames(drawn)]
    # (an evaluation, a phase of its own, shows on the figures' row: too quick here to be sure of a frame)
    assert any(re.match(r"drawing figures .*12/12", row) for row in rows), rows
    assert all(len(row) <= 80 for row in rows), [row for row in rows if len(row) > 80]


INTERRUPT_TRIES = 4  # a Ctrl-C that came after the run had finished is retried in a fresh copy, this many times in all


def interrupted(tmp_path: Path, imported: Path, args: tuple, until) -> Path:
    """A workspace in which ``cifarcli ARGS`` was stopped by Ctrl-C (exit 130) once ``until(text drawn)`` held.

    The signal follows a moment the command reveals; when the run still finished first (exit 0),
    the try is repeated in a fresh copy, so the test never depends on how fast this machine is.
    """
    for attempt in range(INTERRUPT_TRIES):
        work = copied_workspace(tmp_path / f"try-{attempt}", imported, SETTINGS)
        terminal = Terminal(work, *args)
        assert terminal.read(until), terminal.text()[-3000:]
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
            os.killpg(terminal.proc.pid, signal.SIGINT)
        code, _ = terminal.finish()
        if code == 130:
            return work
        assert code == 0, terminal.text()[-3000:]
    pytest.fail(f"the run finished before its Ctrl-C in all {INTERRUPT_TRIES} tries")


def test_train_bar_fits_80_columns_says_elapsed_and_a_resumed_run_says_where(tmp_path, imported):
    args = ("train", "--n-epochs", "400", "--n-batch", "1", "--cache-dir", "cache")
    # stopped once its bar says epoch 3 or more: its checkpoint holds at least that
    work = interrupted(
        tmp_path, imported, args, lambda text: re.search(r"epoch ([3-9]|\d\d+)/400", COLOURS.sub("", text)) is not None
    )
    code, out, drawn = on_terminal(work, *args)
    assert code == 0, drawn[-3000:]
    shown = frames(drawn)
    [notice] = [line for line in shown if line.startswith("resuming")]
    assert re.fullmatch(r"resuming λ=0, η=0.001 at epoch \d+ of 400 \(run [0-9a-f]{12}\)", notice), notice
    start = int(re.search(r"at epoch (\d+)", notice).group(1))
    assert start >= 3
    bars = bar_lines(shown, "train λ=0, η=0.001")
    assert bars and all(len(bar) <= 78 and "…" not in bar and "elapsed" in bar for bar in bars), bars
    epochs = [int(m.group(1)) for bar in bars for m in [re.search(r"epoch (\d+)/400\b", bar)] if m]
    assert epochs and min(epochs) >= start and max(epochs) > start, epochs


def test_after_ctrl_c_nothing_is_drawn_below_the_error_line(work):
    # 100,000 epochs: the run cannot end before its Ctrl-C, however fast the machine
    terminal = Terminal(work, "train", "--n-epochs", "100000", "--n-batch", "5", "--cache-dir", "cache")
    assert terminal.read(lambda text: re.search(r"epoch [1-9]\d*/100000", COLOURS.sub("", text)) is not None)
    os.killpg(terminal.proc.pid, signal.SIGINT)
    code, _ = terminal.finish()
    assert code == 130, terminal.text()[-3000:]
    text = COLOURS.sub("", terminal.text())
    after = text[text.index("error: interrupted") :]
    assert "━" not in after and "epoch" not in after, repr(after)
    assert "━" in text[: text.index("error: interrupted")]  # the bar was there before


def test_ensemble_seeds_name_each_seed(work):
    code, out, drawn = on_terminal(
        work, "ensemble", "--n-epochs", "20", "--n-batch", "5", "--seeds", "1,2", "--jobs", "2", "--cache-dir", "cache"
    )
    assert code == 0, drawn[-3000:]
    finished = {line for line in frames(drawn) if re.match(r"\[\d/2\] trained", line)}
    assert sorted(line[6:].split(":")[0] for line in finished) == [
        "trained λ=0, η=0.001, seed 1",
        "trained λ=0, η=0.001, seed 2",
    ], finished


def test_figures_drawn_by_the_workers_are_the_bytes_the_parent_draws(tmp_path, imported):
    """--jobs 2: each run's evaluation and figures come from the worker that trained it; --jobs 1: all
    from the parent, one after another. Same artifacts, same keys, same bytes."""
    made = {}
    for jobs in ("1", "2"):
        work = copied_workspace(tmp_path / jobs, imported, SETTINGS)
        done = cli_process(work, "report", "--config", "s.toml", "--jobs", jobs, "--cache-dir", "cache")
        assert done.returncode == 0, done.stderr
        # the parent drew the comparison alone with --jobs 2, everything with --jobs 1
        assert f"drawing figures: {2 if jobs == '2' else 12}" in done.stderr.splitlines(), done.stderr
        metas = {
            path.parent.name: json.loads(path.read_text())
            for stage in ("evaluate", "plot")
            for path in (work / "cache" / stage).glob("*/meta.json")
        }
        pngs = {
            path.relative_to(work / "reports").as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in (work / "reports" / "figures").rglob("*.png")
        }
        made[jobs] = ({key: meta["payload_sha256"] for key, meta in metas.items()}, pngs)
    assert len(made["1"][0]) == 4 and len(made["1"][1]) == 12
    assert made["1"] == made["2"]


def test_without_a_terminal_sweep_ensemble_and_train_say_each_phase_in_a_plain_line(work):
    sweep = cli_process(
        work,
        "sweep",
        "--lam",
        "0,0.1",
        "--eta",
        "0.001",
        "--n-epochs",
        "5",
        "--n-batch",
        "5",
        "--jobs",
        "2",
        "--cache-dir",
        "cache",
    )
    assert sweep.returncode == 0, sweep.stderr
    lines = sweep.stderr.splitlines()
    assert "\x1b" not in sweep.stderr and "━" not in sweep.stderr and "\r" not in sweep.stderr
    trained = [line for line in lines if re.match(r"\[\d/2\] trained λ=0(\.1)?, η=0.001: epoch 5/5, val acc ", line)]
    assert len(trained) == 2, lines
    rest = [line for line in lines if line not in trained]
    assert rest[0] == "training 2 settings on 2 processes" and rest[2:] == ["drawing the heat-map"], lines
    assert re.fullmatch(r"evaluating λ=0(\.1)?, η=0.001", rest[1]), lines
    ensemble = cli_process(
        work, "ensemble", "--n-epochs", "5", "--n-batch", "5", "--seeds", "3,4", "--jobs", "2", "--cache-dir", "cache"
    )
    assert ensemble.returncode == 0, ensemble.stderr
    lines = ensemble.stderr.splitlines()
    assert (
        lines[0] == "training 2 settings on 2 processes"
        and lines[-1] == "combining 2 runs (majority vote, mean output)"
    ), lines
    assert sorted(line.split(":")[0][6:] for line in lines[1:-1]) == [
        "trained λ=0, η=0.001, seed 3",
        "trained λ=0, η=0.001, seed 4",
    ], lines
    train = cli_process(work, "train", "--n-epochs", "7", "--n-batch", "5", "--cache-dir", "cache")
    assert train.returncode == 0 and train.stderr.splitlines() == ["training λ=0, η=0.001: 7 epochs"], train.stderr
    quiet = cli_process(work, "train", "--n-epochs", "8", "--n-batch", "5", "--cache-dir", "cache", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
