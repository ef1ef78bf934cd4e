"""Bad input, through the real CLI: refused with one line, nothing lost, nothing written outside the cache.

Each case starts from a copy of a workspace that already holds a dataset, a
trained run and its evaluation, runs one bad command, and checks:

* the exit code and the words of the one ``error:`` line (no traceback),
* nothing changed outside the cache folder (every file and folder compared),
* every artifact made before is still there with the same checksum, and
  ``cache verify`` passes.

docs/reliability.md lists these cases with the tests that already covered
others; ``test_every_test_linked_from_the_table_exists`` keeps its links true.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tinycifar
from httpserver import http_server  # noqa: F401  (pytest fixture)
from procs import checksums, tree

ROOT = Path(__file__).resolve().parents[1]
BIN, PY = "cifar-10-batches-bin", "cifar-10-batches-py"
TRAINED = ("--n-epochs", "2", "--n-batch", "20")


# --------------------------------------------------------------------------- the workspace


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_archive) -> Path:
    """A folder with ./cache holding a dataset, a run and its evaluation (made once, copied per test)."""
    from cifarcli.cli import app

    root = tmp_path_factory.mktemp("reliability-base")
    runner = CliRunner()
    for args in (("fetch", "--source", tiny_archive), ("evaluate", *TRAINED)):
        done = runner.invoke(app, [*map(str, args), "--cache-dir", str(root / "cache"), "-q"])
        assert done.exit_code == 0, done.stderr
    return root


@pytest.fixture
def ws(tmp_path, base, monkeypatch, offline):
    """A copy of ``base`` as the working folder, offline (conftest.offline)."""
    work = tmp_path / "w"
    shutil.copytree(base, work)
    monkeypatch.chdir(work)
    monkeypatch.delenv("CIFARCLI_CACHE_DIR", raising=False)
    return work


def invoke(*args):
    from cifarcli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def refused(work: Path, args, code: int, *words: str) -> str:
    """Run ``args``: one error line with ``words``, exit ``code``; nothing outside ./cache changed, nothing lost."""
    outside = tree(work, skip=("cache",))
    before = checksums(work / "cache")
    result = invoke(*args, *(() if args[0] in ("status", "cache") else ("--quiet",)))
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert tree(work, skip=("cache",)) == outside
    assert checksums(work / "cache").items() >= before.items()
    assert invoke("cache", "verify").exit_code == 0
    return lines[0]


# --------------------------------------------------------------------------- archives


def tiny(fmt: str) -> dict[str, bytes]:
    return (tinycifar.binary_members if fmt == "binary" else tinycifar.python_members)(n_per_batch=20, n_test=20)


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, raw in members:
            tar.addfile(info, io.BytesIO(raw) if raw is not None else None)
    return buffer.getvalue()


def regular(name: str, raw: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    return info, raw


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


def good_members(fmt: str = "binary") -> list:
    folder = BIN if fmt == "binary" else PY
    return [regular(f"{folder}/{name}", raw) for name, raw in tiny(fmt).items()]


class _Calls:
    def __reduce__(self):
        return (print, ("unpickling ran code",))


def _archive_with(fmt: str, name: str, raw: bytes) -> bytes:
    folder = BIN if fmt == "binary" else PY
    return tar_gz([regular(f"{folder}/{n}", raw if n == name else r) for n, r in tiny(fmt).items()])


def _without(name: str) -> bytes:
    return tar_gz([m for m in good_members() if not m[0].name.endswith("/" + name)])


ARCHIVES = {
    # id: (file bytes, words of the error line)
    "html-page": (b"<!DOCTYPE html><html><body>Please log in</body></html>\n" * 20, ("neither gzip nor tar",)),
    "gzip-of-garbage": (gzip.compress(bytes(range(256)) * 400), ("damaged or truncated archive",)),
    "absolute-path": (
        tar_gz([*good_members(), regular("/tmp/cifarcli-evil", b"evil")]),
        ("'/tmp/cifarcli-evil'", "outside the archive folder"),
    ),
    "hard-link": (
        tar_gz([*good_members(), special(f"{BIN}/evil", tarfile.LNKTYPE, "/etc/passwd")]),
        (f"'{BIN}/evil'", "is a hard link"),
    ),
    "device-member": (
        tar_gz([special(f"{BIN}/data_batch_1.bin", tarfile.CHRTYPE), *good_members()[1:]]),
        ("is a device or fifo",),
    ),
    "fifo-member": (tar_gz([*good_members(), special(f"{BIN}/pipe", tarfile.FIFOTYPE)]), ("is a device or fifo",)),
    "extra-member": (
        tar_gz([*good_members(), regular(f"{BIN}/install.sh", b"#!/bin/sh\nrm -rf ~\n")]),
        (f"'{BIN}/install.sh'", "not a CIFAR-10 file"),
    ),
    "member-outside-the-folder": (
        tar_gz([*good_members(), regular("notes.txt", b"hi")]),
        ("'notes.txt'", "not part of one CIFAR-10 folder"),
    ),
    "pickle-calls-a-function": (
        _archive_with("python", "data_batch_1", pickle.dumps(_Calls(), protocol=2)),
        ("data_batch_1", "refusing to unpickle", "print"),
    ),
    "pickle-of-another-object": (
        _archive_with("python", "data_batch_2", pickle.dumps([1, 2, 3], protocol=2)),
        ("data_batch_2", "expected a dict, the pickle holds a list"),
    ),
    "binary-size-not-3073-multiple": (
        _archive_with("binary", "data_batch_5.bin", b"\0" * (3073 * 20 - 1)),
        ("data_batch_5.bin", "not a whole number of 3073-byte records"),
    ),
    "label-10": (
        _archive_with("binary", "test_batch.bin", b"\x0a" + b"\0" * 3072 * 1 + b"\0" * 3073 * 19),
        ("test_batch.bin", "label 10 is outside 0-9"),
    ),
    "missing-batch": (_without("data_batch_3.bin"), ("missing", "data_batch_3.bin")),
    "truncated-gzip": (tar_gz(good_members())[:-5000], ("damaged or truncated archive",)),
}


@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_bad_archive(ws, case):
    raw, words = ARCHIVES[case]
    source = ws / "inputs" / "suspicious.tar.gz"
    source.parent.mkdir()
    source.write_bytes(raw)
    refused(ws, ("fetch", "--source", source), 2, *words)
    assert not Path("/tmp/cifarcli-evil").exists()
    # The dataset imported before is still the current one: later stages still find it.
    assert json.loads(invoke("status", *TRAINED, "--json").stdout)["stages"][2]["state"] == "cached"


def test_wrong_checksum_pin_of_a_local_archive(ws, tiny_archive):
    refused(ws, ("fetch", "--source", tiny_archive, "--md5", "0" * 32), 2, "md5 is", "expected " + "0" * 32)


# --------------------------------------------------------------------------- network


def test_500_then_success_downloads_once_and_whole(ws, http_server, tiny_archive, monkeypatch):
    from cifarcli import data

    monkeypatch.setattr(data, "download", partial(data.download, backoff=0.01))
    route = http_server.route("/c.tar.gz", body=tiny_archive.read_bytes(), fail_times=2)
    outside = tree(ws, skip=("cache",))
    result = invoke("fetch", "--source", http_server.url("/c.tar.gz"), "--json")
    assert result.exit_code == 0, result.stderr
    assert route.hits == 3  # two 500s, then the whole file
    [archive] = (ws / "cache" / "downloads").glob("*c.tar.gz")
    assert archive.read_bytes() == tiny_archive.read_bytes()
    assert tree(ws, skip=("cache",)) == outside


def test_a_server_that_stalls_until_the_read_timeout_is_retried_then_given_up(
    ws, http_server, tiny_archive, monkeypatch
):
    from cifarcli import data

    monkeypatch.setattr(data, "download", partial(data.download, read_timeout=0.3, backoff=0.01, retries=2))
    http_server.route("/slow.tar.gz", body=tiny_archive.read_bytes(), stall=2, stall_times=10)
    refused(
        ws,
        ("fetch", "--source", http_server.url("/slow.tar.gz")),
        1,
        "cannot download",
        "timed out",
        "gave up after 2 retries",
    )
    assert not [p for p in (ws / "cache" / "downloads").glob("*") if not p.name.endswith(".part")]


def test_a_redirect_loop_is_refused(ws, http_server):
    http_server.route("/loop", location="/loop")
    refused(ws, ("fetch", "--source", http_server.url("/loop")), 1, "cannot download", "too many redirects")


def test_a_connection_cut_mid_body_every_time_gives_up_keeping_the_part(ws, http_server, tiny_archive, monkeypatch):
    from cifarcli import data

    monkeypatch.setattr(data, "download", partial(data.download, backoff=0.01, retries=2))
    http_server.route("/cut.tar.gz", body=tiny_archive.read_bytes(), cut_after=0, cut_times=100)
    refused(ws, ("fetch", "--source", http_server.url("/cut.tar.gz")), 1, "cannot download", "gave up")


# --------------------------------------------------------------------------- options


BAD_OPTIONS = {
    "gradcheck-h-nan": (("gradcheck", "--h", "nan"), 2, ("--h:", "(0, 1]")),
    "gradcheck-h-zero": (("gradcheck", "--h", "0"), 2, ("--h:", "(0, 1]")),
    "gradcheck-h-huge": (("gradcheck", "--h", "1e300"), 2, ("--h:", "(0, 1]")),
    "gradcheck-lam-inf": (("gradcheck", "--lam", "inf"), 2, ("--lam:", "finite number >= 0")),
    "gradcheck-n-dims-0": (("gradcheck", "--n-dims", "0"), 2, ("--n-dims",)),
    "gradcheck-n-samples-too-many": (
        ("gradcheck", "--n-samples", "100000", "--n-dims", "5"),
        2,
        ("--n-samples: 100000 is more than",),
    ),
    "gradcheck-tol-nan": (("gradcheck", "--tol", "nan"), 2, ("--tol", "finite number >= 0")),
    "gradcheck-tol-negative": (("gradcheck", "--tol", "-1"), 2, ("--tol",)),
    "evaluate-min-accuracy-inf": (("evaluate", *TRAINED, "--min-accuracy", "inf"), 2, ("--min-accuracy", "finite")),
    "evaluate-min-accuracy-nan": (("evaluate", *TRAINED, "--min-accuracy", "nan"), 2, ("--min-accuracy", "finite")),
    "train-eta-inf": (("train", "--eta", "inf"), 2, ("--eta",)),
    "train-lam-nan": (("train", "--lam", "nan"), 2, ("--lam",)),
    "train-unknown-loss": (("train", "--loss", "hinge"), 2, ("--loss", "'hinge'")),
    "train-n-batch-negative": (("train", "--n-batch", "-5"), 2, ("--n-batch",)),
    "report-jobs-0": (("report", "--jobs", "0"), 2, ("--jobs",)),
    "sweep-empty-grid": (("sweep", "--lam", "", "--eta", "0.1"), 2, ("--lam", "empty grid")),
    "sweep-not-a-number": (("sweep", "--lam", "0,x", "--eta", "0.1"), 2, ("--lam", "'x' is not a number")),
    "plot-unknown-run": (("plot", "--run", "ffff0000"), 2, ("no training run 'ffff0000'",)),
    "status-bad-eta": (("status", "--eta", "0"), 2, ("--eta",)),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_option(ws, case):
    args, code, words = BAD_OPTIONS[case]
    refused(ws, args, code, *words)


def test_eta_that_overflows_float32_is_one_line(ws):
    """--eta 1e300 becomes inf in float32: the run diverges, and stderr holds only the error line."""
    from procs import cli_process

    before = checksums(ws / "cache")
    done = cli_process(ws, "train", "--eta", "1e300", "--n-epochs", "2", "--cache-dir", "cache", "--quiet")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line: no RuntimeWarning
    assert done.stderr.startswith("error:") and "diverged at epoch 1" in done.stderr
    assert checksums(ws / "cache").items() >= before.items()


def test_report_toml_of_the_wrong_type(ws):
    Path("inputs").mkdir()
    Path("inputs/s.toml").write_text('[[run]]\nlam = 0.1\neta = 0.001\nn_batch = "ten"\n')
    refused(ws, ("report", "--config", "inputs/s.toml"), 2, "s.toml", "n_batch")


# --------------------------------------------------------------------------- the store


def test_workspace_file_not_json_loses_nothing(ws, tiny_archive):
    before = checksums(ws / "cache")
    (ws / "cache" / "workspace.json").write_text("{half written")
    result = invoke("fetch", "--source", tiny_archive, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["cached"] is True  # the dataset is reused
    result = invoke("evaluate", *TRAINED, "--json")
    assert result.exit_code == 0, result.stderr
    assert checksums(ws / "cache") == before  # nothing recomputed, nothing lost


def test_meta_json_not_json_is_recomputed_identically(ws):
    [meta] = (ws / "cache" / "evaluate").glob("*/meta.json")
    before = checksums(ws / "cache")
    meta.write_text("not json {")
    result = invoke("evaluate", *TRAINED, "--json")
    assert result.exit_code == 0, result.stderr
    assert "damaged artifact evaluate/" in result.stderr and "recomputing" in result.stderr
    assert checksums(ws / "cache") == before  # same bytes as before the damage


# --------------------------------------------------------------------------- --json on failure


JSON_FAILURES = {
    "status": (("status", "--eta", "-1"), 2),
    "cache-ls-file": (("cache", "ls", "--cache-dir", "afile"), 2),
    "cache-gc-file": (("cache", "gc", "--cache-dir", "afile"), 2),
    "cache-clear-file": (("cache", "clear", "--cache-dir", "afile"), 2),
    "cache-verify-file": (("cache", "verify", "--cache-dir", "afile"), 2),
    "sweep": (("sweep", "--lam", "", "--eta", "0.1"), 2),
    "report": (("report", "--jobs", "0"), 2),
    "gradcheck": (("gradcheck", "--tol", "nan"), 2),
}


@pytest.mark.parametrize("case", sorted(JSON_FAILURES))
def test_json_failure_is_one_document(ws, case):
    args, code = JSON_FAILURES[case]
    Path("afile").write_text("x")
    result = invoke(*args, "--json")
    assert result.exit_code == code, result.stderr
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == code and doc["error"] and "hint" in doc
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


# --------------------------------------------------------------------------- the table cannot rot


TABLE = ROOT / "docs" / "reliability.md"


def test_every_test_linked_from_the_table_exists():
    text = TABLE.read_text()
    links = sorted(set(re.findall(r"(tests/test_\w+\.py::[\w\[\]\-./]+)", text)))
    rows = [line for line in text.splitlines() if line.startswith("| ") and "tests/" in line]
    assert len(rows) >= 25, len(rows)
    files = sorted({link.split("::")[0] for link in links})
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout.splitlines()
    ids = {line.strip() for line in collected if "::" in line}
    functions = {i.split("[")[0] for i in ids}
    missing = [link for link in links if link not in ids and link not in functions]
    assert missing == [], missing
