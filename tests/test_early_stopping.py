"""Early stopping on validation: --keep best|last and --patience P (train.EarlyStopping)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifarcli import stages
from cifarcli.config import TrainConfig
from cifarcli.train import Checkpoint, EarlyStopping, best_epoch, train, train_reference

NOISY = dict(lam=0.0, eta=0.05, n_batch=20)  # a large step: validation accuracy goes up and down


def test_run_ids_are_unchanged_when_off():
    base = TrainConfig(lam=0.1, eta=0.001)
    assert "patience" not in base.key_params() and "keep" not in base.key_params()
    assert TrainConfig(lam=0.1, eta=0.001, patience=0, keep="last").key_params() == base.key_params()
    assert TrainConfig(lam=0.1, eta=0.001, patience=3).key_params()["patience"] == 3
    assert TrainConfig(lam=0.1, eta=0.001, keep="best").key_params()["keep"] == "best"
    assert not base.stops_early and TrainConfig(keep="best").stops_early and TrainConfig(patience=1).stops_early


@pytest.mark.parametrize("bad", [{"patience": -1}, {"patience": 1.5}, {"keep": "first"}])
def test_bad_values_name_the_option(bad):
    from cifarcli.errors import OptionError

    with pytest.raises(OptionError) as error:
        TrainConfig(**bad).validate()
    assert error.value.option == next(iter(bad))


def test_ties_go_to_the_earliest_epoch_and_only_strict_gains_count():
    config = TrainConfig(keep="best", patience=2)
    stopping = EarlyStopping(config)
    W = np.zeros((10, 4))
    stopping.offer(0, 0.9, W, np.zeros(10))  # epoch 0 (the initial weights) is never chosen
    for epoch, acc in enumerate([0.5, 0.7, 0.7, 0.6], start=1):
        stopping.offer(epoch, acc, W + epoch, np.full(10, epoch))
        assert stopping.should_stop(epoch) == (epoch == 4)  # best 2, not improved for 2 epochs at 4
    assert stopping.epoch == 2 and stopping.W[0, 0] == 2 and stopping.b.shape == (10, 1)
    assert best_epoch([0.9, 0.5, 0.7, 0.7, 0.6]) == 2
    W_out, _, chosen = stopping.chosen(W, np.zeros((10, 1)), 4)
    assert chosen == 2 and W_out[0, 0] == 2


def test_keep_best_keeps_the_best_validation_epoch(data32):
    checkpoints = {}
    last = train(TrainConfig(**NOISY, n_epochs=12), data32, on_epoch=lambda c: checkpoints.__setitem__(c.epoch, c))
    best = train(TrainConfig(**NOISY, n_epochs=12, keep="best"), data32)
    assert best.history == last.history  # the same training, every epoch kept in the history
    accs = last.history["val_acc"]
    chosen = best.chosen_epoch
    assert chosen == 1 + accs[1:].index(max(accs[1:]))  # the highest, ties to the earliest
    assert accs[chosen] >= accs[-1]
    assert best.W.tobytes() == checkpoints[chosen].W.tobytes() and best.b.tobytes() == checkpoints[chosen].b.tobytes()
    assert last.chosen_epoch == 12 and last.W.tobytes() == checkpoints[12].W.tobytes()


def test_patience_stops_at_the_right_epoch(data32):
    full = train(TrainConfig(**NOISY, n_epochs=40), data32)
    stopped = train(TrainConfig(**NOISY, n_epochs=40, patience=3), data32)
    accs = full.history["val_acc"]
    expected = next(e for e in range(1, 41) if e - best_epoch(accs, e) >= 3)  # first epoch the rule fires
    assert expected < 40  # the test means something
    assert stopped.history["epoch"][-1] == expected
    assert stopped.history["val_acc"] == accs[: expected + 1]  # the same epochs as the full run, up to the stop
    assert stopped.chosen_epoch == expected  # keep last: the last epoch trained


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_resume_is_exact_and_keeps_the_best_weights(data32, k):
    config = TrainConfig(**NOISY, n_epochs=40, patience=4, keep="best", shuffle=True)
    checkpoints = {}
    full = train(config, data32, on_epoch=lambda c: checkpoints.__setitem__(c.epoch, c))
    ck = checkpoints[min(k, max(checkpoints))]
    assert ck.best_epoch == best_epoch(ck.history["val_acc"])
    assert ck.best_W.tobytes() == checkpoints[ck.best_epoch].W.tobytes()
    resumed = train(config, data32, resume=ck)
    assert resumed.W.tobytes() == full.W.tobytes() and resumed.b.tobytes() == full.b.tobytes()
    assert resumed.history == full.history and resumed.chosen_epoch == full.chosen_epoch
    # resuming the final checkpoint of a run that stopped early trains nothing more
    again = train(config, data32, resume=checkpoints[max(checkpoints)])
    assert again.W.tobytes() == full.W.tobytes() and again.history == full.history


def test_a_checkpoint_without_its_best_weights_is_refused(data32):
    config = TrainConfig(**NOISY, n_epochs=4, keep="best")
    checkpoints = {}
    train(config, data32, on_epoch=lambda c: checkpoints.__setitem__(c.epoch, c))
    ck = checkpoints[2]
    from cifarcli.errors import CifarError

    with pytest.raises(CifarError):
        train(config, data32, resume=Checkpoint(ck.epoch, ck.W, ck.b, ck.history))


@pytest.mark.parametrize("options", [dict(keep="best"), dict(patience=2), dict(patience=2, keep="best", shuffle=True)])
def test_reference_loop_applies_the_same_rule(data64, options):
    config = TrainConfig(**NOISY, n_epochs=20, dtype="float64", **options)
    fast = train(config, data64)
    W, b = train_reference(config, data64)
    np.testing.assert_allclose(W, fast.W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b, fast.b, rtol=1e-9, atol=1e-12)


def test_stage_records_the_chosen_epoch_and_survives_an_interruption(workspace, tmp_path, tiny_archive):
    config = TrainConfig(lam=0.0, eta=0.05, n_epochs=12, n_batch=20, keep="best", patience=4)
    clean = stages.train(workspace, config)
    assert clean.payload["chosen_epoch"] == clean.meta["info"]["chosen_epoch"]
    h = clean.payload["history"]
    assert clean.payload["chosen_epoch"] == best_epoch(h["val_acc"])
    assert clean.meta["info"]["chosen"]["val_acc"] == max(h["val_acc"][1:])
    plain = stages.train(workspace, TrainConfig(lam=0.0, eta=0.05, n_epochs=12, n_batch=20))
    assert "chosen_epoch" not in plain.payload and "chosen_epoch" not in plain.meta["info"]

    # a second workspace, interrupted after the checkpoint of epoch 3 (as kill -9 would leave it)
    other = stages.Workspace(tmp_path / "cache2", tmp_path / "reports2")
    stages.fetch(other, str(tiny_archive))

    class Stop(stages.Progress):
        def epoch(self, epoch, history):
            if epoch == 3:
                raise KeyboardInterrupt

    other.progress = Stop()
    with pytest.raises(KeyboardInterrupt):
        stages.train(other, config)
    saved = stages.load_checkpoint(other, clean.key, config)
    assert saved.epoch == 3 and saved.best_W is not None and saved.best_epoch == best_epoch(h["val_acc"], 3)
    other.progress = stages.Progress()
    resumed = stages.train(other, config)
    assert resumed.key == clean.key
    assert resumed.payload["W"].tobytes() == clean.payload["W"].tobytes()
    assert resumed.payload["history"] == clean.payload["history"]
    assert resumed.payload["chosen_epoch"] == clean.payload["chosen_epoch"]


def test_cli_train_and_report_show_the_chosen_epoch(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    args = ("--lam", "0", "--eta", "0.05", "--n-batch", "20", "--n-epochs", "30", "--patience", "3", "--keep", "best")
    result = cli("train", *args, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["config"]["patience"] == 3 and doc["config"]["keep"] == "best"
    assert doc["chosen_epoch"] == best_epoch(doc["history"]["val_acc"])
    assert doc["history"]["epoch"][-1] < 30
    table = cli("train", *args).stdout
    assert f"kept the weights of epoch {doc['chosen_epoch']}" in table
    assert "--patience" in cli("train", "--help").stdout and "--keep" in cli("train", "--help").stdout
    assert cli("train", "--keep", "first").exit_code == 2
    assert "--keep" in cli("train", "--keep", "first").stderr
    (tmp_path / "r.toml").write_text(
        "[defaults]\nn_epochs = 30\nn_batch = 20\n\n[gradcheck]\nn_samples = 5\n"
        'n_dims = 10\n\n[[run]]\nlam = 0.0\neta = 0.05\npatience = 3\nkeep = "best"\n'
    )
    report = cli("report", "--config", "r.toml", "-j", "1", "--json")
    assert report.exit_code == 0, report.stderr
    [run] = json.loads(report.stdout)["runs"]
    assert run["chosen_epoch"] == doc["chosen_epoch"] and run["run_id"] == doc["run_id"]
    md = (tmp_path / "reports" / "report.md").read_text()
    trained = doc["history"]["epoch"][-1]
    assert f"Early stopping: trained {trained} of 30 epochs" in md
    assert f"those of epoch {doc['chosen_epoch']}, the highest validation accuracy" in md
    assert f"{trained} of 30, kept {doc['chosen_epoch']}" in md  # the comparison table
    sweep = cli(
        "sweep",
        "--lam",
        "0",
        "--eta",
        "0.05",
        "--n-batch",
        "20",
        "--n-epochs",
        "30",
        "--patience",
        "3",
        "--keep",
        "best",
        "--json",
    )
    assert sweep.exit_code == 0, sweep.stderr
    point = json.loads(sweep.stdout)["points"][0]
    assert point["run_id"] == doc["run_id"] and point["val_acc"] == doc["history"]["val_acc"][doc["chosen_epoch"]]


@pytest.mark.realdata
def test_keep_best_is_never_below_keep_last_on_real_data(tmp_path_factory, real_archive):
    root = tmp_path_factory.mktemp("realdata-early")
    ws = stages.Workspace(root / "cache", root / "reports")
    stages.fetch(ws, str(real_archive))
    common = dict(lam=0.0, eta=0.1, n_epochs=40, n_batch=100)  # the study's unstable run: val acc jumps about
    last = stages.evaluate(ws, stages.train(ws, TrainConfig(**common))).payload
    best_run = stages.train(ws, TrainConfig(**common, keep="best"))
    best = stages.evaluate(ws, best_run).payload
    assert best_run.payload["history"] == stages.train(ws, TrainConfig(**common)).payload["history"]
    assert best["val"]["accuracy"] >= last["val"]["accuracy"]
    assert best["val"]["accuracy"] == pytest.approx(max(best_run.payload["history"]["val_acc"][1:]), abs=1e-9)
