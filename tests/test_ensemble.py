"""cifarcli ensemble: majority vote (ties to the lowest class) and mean output of member runs, cached."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifarcli import stages
from cifarcli.config import TrainConfig
from cifarcli.ensemble import combine
from cifarcli.model import scores, softmax

ARGS = ("--lam", "0", "--eta", "0.0005", "--n-epochs", "2", "--n-batch", "20")


def test_vote_ties_go_to_the_lowest_class_and_the_mean_averages_outputs():
    X = np.eye(4)[:, :4]  # 4 "images", d = 4: scores are the columns of W (b = 0)
    b = np.zeros((3, 1))
    # member predictions per image: m1 = [2, 1, 2, 0], m2 = [1, 1, 0, 0]
    W1 = np.array([[0, 0, 0, 5], [0, 4, 0, 0], [3, 0, 9, 0]], float)
    W2 = np.array([[0, 0, 1, 5], [3, 4, 0, 0], [0, 0, 0, 0]], float)
    out = combine([(W1, b), (W2, b)], X, np.array([0, 1, 2, 2]), "softmax")
    # image 0: votes for 2 and 1 tie -> class 1 (the lowest); image 2: 2 and 0 tie -> 0; image 3: both 0
    assert out["vote_ties"] == 2 and out["n"] == 4
    assert out["vote"] == pytest.approx(1 / 4)  # only image 1 (class 1) is right
    assert out["members"] == [pytest.approx(2 / 4), pytest.approx(1 / 4)]
    mean = (softmax(scores(X, W1, b)) + softmax(scores(X, W2, b))) / 2
    assert out["mean"] == pytest.approx(np.mean(np.argmax(mean, axis=0) == np.array([0, 1, 2, 2])))
    svm = combine([(W1, b), (W2, b)], X, np.array([0, 1, 2, 2]), "svm")  # scores averaged
    assert svm["mean"] == pytest.approx(np.mean(np.argmax((W1 + W2) / 2, axis=0) == np.array([0, 1, 2, 2])))


def test_ensemble_stage_is_cached_order_free_and_matches_members(workspace):
    runs = [
        stages.train(workspace, TrainConfig(lam=0.0, eta=0.0005, n_epochs=2, n_batch=20, seed=s)) for s in (1, 2, 3)
    ]
    first = stages.ensemble(workspace, runs)
    again = stages.ensemble(workspace, runs[::-1])
    assert again.key == first.key and again.status == "hit"
    p = first.payload
    assert p["n_members"] == 3 and p["combined"] == "probabilities" and "lowest class" in p["tie_rule"]
    for member in p["members"]:
        run = next(r for r in runs if r.key == member["run_id"])
        ev = stages.evaluate(workspace, run).payload
        assert member["val"] == ev["val"]["accuracy"] and member["test"] == ev["test"]["accuracy"]
    assert ("ensemble", first.key) in [(s, k) for s, k, _ in workspace.events]
    with pytest.raises(Exception) as error:
        stages.ensemble(workspace, runs[:1])
    assert "at least two" in str(error.value)
    svm = stages.train(workspace, TrainConfig(lam=0.0, eta=0.0005, n_epochs=2, n_batch=20, loss="svm"))
    with pytest.raises(Exception) as error:
        stages.ensemble(workspace, [runs[0], svm])
    assert "share the loss" in str(error.value)


def test_cli_ensemble_seeds_and_runs(cli, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    result = cli("ensemble", *ARGS, "--seeds", "1,2,3", "-j", "1", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["n_members"] == 3 and sorted(m["config"]["seed"] for m in doc["members"]) == [1, 2, 3]
    assert set(doc["val"]) >= {"vote", "mean", "vote_ties", "n"} and 0 <= doc["test"]["vote"] <= 1
    ids = [m["run_id"] for m in doc["members"]]
    by_run = json.loads(cli("ensemble", *(a for i in ids for a in ("--run", i[:10])), "--json").stdout)
    assert by_run["ensemble"] == doc["ensemble"] and by_run["cached"] is True
    table = cli("ensemble", "--run", ids[0], "--run", ids[1]).stdout
    assert "majority vote" in table and "mean of the probabilities" in table and "lowest class index" in table
    bad = cli("ensemble", *ARGS, "--seeds", "1,1")
    assert bad.exit_code == 2 and "--seeds" in bad.stderr
    assert cli("ensemble").exit_code == 2
    assert cli("ensemble", "--run", ids[0], "--seeds", "1,2").exit_code == 2
    svm = cli("ensemble", *ARGS, "--loss", "svm", "--seeds", "1,2", "-j", "1", "--json")
    assert json.loads(svm.stdout)["combined"] == "scores"
    assert "ensemble" in cli("cache", "ls", "--stage", "ensemble", "--json").stdout


def test_report_ensemble_section(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    (tmp_path / "r.toml").write_text(
        "[defaults]\nn_epochs = 2\nn_batch = 20\n\n[gradcheck]\nn_samples = 5\nn_dims = 10\n\n"
        "[[run]]\nlam = 0.0\neta = 0.0005\n\n[ensemble]\nseeds = [1, 2, 3]\nlam = 0.0\neta = 0.0005\n"
    )
    result = cli("report", "--config", "r.toml", "-j", "1", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    ens = doc["ensemble"]
    assert ens["n_members"] == 3 and sorted(m["config"]["seed"] for m in ens["members"]) == [1, 2, 3]
    direct = json.loads(cli("ensemble", *ARGS, "--seeds", "3,1,2", "--json").stdout)
    assert direct["ensemble"] == ens["key"] and direct["cached"] is True
    md = (tmp_path / "reports" / "report.md").read_text()
    section = md.split("## Ensemble", 1)[1].split("\n## ", 1)[0]
    assert f"| **majority vote** | {ens['val']['vote']:.4f} | {ens['test']['vote']:.4f} |" in section
    assert "lowest class index" in section and 'id="ensemble"' in (tmp_path / "reports" / "report.html").read_text()
    (tmp_path / "bad.toml").write_text("[ensemble]\nseeds = [1]\nlam = 0.0\neta = 0.001\n")
    bad = cli("report", "--config", "bad.toml")
    assert bad.exit_code == 2 and "seeds" in bad.stderr
