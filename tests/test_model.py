"""cifarcli.model: softmax, cost, accuracy and analytic gradients, checked by numbers."""

import numpy as np
import pytest

from cifarcli.config import loss_named
from cifarcli.model import (
    compute_accuracy,
    compute_cost,
    compute_gradients,
    compute_gradients_bce,
    compute_loss,
    compute_loss_bce,
    evaluate_classifier,
    init_parameters,
    metrics_from_scores,
    one_hot,
    scores,
    sigmoid,
    softmax,
    softplus,
)

BCE = loss_named("bce")


@pytest.fixture
def problem():
    rng = np.random.default_rng(3)
    d, n, K = 50, 20, 10
    X = rng.standard_normal((d, n))
    y = rng.integers(0, K, n)
    W, b = init_parameters(K, d, rng, std=0.1)
    return X, y, one_hot(y, K), W, b


def test_softmax_columns_sum_to_one_and_survive_huge_scores():
    S = np.array([[1e4, -1e4, 0.0], [0.0, 1e4, -1e4], [-1e4, 0.0, 1e4]])
    P = softmax(S)
    assert np.all(np.isfinite(P))
    np.testing.assert_allclose(P.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.diag(P), [1.0, 1.0, 1.0])


def test_softmax_matches_definition_and_is_shift_invariant():
    S = np.random.default_rng(0).standard_normal((10, 7))
    expected = np.exp(S) / np.exp(S).sum(axis=0)
    np.testing.assert_allclose(softmax(S), expected, rtol=1e-13)
    np.testing.assert_allclose(softmax(S + 123.0), expected, rtol=1e-12)


def test_evaluate_classifier_is_softmax_of_scores(problem):
    X, y, Y, W, b = problem
    P = evaluate_classifier(X, W, b)
    assert P.shape == (10, X.shape[1])
    np.testing.assert_allclose(P, softmax(W @ X + b), rtol=1e-13)


def test_loss_is_mean_cross_entropy_and_cost_adds_l2(problem):
    X, y, Y, W, b = problem
    P = softmax(W @ X + b)
    expected = -np.mean(np.log(P[y, np.arange(y.size)]))
    assert compute_loss(X, Y, W, b) == pytest.approx(expected, rel=1e-13)
    assert compute_loss(X, y, W, b) == pytest.approx(expected, rel=1e-13)  # labels accepted too
    assert compute_cost(X, Y, W, b, 0.5) == pytest.approx(expected + 0.5 * np.sum(W**2), rel=1e-13)
    assert compute_cost(X, Y, W, b, 0.0) == pytest.approx(expected, rel=1e-13)


def test_loss_finite_when_a_probability_underflows():
    X = np.array([[1.0]])
    W = np.array([[1000.0], [-1000.0]])
    b = np.zeros((2, 1))
    assert compute_loss(X, np.array([1]), W, b) == pytest.approx(2000.0)


def test_accuracy_counts_argmax_hits():
    W = np.eye(3)
    b = np.zeros((3, 1))
    X = np.array([[5.0, 0, 0, 1], [0, 5, 0, 0], [0, 0, 5, 0]])
    assert compute_accuracy(X, np.array([0, 1, 2, 0]), W, b) == 1.0
    assert compute_accuracy(X, np.array([0, 1, 0, 1]), W, b) == 0.5


def test_one_hot():
    Y = one_hot(np.array([2, 0, 1]), K=3)
    np.testing.assert_array_equal(Y, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError):
        one_hot(np.array([3]), K=3)


def test_init_parameters_shapes_spread_and_determinism():
    W, b = init_parameters(10, 3072, np.random.default_rng(42), std=0.01)
    assert W.shape == (10, 3072) and b.shape == (10, 1)
    assert W.std() == pytest.approx(0.01, rel=0.03)
    assert abs(W.mean()) < 1e-3
    W2, b2 = init_parameters(10, 3072, np.random.default_rng(42), std=0.01)
    np.testing.assert_array_equal(W, W2)
    np.testing.assert_array_equal(b, b2)
    W32, _ = init_parameters(10, 3072, np.random.default_rng(42), std=0.01, dtype=np.float32)
    assert W32.dtype == np.float32
    np.testing.assert_array_equal(W32, W.astype(np.float32))


def _centred(f, theta, h=1e-6):
    g = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        old = theta[idx]
        theta[idx] = old + h
        fp = f()
        theta[idx] = old - h
        fm = f()
        theta[idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g


@pytest.mark.parametrize("lam", [0.0, 0.1, 1.0])
def test_analytic_gradients_match_finite_differences(problem, lam):
    X, y, Y, W, b = problem
    W, b = W.copy(), b.copy()
    gW, gb = compute_gradients(X, Y, evaluate_classifier(X, W, b), W, lam)
    nW = _centred(lambda: compute_cost(X, Y, W, b, lam), W)
    nb = _centred(lambda: compute_cost(X, Y, W, b, lam), b)
    assert gW.shape == W.shape and gb.shape == b.shape
    np.testing.assert_allclose(gW, nW, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gb, nb, rtol=1e-6, atol=1e-9)


def test_gradients_from_labels_equal_gradients_from_one_hot(problem):
    X, y, Y, W, b = problem
    P = evaluate_classifier(X, W, b)
    gW1, gb1 = compute_gradients(X, Y, P, W, 0.1)
    gW2, gb2 = compute_gradients(X, y, P, W, 0.1)
    np.testing.assert_allclose(gW1, gW2, rtol=1e-14)
    np.testing.assert_allclose(gb1, gb2, rtol=1e-14)
    assert np.array_equal(P, evaluate_classifier(X, W, b))  # P not modified


def test_metrics_from_scores_matches_separate_functions(problem):
    X, y, Y, W, b = problem
    loss, cost, acc = metrics_from_scores(scores(X, W, b), y, 0.1 * float(np.sum(W * W)))
    assert loss == pytest.approx(compute_loss(X, Y, W, b), rel=1e-13)
    assert cost == pytest.approx(compute_cost(X, Y, W, b, 0.1), rel=1e-13)
    assert acc == compute_accuracy(X, y, W, b)


# --------------------------------------------------------------------------- multiple binary cross-entropy


def test_sigmoid_and_softplus_are_stable_and_exact():
    s = np.array([-800.0, -30.0, -1.0, 0.0, 2.0, 30.0, 800.0])
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is the exact limit
        p = sigmoid(s)
        sp = softplus(s)
    np.testing.assert_allclose(p[1:-1], 1 / (1 + np.exp(-s[1:-1])), rtol=1e-14)
    assert p[0] == 0.0 and p[-1] == 1.0 and p[3] == 0.5
    np.testing.assert_allclose(sp[1:-1], np.log1p(np.exp(s[1:-1])), rtol=1e-14)
    assert sp[0] == 0.0 and sp[-1] == 800.0


def test_bce_loss_equals_the_naive_formula(problem):
    X, y, Y, W, b = problem
    P = 1 / (1 + np.exp(-(W @ X + b)))
    K = W.shape[0]
    naive = np.mean(-np.sum((1 - Y) * np.log(1 - P) + Y * np.log(P), axis=0) / K)
    assert compute_loss_bce(X, Y, W, b) == pytest.approx(naive, rel=1e-12)
    assert BCE.compute_loss(X, Y, W, b) == pytest.approx(naive, rel=1e-12)
    assert BCE.compute_cost(X, Y, W, b, 0.3) == pytest.approx(naive + 0.3 * np.sum(W * W), rel=1e-12)
    assert compute_loss_bce(X, y, W, b) == compute_loss_bce(X, Y, W, b)
    np.testing.assert_allclose(BCE.output(W @ X + b), P, rtol=1e-14)
    S = W @ X + b
    loss, cost, acc = BCE.metrics_from_scores(S, Y, 0.5)
    assert loss == pytest.approx(naive, rel=1e-12) and cost == pytest.approx(naive + 0.5, rel=1e-12)
    assert acc == compute_accuracy(X, Y, W, b)  # argmax of scores, as for softmax


def test_bce_loss_finite_for_huge_scores():
    """A confident right answer costs ~0, a confident wrong one |s|/K: never log(0)."""
    X = np.array([[1.0, 1.0]])
    W = np.array([[900.0], [-900.0]])  # K = 2, d = 1
    b = np.zeros((2, 1))
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is the exact limit
        right = compute_loss_bce(X, np.array([0, 0]), W, b)
        wrong = compute_loss_bce(X, np.array([1, 1]), W, b)
    assert right == 0.0
    assert wrong == pytest.approx(900.0, rel=1e-12)  # (900 + 900) / 2


@pytest.mark.parametrize("lam", [0.0, 0.2])
def test_bce_gradients_match_finite_differences(problem, lam):
    X, y, Y, W, b = problem
    gW, gb = compute_gradients_bce(X, Y, sigmoid(W @ X + b), W, lam)
    h = 1e-6
    for k, j in [(0, 0), (3, 7), (9, 49)]:
        Wp, Wm = W.copy(), W.copy()
        Wp[k, j] += h
        Wm[k, j] -= h
        num = (BCE.compute_cost(X, Y, Wp, b, lam) - BCE.compute_cost(X, Y, Wm, b, lam)) / (2 * h)
        assert gW[k, j] == pytest.approx(num, rel=1e-5, abs=1e-9)
    bp = b.copy()
    bp[2] += h
    bm = b.copy()
    bm[2] -= h
    num = (BCE.compute_cost(X, Y, W, bp, lam) - BCE.compute_cost(X, Y, W, bm, lam)) / (2 * h)
    assert gb[2, 0] == pytest.approx(num, rel=1e-5, abs=1e-9)


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="hinge"):
        loss_named("hinge")
