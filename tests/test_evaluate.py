"""cifarcli.evaluate: metrics per split, confusion matrix, per-class accuracy."""

import json

import numpy as np
import pytest

import tinycifar
from cifarcli.evaluate import confusion_matrix, evaluate_model
from cifarcli.model import compute_accuracy, compute_cost, compute_loss
from cifarcli.prepare import prepare
from cifarcli.config import TrainConfig
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
    json.dumps(m)
    for split, X, Y in (("train", data.X_train, data.Y_train), ("val", data.X_val, data.Y_val),
                        ("test", data.X_test, data.Y_test)):
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
