"""The study on the CIFAR-10 stand-in (CIFARCLI_TEST_ARCHIVE): accuracies in the expected bands, and the
setting beyond the study reaching 41 %.

Skipped when the stand-in is not there. One workspace for the module, so the
170 MB archive is imported once and the four runs are trained once.
"""

from __future__ import annotations

import numpy as np
import pytest

from cifarcli import stages, workflows
from cifarcli.config import TrainConfig

pytestmark = pytest.mark.realdata

# (λ, η) -> band of test accuracy on the stand-in (the study on the official data:
# 0.2574, 0.3717, 0.3876, 0.3784)
BANDS = {(0.0, 0.1): (0.22, 0.33), (0.0, 0.001): (0.36, 0.41), (0.1, 0.001): (0.36, 0.41), (1.0, 0.001): (0.35, 0.40)}


@pytest.fixture(scope="module")
def ws(tmp_path_factory, real_archive):
    root = tmp_path_factory.mktemp("realdata")
    workspace = stages.Workspace(root / "cache", root / "reports")
    artifact = stages.fetch(workspace, str(real_archive))
    info = artifact.meta["info"]
    assert (info["n_train"], info["n_test"], info["format"]) == (50000, 10000, "binary")
    return workspace


@pytest.fixture(scope="module")
def study(ws):
    return workflows.report(ws)


def test_default_report_reproduces_the_study(ws, study):
    runs = {(r["config"]["lam"], r["config"]["eta"]): r for r in study["runs"]}
    assert set(runs) == set(BANDS)
    for setting, (low, high) in BANDS.items():
        run = runs[setting]
        assert run["config"]["n_epochs"] == 40 and run["config"]["n_batch"] == 100
        assert run["split_sizes"] == {"train": 8000, "val": 2000, "test": 10000}
        assert run["diverged_at"] is None
        accuracy = run["metrics"]["test"]["accuracy"]
        assert low <= accuracy <= high, (setting, accuracy)
        assert len(run["history"]["epoch"]) == 41
    # regularisation narrows the train-validation gap (λ=1 vs λ=0 at η=0.001)
    gap = {
        lam: runs[(lam, 0.001)]["metrics"]["train"]["accuracy"] - runs[(lam, 0.001)]["metrics"]["val"]["accuracy"]
        for lam in (0.0, 1.0)
    }
    assert gap[1.0] < gap[0.0]

    check = study["gradcheck"]
    assert [entry["lam"] for entry in check["results"]] == [0.0, 0.1]
    for entry in check["results"]:
        assert entry["W"]["max"] <= 1e-6 and entry["b"]["max"] <= 1e-6
    assert check["passed"] is True

    md, html = ws.reports_dir / "report.md", ws.reports_dir / "report.html"
    assert md.is_file() and html.is_file()
    text = md.read_text()
    for run in study["runs"]:
        assert f"{run['metrics']['test']['accuracy']:.4f}" in text
        for name in ("loss", "accuracy", "weights", "confusion", "probabilities"):
            assert (ws.reports_dir / run["figures"][name]).read_bytes().startswith(b"\x89PNG")


def test_runs_flags_the_unstable_setting_as_the_report_does(ws, study):
    from cifarcli import runs
    from cifarcli.report import stability_label

    listed = {row["run_id"]: row for row in runs.list_runs(ws)["runs"]}
    for run in study["runs"]:
        assert listed[run["run_id"]]["stability"] == stability_label(run), run["config"]
    flagged = {(r["settings"]["lam"], r["settings"]["eta"]) for r in runs.list_runs(ws, ["stable=false"])["runs"]}
    assert flagged == {(0.0, 0.1)}


def test_float32_and_float64_agree_to_three_decimals(ws, study):
    [run32] = [r for r in study["runs"] if (r["config"]["lam"], r["config"]["eta"]) == (0.1, 0.001)]
    assert run32["config"]["dtype"] == "float32"
    run64 = stages.train(ws, TrainConfig(lam=0.1, eta=0.001, dtype="float64"))
    assert run64.key != run32["run_id"]
    assert run64.payload["W"].dtype == np.float64
    metrics64 = stages.evaluate(ws, run64).payload
    assert metrics64["test"]["accuracy"] == pytest.approx(run32["metrics"]["test"]["accuracy"], abs=0.002)
    assert metrics64["val"]["accuracy"] == pytest.approx(run32["metrics"]["val"]["accuracy"], abs=0.002)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_unstable_run_has_one_w_however_it_is_trained(ws, study, threads):
    """The study's unstable setting amplifies any rounding difference: the report's run, trained in
    the report, and the same run trained again on one or on two threads are one W, bit for bit."""
    from cifarcli.train import train

    config = TrainConfig(lam=0.0, eta=0.1)
    [entry] = [r for r in study["runs"] if (r["config"]["lam"], r["config"]["eta"]) == (0.0, 0.1)]
    cached = stages.train(ws, config)
    assert cached.key == entry["run_id"] and cached.status == "hit"
    result = train(config, stages.prepared(stages.dataset(ws)), threads=threads)
    assert result.W.tobytes() == cached.payload["W"].tobytes()
    assert result.b.tobytes() == cached.payload["b"].tobytes()
    assert result.history == cached.payload["history"]


# Beyond the study: all the training data, flips and step decay. The setting documented in
# docs/beyond-the-study.md was chosen among a handful of candidates by validation accuracy (never test).
# cifarcli train --split full --lam 0.005 --eta 0.01 --shuffle --flip 0.5 --decay-every 10 --decay-factor 0.3
# (on the stand-in: validation 0.4060, test 0.4142; see docs/beyond-the-study.md)
IMPROVED = TrainConfig(lam=0.005, eta=0.01, split="full", shuffle=True, flip=0.5, decay_every=10, decay_factor=0.3)


def test_documented_improved_setting_reaches_41_percent(ws):
    run = stages.train(ws, IMPROVED)
    assert run.payload["diverged_at"] is None
    assert run.meta["info"]["split_sizes"] == {"train": 49000, "val": 1000, "test": 10000}
    metrics = stages.evaluate(ws, run).payload
    assert metrics["test"]["accuracy"] >= 0.41, metrics["test"]
    assert metrics["val"]["accuracy"] >= 0.39, metrics["val"]
    # flips regularise: the recorded (unflipped) training accuracy stays close to validation
    assert metrics["train"]["accuracy"] - metrics["val"]["accuracy"] < 0.06
    history = run.payload["history"]
    assert len(history["epoch"]) == 41 and history["train_cost"][-1] < history["train_cost"][0]
