"""cifarcli.losses: each loss class's gradients against finite differences, its fast in-place gradient
against its reference gradient, its row metrics, its outputs; and no loss-name switch outside it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cifarcli import losses
from cifarcli.config import LOSSES, TrainConfig, loss_named
from cifarcli.fast_loop import FastLoop
from cifarcli.gradcheck import numerical_gradients
from cifarcli.model import compute_cost, compute_gradients, init_parameters, metrics_from_scores, scores, softmax
from cifarcli.threads import TwoHalves
from numeric import naive_gradients

CLASSES = {"softmax": losses.Softmax, "bce": losses.BinaryCrossEntropy, "svm": losses.MulticlassSVM}


@pytest.fixture
def problem():
    rng = np.random.default_rng(5)
    d, n, K = 12, 25, 10
    X = rng.standard_normal((d, n))
    y = rng.integers(0, K, n)
    W, b = init_parameters(K, d, rng, std=0.3)
    return X, y, W, b


def test_each_name_maps_to_its_class_once():
    assert set(LOSSES) == set(CLASSES)
    for name in LOSSES:
        loss = loss_named(name)
        assert type(loss) is CLASSES[name] and loss.name == name and isinstance(loss, losses.Loss)
        assert loss_named(name) is loss  # one object per name
        assert TrainConfig(loss=name).loss_fn is loss
    assert [n for n in LOSSES if loss_named(n).is_study] == ["softmax"]
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        loss_named("hinge")


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("lam", [0.0, 0.4])
def test_reference_gradient_matches_finite_differences(problem, name, lam):
    """The class's analytic gradient equals a plain parameter-by-parameter centred difference of its cost."""
    X, y, W, b = problem
    loss = loss_named(name)
    gW, gb = loss.compute_gradients(X, y, loss.output(scores(X, W, b)), W, lam)
    nW, nb = naive_gradients(X, y, W, b, lam, h=1e-6, loss=name)
    _, _, kW, kb = numerical_gradients(X, y, W, b, lam, 1e-6, name, return_kinks=True)
    assert not kW.any() and not kb.any()  # no hinge kink within h at this point
    np.testing.assert_allclose(gW, nW, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gb, nb, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", LOSSES)
def test_exact_differences_match_the_plain_ones_and_catch_a_wrong_gradient(problem, name):
    """gradcheck's exact centred difference (the class's ``loss_differences``) equals the plain one, and a
    gradient of another loss is far from it."""
    X, y, W, b = problem
    eW, eb = numerical_gradients(X, y, W, b, 0.2, 1e-6, name)
    nW, nb = naive_gradients(X, y, W, b, 0.2, h=1e-6, loss=name)
    np.testing.assert_allclose(eW, nW, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(eb, nb, rtol=1e-6, atol=1e-8)
    other = loss_named("bce" if name == "softmax" else "softmax")
    wrong, _ = other.compute_gradients(X, y, other.output(scores(X, W, b)), W, 0.2)
    assert np.max(np.abs(wrong - eW) / (np.abs(wrong) + np.abs(eW))) > 1e-2


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("width", [1, 2])  # scores alone, and the fused [W; W_prev] layout
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fast_in_place_gradient_equals_the_reference(problem, name, width, dtype):
    """``batch_gradient`` on score rows gives step · G: Gᵀ A = η ∂L/∂W and G 1 = η ∂L/∂b of the reference."""
    X, y, W, b = problem
    loss, K, m = loss_named(name), W.shape[0], X.shape[1]
    eta = 0.7
    A = np.ascontiguousarray(X.T, dtype=dtype)
    S = np.zeros((m, width * K), dtype)
    S[:, :K] = A @ W.T.astype(dtype) + b.ravel().astype(dtype)
    G, S_flat = S[:, :K], S.reshape(-1)
    step = np.dtype(dtype).type(eta / loss.batch_divisor(m, K))
    loss.batch_gradient(G, S_flat, np.arange(m) * width * K + y, step, np.empty((m, 1), dtype))
    gW, gb = loss.compute_gradients(X, y, loss.output(scores(X, W, b)), W, 0.0)
    rtol = 1e-12 if dtype == "float64" else 2e-4
    np.testing.assert_allclose(G.T @ A, eta * gW, rtol=rtol, atol=rtol * np.abs(gW).max())
    np.testing.assert_allclose(G.sum(axis=0), eta * gb.ravel(), rtol=rtol, atol=rtol * np.abs(gb).max())


@pytest.mark.parametrize("name", LOSSES)
def test_fast_loop_batch_is_the_reference_gradient(data64, name):
    """One batch through the fast loop (gather, forward, the loss's gradient) equals the reference gradient."""
    config = TrainConfig(lam=0.0, eta=0.5, n_epochs=1, n_batch=40, dtype="float64", loss=name)
    W0, b0 = init_parameters(10, data64.X_train.shape[0], np.random.default_rng(0), std=0.05)
    with TwoHalves(1) as halves:
        loop = FastLoop(config, data64, W0, b0, halves, first_epoch=1)
        s, e = loop.bounds[0]
        Ab, true_flat = loop.gather(s, e, None, None, None)
        G = loop.step(None, Ab, s, e)
        loop.loss.batch_gradient(G, loop.S_flat, true_flat, loop.steps[0], loop.col[: e - s])
    X, y = data64.X_train[:, s:e], data64.y_train[s:e]
    gW, gb = config.loss_fn.compute_gradients(X, y, config.loss_fn.output(scores(X, W0, b0)), W0, 0.0)
    np.testing.assert_allclose(G.T @ Ab, config.eta * gW, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(G.sum(axis=0), config.eta * gb.ravel(), rtol=1e-12, atol=1e-15)


def test_fast_loop_is_complete_once_built(data64):
    """Rates, threads and the epoch order exist from __init__; the rate follows the epoch's decay."""
    config = TrainConfig(
        eta=0.1, lam=0.2, n_epochs=3, n_batch=50, dtype="float64", decay_every=1, decay_factor=0.5, shuffle=True
    )
    W0, b0 = init_parameters(10, data64.X_train.shape[0], np.random.default_rng(0))
    with TwoHalves(1) as halves:
        loop = FastLoop(config, data64, W0, b0, halves, first_epoch=2)
        assert loop.halves is halves and loop.epoch_order is None
        assert loop.eta == 0.05 and loop.steps[0] == 0.05 / 50 and loop.decay == 1 - 2 * 0.05 * 0.2
        loop.run_epoch(3, None)
        assert loop.eta == 0.025 and loop.steps[0] == 0.025 / 50
        assert sorted(loop.epoch_order) == list(range(data64.X_train.shape[1]))


@pytest.mark.parametrize("name", LOSSES)
def test_row_metrics_equal_the_reference_metrics(problem, name):
    X, y, W, b = problem
    loss = loss_named(name)
    S = scores(X, W, b)
    T = np.ascontiguousarray(S.T)
    got = loss.row_metrics(T, y, np.arange(y.size) * S.shape[0] + y, 0.25)
    np.testing.assert_allclose(got, loss.metrics_from_scores(S, y, 0.25), rtol=1e-13)
    assert loss.compute_cost(X, y, W, b, 0.25) == pytest.approx(got[0] + 0.25 * np.sum(W * W), rel=1e-13)


def test_softmax_is_the_course_functions(problem):
    X, y, W, b = problem
    loss, S = loss_named("softmax"), scores(X, W, b)
    assert loss.compute_cost(X, y, W, b, 0.3) == compute_cost(X, y, W, b, 0.3)
    assert loss.metrics_from_scores(S, y, 0.1) == metrics_from_scores(S, y, 0.1)
    for got, want in zip(
        loss.compute_gradients(X, y, loss.output(S), W, 0.3), compute_gradients(X, y, softmax(S), W, 0.3)
    ):
        np.testing.assert_array_equal(got, want)


def test_outputs_are_what_they_say(problem):
    X, y, W, b = problem
    S = scores(X, W, b)
    soft, bce, svm = (loss_named(n) for n in ("softmax", "bce", "svm"))
    np.testing.assert_allclose(soft.output(S).sum(axis=0), 1.0, rtol=1e-14)
    assert soft.output_words["sums_to_one"] and soft.gives_probabilities and soft.tag == ""
    P = bce.output(S)
    assert ((P > 0) & (P < 1)).all() and not np.allclose(P.sum(axis=0), 1.0)
    assert not bce.output_words["sums_to_one"] and bce.probability_kind == "sigmoid" and bce.tag == "BCE"
    for loss in (soft, bce):
        out = loss.output(S)
        np.testing.assert_allclose(loss.true_class_probabilities(S, y), out[y, np.arange(y.size)], rtol=1e-12)
        assert loss.smooth and loss.outputs == "probabilities"
    assert svm.output(S) is S and svm.outputs == "scores" and not svm.smooth and svm.output_words["scores"]
    with pytest.raises(ValueError, match="no probabilities"):
        svm.true_class_probabilities(S, y)


_NAME = "[\"'](?:" + "|".join(map(re.escape, LOSSES)) + ")[\"']"  # a loss name as a string literal
_HOLDING_A_NAME = r"[(\[{][^()\[\]{}]*" + _NAME  # a tuple, list or set literal that holds one
LOSS_NAME_TEST = re.compile(
    "|".join(
        [
            rf"(==|!=)\s*{_NAME}",  # loss == "svm"
            rf"{_NAME}\s*(==|!=)",  # "svm" != loss
            rf"\bin\s*{_HOLDING_A_NAME}",  # loss in ("softmax", "bce"), for loss in ("softmax", other)
            rf"{_NAME}\s+(not\s+)?in\b",  # "svm" in names
            rf"(==|!=)\s*{_HOLDING_A_NAME}",  # pair == ("softmax", other)
            rf"{_NAME}[^()\[\]{{}}]*[)\]}}]\s*(==|!=)",  # ("softmax", other) == pair
            rf"\bcase\s+{_NAME}",  # match loss: case "svm":
        ]
    )
)


@pytest.mark.parametrize(
    "line",
    [
        'if loss == "svm":',
        "if 'bce' != config.loss:",
        'if loss in ("softmax", "bce"):',
        'by_loss = {loss: [r for r in done if loss_of(r) == loss] for loss in ("softmax", other)}',
        'if loss not in ["svm"]:',
        'if "svm" in names:',
        'if pair == ("softmax", other):',
        'if ("bce", other) != pair:',
        'case "svm":',
    ],
)
def test_the_loss_name_scan_catches_comparisons_membership_and_tuples(line):
    assert LOSS_NAME_TEST.search(line)


@pytest.mark.parametrize(
    "line",
    [
        'wide, narrow = ("BCE", "softmax") if gb > gs else ("softmax", "BCE")',
        'loss: str = "softmax"',
        'counts = test_words(t, name, "softmax")',
        "if loss.is_study:",
    ],
)
def test_the_loss_name_scan_lets_a_name_that_is_not_compared_pass(line):
    assert not LOSS_NAME_TEST.search(line)


def test_no_module_but_losses_and_config_compares_a_loss_name():
    """Outside losses.py and config.py no line compares a loss name, tests it for membership, or compares a
    tuple, list or set of them: what a loss does is asked of its class (``config.loss_named``)."""
    package = Path(losses.__file__).parent
    found = [
        f"{path.relative_to(package)}:{i}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name not in ("losses.py", "config.py")
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if LOSS_NAME_TEST.search(line)
    ]
    assert found == []
