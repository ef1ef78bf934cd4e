"""The multi-class SVM (hinge) loss: its formulas by numbers, the training branch, classify, real data."""

from __future__ import annotations

import numpy as np
import pytest

import tinycifar
from cifarcli.config import LOSSES, loss_named
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
from cifarcli.train import TrainConfig, train, train_reference

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
