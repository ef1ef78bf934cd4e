"""cifarcli.train: mini-batch GD, history, determinism, resume, divergence, validation."""

import math

import numpy as np
import pytest

import tinycifar
from cifarcli.config import TrainConfig
from cifarcli.errors import CifarError, OptionError, WorkFailed
from cifarcli.model import compute_cost, compute_gradients, evaluate_classifier, init_parameters
from cifarcli.train import HISTORY_KEYS, Checkpoint, TrainingDiverged, train


def test_training_lowers_cost_and_learns_the_fixture(data32):
    cfg = TrainConfig(lam=0.01, eta=0.01, n_epochs=10, n_batch=20)
    res = train(cfg, data32)
    h = res.history
    assert set(h) == set(HISTORY_KEYS)
    assert h["epoch"] == list(range(11))
    assert all(len(v) == 11 for v in h.values())
    assert all(isinstance(v, float) for k in HISTORY_KEYS[1:] for v in h[k])
    assert h["train_cost"][-1] < 0.5 * h["train_cost"][0]
    assert h["train_acc"][-1] > 0.95 and h["val_acc"][-1] > 0.9
    assert h["train_acc"][0] < 0.3  # random start
    assert res.W.shape == (10, 3072) and res.b.shape == (10, 1) and res.W.dtype == np.float32
    assert len(res.timings["epoch_seconds"]) == 10 and res.timings["total_seconds"] > 0
    assert res.config is cfg


def test_history_metrics_equal_model_functions(data64):
    cfg = TrainConfig(lam=0.1, eta=0.005, n_epochs=2, n_batch=40, dtype="float64")
    seen = {}
    res = train(cfg, data64, on_epoch=lambda ck: seen.setdefault(ck.epoch, ck))
    assert sorted(seen) == [0, 1, 2]
    for epoch, ck in seen.items():
        cost = compute_cost(data64.X_train, data64.Y_train, ck.W, ck.b, 0.1)
        vcost = compute_cost(data64.X_val, data64.Y_val, ck.W, ck.b, 0.1)
        assert res.history["train_cost"][epoch] == pytest.approx(cost, rel=1e-12)
        assert res.history["val_cost"][epoch] == pytest.approx(vcost, rel=1e-12)
        assert len(ck.history["epoch"]) == epoch + 1
    np.testing.assert_array_equal(seen[2].W, res.W)


def test_one_epoch_equals_the_textbook_loop(data64):
    """The fast loop is the course's update W -= eta*grad_W, b -= eta*grad_b, batches in order."""
    cfg = TrainConfig(lam=0.1, eta=0.01, n_epochs=1, n_batch=30, dtype="float64")  # 160 = 5*30 + 10
    res = train(cfg, data64)
    W, b = init_parameters(10, 3072, np.random.default_rng(cfg.seed), dtype=np.float64)
    X, Y = data64.X_train, data64.Y_train
    for s in range(0, X.shape[1], cfg.n_batch):
        Xb, Yb = X[:, s : s + cfg.n_batch], Y[:, s : s + cfg.n_batch]
        gW, gb = compute_gradients(Xb, Yb, evaluate_classifier(Xb, W, b), W, cfg.lam)
        W = W - cfg.eta * gW
        b = b - cfg.eta * gb
    np.testing.assert_allclose(res.W, W, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(res.b, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_config_gives_bit_identical_weights(dtype):
    data = tinycifar.prepared(dtype)
    cfg = TrainConfig(lam=0.1, eta=0.01, n_epochs=3, n_batch=25, dtype=dtype)
    a, b = train(cfg, data), train(cfg, data)
    assert a.W.tobytes() == b.W.tobytes() and a.b.tobytes() == b.b.tobytes()
    assert a.history == b.history
    c = train(TrainConfig(lam=0.1, eta=0.01, n_epochs=3, n_batch=25, dtype=dtype, seed=7), data)
    assert not np.array_equal(a.W, c.W)


@pytest.mark.parametrize("k", [0, 2, 4])
def test_resume_is_bit_identical_to_uninterrupted(data32, k):
    cfg = TrainConfig(lam=0.1, eta=0.01, n_epochs=5, n_batch=20)
    checkpoints = {}
    full = train(cfg, data32, on_epoch=lambda ck: checkpoints.__setitem__(ck.epoch, ck))
    assert sorted(checkpoints) == list(range(6))
    resumed = train(cfg, data32, resume=checkpoints[k])
    assert resumed.W.tobytes() == full.W.tobytes()
    assert resumed.b.tobytes() == full.b.tobytes()
    assert resumed.history == full.history
    assert resumed.timings["first_epoch"] == k + 1


def test_checkpoints_are_independent_copies(data32):
    cfg = TrainConfig(lam=0.0, eta=0.01, n_epochs=3, n_batch=40)
    cks = []
    train(cfg, data32, on_epoch=cks.append)
    assert [c.epoch for c in cks] == [0, 1, 2, 3]
    assert not np.array_equal(cks[0].W, cks[3].W)
    assert not np.shares_memory(cks[1].W, cks[2].W)
    assert cks[0].b.shape == (10, 1)


def test_on_batch_reports_progress(data32):
    calls = []
    train(
        TrainConfig(lam=0.0, eta=0.01, n_epochs=2, n_batch=4), data32, on_batch=lambda e, i, n: calls.append((e, i, n))
    )
    assert calls, "on_batch never called"
    assert all(n == 40 for _, _, n in calls)
    assert (1, 39, 40) in calls and (2, 39, 40) in calls  # the last batch always reported
    assert len(calls) <= 2 * 21  # throttled, not once per batch


def test_divergence_raises_with_epoch_and_partial_history(data32):
    cfg = TrainConfig(lam=1.0, eta=1e3, n_epochs=10, n_batch=20)  # |1 - 2ηλ| ≫ 1: W explodes
    with pytest.raises(TrainingDiverged) as info:
        train(cfg, data32)
    err = info.value
    assert isinstance(err, WorkFailed) and err.exit_code == 1
    assert 1 <= err.epoch < 10
    assert f"epoch {err.epoch}" in err.message and "learning rate" in err.hint
    assert err.history["epoch"] == list(range(err.epoch + 1))
    assert math.isfinite(err.history["train_cost"][0])
    assert not math.isfinite(err.history["train_cost"][-1]) or not math.isfinite(err.history["val_cost"][-1])


@pytest.mark.parametrize(
    "kwargs,option",
    [
        (dict(eta=0.0), "--eta"),
        (dict(eta=-1.0), "--eta"),
        (dict(eta=float("nan")), "--eta"),
        (dict(eta=float("inf")), "--eta"),
        (dict(lam=-0.1), "--lam"),
        (dict(lam=float("nan")), "--lam"),
        (dict(n_batch=0), "--n-batch"),
        (dict(n_batch=161), "--n-batch"),
        (dict(n_epochs=0), "--n-epochs"),
        (dict(split="random"), "--split"),
        (dict(dtype="float16"), "--dtype"),
        (dict(seed=-1), "--seed"),
        (dict(n_batch=2.5), "--n-batch"),
        (dict(val_size=0), "--val-size"),
    ],
)
def test_validation_names_the_option(kwargs, option):
    base = dict(lam=0.1, eta=0.001)
    base.update(kwargs)
    cfg = TrainConfig(**base)
    with pytest.raises(OptionError) as info:
        cfg.validate(160)
    assert info.value.option == option.lstrip("-").replace("-", "_")
    assert "--" not in info.value.message  # the library speaks the domain; the CLI adds the flag
    assert info.value.exit_code == 2


def test_valid_config_passes_and_train_validates(data32):
    assert TrainConfig(lam=0, eta=0.1).validate(160).n_batch == 100
    with pytest.raises(OptionError, match="larger than the training split"):
        train(TrainConfig(lam=0.0, eta=0.01, n_batch=1000), data32)


def test_key_params_canonical_and_stable():
    a = TrainConfig(lam=0, eta=0.001)
    assert a.key_params() == {
        "lam": 0.0,
        "eta": 0.001,
        "n_epochs": 40,
        "n_batch": 100,
        "seed": 42,
        "split": "seed",
        "dtype": "float32",
    }
    assert TrainConfig(lam=0.0, eta=0.001, val_size=5000).key_params() == a.key_params()
    full = TrainConfig(lam=0, eta=0.001, split="full", val_size=5000).key_params()
    assert full["val_size"] == 5000
    assert TrainConfig(lam=0.1, eta=0.001).key_params() != a.key_params()


def test_float32_default_tracks_float64(data32, data64):
    r32 = train(TrainConfig(lam=0.1, eta=0.01, n_epochs=3, n_batch=20, dtype="float32"), data32)
    r64 = train(TrainConfig(lam=0.1, eta=0.01, n_epochs=3, n_batch=20, dtype="float64"), data64)
    np.testing.assert_allclose(r32.history["train_cost"], r64.history["train_cost"], rtol=1e-4)
    np.testing.assert_allclose(r32.W, r64.W, rtol=1e-3, atol=1e-5)


def test_resume_rejects_mismatched_checkpoint(data32):
    cfg = TrainConfig(lam=0.0, eta=0.01, n_epochs=2, n_batch=40)
    bad = Checkpoint(epoch=1, W=np.zeros((10, 5)), b=np.zeros((10, 1)), history={k: [0.0, 0.0] for k in HISTORY_KEYS})
    with pytest.raises(CifarError):
        train(cfg, data32, resume=bad)


@pytest.mark.parametrize("threads", [1, 2])
def test_divergence_warns_nothing_on_either_thread(data32, threads):
    """A blow-up is reported once, as TrainingDiverged: no numpy RuntimeWarning from the helper thread."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TrainingDiverged):
            train(TrainConfig(lam=1.0, eta=1e3, n_epochs=10, n_batch=20), data32, threads=threads)
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
