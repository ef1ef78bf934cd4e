"""Failures of the output channel, with real processes and real file descriptors.

stdout full (/dev/full), closed (``>&-``), a pipe whose reader is gone (EPIPE,
``cifarcli cache ls | head``) and an ASCII-only encoding: never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from procs import cli_process, env_for


@pytest.fixture(scope="module")
def listed(tmp_path_factory, tiny_archive) -> Path:
    """A folder whose cache holds a dataset and a run, so `cache ls` has a table with λ and η to show."""
    root = tmp_path_factory.mktemp("output")
    for args in (("fetch", "--source", tiny_archive), ("train", "--n-epochs", "1", "--n-batch", "20")):
        done = cli_process(root, *args, "--cache-dir", "cache", "-q")
        assert done.returncode == 0, done.stderr
    return root


def run(cwd: Path, args, stdout, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cifarcli", *args],
        cwd=cwd,
        env=env or env_for(cwd),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )


def one_line(result, *words) -> str:
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_a_full_stdout_is_one_line_and_exit_1(listed, as_json):
    with open("/dev/full", "w") as full:
        result = run(listed, ["cache", "ls", *(["--json"] if as_json else [])], full)
    assert result.returncode == 1
    one_line(result, "cannot write the result to stdout", "No space left on device")


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_a_closed_stdout_is_one_line_and_exit_1(listed, as_json):
    # Close fd 1 in the child itself: `cifarcli cache ls >&-`.
    result = subprocess.run(
        [sys.executable, "-m", "cifarcli", "cache", "ls", *(["--json"] if as_json else [])],
        cwd=listed,
        env=env_for(listed),
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.close(1),
    )
    assert result.returncode == 1
    one_line(result, "stdout is closed")


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_a_broken_pipe_is_silent_with_exit_141(listed, as_json):
    """The reader left before anything was written (`cifarcli cache ls | head -c0`): silence, 128 + SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = run(listed, ["cache", "ls", *(["--json"] if as_json else [])], write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert result.stderr == ""


def test_a_real_pipeline_into_head_is_silent(listed):
    """`cifarcli cache ls | head -c1` in bash: nothing on stderr whether or not the pipe broke."""
    shell = f"{sys.executable} -m cifarcli cache ls | head -c1 >/dev/null; echo ${{PIPESTATUS[0]}} >&2"
    done = subprocess.run(
        ["bash", "-c", shell], cwd=listed, env=env_for(listed), capture_output=True, text=True, timeout=120
    )
    assert done.stderr.strip().splitlines()[-1] in ("0", "141"), done.stderr  # 0 when it all fit in the pipe
    assert done.stderr.strip().splitlines()[:-1] == [], done.stderr


def test_an_ascii_stdout_degrades_and_exits_0(listed):
    env = {**env_for(listed), "PYTHONIOENCODING": "ascii"}
    result = run(listed, ["cache", "ls", "--cache-dir", "cache"], subprocess.PIPE, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "train" in result.stdout and "?" in result.stdout  # λ, η and … shown as '?'
    result = run(listed, ["cache", "ls", "--cache-dir", "cache", "--json"], subprocess.PIPE, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["artifacts"]  # JSON escapes what ASCII cannot show
