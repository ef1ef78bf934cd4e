"""The multi-class SVM (hinge) loss: its formulas by numbers, the training branch, classify, real data;
then `--loss svm` end to end: train, evaluate (margins, not probabilities), plot (the margin histogram),
predict (scores, said so), gradcheck (kinks counted and excluded), the report (margin histogram,
softmax vs SVM)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import tinycifar
from cifarcli import plots, report, schemas, stages
from cifarcli.config import LOSSES, TrainConfig, loss_named
from cifarcli.evaluate import margin_summary
from cifarcli.model import (
    compute_gradients_svm,
    compute_loss,
    compute_loss_svm,
    init_parameters,
    one_hot,
    scores,
    svm_margins,
    true_class_margins,
)
from cifarcli.prepare import prepare
from cifarcli.schema_language import SchemaError, validate
from cifarcli.train import TrainConfig, train, train_reference
from reports import PNG, make_report, md_section

SVM = loss_named("svm")


@pytest.fixture
def problem():
    rng = np.random.default_rng(11)
    d, n, K = 40, 30, 10
    X = rng.standard_normal((d, n))
    y = rng.integers(0, K, n)
    W, b = init_parameters(K, d, rng, std=0.2)
    return X, y, W, b


def loop_loss_and_gradient(X, y, W, b, lam):
    """The hinge loss and its subgradient written image by image, class by class, as on paper."""
    K, n = W.shape[0], X.shape[1]
    S = W @ X + b
    loss, gW, gb = 0.0, np.zeros_like(W), np.zeros_like(b)
    for i in range(n):
        for j in range(K):
            if j == y[i]:
                continue
            margin = S[j, i] - S[y[i], i] + 1
            if margin > 0:
                loss += margin
                gW[j] += X[:, i]
                gW[y[i]] -= X[:, i]
                gb[j] += 1
                gb[y[i]] -= 1
    return loss / n + lam * np.sum(W * W), gW / n + 2 * lam * W, gb / n


# -- the math -------------------------------------------------------------------------------------


def test_svm_is_a_loss():
    assert "svm" in LOSSES
    config = TrainConfig(lam=0.1, eta=0.001, loss="svm").validate()
    assert config.key_params()["loss"] == "svm"  # part of the run ID, not at its default
    assert "loss" not in TrainConfig(lam=0.1, eta=0.001).key_params()


def test_the_cs231n_example():
    """The three images of the cs231n notes (cat, car, frog): losses 2.9, 0 and 12.9."""
    S = np.array([[3.2, 1.3, 2.2], [5.1, 4.9, 2.5], [-1.7, 2.0, -3.1]])
    y = np.array([0, 1, 2])
    M = svm_margins(S, y)
    np.testing.assert_allclose(M, [[0, -2.6, 6.3], [2.9, 0, 6.6], [-3.9, -1.9, 0]], atol=1e-12)
    X, W = np.eye(3), S  # so that S = W X + 0
    assert compute_loss_svm(X, y, W, np.zeros((3, 1))) == pytest.approx((2.9 + 0 + 12.9) / 3, rel=1e-12)
    np.testing.assert_allclose(true_class_margins(S, y), [3.2 - 5.1, 4.9 - 2.0, -3.1 - 2.5], atol=1e-12)


def test_loss_cost_and_metrics_equal_the_loop(problem):
    X, y, W, b = problem
    expected, _, _ = loop_loss_and_gradient(X, y, W, b, 0.3)
    reg = 0.3 * np.sum(W * W)
    assert SVM.compute_cost(X, y, W, b, 0.3) == pytest.approx(expected, rel=1e-12)
    assert SVM.compute_cost(X, one_hot(y), W, b, 0.3) == pytest.approx(expected, rel=1e-12)
    assert SVM.compute_loss(X, y, W, b) == pytest.approx(expected - reg, rel=1e-12)
    loss, cost, acc = SVM.metrics_from_scores(scores(X, W, b), y, reg)
    assert loss == pytest.approx(expected - reg, rel=1e-12) and cost == pytest.approx(expected, rel=1e-12)
    assert acc == np.mean(np.argmax(scores(X, W, b), axis=0) == y)
    # not the softmax loss under another name
    assert SVM.compute_loss(X, y, W, b) != pytest.approx(compute_loss(X, y, W, b), rel=1e-3)


def test_margins_zero_the_true_class_and_are_not_clipped(problem):
    X, y, W, b = problem
    S = scores(X, W, b)
    M = svm_margins(S, y)
    assert M.shape == S.shape
    np.testing.assert_array_equal(M[y, np.arange(y.size)], 0.0)
    others = np.ones(S.shape, bool)
    others[y, np.arange(y.size)] = False
    np.testing.assert_allclose(M[others], (S - S[y, np.arange(y.size)] + 1)[others], rtol=1e-15)
    assert (M < 0).any() and (M > 0).any()


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_gradient_equals_the_loop(problem, lam):
    X, y, W, b = problem
    _, gW, gb = loop_loss_and_gradient(X, y, W, b, lam)
    aW, ab = compute_gradients_svm(X, y, scores(X, W, b), W, lam)
    assert aW.shape == W.shape and ab.shape == b.shape
    np.testing.assert_allclose(aW, gW, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ab, gb, rtol=1e-12, atol=1e-14)
    aW1, ab1 = compute_gradients_svm(X, one_hot(y), scores(X, W, b), W, lam)  # one-hot labels too
    np.testing.assert_array_equal(aW1, aW)
    np.testing.assert_array_equal(ab1, ab)
    # the true class's column sums cancel the others: each image's gradient over classes sums to 0
    np.testing.assert_allclose(ab.sum(), 0.0, atol=1e-14)


def test_an_svm_has_no_probabilities(problem):
    X, y, W, b = problem
    S = scores(X, W, b)
    with pytest.raises(ValueError, match="no probabilities"):
        SVM.true_class_probabilities(S, y)
    assert SVM.output(S) is S and not SVM.gives_probabilities


def test_true_class_margin_is_positive_exactly_when_correct(problem):
    X, y, W, b = problem
    S = scores(X, W, b)
    m = true_class_margins(S, y)
    assert m.shape == y.shape
    best_other = np.array([max(S[j, i] for j in range(S.shape[0]) if j != y[i]) for i in range(y.size)])
    np.testing.assert_allclose(m, S[y, np.arange(y.size)] - best_other, rtol=1e-15)
    np.testing.assert_array_equal(m > 0, np.argmax(S, axis=0) == y)
    assert (m > 0).any() and (m < 0).any()


# -- the training branch ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    batches, (tx, ty) = tinycifar.make_arrays(200, 100, seed=3)
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    return prepare(x, y, tx, ty, tinycifar.LABEL_NAMES, 200, "seed", 100, "float64")


def test_row_metrics_equal_the_model(problem):
    X, y, W, b = problem
    S = scores(X, W, b)
    T = np.ascontiguousarray(S.T)
    got = SVM.row_metrics(T, y, np.arange(y.size) * S.shape[0] + y, 0.25)
    np.testing.assert_allclose(got, SVM.metrics_from_scores(S, y, 0.25), rtol=1e-13)


@pytest.mark.parametrize("options", [{}, dict(flip=0.5, shuffle=True)])  # fused metrics, and a pass each epoch
def test_training_history_is_the_svm_cost(tiny, options):
    config = TrainConfig(lam=0.1, eta=0.01, n_epochs=3, n_batch=30, dtype="float64", loss="svm", **options)
    result = train(config, tiny)
    for epoch_cost, split in ((result.history["train_cost"][-1], "train"), (result.history["val_cost"][-1], "val")):
        X, y = getattr(tiny, f"X_{split}"), getattr(tiny, f"y_{split}")
        assert epoch_cost == pytest.approx(SVM.compute_cost(X, y, result.W, result.b, 0.1), rel=1e-10)
    costs = result.history["train_cost"]
    assert costs[-1] < costs[0]


def test_svm_training_is_not_softmax_training(tiny):
    common = dict(lam=0.1, eta=0.01, n_epochs=2, n_batch=30, dtype="float64")
    W_svm, _ = train_reference(TrainConfig(**common, loss="svm"), tiny)
    assert not np.allclose(W_svm, train_reference(TrainConfig(**common), tiny)[0], rtol=1e-3)
    assert not np.allclose(W_svm, train_reference(TrainConfig(**common, loss="bce"), tiny)[0], rtol=1e-3)


def test_classify_gives_scores_for_an_svm(problem):
    from cifarcli.predict import classify

    rng = np.random.default_rng(2)
    records = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    mean, std = np.full((3072, 1), 0.5), np.full((3072, 1), 0.25)
    W, b = init_parameters(10, 3072, rng, std=0.01)
    S = classify(records, W, b, mean, std, "svm")
    X = (records.T / 255 - mean) / std
    np.testing.assert_allclose(S, W @ X + b, rtol=1e-12)
    assert not np.allclose(S.sum(axis=0), 1.0)  # scores: nothing sums to 1
    np.testing.assert_allclose(classify(records, W, b, mean, std).sum(axis=0), 1.0)  # softmax still does


# -- real data ----------------------------------------------------------------------------------------

# λ=0.1, η=0.001, 40 epochs, n_batch 100 on the seed split of the stand-in (float32, the default):
# test accuracy 0.3531, validation 0.3715; the softmax run of the same setting reaches 0.3889.
SVM_BAND = (0.33, 0.38)


@pytest.mark.realdata
def test_svm_on_the_seed_split_trains_stably(tmp_path_factory, real_archive):
    from cifarcli import stages
    from cifarcli.evaluate import evaluate_model

    root = tmp_path_factory.mktemp("realdata-svm")
    ws = stages.Workspace(root / "cache", root / "reports")
    stages.fetch(ws, str(real_archive))
    data = stages.prepared(stages.dataset(ws))
    config = TrainConfig(lam=0.1, eta=0.001, n_epochs=40, n_batch=100, loss="svm")
    result = train(config, data)
    history = result.history
    assert len(history["epoch"]) == 41
    costs = np.array(history["train_cost"])
    assert np.all(np.isfinite(costs)) and np.all(np.isfinite(history["val_cost"]))
    assert costs[-1] < 0.5 * costs[0]  # well down from the initial weights' cost
    assert np.all(np.diff(costs[:10]) < 0)  # steady descent where it is steep
    assert costs[-1] <= costs[10:].min() * 1.05  # no late blow-up
    metrics = evaluate_model(result.W, result.b, config.lam, data, loss="svm")
    accuracy = metrics["test"]["accuracy"]
    print(f"SVM test accuracy on the stand-in: {accuracy:.4f} (val {metrics['val']['accuracy']:.4f})")
    assert SVM_BAND[0] <= accuracy <= SVM_BAND[1], accuracy
    assert metrics["margins"]["correct"]["n"] == round(accuracy * 10000)


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
