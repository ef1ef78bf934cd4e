"""cifarcli.evaluate: metrics per split, confusion matrix, per-class accuracy."""

import json

import numpy as np
import pytest

import tinycifar
from cifarcli.config import TrainConfig, loss_named
from cifarcli.evaluate import confusion_matrix, evaluate_model, template_roughness, update_sizes, without_predictions
from cifarcli.model import compute_accuracy, compute_cost, compute_loss
from cifarcli.prepare import prepare
from cifarcli.train import train


@pytest.fixture(scope="module")
def trained():
    batches, (tx, ty) = tinycifar.make_arrays(200, 150, seed=1)
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    data = prepare(x, y, tx, ty, tinycifar.LABEL_NAMES, 200, "seed", 100, "float64")
    res = train(TrainConfig(lam=0.1, eta=0.0003, n_epochs=1, n_batch=40, dtype="float64"), data)
    return data, res


def test_confusion_matrix_counts():
    C = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), K=3)
    np.testing.assert_array_equal(C, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_evaluate_model_numbers(trained):
    data, res = trained
    m = evaluate_model(res.W, res.b, 0.1, data)
    json.dumps(without_predictions(m))
    for split, X, Y in (
        ("train", data.X_train, data.Y_train),
        ("val", data.X_val, data.Y_val),
        ("test", data.X_test, data.Y_test),
    ):
        assert m[split]["loss"] == pytest.approx(compute_loss(X, Y, res.W, res.b), rel=1e-12)
        assert m[split]["cost"] == pytest.approx(compute_cost(X, Y, res.W, res.b, 0.1), rel=1e-12)
        assert m[split]["accuracy"] == compute_accuracy(X, Y, res.W, res.b)
        assert m[split]["n"] == Y.shape[1]
    assert m["train"]["cost"] == pytest.approx(res.history["train_cost"][-1], rel=1e-12)
    # one slow epoch leaves a mediocre model, so the matrix has real off-diagonal mass
    C = np.array(m["confusion_matrix"])
    assert 0.1 < m["test"]["accuracy"] < 0.9
    assert C.shape == (10, 10) and C.dtype.kind == "i"
    assert C.sum() == 150
    np.testing.assert_array_equal(C.sum(axis=1), np.bincount(data.y_test, minlength=10))
    assert np.trace(C) / C.sum() == pytest.approx(m["test"]["accuracy"])
    assert list(m["per_class_accuracy"]) == tinycifar.LABEL_NAMES
    for k, name in enumerate(tinycifar.LABEL_NAMES):
        assert m["per_class_accuracy"][name] == pytest.approx(C[k, k] / C[k].sum())


def test_float32_model_on_float32_data(trained):
    data, res = trained
    batches, (tx, ty) = tinycifar.make_arrays(200, 150, seed=1)
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    d32 = prepare(x, y, tx, ty, tinycifar.LABEL_NAMES, 200, "seed", 100, "float32")
    m32 = evaluate_model(res.W.astype(np.float32), res.b.astype(np.float32), 0.1, d32)
    m64 = evaluate_model(res.W, res.b, 0.1, data)
    assert m32["test"]["loss"] == pytest.approx(m64["test"]["loss"], rel=1e-5)
    assert abs(m32["test"]["accuracy"] - m64["test"]["accuracy"]) <= 2 / 150


# -- the multi-class SVM: scores, no probabilities -----------------------------------------------------


@pytest.fixture(scope="module")
def trained_svm(trained):
    data, _ = trained
    return data, train(TrainConfig(lam=0.1, eta=0.001, n_epochs=2, n_batch=40, dtype="float64", loss="svm"), data)


def test_evaluate_svm_model(trained_svm):
    from cifarcli.evaluate import MARGIN_BINS
    from cifarcli.model import scores, true_class_margins

    data, res = trained_svm
    m = evaluate_model(res.W, res.b, 0.1, data, loss="svm")
    json.dumps(without_predictions(m))
    assert m["loss"] == "svm"
    for split, X, y in (
        ("train", data.X_train, data.y_train),
        ("val", data.X_val, data.y_val),
        ("test", data.X_test, data.y_test),
    ):
        assert m[split]["loss"] == pytest.approx(loss_named("svm").compute_loss(X, y, res.W, res.b), rel=1e-12)
        assert m[split]["cost"] == pytest.approx(loss_named("svm").compute_cost(X, y, res.W, res.b, 0.1), rel=1e-12)
        assert m[split]["accuracy"] == compute_accuracy(X, y, res.W, res.b)
    assert m["train"]["cost"] == pytest.approx(res.history["train_cost"][-1], rel=1e-12)
    assert "probabilities" not in m
    margins = m["margins"]
    assert margins["kind"] == "svm_margin" and margins["open_ends"] is True
    assert margins["bins"] == [-5 + 0.5 * i for i in range(MARGIN_BINS + 1)]
    true_m = true_class_margins(scores(data.X_test, res.W, res.b), data.y_test)
    correct = true_m > 0
    assert margins["correct"]["n"] == round(m["test"]["accuracy"] * 150) == correct.sum()
    assert margins["incorrect"]["n"] == 150 - correct.sum()
    assert margins["correct"]["mean"] == pytest.approx(true_m[correct].mean(), rel=1e-12)
    assert margins["incorrect"]["median"] == pytest.approx(np.median(true_m[~correct]), rel=1e-12)
    for group in ("correct", "incorrect"):
        assert sum(margins[group]["counts"]) == margins[group]["n"]
    # 0 is an edge: correct images (margin > 0) fill only the upper half, mistakes only the lower
    assert sum(margins["correct"]["counts"][: MARGIN_BINS // 2]) == 0
    assert sum(margins["incorrect"]["counts"][MARGIN_BINS // 2 :]) == 0
    assert margins["confident_mistakes"] == pytest.approx(np.mean(true_m[~correct] < -1.0))


def test_margin_summary_bins_have_open_ends():
    from cifarcli.evaluate import margin_summary

    m = np.array([-40.0, -5.0, -4.9, -0.2, 0.3, 4.99, 5.0, 12.0])
    s = margin_summary(m, m > 0)
    assert s["incorrect"]["counts"][0] == 3 and s["incorrect"]["counts"][9] == 1  # -40 and -5 in the first bin
    assert s["correct"]["counts"][-1] == 3 and s["correct"]["counts"][10] == 1  # 5 and 12 in the last
    assert s["incorrect"]["mean"] == pytest.approx(np.mean([-40.0, -5.0, -4.9, -0.2]))  # of the margins, unclipped
    assert s["confident_mistakes"] == 0.75
    empty = margin_summary(m, np.ones(m.size, bool))
    assert empty["incorrect"] == {"n": 0, "mean": None, "median": None, "counts": [0] * 20}
    assert empty["confident_mistakes"] is None


def test_evaluate_keeps_each_images_predicted_class_and_a_wilson_interval(trained):
    data, res = trained
    m = evaluate_model(res.W, res.b, 0.1, data)
    for split, X, y in (
        ("train", data.X_train, data.y_train),
        ("val", data.X_val, data.y_val),
        ("test", data.X_test, data.y_test),
    ):
        predicted = m["predictions"][split]
        assert predicted.dtype == np.uint8 and predicted.shape == y.shape
        np.testing.assert_array_equal(predicted, np.argmax(res.W @ X + res.b, axis=0))
        assert np.mean(predicted == y) == m[split]["accuracy"]
        lo, hi = m[split]["accuracy_ci"]
        assert lo < m[split]["accuracy"] < hi and hi - lo < 0.5
    assert "predictions" not in without_predictions(m)


def test_update_sizes_measure_one_step_relative_to_the_weights(trained):
    data, res = trained
    sizes = update_sizes(res.W, res.b, 0.1, 0.01, 40, data.X_train, data.y_train)
    assert sizes["n_updates"] == int(np.ceil(data.X_train.shape[1] / 40))
    from cifarcli.model import compute_gradients, softmax

    Xb, yb = data.X_train[:, :40], data.y_train[:40]
    grad_W, _ = compute_gradients(Xb, yb, softmax(res.W @ Xb + res.b), res.W, 0.1)
    first = 0.01 * np.linalg.norm(grad_W) / np.linalg.norm(res.W)
    assert sizes["max"] >= first * (1 - 1e-12)
    # η scales the step: ten times η, ten times the relative update.
    ten = update_sizes(res.W, res.b, 0.1, 0.1, 40, data.X_train, data.y_train)
    assert ten["median"] == pytest.approx(10 * sizes["median"], rel=1e-12)


def test_template_roughness_is_one_for_noise_near_zero_for_smooth_templates_two_for_a_checkerboard():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(10, 3072))
    assert template_roughness(noise)["roughness"] == pytest.approx(1.0, abs=0.03)
    ramp = np.add.outer(np.arange(32.0), np.arange(32.0))  # a smooth gradient image
    smooth = np.tile(np.stack([ramp] * 3).ravel(), (10, 1)) * rng.uniform(0.5, 2, size=(10, 1))
    assert template_roughness(smooth)["roughness"] < 0.05
    checker = np.indices((32, 32)).sum(axis=0) % 2 * 2.0 - 1
    out = template_roughness(np.tile(np.stack([checker] * 3).ravel(), (10, 1)))
    assert out["roughness"] == pytest.approx(2.0) and len(out["per_class"]) == 10
    # Blurring noise (mean of neighbours) makes it smoother: roughness falls.
    img = noise.reshape(10, 3, 32, 32)
    blurred = (img + np.roll(img, 1, 2) + np.roll(img, 1, 3) + np.roll(img, (1, 1), (2, 3))) / 4
    assert template_roughness(blurred.reshape(10, -1))["roughness"] < 0.5
