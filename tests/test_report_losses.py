"""The probability given to the true class: evaluate's summary, plot's probabilities.png, and the
report's per-run histogram and softmax-vs-BCE comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifarcli import model, plots, report, stages
from cifarcli.config import TrainConfig, loss_named
from cifarcli.evaluate import probability_summary
from reports import PNG, make_report, md_section

# -- the math ------------------------------------------------------------------------------------


def test_true_class_probabilities_softmax_and_sigmoid():
    rng = np.random.default_rng(0)
    S = rng.normal(0, 3, (10, 50))
    S[:, 0] = [800, -800, 0, 0, 0, 0, 0, 0, 0, 0]  # extreme scores stay finite
    y = rng.integers(0, 10, 50)
    y[0] = 0
    soft = loss_named("softmax").true_class_probabilities(S, y)
    naive = np.exp(S[:, 1:] - S[:, 1:].max(0)) / np.exp(S[:, 1:] - S[:, 1:].max(0)).sum(0)
    np.testing.assert_allclose(soft[1:], naive[y[1:], np.arange(49)], rtol=1e-12)
    assert soft[0] == 1.0
    sig = loss_named("bce").true_class_probabilities(S, y)
    np.testing.assert_allclose(sig[1:], 1 / (1 + np.exp(-S[y[1:], np.arange(1, 50)])), rtol=1e-12)
    assert sig[0] == 1.0 and np.isfinite(sig).all()
    with pytest.raises(ValueError):
        loss_named("hinge").true_class_probabilities(S, y)


def test_probability_summary_counts_means_and_confident_mistakes():
    p = np.array([0.95, 0.9, 0.6, 0.05, 0.02, 0.3, 1.0, 0.0])
    correct = np.array([True, True, True, False, False, False, True, False])
    s = probability_summary(p, correct, "softmax", bins=10, threshold=0.1)
    assert s["kind"] == "softmax" and s["bins"] == [round(0.1 * i, 12) for i in range(11)]
    assert s["correct"]["n"] == 4 and s["incorrect"]["n"] == 4
    assert s["correct"]["mean"] == pytest.approx((0.95 + 0.9 + 0.6 + 1.0) / 4)
    assert s["incorrect"]["mean"] == pytest.approx((0.05 + 0.02 + 0.3 + 0.0) / 4)
    assert s["correct"]["counts"] == [0, 0, 0, 0, 0, 0, 1, 0, 0, 3]  # 1.0 falls in the last bin
    assert s["incorrect"]["counts"] == [3, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert s["confident_mistakes"] == 0.75  # 0.05, 0.02, 0.0 of 4 mistakes
    empty = probability_summary(np.array([0.7]), np.array([True]), "sigmoid")
    assert empty["kind"] == "sigmoid" and empty["incorrect"] == {
        "n": 0,
        "mean": None,
        "median": None,
        "counts": [0] * 20,
    }
    assert empty["confident_mistakes"] is None
    json.dumps(s, allow_nan=False)


def test_probabilities_figure_labels_and_deterministic_png(tmp_path):
    s = probability_summary(np.linspace(0, 1, 41), np.arange(41) % 3 > 0, "sigmoid")
    fig = plots.probabilities_figure(s, "λ=0.1, η=0.001, loss bce")
    [ax] = fig.axes
    assert ax.get_title(loc="left") == "λ=0.1, η=0.001, loss bce"
    assert "true class" in ax.get_xlabel() and "sigmoid" in ax.get_xlabel() and ax.get_ylabel()
    labels = ax.get_legend_handles_labels()[1]
    assert any(label.startswith("correctly classified (n=27") for label in labels)
    assert any(label.startswith("misclassified (n=14") for label in labels)
    a = plots.plot_probabilities(s, tmp_path / "a.png").read_bytes()
    assert a.startswith(PNG) and a == plots.plot_probabilities(s, tmp_path / "b.png").read_bytes()


# -- evaluate and plot ---------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["softmax", "bce"])
def test_evaluate_summary_is_the_runs_probabilities_and_plot_draws_it(workspace, loss):
    run = stages.train(workspace, TrainConfig(lam=0.0, eta=0.0005, n_epochs=2, n_batch=20, loss=loss))
    metrics = stages.evaluate(workspace, run).payload
    summary = metrics["probabilities"]
    config = stages.config_of(run)
    data = stages.prepared(stages.dataset(workspace), config.split, config.val_size, config.dtype)
    S = model.scores(data.X_test, run.payload["W"], run.payload["b"]).astype(np.float64)
    P = loss_named(loss).output(S)
    p_true = P[data.y_test, np.arange(data.y_test.size)]
    right = np.argmax(S, axis=0) == data.y_test
    assert summary["kind"] == ("sigmoid" if loss == "bce" else "softmax")
    assert summary["correct"]["n"] == round(metrics["test"]["accuracy"] * metrics["test"]["n"])
    assert summary["correct"]["n"] + summary["incorrect"]["n"] == metrics["test"]["n"]
    assert summary["correct"]["n"] > 0 and summary["incorrect"]["n"] > 0  # both groups are measured
    assert summary["correct"]["mean"] == pytest.approx(p_true[right].mean(), rel=1e-5)
    assert summary["incorrect"]["mean"] == pytest.approx(p_true[~right].mean(), rel=1e-5)
    assert summary["confident_mistakes"] == pytest.approx(np.mean(p_true[~right] < 0.1))
    assert sum(summary["correct"]["counts"]) == summary["correct"]["n"]
    if loss == "softmax":
        assert np.allclose(P.sum(axis=0), 1)
    else:
        assert not np.allclose(P.sum(axis=0), 1)  # sigmoids: the summary is not a softmax in disguise

    paths = stages.plot(workspace, run)
    assert paths["probabilities"] == workspace.reports_dir / "figures" / run.key / "probabilities.png"
    assert paths["probabilities"].read_bytes().startswith(PNG)
    assert stages.PLOT.version >= 2 and stages.REPORT.version >= 2


# -- the report ----------------------------------------------------------------------------------


def test_report_compares_softmax_and_bce_with_evaluates_numbers(cli, tmp_path, tiny_archive):
    doc, md, html = make_report(
        cli, tmp_path, tiny_archive, [{"lam": 0.0, "eta": 0.0005}, {"lam": 0.0, "eta": 0.0005, "loss": "bce"}]
    )
    soft, bce = doc["runs"]
    assert soft["config"].get("loss", "softmax") == "softmax" and bce["config"]["loss"] == "bce"
    section = md_section(md, "### Softmax vs binary cross-entropy")
    evaluated = {}
    for run, loss in ((soft, "softmax"), (bce, "bce")):
        ev = json.loads(cli("evaluate", "--run", run["run_id"], "--json").stdout)
        evaluated[loss] = ev
        pr = ev["probabilities"]
        row = next(line for line in section.splitlines() if line.endswith(f"`{run['run_id']}` |"))
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert cells[1:6] == [
            loss,
            f"{ev['test']['accuracy']:.4f}",
            f"{pr['correct']['mean']:.4f}",
            f"{pr['incorrect']['mean']:.4f}",
            f"{pr['confident_mistakes'] * 100:.1f} %",
        ]
        table = cli("evaluate", "--run", run["run_id"]).stdout  # the rich view says it too
        assert f"mean {pr['correct']['mean']:.3f} on the {pr['correct']['n']} correct" in table
        # each run section shows its histogram too, linked and on disk
        link = f"figures/{run['run_id']}/probabilities.png"
        assert f"]({link})" in md_section(md, f"`{run['run_id']}`. Settings")
        assert (tmp_path / "reports" / link).read_bytes().startswith(PNG)
    accs = {k: ev["test"]["accuracy"] for k, ev in evaluated.items()}
    assert all(0 < a < 1 for a in accs.values()) and accs["softmax"] != accs["bce"]

    # the two histograms side by side: one Markdown table row holding both images
    pair = [line for line in section.splitlines() if line.count("](figures/") == 2]
    assert len(pair) == 1 and soft["run_id"] in pair[0] and bce["run_id"] in pair[0]
    # sentences carry the numbers and the direction they imply
    bullets = [line for line in section.splitlines() if line.startswith("- ")]
    first = bullets[0]
    assert f"{accs['bce']:.4f}" in first and f"{accs['softmax']:.4f}" in first
    better = "BCE" if accs["bce"] > accs["softmax"] else "softmax"
    # worded by McNemar's test on the same test images (issue 19): a direction only when significant
    assert (f"{better} classified significantly more test images correctly" in first) != (
        "made no significant difference" in first
    )
    cs, cb = (evaluated[k]["probabilities"]["confident_mistakes"] for k in ("softmax", "bce"))
    confident = next(b for b in bullets if b.startswith("- Confident mistakes"))
    expected = (
        "the same share for both"
        if f"{cs * 100:.1f}" == f"{cb * 100:.1f}"
        else "BCE makes more confident mistakes"
        if cb > cs
        else "BCE makes fewer confident mistakes"
    )
    assert expected in confident

    assert 'id="comparison-losses"' in html
    html_section = html.split('id="comparison-losses"', 1)[1].split("<h2", 1)[0]
    assert html_section.count('<img src="data:image/png;base64,') == 2 and 'class="figrow' in html_section
    assert html.count("data:image/png;base64,") == 5 * 2 + 2 + 2  # and the comparison's two figures


def test_no_loss_comparison_with_a_single_loss(cli, tmp_path, tiny_archive):
    doc, md, html = make_report(cli, tmp_path, tiny_archive, [{"lam": 0.0, "eta": 0.003}, {"lam": 0.1, "eta": 0.003}])
    assert len(doc["runs"]) == 2
    assert "Softmax vs binary cross-entropy" not in md and "comparison-losses" not in html
    assert md.count("/probabilities.png)") == 2  # the per-run histograms are still there


def run_entry(
    loss: str,
    test: float,
    val: float,
    correct: float,
    incorrect: float,
    confident: float,
    lam: float = 0.0,
    eta: float = 0.001,
) -> dict:
    config = {"lam": lam, "eta": eta, "n_epochs": 3, **({"loss": loss} if loss != "softmax" else {})}
    return {
        "run_id": f"{loss}{lam}{eta}",
        "config": config,
        "metrics": {
            "test": {"accuracy": test},
            "val": {"accuracy": val},
            "probabilities": {
                "threshold": 0.1,
                "confident_mistakes": confident,
                "correct": {"mean": correct},
                "incorrect": {"mean": incorrect},
            },
        },
    }


def test_loss_sentences_follow_the_numbers_both_ways():
    soft = run_entry("softmax", 0.39, 0.38, 0.55, 0.20, 0.30)
    bce = run_entry("bce", 0.37, 0.36, 0.40, 0.25, 0.10)
    [(a, b, same)] = report.loss_pairs([soft, bce], "bce")
    assert (a, b, same) == (soft, bce, True)
    text = " ".join(report.loss_sentences(soft, bce, True))
    assert "BCE reached test accuracy 0.3700 against 0.3900 for softmax (−2.00 points)" in text
    assert "softmax classified more test images correctly" in text
    assert "0.1500 with BCE and 0.3500 with softmax: softmax's probability" in text
    assert "10.0 % of BCE's mistakes against 30.0 % of softmax's; BCE makes fewer confident mistakes" in text
    # swap the numbers: every verdict turns
    soft2 = run_entry("softmax", 0.37, 0.36, 0.40, 0.25, 0.10)
    bce2 = run_entry("bce", 0.39, 0.38, 0.55, 0.20, 0.30)
    text2 = " ".join(report.loss_sentences(soft2, bce2, True))
    assert "BCE classified more test images correctly" in text2
    assert "with softmax: BCE's probability" in text2 and "BCE makes more confident mistakes" in text2


def test_loss_pairs_match_identical_settings_else_the_best_of_each():
    s1, s2 = (
        run_entry("softmax", 0.3, 0.30, 0.5, 0.2, 0.1, lam=0.0),
        run_entry("softmax", 0.3, 0.35, 0.5, 0.2, 0.1, lam=0.1),
    )
    b1 = run_entry("bce", 0.3, 0.31, 0.5, 0.2, 0.1, lam=0.1)
    assert report.loss_pairs([s1, s2, b1], "bce") == [(s2, b1, True)]
    b2 = run_entry("bce", 0.3, 0.31, 0.5, 0.2, 0.1, lam=1.0)
    b3 = run_entry("bce", 0.3, 0.33, 0.5, 0.2, 0.1, lam=2.0)
    assert report.loss_pairs([s1, s2, b2, b3], "bce") == [(s2, b3, False)]  # best on validation of each loss
    assert "their other settings differ" in report.loss_sentences(s2, b3, False)[0]
    assert report.loss_pairs([s1, s2], "bce") == [] and report.loss_pairs([b2, b3], "bce") == []
    blocks = report.build_blocks({"runs": [s1, b2]})
    assert any(isinstance(b, report.Heading) and b.anchor == "comparison-losses" for b in blocks)
    assert not any(
        isinstance(b, report.Heading) and b.anchor == "comparison-losses"
        for b in report.build_blocks({"runs": [s1, s2]})
    )
