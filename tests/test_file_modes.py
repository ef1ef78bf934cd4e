"""Files for the user follow the umask: reports/ (report.md, report.html, figures) and `export`'s file are
0666 less the umask, their folders 0777 less the umask; measured under real umasks in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import pytest

from procs import cli_process

SETTINGS = """\
[defaults]
n_epochs = 2

[gradcheck]
n_samples = 5
n_dims = 20

[[run]]
lam = 0.1
eta = 0.001
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def with_umask(mask: int):
    def set_it():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.umask(mask)

    return set_it


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_reports_figures_and_export_follow_the_umask(tmp_path, tiny_archive, mask):
    (tmp_path / "study.toml").write_text(SETTINGS)
    run = lambda *args: cli_process(tmp_path, *args, preexec_fn=with_umask(mask), timeout=600)  # noqa: E731
    assert run("fetch", "--source", tiny_archive, "--quiet").returncode == 0
    done = run("report", "--config", "study.toml", "--jobs", "1", "--quiet", "--json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["runs"][0]["run_id"]
    file_mode, folder_mode = 0o666 & ~mask, 0o777 & ~mask
    reports = tmp_path / "reports"
    assert len(list((reports / "figures" / run_id).glob("*.png"))) == 5
    files = [p for p in reports.rglob("*") if p.is_file()]  # the report, the run's figures, the comparison's
    assert {"report.md", "report.html", "loss.png"} <= {p.name for p in files}
    assert {str(p): mode(p) for p in files} == {str(p): file_mode for p in files}
    folders = [reports, *(p for p in reports.rglob("*") if p.is_dir())]
    assert reports / "figures" / run_id in folders
    assert {str(p): mode(p) for p in folders} == {str(p): folder_mode for p in folders}

    done = run("export", "--run", run_id, "--json")  # the default name, in the current folder
    assert done.returncode == 0, done.stderr
    exported = tmp_path / f"model-{run_id}.npz"
    assert json.loads(done.stdout)["path"] == exported.name and mode(exported) == file_mode
    done = run("export", "--run", run_id, "--out", "models/new/m.npz")  # folders it makes, too
    assert done.returncode == 0, done.stderr
    assert mode(tmp_path / "models" / "new" / "m.npz") == file_mode
    assert mode(tmp_path / "models") == folder_mode and mode(tmp_path / "models" / "new") == folder_mode

    # A figure deleted and restored from the cache, and a report rewritten, get the same modes.
    (reports / "figures" / run_id / "loss.png").unlink()
    (reports / "report.md").unlink()
    assert run("report", "--config", "study.toml", "--quiet").returncode == 0
    assert mode(reports / "figures" / run_id / "loss.png") == file_mode and mode(reports / "report.md") == file_mode


def test_plots_atomic_write_is_the_one_atomic_write(tmp_path):
    """plots' figure writes go through cache.write_atomic, with the user's mode."""
    from cifarcli import plots

    previous = os.umask(0o027)
    try:
        path = plots.atomic_write_bytes(tmp_path / "deep" / "x.bin", lambda fh: fh.write(b"abc"))
    finally:
        os.umask(previous)
    assert path.read_bytes() == b"abc" and mode(path) == 0o640 and mode(tmp_path / "deep") == 0o750
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["x.bin"]
