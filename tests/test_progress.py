"""The progress display under a real pseudo-terminal, and its absence without one.

Each case runs ``python -m cifarcli ...`` with stderr on the slave side of a
pty (COLUMNS, LINES and TERM set as a terminal would), reads everything the
command draws from the master side, and looks at the frames with the escape
sequences taken out. Without a tty (plain pipes) stderr holds plain lines only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from procs import bar_lines, cli_process, copied_workspace, frames, on_terminal

N_EPOCHS = 200
SETTINGS = (
    f"[defaults]\nn_epochs = {N_EPOCHS}\nn_batch = 5\n[gradcheck]\nn_samples = 5\nn_dims = 20\n"
    "[[run]]\nlam = 0.0\neta = 0.001\n[[run]]\nlam = 0.1\neta = 0.001\n"
)
LABELS = ("λ=0, η=0.001", "λ=0.1, η=0.001")


@pytest.fixture
def work(tmp_path, imported) -> Path:
    return copied_workspace(tmp_path, imported, SETTINGS)


def test_report_on_two_processes_shows_a_bar_per_setting_that_finishes(work):
    code, out, drawn = on_terminal(
        work, "report", "--config", "s.toml", "--jobs", "2", "--cache-dir", "cache", columns=100
    )
    assert code == 0, drawn[-3000:]
    assert "\x1b[" in drawn  # drawn as a terminal is: a live display
    lines = frames(drawn)
    for label in LABELS:
        bars = bar_lines(lines, label)
        assert bars, (label, lines[-40:])
        epochs = [int(m.group(1)) for bar in bars for m in [re.search(rf"epoch (\d+)/{N_EPOCHS}\b", bar)] if m]
        assert N_EPOCHS in epochs, bars  # the bar finishes...
        assert any(0 < e < N_EPOCHS for e in epochs), bars  # ... after being seen mid-training
        assert any("val acc" in bar and "train acc" in bar for bar in bars), bars
        # and a plain line stays once the bars are gone
        assert any(
            re.match(rf"\[\d/2\] trained {re.escape(label)}: epoch {N_EPOCHS}/{N_EPOCHS}", line) for line in lines
        ), lines[-20:]


def test_train_bar_says_epoch_and_labelled_metrics(work):
    code, out, drawn = on_terminal(
        work, "train", "--n-epochs", "150", "--n-batch", "5", "--cache-dir", "cache", columns=100
    )
    assert code == 0, drawn[-3000:]
    bars = bar_lines(frames(drawn), "train λ=0, η=0.001")
    assert bars, frames(drawn)[-20:]
    assert any(re.search(r"epoch \d+/150 ", bar) and "train acc" in bar and "val acc" in bar for bar in bars), bars
    assert not any("batches" in line for line in frames(drawn))  # the one bar, no second one at 0 %
    assert "run ID" in out


def test_fetch_of_a_local_archive_shows_a_spinner(tmp_path, tiny_archive):
    code, out, drawn = on_terminal(tmp_path, "fetch", "--source", tiny_archive, "--cache-dir", "cache", columns=100)
    assert code == 0, drawn[-3000:]
    shown = "\n".join(frames(drawn))
    assert f"checking {tiny_archive.name}" in shown or f"reading {tiny_archive.name}" in shown, shown
    assert f"reading {tiny_archive.name}" in shown, shown


def test_without_a_terminal_stderr_is_plain_lines(work, tiny_archive):
    done = cli_process(work, "report", "--config", "s.toml", "--jobs", "2", "--cache-dir", "cache")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr and "━" not in done.stderr and "\r" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    # One line per phase, in the order they run: nothing long happens without its line.
    finished = [line for line in lines if re.match(r"\[\d/2\] trained λ=", line)]
    assert len(finished) == 2, lines
    assert [line for line in lines if line not in finished] == [
        "checking gradients (2 λ values, 5 images)",
        "gradient check: PASS: max relative error " + lines[1].split("error ")[1],
        "training 2 settings on 2 processes",
        "drawing figures: 2",
        "rendering the report (Markdown, HTML)",
        "writing reports/report.md, reports/report.html",
    ], lines
    assert lines[1].startswith("gradient check: PASS: max relative error ") and lines[1].endswith(" ≤ 1e-06")
    assert all(f"epoch {N_EPOCHS}/{N_EPOCHS}, val acc " in line for line in finished), finished
    for label in LABELS:
        assert any(f"trained {label}:" in line for line in finished), finished
    train = cli_process(work, "train", "--n-epochs", "5", "--lam", "0.5", "--cache-dir", "cache")
    assert train.returncode == 0 and "\x1b" not in train.stderr and "━" not in train.stderr, train.stderr
    fetch = cli_process(work, "fetch", "--source", tiny_archive, "--cache-dir", "other")
    # A new workspace says where it is made (one line); nothing else is drawn without a terminal.
    assert fetch.returncode == 0 and fetch.stderr.startswith("new workspace: "), fetch.stderr
    assert len(fetch.stderr.splitlines()) == 1, fetch.stderr
