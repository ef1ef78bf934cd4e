"""`--loss svm` end to end: train, evaluate (margins, not probabilities), plot (the margin histogram),
predict (scores, said so), gradcheck (kinks counted and excluded), the report (margin histogram,
softmax vs SVM)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cifarcli import plots, report, schemas, stages
from cifarcli.config import TrainConfig
from cifarcli.evaluate import margin_summary
from cifarcli.schemas import SchemaError, validate
from test_report_losses import PNG, make_report, md_section

TRAIN = ("--n-epochs", "3", "--n-batch", "20", "--eta", "0.001")


def test_cli_help_lists_svm(cli):
    assert "svm" in cli("train", "--help").stdout
    assert "svm" in cli("gradcheck", "--help").stdout


def test_evaluate_schema_takes_probabilities_or_margins(workspace):
    run = stages.train(workspace, TrainConfig(lam=0.0, eta=0.001, n_epochs=2, n_batch=20, loss="svm"))
    metrics = stages.evaluate(workspace, run).payload
    assert "margins" in metrics and "probabilities" not in metrics and metrics["loss"] == "svm"
    validate(metrics, schemas.EVALUATE_PAYLOAD)
    broken = {k: v for k, v in metrics.items() if k != "margins"}
    with pytest.raises(SchemaError):
        validate(broken, schemas.EVALUATE_PAYLOAD)
    with pytest.raises(SchemaError):  # not both
        validate({**metrics, "probabilities": metrics["margins"]}, schemas.EVALUATE_PAYLOAD)
    paths = stages.plot(workspace, run)
    assert set(paths) == set(schemas.SVM_FIGURES) and "probabilities" not in paths
    assert paths["margins"].read_bytes().startswith(PNG)


def test_margins_figure_labels_and_deterministic_png(tmp_path):
    s = margin_summary(np.linspace(-6, 6, 41), np.linspace(-6, 6, 41) > 0)
    fig = plots.margins_figure(s, "λ=0.1, svm")
    [ax] = fig.axes
    assert ax.get_title(loc="left") == "λ=0.1, svm" and "margin" in ax.get_xlabel()
    assert ax.get_xlim() == (-5.0, 5.0)
    a = plots.plot_margins(s, tmp_path / "a.png").read_bytes()
    assert a.startswith(PNG) and a == plots.plot_margins(s, tmp_path / "b.png").read_bytes()


def test_cli_train_evaluate_plot_predict_an_svm_run(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    trained = cli("train", *TRAIN, "--loss", "svm", "--json")
    assert trained.exit_code == 0, trained.stderr
    run = json.loads(trained.stdout)
    assert run["config"]["loss"] == "svm"
    ev = cli("evaluate", "--run", run["run_id"], "--json")
    assert ev.exit_code == 0, ev.stderr
    doc = json.loads(ev.stdout)
    assert doc["margins"]["kind"] == "svm_margin"
    assert doc["margins"]["correct"]["n"] == round(doc["test"]["accuracy"] * doc["test"]["n"])
    assert "margin of the true class" in cli("evaluate", "--run", run["run_id"]).stdout
    figures = json.loads(cli("plot", "--run", run["run_id"], "--json").stdout)["figures"]
    assert sorted(figures) == sorted(schemas.SVM_FIGURES)
    image = tmp_path / "img.png"
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(image)
    predicted = json.loads(cli("predict", image.name, "--run", run["run_id"], "--json").stdout)
    assert predicted["output"]["kind"] == "svm scores" and predicted["output"]["sums_to_one"] is False
    assert "not probabilities" in predicted["output"]["note"]
    [entry] = predicted["images"]
    assert "scores" in entry and "probabilities" not in entry and "score" in entry["top3"][0]
    assert [t["score"] for t in entry["top3"]] == sorted(entry["scores"].values(), reverse=True)[:3]
    table = cli("predict", image.name, "--run", run["run_id"]).stdout
    assert "svm scores, not probabilities" in table


def test_gradcheck_svm_reports_kinks_in_table_and_json(cli, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    args = ("gradcheck", "--loss", "svm", "--n-samples", "20", "--n-dims", "30", "--h", "1")
    doc = json.loads(cli(*args, "--json").stdout)
    total = sum(sum(r["kinks"].values()) for r in doc["results"])
    assert doc["kinks"]["total"] == total and doc["kinks"]["excluded_from_verdict"] is True
    assert total > 0  # margins start near 1: h = 1 straddles some
    assert all(r["W"]["n_excluded"] == r["kinks"]["W"] for r in doc["results"])
    table = cli(*args).stdout
    assert "within h of a kink" in table and "(excluded)" in table and f"{total} checked parameter(s)" in table
    assert "kinks" not in json.loads(cli("gradcheck", "--n-samples", "5", "--n-dims", "10", "--json").stdout)


def svm_entry(test, val, correct, incorrect, confident, loss="svm"):
    config = {"lam": 0.0, "eta": 0.001, "n_epochs": 3, **({"loss": loss} if loss != "softmax" else {})}
    metrics = {"test": {"accuracy": test}, "val": {"accuracy": val}}
    if loss == "svm":
        metrics["margins"] = {
            "threshold": -1.0,
            "confident_mistakes": confident,
            "correct": {"mean": correct},
            "incorrect": {"mean": incorrect},
        }
    return {"run_id": loss, "config": config, "metrics": metrics}


def test_svm_sentences_follow_the_numbers():
    soft = svm_entry(0.39, 0.38, None, None, None, loss="softmax")
    svm = svm_entry(0.36, 0.37, 1.25, -0.75, 0.4)
    [(a, b, same)] = report.loss_pairs([soft, svm], "svm")
    assert (a, b, same) == (soft, svm, True)
    assert report.loss_pairs([soft, svm], "bce") == []  # the BCE comparison is not this one
    text = " ".join(report.svm_sentences(soft, svm, True))
    assert "the SVM reached test accuracy 0.3600 against 0.3900 for softmax (−3.00 points)" in text
    assert "softmax classified more test images correctly" in text
    assert "the SVM reached 0.3700 and softmax 0.3800: softmax is ahead" in text
    assert "1.2500 on correctly and −0.7500 on misclassified" in text or "1.2500 on correctly and -0.7500" in text
    assert "40.0 % of the SVM's mistakes are confident" in text
    text2 = " ".join(
        report.svm_sentences(
            svm_entry(0.36, 0.37, None, None, None, "softmax"), svm_entry(0.39, 0.38, 1.0, -0.5, 0.1), True
        )
    )
    assert "the SVM classified more test images correctly" in text2 and "the SVM is ahead" in text2


def test_report_shows_the_margin_histogram_and_softmax_vs_svm(cli, tmp_path, tiny_archive):
    doc, md, html = make_report(
        cli, tmp_path, tiny_archive, [{"lam": 0.0, "eta": 0.0005}, {"lam": 0.0, "eta": 0.0005, "loss": "svm"}]
    )
    soft, svm = doc["runs"]
    assert svm["config"]["loss"] == "svm" and "margins" in svm["metrics"]
    link = f"figures/{svm['run_id']}/margins.png"
    assert f"]({link})" in md_section(md, f"`{svm['run_id']}`. Settings")
    assert (tmp_path / "reports" / link).read_bytes().startswith(PNG)
    assert "probabilities.png" not in md_section(md, f"`{svm['run_id']}`. Settings")
    section = md_section(md, "### Softmax vs SVM")
    for run in (soft, svm):
        row = next(line for line in section.splitlines() if line.endswith(f"`{run['run_id']}` |"))
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert cells[2:4] == [f"{run['metrics']['val']['accuracy']:.4f}", f"{run['metrics']['test']['accuracy']:.4f}"]
    bullets = [line for line in section.splitlines() if line.startswith("- ")]
    ts, tv = soft["metrics"]["test"]["accuracy"], svm["metrics"]["test"]["accuracy"]
    assert f"{ts:.4f}" in bullets[0] and f"{tv:.4f}" in bullets[0]
    assert 'id="comparison-svm"' in html
    assert "Softmax vs binary cross-entropy" not in md
