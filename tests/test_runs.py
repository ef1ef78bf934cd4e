"""`cifarcli runs`: columns, only-changed settings, sort, filters, JSON, CSV, terminal width, diff,
diverged runs, test accuracy only where evaluated. Runs are faked through the store (real meta.json
files), except in the last test, which trains and evaluates on the tiny archive."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cifarcli import runs as listing
from cifarcli import stages
from cifarcli.config import TrainConfig
from fakeruns import fake_run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COLUMNS", raising=False)
    return stages.Workspace(tmp_path / "cache", tmp_path / "reports")


@pytest.fixture
def study(ws):
    """The study's four settings, made up: the best on validation is λ=0.1; λ=0, η=0.1 diverged at epoch 3;
    only λ=0.1 is evaluated."""
    ids = {
        "unstable": fake_run(
            ws,
            TrainConfig(lam=0.0, eta=0.1),
            val_acc=0.2612,
            train_acc=0.27,
            diverged_at=3,
            created="2026-01-01T10:00:00+00:00",
        ),
        "lam0": fake_run(
            ws,
            TrainConfig(lam=0.0, eta=0.001),
            val_acc=0.3810,
            train_acc=0.4502,
            train_cost=1.61,
            val_cost=1.80,
            created="2026-01-01T11:00:00+00:00",
        ),
        "best": fake_run(
            ws,
            TrainConfig(lam=0.1, eta=0.001),
            val_acc=0.3889,
            train_acc=0.4321,
            train_cost=1.93,
            val_cost=1.95,
            test_acc=0.3889,
            seconds=75.0,
            created="2026-01-01T09:00:00+00:00",
        ),
        "lam1": fake_run(
            ws, TrainConfig(lam=1.0, eta=0.001), val_acc=0.3701, train_acc=0.3990, created="2026-01-01T12:00:00+00:00"
        ),
    }
    return ids


def invoke(cli, *args, columns: int | None = None):
    if columns is not None:
        os.environ["COLUMNS"] = str(columns)
    try:
        return cli(*args)
    finally:
        os.environ.pop("COLUMNS", None)


def table_rows(stdout: str, ids: list[str]) -> dict[str, str]:
    """The table line of each run, by full run ID (the line starts with the run's short ID)."""
    lines = stdout.splitlines()
    found = {}
    for run_id in ids:
        matching = [
            line for line in lines if line.split() and run_id.startswith(line.split()[0]) and len(line.split()[0]) >= 8
        ]
        assert len(matching) == 1, (run_id, stdout)
        found[run_id] = matching[0]
    return found


def ordered_ids(stdout: str, ids: list[str]) -> list[str]:
    order = []
    for line in stdout.splitlines():
        words = line.split()
        if words:
            order += [run_id for run_id in ids if len(words[0]) >= 8 and run_id.startswith(words[0])]
    return order


# -- columns ------------------------------------------------------------------------------


def test_columns_are_id_changed_settings_and_final_metrics(cli, study):
    result = invoke(cli, "runs", columns=112)
    assert result.exit_code == 0, result.stderr
    header = " ".join(result.stdout.splitlines()[:2])
    for word in ("run ID", "λ", "η", "train", "val", "test", "acc", "cost", "time", "created"):
        assert word in header
    assert "batch" not in header and "epochs" not in header and "seed" not in header  # the same in all four
    rows = table_rows(result.stdout, list(study.values()))
    best = rows[study["best"]].split()
    assert best[0] == study["best"][:8]
    assert best[1:10] == ["0.1", "0.001", "0.4321", "0.3889", "0.3889", "stable", "1.9300", "1.9500", "1m15s"]
    assert "2026-01-01" in rows[study["best"]]
    assert "same in all: n_epochs=40, n_batch=100, seed=42, split=seed" in result.stdout
    assert "4 of 4 run(s), sorted by val_acc" in result.stdout


def test_ids_are_the_shortest_unique_prefix_of_at_least_8_characters():
    keys = ["abcdef0123456789", "abcdef0123ffffff", "0000000011111111", "0000000022222222"]
    assert listing.short_ids(keys) == {
        "abcdef0123456789": "abcdef01234",
        "abcdef0123ffffff": "abcdef0123f",
        "0000000011111111": "000000001",
        "0000000022222222": "000000002",
    }
    assert listing.short_ids(["1234567890abcdef"]) == {"1234567890abcdef": "12345678"}


def test_a_shown_id_works_as_run_of_other_commands(ws, study):
    doc = listing.list_runs(ws)
    for row in doc["runs"]:
        assert len(row["id"]) >= 8 and row["run_id"].startswith(row["id"])
        assert ws.store.find("train", row["id"]) == [row["run_id"]]


# -- only the settings that differ ------------------------------------------------------------


def test_only_changed_settings_by_default_all_with_all_params(cli, ws):
    for lam in (0.0, 0.01, 0.1):
        fake_run(ws, TrainConfig(lam=lam, eta=0.001, shuffle=True))
    result = invoke(cli, "runs", columns=120)
    header = result.stdout.splitlines()[:2]
    assert "λ" in header[1] and "η" not in " ".join(header) and "shuffle" not in " ".join(header)
    assert "same in all: eta=0.001, n_epochs=40" in result.stdout and "shuffle=yes" in result.stdout
    result = invoke(cli, "runs", "--all-params", columns=200)
    header = " ".join(result.stdout.splitlines()[:2])
    for name in ("λ", "η", "epochs", "batch", "seed", "split", "dtype", "shuffle", "flip", "init", "loss"):
        assert name in header, name
    assert "same in all" not in result.stdout
    assert ws.cache_listing("train")  # nothing consumed


def test_json_names_the_changed_and_the_shared_settings(cli, study):
    doc = json.loads(invoke(cli, "runs", "--json").stdout)
    assert doc["changed"] == ["lam", "eta"]
    assert doc["same"]["n_epochs"] == 40 and "lam" not in doc["same"]


# -- sorting ----------------------------------------------------------------------------------


def test_sorted_by_validation_accuracy_best_first_diverged_last(cli, study):
    result = invoke(cli, "runs", columns=100)
    assert ordered_ids(result.stdout, list(study.values())) == [study[k] for k in ("best", "lam0", "lam1", "unstable")]


@pytest.mark.parametrize(
    "args, order",
    [
        (("--sort", "lam"), ("unstable", "lam0", "best", "lam1")),  # a setting: ascending (ties by run ID)
        (("--sort", "created"), ("lam1", "lam0", "unstable", "best")),  # newest first
        (("--sort", "train-cost"), ("lam0", "lam1", "best", "unstable")),  # costs: lowest first, diverged last
        (("--sort", "val_acc", "--reverse"), ("lam1", "lam0", "best", "unstable")),
        (("--sort", "seconds"), ("best", "lam0", "lam1", "unstable")),
    ],
)
def test_sort_by_any_field(cli, study, args, order):
    result = invoke(cli, "runs", *args, "--json")
    assert result.exit_code == 0, result.stderr
    ids = [row["run_id"] for row in json.loads(result.stdout)["runs"]]
    if args[1] == "lam":  # λ=0 twice: the tie is ordered by run ID
        assert ids[2:] == [study["best"], study["lam1"]]
        assert sorted(ids[:2]) == sorted([study["unstable"], study["lam0"]])
    elif args[1] == "seconds":
        assert ids[0] == study["best"]
    else:
        assert ids == [study[k] for k in order]


def test_unknown_sort_field_is_one_error_line_naming_the_flag(cli, study):
    result = invoke(cli, "runs", "--sort", "accuracy")
    assert result.exit_code == 2
    assert "--sort: unknown field 'accuracy'" in result.stderr and "val_acc" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


# -- filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, expected",
    [
        (["lam=0.1"], ["best"]),
        (["lam=0.10"], ["best"]),  # typed: 0.10 is 0.1
        (["lam=0"], ["lam0", "unstable"]),
        (["lam=0", "eta=0.001"], ["lam0"]),  # repeatable: all must hold
        (["eta<0.01"], ["best", "lam0", "lam1"]),
        (["val_acc>=0.38"], ["best", "lam0"]),
        (["lam!=0"], ["best", "lam1"]),
        (["n-epochs=40"], ["best", "lam0", "lam1", "unstable"]),
        (["shuffle=true"], []),
        (["shuffle=no"], ["best", "lam0", "lam1", "unstable"]),
        (["split=seed"], ["best", "lam0", "lam1", "unstable"]),
    ],
)
def test_where_filters_with_typed_values(cli, study, where, expected):
    args = [arg for text in where for arg in ("--where", text)]
    doc = json.loads(invoke(cli, "runs", *args, "--json").stdout)
    assert sorted(row["run_id"] for row in doc["runs"]) == sorted(study[k] for k in expected)
    assert doc["n_total"] == 4 and doc["n_runs"] == len(expected)


def test_split_filter(cli, ws, study):
    other = fake_run(ws, TrainConfig(lam=0.1, eta=0.001, split="dd2424"), val_acc=0.36)
    doc = json.loads(invoke(cli, "runs", "--split", "dd2424", "--json").stdout)
    assert [row["run_id"] for row in doc["runs"]] == [other]
    result = invoke(cli, "runs", "--split", "full")
    assert (
        result.exit_code == 0 and "no trained runs matching split=full" in result.stdout and "5 in all" in result.stdout
    )


@pytest.mark.parametrize(
    "where, words",
    [
        ("lam=x", "lam takes a float, got 'x'"),
        ("colour=red", "unknown field 'colour'"),
        ("lam", "cannot read 'lam'"),
        ("split>seed", "split can only be compared with = or !="),
        ("shuffle=maybe", "shuffle is true or false"),
    ],
)
def test_bad_where_is_exit_2_naming_the_flag(cli, study, where, words):
    result = invoke(cli, "runs", "--where", where)
    assert result.exit_code == 2
    assert f"--where: {words}" in result.stderr and "Traceback" not in result.stderr


# -- JSON and CSV -------------------------------------------------------------------------------


def test_json_is_one_document_with_every_run(cli, study):
    result = invoke(cli, "runs", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["n_runs"] == 4 and doc["sort"] == "val_acc" and doc["where"] == []
    best = doc["runs"][0]
    assert best["run_id"] == study["best"] and best["id"] == study["best"][:8]
    assert best["settings"] == {**TrainConfig(lam=0.1, eta=0.001).__dict__}
    assert (best["train_acc"], best["val_acc"], best["test_acc"], best["evaluated"]) == (0.4321, 0.3889, 0.3889, True)
    assert best["created"] == "2026-01-01T09:00:00+00:00" and best["seconds"] == 75.0
    unstable = doc["runs"][-1]
    assert unstable["diverged_at"] == 3 and unstable["test_acc"] is None and unstable["evaluated"] is False


def test_csv_for_spreadsheets(cli, study):
    result = invoke(cli, "runs", "--csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["run_id"] for row in rows] == [study[k] for k in ("best", "lam0", "lam1", "unstable")]  # full IDs
    assert list(rows[0])[:3] == ["run_id", "lam", "eta"] and "loss" in rows[0] and "created" in rows[0]
    assert (rows[0]["lam"], rows[0]["val_acc"], rows[0]["test_acc"]) == ("0.1", "0.3889", "0.3889")
    assert rows[1]["test_acc"] == "" and rows[3]["diverged_at"] == "3"
    assert "\x1b" not in result.stdout and "─" not in result.stdout


def test_csv_and_json_together_is_an_error(cli, study):
    result = invoke(cli, "runs", "--csv", "--json")
    assert result.exit_code == 2 and "cannot be combined with --json" in result.stderr


# -- terminal width ---------------------------------------------------------------------------


@pytest.fixture
def wide(ws):
    """Eight runs differing in every setting that can differ: far more columns than 80."""
    ids = []
    for i in range(8):
        ids.append(
            fake_run(
                ws,
                TrainConfig(
                    lam=[0, 0.001, 0.01, 0.1][i % 4],
                    eta=[0.001, 0.01][i % 2],
                    n_epochs=40 + i,
                    n_batch=[50, 100][i % 2],
                    seed=i,
                    split="full",
                    val_size=1000 + i,
                    dtype=["float32", "float64"][i % 2],
                    shuffle=bool(i % 2),
                    flip=i / 10,
                    decay_every=i,
                    decay_factor=0.5,
                    init=["normal", "xavier"][i % 2],
                    loss=["softmax", "bce"][i % 2],
                ),
                val_acc=0.30 + i / 100,
                test_acc=0.3 if i == 2 else None,
                seconds=1234.5,
                created=f"2026-01-0{i + 1}T10:00:00+00:00",
            )
        )
    return ids


@pytest.mark.parametrize("columns", [80, 60, 40])
def test_the_table_fits_the_terminal_by_dropping_columns_never_wrapping_rows(cli, wide, columns):
    result = invoke(cli, "runs", columns=columns)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns, result.stdout
    rows = table_rows(result.stdout, wide)  # each run on exactly one line
    assert len(rows) == 8
    header = " ".join(lines[:2])
    assert "run ID" in header and "val" in header  # never dropped
    assert f"hidden to fit {columns} columns: created, seconds" in result.stdout.replace("\n  ", " ")
    for line in rows.values():
        assert re.search(r"\b0\.3\d00\b", line), line  # its validation accuracy is on its line


def test_at_80_columns_the_study_shows_everything_but_created(cli, study):
    result = invoke(cli, "runs", columns=80)
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "hidden to fit 80 columns: created, seconds" in result.stdout
    header = " ".join(lines[:2])
    for word in ("λ", "η", "train", "val", "test", "cost", "stability"):
        assert word in header


def test_a_real_terminal_width_in_a_subprocess(tmp_path, wide):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "70"}
    done = subprocess.run(
        [sys.executable, "-m", "cifarcli", "runs"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= 70
    assert len(table_rows(done.stdout, wide)) == 8


# -- diff ---------------------------------------------------------------------------------------


def test_diff_shows_two_runs_side_by_side(cli, study):
    result = invoke(cli, "runs", "--diff", study["best"][:6], study["lam0"], columns=100)
    assert result.exit_code == 0, result.stderr
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.split()}
    assert lines["lam"] == ["0.1", "0", "≠"] and lines["eta"] == ["0.001", "0.001"]
    # the third column is B − A
    assert lines["val_acc"] == ["0.3889", "0.3810", "-0.0079"] and lines["test_acc"] == ["0.3889", "—", "—"]
    assert lines["train_cost"] == ["1.9300", "1.6100", "-0.3200"]
    assert lines["stability"] == ["stable", "stable"]
    assert "settings that differ: lam" in result.stdout
    doc = json.loads(invoke(cli, "runs", "--diff", study["best"], study["unstable"], "--json").stdout)
    assert doc["changed"] == ["lam", "eta"]
    metrics = {m["name"]: m for m in doc["metrics"]}
    diverged = metrics["diverged_at"]
    assert (diverged["a"], diverged["b"], diverged["delta"]) == (None, 3, None)
    assert metrics["val_acc"]["delta"] == pytest.approx(metrics["val_acc"]["b"] - metrics["val_acc"]["a"])
    assert doc["b"]["stability"] == "⚠ diverged at epoch 3" and doc["a"]["stability"] == "stable"


def test_diff_of_an_unknown_or_ambiguous_run_is_exit_2(cli, ws, study):
    result = invoke(cli, "runs", "--diff", "ffffffffff", study["best"])
    assert (
        result.exit_code == 2 and "no training run 'ffffffffff'" in result.stderr and "cifarcli runs" in result.stderr
    )
    result = invoke(cli, "runs", "--diff", "", study["best"])
    assert result.exit_code == 2


# -- diverged runs and test accuracy --------------------------------------------------------------


def test_a_diverged_run_is_marked_with_its_epoch(cli, study):
    line = table_rows(invoke(cli, "runs", columns=100).stdout, [study["unstable"]])[study["unstable"]]
    assert "diverged" in line and "at epoch 3" in line


def test_test_accuracy_only_for_evaluated_runs(cli, ws, study):
    rows = table_rows(invoke(cli, "runs", columns=100).stdout, list(study.values()))
    assert "0.3889  0.3889" in rows[study["best"]]
    assert rows[study["lam0"]].split()[5] == "—"  # λ η train val test: not evaluated


def test_without_any_evaluation_there_is_no_test_column(cli, ws):
    for lam in (0.0, 0.1):
        fake_run(ws, TrainConfig(lam=lam))
    result = invoke(cli, "runs", columns=100)
    assert "test" not in " ".join(result.stdout.splitlines()[:2])


def test_an_evaluation_of_retrained_weights_is_not_shown(cli, ws):
    run_id = fake_run(ws, TrainConfig(lam=0.1), test_acc=0.39)
    assert json.loads(invoke(cli, "runs", "--json").stdout)["runs"][0]["test_acc"] == 0.39
    fake_run(ws, TrainConfig(lam=0.1), force=True, payload={"other": 2})  # new weights, same run ID
    row = json.loads(invoke(cli, "runs", "--json").stdout)["runs"][0]
    assert row["run_id"] == run_id and row["test_acc"] is None and row["evaluated"] is False


def test_a_damaged_meta_json_is_skipped(cli, ws, study):
    (ws.cache_dir / "train" / study["lam1"] / "meta.json").write_text("{not json")
    doc = json.loads(invoke(cli, "runs", "--json").stdout)
    assert study["lam1"] not in [row["run_id"] for row in doc["runs"]] and doc["n_runs"] == 3


def test_an_empty_cache(cli, ws):
    result = invoke(cli, "runs")
    assert result.exit_code == 0 and "no trained runs in cache" in result.stdout and "cifarcli train" in result.stdout
    assert json.loads(invoke(cli, "runs", "--json").stdout)["runs"] == []


def test_it_reads_no_payload(cli, ws, study, monkeypatch):
    from cifarcli import store

    def refuse(*args, **kwargs):
        raise AssertionError("a payload was loaded")

    monkeypatch.setattr(store, "safe_load", refuse)
    assert invoke(cli, "runs", "--json").exit_code == 0
    assert invoke(cli, "runs", "--diff", study["best"], study["lam0"]).exit_code == 0


# -- real runs -------------------------------------------------------------------------------------


def test_real_runs_and_their_evaluation(cli, tiny_archive, offline):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    trained = [
        json.loads(cli("train", "--lam", lam, "--eta", "0.001", "--n-epochs", "2", "--json").stdout)
        for lam in ("0", "0.1")
    ]
    evaluated = json.loads(cli("evaluate", "--run", trained[1]["run_id"], "--json").stdout)
    doc = json.loads(cli("runs", "--json").stdout)
    by_id = {row["run_id"]: row for row in doc["runs"]}
    assert set(by_id) == {t["run_id"] for t in trained} and doc["changed"] == ["lam"]
    for t in trained:
        row = by_id[t["run_id"]]
        assert row["val_acc"] == t["final"]["val_acc"] and row["train_cost"] == t["final"]["train_cost"]
        assert row["seconds"] == t["timings"]["total_seconds"]
    assert by_id[trained[1]["run_id"]]["test_acc"] == evaluated["test"]["accuracy"]
    assert by_id[trained[0]["run_id"]]["test_acc"] is None
    # the prefix shown is one any --run takes
    shown = by_id[trained[1]["run_id"]]["id"]
    assert json.loads(cli("evaluate", "--run", shown, "--json").stdout)["run_id"] == trained[1]["run_id"]


def test_a_narrow_terminal_still_marks_the_diverged_run(cli, study):
    result = invoke(cli, "runs", columns=40)
    assert max(len(line) for line in result.stdout.splitlines()) <= 40
    assert "diverged at epoch 3" in table_rows(result.stdout, [study["unstable"]])[study["unstable"]]


# -- stability: the report's rule ------------------------------------------------------------------


def test_runs_applies_the_reports_stability_rule_and_filters_on_it(cli, ws):
    from cifarcli.report import stability_label  # the very rule the report applies to the same curves

    epochs = list(range(6))
    falling = {
        "epoch": epochs,
        "train_cost": [2.3, 2.0, 1.9, 1.85, 1.8, 1.78],
        "val_loss": [2.3, 2.0, 1.9, 1.9, 1.9, 1.9],
    }
    rising = {**falling, "train_cost": [2.3, 2.0, 1.9, 2.2, 2.6, 3.1]}  # ends 63 % above its minimum
    ids = {
        "stable": fake_run(ws, TrainConfig(lam=0.1, eta=0.001), curves=falling),
        "rising": fake_run(ws, TrainConfig(lam=0.0, eta=0.05), curves=rising),
        "diverged": fake_run(ws, TrainConfig(lam=0.0, eta=0.1), diverged_at=3),
    }
    doc = json.loads(invoke(cli, "runs", "--json").stdout)
    verdicts = {row["run_id"]: (row["stability"], row["stable"], row["name"]) for row in doc["runs"]}
    assert verdicts == {
        ids["stable"]: ("stable", True, None),
        ids["rising"]: ("⚠ unstable", False, None),
        ids["diverged"]: ("⚠ diverged at epoch 3", False, None),
    }
    assert stability_label({"history": rising, "diverged_at": None}) == "⚠ unstable"
    flagged = json.loads(invoke(cli, "runs", "--where", "stable=false", "--json").stdout)
    assert {row["run_id"] for row in flagged["runs"]} == {ids["rising"], ids["diverged"]}
    kept = json.loads(invoke(cli, "runs", "--where", "stable=yes", "--json").stdout)
    assert [row["run_id"] for row in kept["runs"]] == [ids["stable"]]
    line = table_rows(invoke(cli, "runs", columns=120).stdout, [ids["rising"]])[ids["rising"]]
    assert "⚠ unstable" in line
    result = invoke(cli, "runs", "--where", "stable>1")
    assert result.exit_code == 2 and "stable can only be compared with = or !=" in result.stderr


def test_a_real_runs_curves_in_meta_give_the_verdict_of_its_full_history(cli, ws, tiny_archive):
    from cifarcli.report import stability_label

    stages.fetch(ws, str(tiny_archive))
    run = stages.train(ws, TrainConfig(lam=0.0, eta=0.01, n_epochs=3, n_batch=50))
    curves = run.meta["info"]["curves"]
    assert curves == {key: run.payload["history"][key] for key in ("epoch", "train_cost", "val_loss")}
    [row] = json.loads(invoke(cli, "runs", "--json").stdout)["runs"]
    assert row["stability"] == stability_label(run.payload)
