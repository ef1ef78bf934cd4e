"""cifarcli.gradcheck: the fast numerical gradient is a true finite difference, and catches bugs."""

import json
import time

import numpy as np
import pytest

from cifarcli.gradcheck import check_gradients, numerical_gradients, relative_errors
from cifarcli.model import compute_gradients, compute_gradients_svm, init_parameters, one_hot
from numeric import naive_gradients


@pytest.fixture
def problem():
    rng = np.random.default_rng(5)
    d, n, K = 50, 20, 10
    X = rng.standard_normal((d, n))
    y = rng.integers(0, K, n)
    W, b = init_parameters(K, d, rng, std=0.1)
    return X, one_hot(y, K), W, b


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_fast_numerical_gradient_equals_naive_loop(problem, lam):
    X, Y, W, b = problem
    gW, gb = numerical_gradients(X, Y, W, b, lam, 1e-6)
    nW, nb = naive_gradients(X, Y, W, b, lam)
    assert gW.shape == W.shape and gb.shape == b.shape
    # both are finite differences of the same cost; only rounding differs (~1e-10 absolute)
    np.testing.assert_allclose(gW, nW, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gb, nb, rtol=1e-6, atol=1e-8)


def test_regulariser_is_differenced_not_assumed():
    """With X = 0 the loss ignores W, so the whole W-gradient comes from λ‖W‖²: 2λW."""
    rng = np.random.default_rng(0)
    W, b = init_parameters(4, 6, rng, std=0.5)
    X = np.zeros((6, 3))
    Y = one_hot(np.array([0, 1, 2]), 4)
    gW, _ = numerical_gradients(X, Y, W, b, 0.7, 1e-5)
    np.testing.assert_allclose(gW, 1.4 * W, rtol=1e-7, atol=1e-9)
    gW0, _ = numerical_gradients(X, Y, W, b, 0.0, 1e-5)
    np.testing.assert_allclose(gW0, 0.0, atol=1e-9)


def test_relative_errors_formula():
    ga = np.array([1.0, 0.0, 1e-12, -2.0])
    gn = np.array([1.0 + 1e-6, 0.0, 0.0, 2.0])
    err = relative_errors(ga, gn, eps=1e-10)
    np.testing.assert_allclose(err, [1e-6 / (2 + 1e-6), 0.0, 1e-12 / 1e-10, 1.0])


def test_check_passes_correct_gradients_and_is_json(problem):
    X, Y, W, b = problem
    started = time.perf_counter()
    report = check_gradients(X, Y, W, b, lams=(0.0, 0.1))
    elapsed = time.perf_counter() - started
    json.dumps(report)
    # Each λ's time is measured inside the call: positive, and together no more than the call took.
    assert 0 < sum(r["seconds"] for r in report["results"]) <= elapsed
    assert [r["lam"] for r in report["results"]] == [0.0, 0.1]
    assert report["n_params"] == W.size + b.size and report["n_images"] == 20
    for r in report["results"]:
        for p in ("W", "b"):
            assert r[p]["median"] < 1e-7
            assert r[p]["share_below_tol"] > 0.95
        assert len(r["W"]["corner"]) == 5 and len(r["W"]["corner"][0]) == 5
        assert len(r["b"]["corner"]) == 5 and len(r["b"]["corner"][0]) == 1


def _no_lambda(X, Y, P, W, lam):
    return compute_gradients(X, Y, P, W, 0.0)


def _no_mean(X, Y, P, W, lam):
    gW, gb = compute_gradients(X, Y, P, W, lam)
    n = X.shape[1]
    return (gW - 2 * lam * W) * n + 2 * lam * W, gb * n


@pytest.mark.parametrize(
    "wrong,lams,params",
    [
        (_no_lambda, (0.1,), ("W",)),  # λ term dropped: W wrong, b unaffected
        (_no_mean, (0.0, 0.1), ("W", "b")),  # 1/n missing
    ],
)
def test_check_catches_wrong_gradients(problem, wrong, lams, params):
    X, Y, W, b = problem
    report = check_gradients(X, Y, W, b, lams=lams, gradient_fn=wrong)
    for r in report["results"]:
        for p in params:
            assert r[p]["median"] > 1e-3, (r["lam"], p, r[p])
            assert r[p]["share_below_tol"] < 0.05
    assert report["max_error"] > 1e-2


def test_full_size_check_runs_on_all_parameters():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3072, 100))
    Y = one_hot(rng.integers(0, 10, 100))
    W, b = init_parameters(10, 3072, rng)
    report = check_gradients(X, Y, W, b, lams=(0.1,))
    r = report["results"][0]
    assert r["W"]["n"] == 30720 and r["b"]["n"] == 10
    assert r["W"]["median"] < 1e-7 and r["W"]["share_below_tol"] > 0.99


# --------------------------------------------------------------------------- multiple binary cross-entropy


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_fast_bce_numerical_gradient_equals_naive_loop(problem, lam):
    X, Y, W, b = problem
    gW, gb = numerical_gradients(X, Y, W, b, lam, 1e-6, loss="bce")
    nW, nb = naive_gradients(X, Y, W, b, lam, loss="bce")
    np.testing.assert_allclose(gW, nW, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gb, nb, rtol=1e-6, atol=1e-9)


def test_bce_difference_is_exact_where_subtraction_is_not():
    """softplus(s + δ) - softplus(s - δ) via log1p/expm1 against a 50-digit reference."""
    from decimal import Decimal, getcontext

    from cifarcli.config import loss_named

    getcontext().prec = 50
    s, delta = np.array([-3.0, 0.2, 4.0]), np.array([[1e-7, 1e-7, 1e-7]])

    def softplus(v):
        return (Decimal(1) + Decimal(v).exp()).ln()

    exact = [
        float(softplus(Decimal(float(si)) + Decimal(1e-7)) - softplus(Decimal(float(si)) - Decimal(1e-7))) for si in s
    ]
    # one image x = 1 of class 1, K = 2: the difference of W[0, 0] is that of softplus(s_0), over K
    fast = [
        2
        * loss_named("bce").loss_differences(
            np.ones((1, 1)), np.array([1]), np.array([[si], [0.0]]), np.zeros((2, 1)), delta[0, 0]
        )[0][0, 0]
        for si in s
    ]
    np.testing.assert_allclose(fast, exact, rtol=1e-12)


def test_check_passes_bce_gradients(problem):
    X, Y, W, b = problem
    report = check_gradients(X, Y, W, b, lams=(0.0, 0.1), loss="bce")
    json.dumps(report)
    assert report["loss"] == "bce" and report["max_error"] <= 1e-6


def _bce_no_mean_over_classes(X, Y, P, W, lam):
    from cifarcli.model import compute_gradients_bce

    gW, gb = compute_gradients_bce(X, Y, P, W, lam)
    K = W.shape[0]
    return (gW - 2 * lam * W) * K + 2 * lam * W, gb * K  # the 1/K is missing


def test_check_catches_a_bce_gradient_without_its_1_over_K(problem):
    X, Y, W, b = problem
    report = check_gradients(X, Y, W, b, lams=(0.0,), loss="bce", gradient_fn=_bce_no_mean_over_classes)
    assert report["max_error"] > 0.5  # |K g - g| / (K g + g) = 9/11
    for p in ("W", "b"):
        assert report["results"][0][p]["median"] == pytest.approx(9 / 11, rel=1e-3)
    # and the softmax gradient is not the BCE one
    report = check_gradients(X, Y, W, b, lams=(0.0,), loss="bce", gradient_fn=compute_gradients)
    assert report["max_error"] > 1e-2


# --------------------------------------------------------------------------- multi-class SVM (hinge)


def _svm_without_the_true_class_term(X, Y, S, W, lam):
    """The common mistake: +x for each positive margin, but no -(count)·x for the true class."""
    from cifarcli.model import labels_of, svm_margins

    n = X.shape[1]
    G = (svm_margins(S, labels_of(Y)) > 0).astype(np.float64)
    return G @ X.T / n + 2 * lam * W, G.sum(axis=1, keepdims=True) / n


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_fast_svm_numerical_gradient_equals_naive_loop(problem, lam):
    X, Y, W, b = problem
    gW, gb = numerical_gradients(X, Y, W, b, lam, 1e-6, loss="svm")
    nW, nb = naive_gradients(X, Y, W, b, lam, loss="svm")
    np.testing.assert_allclose(gW, nW, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gb, nb, rtol=1e-6, atol=1e-8)


def test_check_passes_svm_gradients(problem):
    X, Y, W, b = problem
    report = check_gradients(X, Y, W, b, lams=(0.0, 0.1), loss="svm")
    json.dumps(report)
    assert report["loss"] == "svm" and report["max_error"] <= 1e-6
    for r in report["results"]:
        assert set(r["kinks"]) == {"W", "b"}
        assert r["W"]["n_excluded"] == r["kinks"]["W"] and r["b"]["n_excluded"] == r["kinks"]["b"]
        assert r["W"]["share_below_tol"] == 1.0


def test_check_catches_an_svm_gradient_without_the_true_class_term(problem):
    X, Y, W, b = problem
    report = check_gradients(X, Y, W, b, lams=(0.0, 0.1), loss="svm", gradient_fn=_svm_without_the_true_class_term)
    assert report["max_error"] > 0.5
    absent = np.mean(np.bincount(np.argmax(Y, axis=0), minlength=10) == 0)
    assert absent == 0.2  # 2 of the 10 classes have no image: no true-class term to miss
    for r in report["results"]:
        for p in ("W", "b"):
            assert r[p]["median"] > 1e-2, (r["lam"], p, r[p])
            assert r[p]["share_below_tol"] <= absent, (r["lam"], p, r[p])
    # nor is the softmax gradient (fed the scores) the SVM's
    assert check_gradients(X, Y, W, b, lams=(0.0,), loss="svm", gradient_fn=compute_gradients)["max_error"] > 1e-2


H = 1e-6


@pytest.fixture
def one_margin_at_a_kink():
    """K = 4, d = 6, n = 5, every margin far from 0 except M[c, 0] = 3e-7 < h: image 0, class c.

    Row 5 of X is 1 for image 0 and 0 elsewhere, so W[c, 5] moves that margin alone.
    """
    from cifarcli.model import labels_of, scores, svm_margins

    rng = np.random.default_rng(8)
    K, d, n = 4, 6, 5
    X = rng.standard_normal((d, n))
    X[:, 0] = [2.0, -0.1, 0.5, -1.5, 0.2, 1.0]
    X[5, 1:] = 0.0
    y = np.array([1, 0, 2, 3, 1])
    W, b = init_parameters(K, d, rng, std=0.3)
    c, far = 2, 1e-4  # far: no kink when |m| > h · max|x| (≈ 2e-6)
    margins = np.ones((K, n), bool)  # the margins that exist: not the true classes'
    margins[labels_of(y), np.arange(n)] = False
    M = svm_margins(scores(X, W, b), y)
    assert np.abs(M[margins]).min() > far
    W[c, 5] += 3e-7 - M[c, 0]
    M = svm_margins(scores(X, W, b), y)
    assert M[c, 0] == pytest.approx(3e-7, abs=1e-15)
    margins[c, 0] = False
    assert np.abs(M[margins]).min() > far
    return X, one_hot(y, K), W, b, c


def test_svm_kinks_are_counted_and_left_out(one_margin_at_a_kink):
    X, Y, W, b, c = one_margin_at_a_kink
    y0 = int(np.argmax(Y[:, 0]))
    gW, gb, kW, kb = numerical_gradients(X, Y, W, b, 0.0, H, loss="svm", return_kinks=True)
    # Shifting row c moves M[c, 0]; shifting row y0 (image 0's true class) moves all of image 0's margins.
    # W[k, j] moves them by h·X[j, 0]: a kink where h|X[j, 0]| > 3e-7, i.e. |X[j, 0]| > 0.3: j = 0, 2, 3, 5.
    expected_W = np.zeros(W.shape, bool)
    expected_W[np.ix_([c, y0], [0, 2, 3, 5])] = True
    expected_b = np.zeros(b.shape, bool)
    expected_b[[c, y0]] = True
    np.testing.assert_array_equal(kW, expected_W)
    np.testing.assert_array_equal(kb, expected_b)

    report = check_gradients(X, Y, W, b, lams=(0.0, 0.1), h=H, loss="svm")
    for r in report["results"]:
        assert r["kinks"] == {"W": 8, "b": 2}
        assert r["W"]["n_excluded"] == 8 and r["b"]["n_excluded"] == 2 and r["W"]["n"] == W.size
        assert r["W"]["max"] <= 1e-6 and r["b"]["max"] <= 1e-6  # the rest passes
    assert report["max_error"] <= 1e-6
    # the excluded ones really are no gradient: the difference straddling the kink is off
    ga_W, ga_b = compute_gradients_svm(X, Y, W @ X + b, W, 0.0)
    err_W, err_b = relative_errors(ga_W, gW), relative_errors(ga_b, gb)
    assert err_b[kb].min() > 1e-2 and err_W[kW].max() > 1e-2
    assert err_W[~kW].max() <= 1e-6 and err_b[~kb].max() <= 1e-6


def test_svm_difference_at_a_kink_is_still_the_exact_difference(one_margin_at_a_kink):
    """Across the kink the fast centred difference is still (J(θ+h) - J(θ-h)) / 2h, only not a gradient."""
    X, Y, W, b, _ = one_margin_at_a_kink
    gW, gb = numerical_gradients(X, Y, W, b, 0.1, H, loss="svm")
    nW, nb = naive_gradients(X, Y, W, b, 0.1, h=H, loss="svm")
    np.testing.assert_allclose(gW, nW, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gb, nb, rtol=1e-6, atol=1e-8)


def test_smooth_losses_have_no_kinks(problem):
    X, Y, W, b = problem
    for loss in ("softmax", "bce"):
        r = check_gradients(X, Y, W, b, lams=(0.0,), loss=loss)["results"][0]
        assert r["kinks"] == {"W": 0, "b": 0} and r["W"]["n_excluded"] == 0


def test_error_summary_leaves_out_the_excluded():
    from cifarcli.gradcheck import error_summary

    err = np.array([[1e-9, 0.5], [2e-9, 3e-9]])
    s = error_summary(err, exclude=np.array([[False, True], [False, False]]))
    assert s["max"] == 3e-9 and s["mean"] == pytest.approx(2e-9) and s["share_below_tol"] == 1.0
    assert s["n"] == 4 and s["n_excluded"] == 1 and s["corner"][0][1] == 0.5
    assert error_summary(err)["max"] == 0.5 and error_summary(err)["n_excluded"] == 0
    nothing = error_summary(err, exclude=np.ones((2, 2), bool))  # nothing checked: cannot pass
    assert nothing["max"] == 1.0 and nothing["share_below_tol"] == 0.0 and nothing["n_excluded"] == 4
