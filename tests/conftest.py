"""Shared fixtures: tiny generated CIFAR-10 archives, a workspace with one imported, the CLI, and a
reference cache holding every stage (to doctor a copy of it)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tinycifar
from doctored import RUN, SETTINGS, STAGES, invoke, stage_command
from procs import imported_cache

REAL_ARCHIVE = os.environ.get("CIFARCLI_TEST_ARCHIVE")


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory) -> Path:
    """A binary-layout archive: 5 batches of 200 learnable images, 200 test images."""
    return tinycifar.binary_archive(tmp_path_factory.mktemp("tiny") / "cifar-10-binary.tar.gz")


@pytest.fixture(scope="session")
def real_archive() -> Path:
    """The CIFAR-10 stand-in named by CIFARCLI_TEST_ARCHIVE; the test is skipped without it."""
    if not REAL_ARCHIVE or not Path(REAL_ARCHIVE).is_file():
        pytest.skip("set CIFARCLI_TEST_ARCHIVE to the CIFAR-10 stand-in to run real-data tests")
    return Path(REAL_ARCHIVE)


@pytest.fixture(scope="module")
def data32():
    """The tiny arrays prepared for training in float32 (``tinycifar.prepared``)."""
    return tinycifar.prepared("float32")


@pytest.fixture(scope="module")
def data64():
    """The tiny arrays prepared for training in float64."""
    return tinycifar.prepared("float64")


@pytest.fixture
def offline(monkeypatch, tmp_path) -> int:
    """No default download can leave the machine (the official URLs point at a closed loopback
    port, returned), and no copy in the real home folder is found."""
    from cifarcli import source_files

    with socket.socket() as sock:  # bound, then released: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for fmt, official in list(source_files.OFFICIAL.items()):
        monkeypatch.setitem(
            source_files.OFFICIAL,
            fmt,
            source_files.OfficialArchive(
                fmt, f"http://127.0.0.1:{port}/{official.url.rsplit('/', 1)[1]}", official.md5, official.size
            ),
        )
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    return port


@pytest.fixture
def workspace(tmp_path, tiny_archive):
    """A fresh workspace in tmp_path with the tiny archive imported."""
    from cifarcli import stages

    ws = stages.Workspace(tmp_path / "cache", tmp_path / "reports")
    stages.fetch(ws, str(tiny_archive))
    ws.events.clear()
    return ws


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run cifarcli in tmp_path (so ./cache and ./reports land there); returns the click Result."""
    from cifarcli.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIFARCLI_CACHE_DIR", raising=False)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def fetched(cli, tiny_archive) -> dict:
    """The tiny archive imported into ./cache by `cifarcli fetch`; returns fetch's JSON document."""
    result = cli("fetch", "--source", tiny_archive, "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def imported(tmp_path_factory, tiny_archive) -> Path:
    """A cache with the tiny archive imported, built once; tests copy it (``procs.copied_workspace``)."""
    return imported_cache(tmp_path_factory.mktemp("imported"), tiny_archive)


@pytest.fixture(scope="session")
def reference(tmp_path_factory, tiny_archive):
    """A cache holding every stage, and each stage command's JSON result on it (all cache hits)."""
    root = tmp_path_factory.mktemp("reference")
    (root / "s.toml").write_text(SETTINGS)
    with contextlib.chdir(root):
        assert invoke("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
        run_id = json.loads(invoke("train", *RUN, "--json").stdout)["run_id"]
        for stage in STAGES:
            assert invoke(*stage_command(stage, run_id)).exit_code == 0
        results = {stage: json.loads(invoke(*stage_command(stage, run_id)).stdout) for stage in STAGES}
    return {"root": root, "run_id": run_id, "results": results}


@pytest.fixture
def ws(reference, tmp_path, monkeypatch, offline):
    """tmp_path holding a copy of the reference cache and settings, as the working folder; no network."""
    shutil.copytree(reference["root"] / "cache", tmp_path / "cache")
    shutil.copy(reference["root"] / "s.toml", tmp_path / "s.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIFARCLI_CACHE_DIR", raising=False)
    return tmp_path
