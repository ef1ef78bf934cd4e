"""Run names: `train --name`, `cifarcli name`, every --run, `runs`, `report`; never part of a key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifarcli import stages
from cifarcli.config import TrainConfig

FAST = ("--n-epochs", "2", "--n-batch", "50")


def ok(result) -> dict | str:
    assert result.exit_code == 0, result.stderr
    try:
        return json.loads(result.stdout)
    except ValueError:
        return result.stdout


def one_error_line(result, *words: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


@pytest.fixture
def imported(cli, tiny_archive):
    ok(cli("fetch", "--source", tiny_archive, "--json"))


def state() -> dict:
    return json.loads(Path("cache/workspace.json").read_text())


def test_train_name_then_evaluate_and_runs_by_name(cli, imported):
    run = ok(cli("train", *FAST, "--name", "base", "--json"))
    assert state()["names"] == {"base": run["run_id"]}
    metrics = ok(cli("evaluate", "--run", "base", "--json"))
    assert metrics["run_id"] == run["run_id"]
    listed = ok(cli("runs", "--where", "name=base", "--json"))
    assert [(r["run_id"], r["name"]) for r in listed["runs"]] == [(run["run_id"], "base")]
    ok(cli("train", *FAST, "--lam", "0.5", "--json"))
    assert ok(cli("runs", "--where", "name!=base", "--json"))["n_runs"] == 1
    table = ok(cli("runs"))
    assert "name" in table.splitlines()[1] and "base" in table


def test_a_name_never_changes_a_key(cli, imported):
    plain = ok(cli("train", *FAST, "--json"))
    named = ok(cli("train", *FAST, "--name", "again", "--json"))
    assert named["run_id"] == plain["run_id"] and named["cached"] is True
    config = TrainConfig(n_epochs=2, n_batch=50)
    data_key = stages.dataset(stages.Workspace(Path("cache"))).key
    assert named["run_id"] == stages.train_key(config, data_key)  # the key formula has no room for a name


def test_naming_moves_a_name_and_replaces_a_runs_old_name(cli, imported):
    a = ok(cli("train", *FAST, "--json"))["run_id"]
    b = ok(cli("train", *FAST, "--lam", "0.5", "--json"))["run_id"]
    assert ok(cli("name", a[:8], "base", "--json")) == {"name": "base", "run_id": a, "was": None}
    moved = ok(cli("name", b, "base", "--json"))
    assert moved == {"name": "base", "run_id": b, "was": a}
    assert state()["names"] == {"base": b}
    ok(cli("name", "base", "lam0.5"))  # a run named by its name: renamed
    assert state()["names"] == {"lam0.5": b}
    assert ok(cli("runs", "--diff", "lam0.5", a[:8], "--json"))["a"]["name"] == "lam0.5"
    removed = ok(cli("name", "--remove", "lam0.5", "--json"))
    assert removed == {"name": "lam0.5", "run_id": None, "was": b}
    assert state()["names"] == {}
    one_error_line(cli("name", "--remove", "lam0.5"), "no run is named 'lam0.5'")


@pytest.mark.parametrize("bad", ["two words", "", "x" * 65, "cafe", "ümlaut", "a/b", "12345678"])
def test_a_bad_name_is_one_error_line_and_trains_nothing(cli, imported, bad):
    one_error_line(cli("train", *FAST, "--name", bad), "cannot name a run")
    assert not list(Path("cache/train").glob("*")) if Path("cache/train").exists() else True
    run = ok(cli("train", *FAST, "--json"))["run_id"]
    one_error_line(cli("name", run, bad), "cannot name a run")
    assert "names" not in state()


def test_name_usage_errors(cli, imported):
    one_error_line(cli("name", "nosuchrun", "base"), "no training run 'nosuchrun'")
    one_error_line(cli("name", "onlyone"), "--remove")
    one_error_line(cli("name", "x", "--remove", "y"), "--remove")


def test_a_tampered_names_table_is_ignored(cli, imported):
    run = ok(cli("train", *FAST, "--name", "base", "--json"))["run_id"]
    tampered = state()
    tampered["names"] = {"base": run, "other": run}  # one run, two names: not a state we write
    Path("cache/workspace.json").write_text(json.dumps(tampered))
    result = cli("evaluate", "--run", "base")
    one_error_line(result, "no training run 'base'")
    assert "ignoring damaged" in result.stderr and "one name per run" in result.stderr


def test_report_labels_use_names(cli, imported):
    Path("study.toml").write_text(
        "[defaults]\nn_epochs = 2\nn_batch = 50\n[gradcheck]\nn_samples = 5\n"
        "[[run]]\nlam = 0.0\neta = 0.001\n[[run]]\nlam = 0.1\neta = 0.001\n"
    )
    named = ok(cli("train", "--lam", "0", "--eta", "0.001", *FAST, "--name", "no-penalty", "--json"))["run_id"]
    doc = ok(cli("report", "--config", "study.toml", "--json"))
    assert [run["label"] for run in doc["runs"]] == ["no-penalty (λ=0, η=0.001)", "λ=0.1, η=0.001"]
    assert "no-penalty (λ=0, η=0.001)" in Path("reports/report.md").read_text()
    ok(cli("name", named, "lam0"))
    doc = ok(cli("report", "--config", "study.toml", "--json"))  # renamed: the report says so, nothing retrains
    assert doc["runs"][0]["label"] == "lam0 (λ=0, η=0.001)" and doc["runs"][0]["run_id"] == named
    assert {s["stage"] for s in doc["stages"] if s["status"] == "computed"} == {"report"}
    assert "no-penalty" not in Path("reports/report.md").read_text()
