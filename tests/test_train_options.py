"""Training options beyond the study: shuffle, flip, step decay, Xavier init, BCE loss.

Every option is off by default and then leaves run IDs untouched; each one is
checked against a plain course-style loop written here, and resume stays
bit-identical with the per-epoch randomness switched on.
"""

import json
import math

import numpy as np
import pytest

from cifarcli import stages
from cifarcli.augment import IMAGE_SHAPE, epoch_plan, flip_rows, mirror_index
from cifarcli.config import GradcheckConfig, TrainConfig, learning_rate
from cifarcli.errors import CifarError, OptionError
from cifarcli.model import (
    compute_cost,
    compute_gradients,
    compute_gradients_bce,
    compute_loss_bce,
    init_parameters,
    one_hot,
    scores,
)
from cifarcli.prepare import normalisation_stats, normalise
from cifarcli.train import init_std, train

DEFAULT_KEY = {
    "lam": 0.1,
    "eta": 0.001,
    "n_epochs": 40,
    "n_batch": 100,
    "seed": 42,
    "split": "seed",
    "dtype": "float32",
}
OFF = dict(shuffle=False, flip=0.0, decay_every=0, decay_factor=1.0, init="normal", loss="softmax")


# --------------------------------------------------------------------------- keys


def test_default_key_params_are_the_studys_and_omit_every_new_option():
    assert TrainConfig(lam=0.1, eta=0.001).key_params() == DEFAULT_KEY
    assert TrainConfig(lam=0.1, eta=0.001, **OFF).key_params() == DEFAULT_KEY
    assert TrainConfig(lam=0.1, eta=0.001, split="full").key_params() == {
        **DEFAULT_KEY,
        "split": "full",
        "val_size": 1000,
    }


def test_default_run_ids_are_unchanged(workspace):
    """Pinned before the options existed: the study's runs keep their IDs (and caches)."""
    assert stages.train_key(TrainConfig(lam=0.1, eta=0.001), "fixed-dataset-key") == "07d1aa552e3a4c71"
    assert stages.train_key(TrainConfig(lam=0.1, eta=0.001, split="full"), "fixed-dataset-key") == "b7bcd00e62ffa7c8"
    assert stages.GRADCHECK.key(GradcheckConfig().key_params(), {"dataset": "fixed-dataset-key"}) == "21b9d41c4872120a"
    assert (
        stages.train_key(TrainConfig(lam=0.1, eta=0.001, n_epochs=2, **OFF), "fixed-dataset-key") == "486b065789ac7d64"
    )
    assert (
        stages.train_key(TrainConfig(lam=0.0, eta=0.1, split="dd2424", dtype="float64"), "fixed-dataset-key")
        == "3191ed87665fdb70"
    )
    # on the tiny fixture (its archive's bytes, hence its dataset key, vary with the gzip time stamp)
    run = stages.train(workspace, TrainConfig(lam=0.1, eta=0.001, n_epochs=2, **OFF))
    assert run.key == stages.train_key(TrainConfig(lam=0.1, eta=0.001, n_epochs=2), run.meta["inputs"]["dataset"])
    assert run.meta["params"] == {**DEFAULT_KEY, "n_epochs": 2}


@pytest.mark.parametrize(
    "option",
    [
        {"shuffle": True},
        {"flip": 0.5},
        {"flip": 1.0},
        {"decay_every": 10, "decay_factor": 0.1},
        {"init": "xavier"},
        {"loss": "bce"},
    ],
)
def test_each_option_enters_the_key_when_set(option):
    params = TrainConfig(lam=0.1, eta=0.001, **option).key_params()
    assert params == {**DEFAULT_KEY, **option}
    assert stages.train_key(TrainConfig(lam=0.1, eta=0.001, **option), "d") != stages.train_key(
        TrainConfig(lam=0.1, eta=0.001), "d"
    )


def test_keys_are_canonical():
    base = TrainConfig(lam=0.1, eta=0.001)
    assert (
        TrainConfig(lam=0.1, eta=0.001, flip=1).key_params() == TrainConfig(lam=0.1, eta=0.001, flip=1.0).key_params()
    )
    assert TrainConfig(lam=0.1, eta=0.001, shuffle=np.bool_(True)).key_params()["shuffle"] is True
    # a decay needs both options: either alone changes nothing, so it is the same run
    assert TrainConfig(lam=0.1, eta=0.001, decay_every=5).key_params() == base.key_params()
    assert TrainConfig(lam=0.1, eta=0.001, decay_factor=0.5).key_params() == base.key_params()
    keys = {
        json.dumps(TrainConfig(lam=0.1, eta=0.001, **o).key_params(), sort_keys=True)
        for o in (
            {},
            {"shuffle": True},
            {"flip": 0.5},
            {"shuffle": True, "flip": 0.5},
            {"decay_every": 2, "decay_factor": 0.5},
            {"decay_every": 3, "decay_factor": 0.5},
            {"init": "xavier"},
            {"loss": "bce"},
        )
    }
    assert len(keys) == 8


@pytest.mark.parametrize(
    "kwargs,option",
    [
        ({"flip": 1.5}, "--flip"),
        ({"flip": -0.1}, "--flip"),
        ({"flip": float("nan")}, "--flip"),
        ({"flip": "0.5"}, "--flip"),
        ({"decay_every": -1}, "--decay-every"),
        ({"decay_every": 2.5}, "--decay-every"),
        ({"decay_factor": 0.0}, "--decay-factor"),
        ({"decay_factor": 1.5}, "--decay-factor"),
        ({"decay_factor": float("nan")}, "--decay-factor"),
        ({"init": "he"}, "--init"),
        ({"loss": "hinge"}, "--loss"),
        ({"shuffle": "yes"}, "--shuffle"),
    ],
)
def test_validation_names_the_option(kwargs, option):
    with pytest.raises(OptionError) as info:
        TrainConfig(lam=0.1, eta=0.001, **kwargs).validate()
    assert info.value.option == option.lstrip("-").replace("-", "_") and "--" not in info.value.message


def test_boundary_values_are_valid():
    for kwargs in (
        {"flip": 0.0},
        {"flip": 1.0},
        {"decay_every": 0},
        {"decay_factor": 1.0},
        {"decay_factor": 1e-3},
        {"init": "xavier"},
        {"loss": "bce"},
        {"shuffle": True},
    ):
        TrainConfig(lam=0.1, eta=0.001, **kwargs).validate()


# --------------------------------------------------------------------------- per-epoch randomness


def test_epoch_plan_is_seeded_per_epoch():
    cfg = TrainConfig(lam=0, eta=0.01, shuffle=True, flip=0.5, seed=7)
    order, flips = epoch_plan(cfg, 1000, 3)
    again = epoch_plan(cfg, 1000, 3)
    np.testing.assert_array_equal(order, again[0])
    np.testing.assert_array_equal(flips, again[1])
    assert sorted(order.tolist()) == list(range(1000)) and flips.dtype == bool
    assert 0.4 < flips.mean() < 0.6
    other_epoch = epoch_plan(cfg, 1000, 4)
    other_seed = epoch_plan(TrainConfig(lam=0, eta=0.01, shuffle=True, flip=0.5, seed=8), 1000, 3)
    for other in (other_epoch, other_seed):
        assert not np.array_equal(order, other[0]) and not np.array_equal(flips, other[1])
    # options off: nothing is drawn; flip only: no permutation; probability 1: every image
    assert epoch_plan(TrainConfig(lam=0, eta=0.01), 10, 1) == (None, None)
    o, f = epoch_plan(TrainConfig(lam=0, eta=0.01, flip=1.0), 10, 1)
    assert o is None and f.all()
    o, f = epoch_plan(TrainConfig(lam=0, eta=0.01, shuffle=True), 10, 1)
    assert f is None and sorted(o) == list(range(10))


@pytest.mark.parametrize("option", [{"shuffle": True}, {"flip": 0.5}])
def test_shuffle_and_flip_are_deterministic_and_differ_across_seeds(data32, option):
    def weights(seed):
        return train(TrainConfig(lam=0.01, eta=0.01, n_epochs=2, n_batch=20, seed=seed, **option), data32).W

    np.testing.assert_array_equal(weights(1), weights(1))
    # same initial weights, different per-epoch draws: epoch_rng is all that differs
    plain = train(TrainConfig(lam=0.01, eta=0.01, n_epochs=2, n_batch=20, seed=1), data32).W
    assert not np.array_equal(weights(1), plain)
    assert not np.allclose(weights(1), weights(2), atol=1e-6)


# --------------------------------------------------------------------------- the flip itself


def test_mirror_index_reverses_columns_within_each_row_and_channel():
    image = np.arange(3072).reshape(IMAGE_SHAPE)
    mirrored = image.ravel()[mirror_index()].reshape(IMAGE_SHAPE)
    np.testing.assert_array_equal(mirrored, image[:, :, ::-1])
    c, r = 2, 5
    assert mirrored[c, r, 0] == c * 1024 + r * 32 + 31 and mirrored[c, r, 31] == c * 1024 + r * 32


def _asymmetric_images(n=6, seed=0):
    """uint8 images (n × 3072): left half bright in channel 0, right half bright in channel 2, plus noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, *IMAGE_SHAPE))
    img[:, 0, :, :16] = 200
    img[:, 2, :, 16:] = 150
    img[:, 1] = np.linspace(0, 250, 32)  # a left-to-right ramp
    img += rng.normal(0, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8).reshape(n, -1)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-6)])
def test_flip_rows_is_the_normalised_mirror_of_the_raw_image(dtype, tol):
    """The course's flip: mirror the raw image, then normalise with the training statistics."""
    x = _asymmetric_images()
    mean, std = normalisation_stats(x)
    Z = normalise(x, mean, std, dtype).T  # n × d rows
    raw_mirrored = x.reshape(-1, *IMAGE_SHAPE)[..., ::-1].reshape(len(x), -1)
    expected = normalise(raw_mirrored, mean, std, dtype).T
    flipped = flip_rows(np.ascontiguousarray(Z), mean, std)
    assert flipped.dtype == np.dtype(dtype)
    np.testing.assert_allclose(flipped, expected, atol=tol, rtol=tol)
    # the bright left half of channel 0 is now on the right, in every row
    pixels = raw_mirrored.reshape(-1, *IMAGE_SHAPE)
    assert (pixels[:, 0, :, 16:].mean() > 150) and (pixels[:, 0, :, :16].mean() < 60)
    # mirroring the normalised rows alone would be wrong here: the statistics are not symmetric
    naive = np.ascontiguousarray(Z).reshape(-1, *IMAGE_SHAPE)[..., ::-1].reshape(len(x), -1)
    assert np.abs(naive - expected).max() > 0.1
    # flipping twice gives the image back
    np.testing.assert_allclose(flip_rows(flipped, mean, std), Z, atol=10 * tol, rtol=10 * tol)


def test_flip_one_trains_on_exactly_the_mirrored_images(data64):
    """flip=1 mirrors every image: one epoch equals training on the pre-mirrored split."""
    cfg = TrainConfig(lam=0.1, eta=0.01, n_epochs=1, n_batch=30, dtype="float64")
    flipped = train(TrainConfig(**{**cfg.to_dict(), "flip": 1.0}), data64)
    mirrored = _replace_train(data64, flip_rows(np.ascontiguousarray(data64.X_train.T), data64.mean, data64.std).T)
    reference = train(cfg, mirrored)
    np.testing.assert_allclose(flipped.W, reference.W, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(flipped.b, reference.b, rtol=1e-10, atol=1e-13)
    # but its history is that of the unflipped training split
    plain = train(TrainConfig(**{**cfg.to_dict(), "n_epochs": 1}), data64)
    assert flipped.history["train_loss"][0] == pytest.approx(plain.history["train_loss"][0], rel=1e-12)
    assert flipped.history["train_cost"][1] == pytest.approx(
        compute_cost(data64.X_train, data64.Y_train, flipped.W, flipped.b, 0.1), rel=1e-10
    )


def _replace_train(data, X_train):
    from dataclasses import replace

    return replace(data, X_train=np.ascontiguousarray(X_train.T).T)


# --------------------------------------------------------------------------- against a plain loop


def _course_loop(cfg: TrainConfig, data, n_epochs: int):
    """The course's mini-batch GD, written plainly, with the options applied the documented way."""
    X, y = data.X_train, data.y_train
    n, K = X.shape[1], 10
    Y = one_hot(y, K)
    W, b = init_parameters(K, X.shape[0], np.random.default_rng(cfg.seed), std=init_std(cfg, X.shape[0]))
    grads = compute_gradients_bce if cfg.loss == "bce" else compute_gradients
    for epoch in range(1, n_epochs + 1):
        order, flips = epoch_plan(cfg, n, epoch)
        order = np.arange(n) if order is None else order
        Xe = X.T.copy()  # n × d rows
        if flips is not None:
            Xe[flips] = flip_rows(Xe[flips], data.mean, data.std)
        eta = cfg.eta * (cfg.decay_factor ** ((epoch - 1) // cfg.decay_every) if cfg.decay_every else 1.0)
        for s in range(0, n, cfg.n_batch):
            idx = order[s : s + cfg.n_batch]
            Xb, Yb = Xe[idx].T, Y[:, idx]
            P = cfg.loss_fn.output(scores(Xb, W, b))
            gW, gb = grads(Xb, Yb, P, W, cfg.lam)
            W = W - eta * gW
            b = b - eta * gb
    return W, b


@pytest.mark.parametrize("loss", ["softmax", "bce"])
def test_first_epoch_equals_the_course_loop(data64, loss):
    cfg = TrainConfig(lam=0.1, eta=0.05, n_epochs=1, n_batch=30, dtype="float64", loss=loss)  # 160 = 5·30 + 10
    res = train(cfg, data64)
    W, b = _course_loop(cfg, data64, 1)
    np.testing.assert_allclose(res.W, W, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(res.b, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "options",
    [
        {"shuffle": True},
        {"flip": 0.5},
        {"shuffle": True, "flip": 0.5, "loss": "bce"},
        {"decay_every": 2, "decay_factor": 0.5, "init": "xavier"},
        {"shuffle": True, "flip": 0.3, "decay_every": 1, "decay_factor": 0.7, "init": "xavier", "loss": "bce"},
    ],
)
def test_options_equal_the_course_loop_over_epochs(data64, options):
    cfg = TrainConfig(lam=0.05, eta=0.02, n_epochs=4, n_batch=30, dtype="float64", seed=3, **options)
    res = train(cfg, data64)
    W, b = _course_loop(cfg, data64, 4)
    np.testing.assert_allclose(res.W, W, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(res.b, b, rtol=1e-9, atol=1e-13)
    # the recorded metrics are those of the unaugmented training split, with the run's loss
    assert res.history["train_cost"][-1] == pytest.approx(
        cfg.loss_fn.compute_cost(data64.X_train, data64.Y_train, res.W, res.b, cfg.lam), rel=1e-10
    )
    assert res.history["val_cost"][-1] == pytest.approx(
        cfg.loss_fn.compute_cost(data64.X_val, data64.Y_val, res.W, res.b, cfg.lam), rel=1e-10
    )


def test_shuffled_history_matches_the_model_every_epoch(data64):
    """With shuffle the fused W_prev scores are in the epoch's order: the metrics must not care."""
    cfg = TrainConfig(lam=0.1, eta=0.02, n_epochs=3, n_batch=40, dtype="float64", shuffle=True)
    seen = {}
    res = train(cfg, data64, on_epoch=lambda ck: seen.setdefault(ck.epoch, ck))
    assert sorted(seen) == [0, 1, 2, 3]
    for epoch, ck in seen.items():
        assert res.history["train_cost"][epoch] == pytest.approx(
            compute_cost(data64.X_train, data64.Y_train, ck.W, ck.b, 0.1), rel=1e-12
        )
        assert res.history["train_acc"][epoch] == pytest.approx(
            float(np.mean(np.argmax(scores(data64.X_train, ck.W, ck.b), axis=0) == data64.y_train))
        )


def test_decay_schedule_steps_at_the_right_epochs():
    cfg = TrainConfig(lam=0, eta=0.1, decay_every=3, decay_factor=0.5)
    assert [learning_rate(cfg, e) for e in range(1, 9)] == pytest.approx(
        [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025]
    )
    assert [learning_rate(TrainConfig(lam=0, eta=0.1), e) for e in (1, 50)] == [0.1, 0.1]
    assert learning_rate(TrainConfig(lam=0, eta=0.1, decay_every=3), 9) == 0.1  # factor 1: no decay


def test_decay_changes_only_the_epochs_after_the_step(data64):
    base = dict(lam=0.01, eta=0.02, n_batch=40, dtype="float64")
    decayed = train(TrainConfig(n_epochs=3, decay_every=2, decay_factor=0.1, **base), data64)
    plain = train(TrainConfig(n_epochs=3, **base), data64)
    # epochs 1 and 2 use η, epoch 3 uses η/10
    assert decayed.history["train_cost"][:3] == plain.history["train_cost"][:3]
    assert decayed.history["train_cost"][3] != plain.history["train_cost"][3]


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize(
    "options",
    [
        {"shuffle": True, "decay_every": 2, "decay_factor": 0.5},  # fused metrics path
        {"shuffle": True, "flip": 0.5, "decay_every": 2, "decay_factor": 0.5},  # separate metrics pass
        {"shuffle": True, "flip": 0.5, "decay_every": 1, "decay_factor": 0.8, "loss": "bce", "init": "xavier"},
    ],
)
@pytest.mark.parametrize("k", [1, 3])
def test_resume_with_randomness_and_decay_is_bit_identical(data32, options, k):
    cfg = TrainConfig(lam=0.05, eta=0.02, n_epochs=5, n_batch=25, **options)
    checkpoints = {}
    full = train(cfg, data32, on_epoch=lambda ck: checkpoints.setdefault(ck.epoch, ck))
    resumed = train(cfg, data32, resume=checkpoints[k])
    np.testing.assert_array_equal(resumed.W, full.W)
    np.testing.assert_array_equal(resumed.b, full.b)
    assert resumed.history == full.history


# --------------------------------------------------------------------------- init, BCE end to end


def test_xavier_init_has_std_one_over_sqrt_d_from_the_same_draws(data64):
    d = 3072
    assert init_std(TrainConfig(lam=0, eta=0.1, init="xavier"), d) == pytest.approx(1 / math.sqrt(d))
    assert init_std(TrainConfig(lam=0, eta=0.1), d) == 0.01
    first = {}
    train(
        TrainConfig(lam=0, eta=0.01, n_epochs=1, n_batch=40, dtype="float64", init="xavier"),
        data64,
        on_epoch=lambda ck: first.setdefault(ck.epoch, ck),
    )
    W0 = first[0].W
    assert W0.std() == pytest.approx(1 / math.sqrt(d), rel=0.03)
    normal = {}
    train(
        TrainConfig(lam=0, eta=0.01, n_epochs=1, n_batch=40, dtype="float64"),
        data64,
        on_epoch=lambda ck: normal.setdefault(ck.epoch, ck),
    )
    np.testing.assert_allclose(W0, normal[0].W * (1 / math.sqrt(d)) / 0.01, rtol=1e-12)


def test_bce_training_learns_and_records_the_bce_loss(data32):
    res = train(TrainConfig(lam=0.01, eta=0.05, n_epochs=8, n_batch=20, loss="bce"), data32)
    h = res.history
    assert h["train_cost"][-1] < 0.5 * h["train_cost"][0]
    assert h["train_acc"][-1] > 0.9
    assert h["val_loss"][-1] == pytest.approx(
        compute_loss_bce(
            data32.X_val.astype(np.float64), data32.y_val, res.W.astype(np.float64), res.b.astype(np.float64)
        ),
        rel=1e-5,
    )


def test_evaluate_uses_the_runs_loss(workspace):
    cfg = TrainConfig(lam=0.01, eta=0.01, n_epochs=2, loss="bce")
    run = stages.train(workspace, cfg)
    metrics = stages.evaluate(workspace, run).payload
    final = run.payload["history"]
    assert metrics["loss"] == "bce"
    assert metrics["train"]["loss"] == pytest.approx(final["train_loss"][-1], rel=1e-5)
    assert metrics["val"]["cost"] == pytest.approx(final["val_cost"][-1], rel=1e-5)
    softmax_run = stages.train(workspace, TrainConfig(lam=0.01, eta=0.01, n_epochs=2))
    assert "loss" not in stages.evaluate(workspace, softmax_run).payload
    assert stages.config_of(run) == cfg  # the options survive the cache


# --------------------------------------------------------------------------- gradcheck stage, settings, CLI


def test_gradcheck_stage_with_bce_passes_and_has_its_own_key(workspace):
    default = stages.gradcheck(workspace, GradcheckConfig(n_samples=10, n_dims=50))
    bce = stages.gradcheck(workspace, GradcheckConfig(n_samples=10, n_dims=50, loss="bce"))
    assert bce.key != default.key and "loss" not in default.meta["params"]
    assert bce.meta["params"]["loss"] == "bce" and bce.payload["loss"] == "bce"
    assert bce.payload["max_error"] <= 1e-6
    with pytest.raises(OptionError, match="unknown loss") as error:
        stages.gradcheck(workspace, GradcheckConfig(loss="hinge"))
    assert error.value.option == "loss"


def test_settings_file_accepts_the_options(tmp_path):
    from cifarcli.config import load_settings

    path = tmp_path / "s.toml"
    path.write_text(
        "[defaults]\nshuffle = true\nflip = 0.5\n\n[[run]]\nlam = 0.01\neta = 0.001\n"
        'decay_every = 10\ndecay_factor = 0.1\ninit = "xavier"\nloss = "bce"\n'
    )
    (config,) = load_settings(path).runs
    assert (config.shuffle, config.flip, config.decay_every, config.decay_factor, config.init, config.loss) == (
        True,
        0.5,
        10,
        0.1,
        "xavier",
        "bce",
    )
    path.write_text("[[run]]\nlam = 0.01\neta = 0.001\nflip = 2\n")
    with pytest.raises(CifarError, match="run 1: flip: the flip probability"):
        load_settings(path)


def test_cli_trains_with_the_options_and_reports_them(cli, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    short = ("--n-epochs", "2", "--lam", "0.01", "--eta", "0.01")
    plain = json.loads(cli("train", *short, "--json", "--quiet").stdout)
    opts = (
        "--shuffle",
        "--flip",
        "0.5",
        "--decay-every",
        "1",
        "--decay-factor",
        "0.5",
        "--init",
        "xavier",
        "--loss",
        "bce",
    )
    result = cli("train", *short, *opts, "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["run_id"] != plain["run_id"]
    for command in ("evaluate", "plot", "status"):
        again = cli(command, *short, *opts, "--json")
        assert again.exit_code == 0, (command, again.stderr)
        doc = json.loads(again.stdout)
        ids = (
            [row["key"] for row in doc["stages"] if row["stage"] == "train"] if command == "status" else [doc["run_id"]]
        )
        assert ids == [run["run_id"]], command
    assert (
        cli("train", *short, "--no-shuffle", "--json", "--quiet").stdout
        == cli("train", *short, "--json", "--quiet").stdout
    )


@pytest.mark.parametrize(
    "args,option",
    [
        (("--flip", "1.5"), "--flip"),
        (("--flip", "-0.5"), "--flip"),
        (("--decay-every", "-2"), "--decay-every"),
        (("--decay-factor", "0"), "--decay-factor"),
        (("--decay-factor", "2"), "--decay-factor"),
        (("--init", "he"), "--init"),
        (("--loss", "hinge"), "--loss"),
    ],
)
@pytest.mark.parametrize("command", ["train", "evaluate", "status"])
def test_cli_bad_values_exit_2_naming_the_option(cli, command, args, option):
    """Checked before any dataset is looked for: no import, no download."""
    result = cli(command, *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {option}:"), result.stderr


def test_cli_gradcheck_loss(cli, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    bad = cli("gradcheck", "--loss", "hinge")
    assert bad.exit_code == 2 and "--loss" in bad.stderr
    ok = cli("gradcheck", "--loss", "bce", "--n-samples", "10", "--n-dims", "40", "--tol", "1e-6", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["max_error"] <= 1e-6
