"""`cache clear` asks (issue 17): it lists what it removes per stage and asks on a terminal, needs --yes
without one, lists only with --dry-run, keeps the data with --keep-data; `cache ls` shows real sizes and
the run a downstream artifact belongs to.

The prompt is answered through a real pseudo-terminal, as a user at a terminal would.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doctored import artifact_folder, invoke
from procs import checksums


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def expected_plan(cache: Path, skip: tuple = ()) -> dict:
    """stage -> {"artifacts", "bytes"} counted here from the files themselves."""
    plan = {}
    for stage in sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")):
        folders = [f for f in stage.iterdir() if f.is_dir() and not f.name.startswith(".")]
        if stage.name in skip or not folders:
            continue
        plan[stage.name] = {"artifacts": len(folders), "bytes": sum(folder_bytes(f) for f in folders)}
    return plan


@pytest.fixture
def with_download(ws):
    """The reference cache with a kept download (as a fetch from a URL leaves)."""
    downloads = ws / "cache" / "downloads"
    downloads.mkdir(exist_ok=True)
    (downloads / "0123456789ab-cifar-10-binary.tar.gz").write_bytes(b"x" * 5000)
    return ws


def in_pty(args: tuple, cwd: Path, answer: bytes | None) -> tuple[int, str]:
    """Run cifarcli with a terminal as stdin, stdout and stderr; answer its question; (exit code, screen)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "dumb"}
    env.pop("CIFARCLI_CACHE_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "cifarcli", *args],
        cwd=cwd,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    screen, deadline, answered = b"", time.monotonic() + 120, answer is None
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no output for too long: {screen!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            screen += chunk
            if not answered and b"Remove them?" in screen:
                os.write(master, answer)
                answered = True
        return process.wait(timeout=60), screen.decode(errors="replace")
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("answer", [b"n\r", b"y\r"])
def test_on_a_terminal_clear_lists_each_stage_and_asks(with_download, answer):
    cache = with_download / "cache"
    plan = expected_plan(cache)
    before = checksums(cache)
    code, screen = in_pty(("cache", "clear"), with_download, answer)
    assert code == 0, screen
    assert "Traceback" not in screen
    for stage, counts in plan.items():
        [line] = [
            line for line in screen.splitlines() if f" {stage} " in line and "│" in line or line.split()[:1] == [stage]
        ]
        assert str(counts["artifacts"]) in line.split(), line
    assert "downloads" in screen
    if answer.startswith(b"n"):
        assert "nothing removed" in screen
        assert checksums(cache) == before
        assert (cache / "downloads").is_dir()
    else:
        assert f"removed {sum(c['artifacts'] for c in plan.values())} artifact(s)" in screen
        assert checksums(cache) == {}
        assert not (cache / "downloads").exists()


def test_without_a_terminal_clear_needs_yes_and_removes_nothing(with_download):
    cache = with_download / "cache"
    before = checksums(cache)
    result = invoke("cache", "clear")
    assert result.exit_code == 2
    assert "--yes" in result.stderr and "Traceback" not in result.stderr
    assert checksums(cache) == before and (cache / "downloads").is_dir()


def test_dry_run_lists_counts_and_bytes_per_stage_and_removes_nothing(with_download):
    cache = with_download / "cache"
    before = checksums(cache)
    result = invoke("cache", "clear", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["stages"] == {**expected_plan(cache), "downloads": {"artifacts": 0, "bytes": 5000}}
    assert checksums(cache) == before
    table = invoke("cache", "clear", "--dry-run")
    assert table.exit_code == 0 and "MB" in table.stdout and "train" in table.stdout


def test_keep_data_keeps_the_dataset_and_its_download(with_download):
    cache = with_download / "cache"
    datasets = {k: v for k, v in checksums(cache).items() if k.startswith("dataset/")}
    plan = json.loads(invoke("cache", "clear", "--keep-data", "--dry-run", "--json").stdout)
    assert plan["stages"] == expected_plan(cache, skip=("dataset",))
    result = invoke("cache", "clear", "--keep-data", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert checksums(cache) == datasets and datasets
    assert (cache / "downloads" / "0123456789ab-cifar-10-binary.tar.gz").stat().st_size == 5000


def test_cache_ls_shows_real_sizes_and_the_run_of_downstream_rows(ws, reference):
    cache = ws / "cache"
    rows = json.loads(invoke("cache", "ls", "--json").stdout)["artifacts"]
    run_params = json.loads((cache / "train" / reference["run_id"] / "meta.json").read_text())["params"]
    for stage in ("evaluate", "plot"):
        folder = artifact_folder(cache, stage, reference["run_id"])
        [row] = [r for r in rows if r["key"] == folder.name]
        assert row["size"] == folder_bytes(folder) > 0
        assert row["run"] == reference["run_id"] and row["params"] == run_params
    assert all(row["size"] == folder_bytes(Path(row["path"])) for row in rows)
    table = invoke("cache", "ls").stdout
    evaluated = artifact_folder(cache, "evaluate", reference["run_id"]).name
    evaluate_line = next(line for line in table.splitlines() if " evaluate " in line and evaluated[:12] in line)
    assert "0.0 MB" not in evaluate_line and "kB" in evaluate_line
    assert f"run {reference['run_id'][:8]}" in evaluate_line
