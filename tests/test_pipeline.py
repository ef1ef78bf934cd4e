"""The stages end to end on the tiny archive: run IDs, determinism, resume after a
real kill, divergence, evaluate, plot, gradcheck and dataset recovery.

Every assertion is on numbers, bytes, exit codes or on which stages the store
reports as computed / hit (``ws.events``); none on time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import joblib
import numpy as np
import pytest

from cifarcli import schemas, stages, upkeep
from cifarcli.config import TrainConfig
from cifarcli.store import Store
from procs import without_phases

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = TrainConfig(lam=0.1, eta=0.01, n_epochs=4, n_batch=20)
# Long enough (n_batch 1: 160 updates per epoch) that a child process can be
# stopped mid-run after its epoch-2 checkpoint, short enough to stay a few seconds.
LONG = TrainConfig(lam=0.1, eta=0.001, n_epochs=60, n_batch=1)
# lam * eta >> 1 makes the weight decay factor 1 - 2 eta lam hugely negative: W overflows.
DIVERGING = ("--lam", "1", "--eta", "1e6", "--n-epochs", "5", "--n-batch", "20")


def computed(ws, stage=None):
    return [(s, k) for s, k, status in ws.events if status == "computed" and stage in (None, s)]


def statuses(ws, stage):
    return [status for s, _, status in ws.events if s == stage]


def cli_args(config: TrainConfig) -> list[str]:
    return [
        "--lam",
        repr(config.lam),
        "--eta",
        repr(config.eta),
        "--n-epochs",
        str(config.n_epochs),
        "--n-batch",
        str(config.n_batch),
    ]


def new_workspace(root: Path, archive: Path) -> stages.Workspace:
    ws = stages.Workspace(root / "cache", root / "reports")
    stages.fetch(ws, str(archive))
    ws.events.clear()
    return ws


# -- determinism and run IDs -----------------------------------------------------


def test_same_config_gives_same_run_id_and_bit_identical_weights(tmp_path, tiny_archive):
    a = stages.train(new_workspace(tmp_path / "a", tiny_archive), SMALL)
    b = stages.train(new_workspace(tmp_path / "b", tiny_archive), SMALL)
    assert a.status == b.status == "computed"
    assert a.key == b.key
    assert a.path != b.path
    assert np.array_equal(a.payload["W"], b.payload["W"])
    assert np.array_equal(a.payload["b"], b.payload["b"])
    assert a.payload["W"].shape == (10, 3072) and a.payload["b"].shape == (10, 1)
    assert a.payload["history"] == b.payload["history"]
    assert a.meta["payload_sha256"] == b.meta["payload_sha256"]
    # and the weights are not the initial ones: training happened
    assert a.payload["history"]["epoch"] == list(range(SMALL.n_epochs + 1))
    assert a.payload["history"]["train_loss"][-1] < a.payload["history"]["train_loss"][0]


def test_defaults_give_the_same_run_id_whether_passed_or_not(cli, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    implicit = cli("train", "--json")
    assert implicit.exit_code == 0, implicit.stderr
    explicit = cli(
        "train",
        "--lam",
        "0",
        "--eta",
        "0.001",
        "--n-epochs",
        "40",
        "--n-batch",
        "100",
        "--seed",
        "42",
        "--split",
        "seed",
        "--val-size",
        "1000",
        "--dtype",
        "float32",
        "--json",
    )
    assert explicit.exit_code == 0, explicit.stderr
    first, second = json.loads(implicit.stdout), json.loads(explicit.stdout)
    assert first["run_id"] == second["run_id"]
    assert first["cached"] is False and second["cached"] is True
    # val_size does not enter the key of the seed split: same run, not retrained
    other_val = json.loads(cli("train", "--val-size", "500", "--json").stdout)
    assert other_val["run_id"] == first["run_id"] and other_val["cached"] is True


@pytest.mark.parametrize(
    "change",
    [
        {"lam": 0.2},
        {"eta": 0.02},
        {"n_epochs": 3},
        {"n_batch": 40},
        {"seed": 7},
        {"split": "dd2424"},
        {"split": "full", "val_size": 100},
        {"dtype": "float64"},
    ],
)
def test_each_training_option_changes_the_run_id(workspace, change):
    base = TrainConfig(lam=0.1, eta=0.01, n_epochs=2, n_batch=20)
    reference = stages.train(workspace, base)
    changed = stages.train(workspace, replace(base, **change))
    assert changed.key != reference.key
    assert changed.status == "computed"
    assert changed.meta["params"] == replace(base, **change).key_params()
    # seed split: val_size is not part of the key; full split: it is
    same = stages.train(workspace, replace(base, val_size=123))
    assert same.key == reference.key and same.status == "hit"
    if change.get("split") == "full":
        other = stages.train(workspace, replace(base, **{**change, "val_size": 200}))
        assert other.key != changed.key


# -- interruption with a real child process -------------------------------------------


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory, tiny_archive):
    """The uninterrupted LONG run in its own cache."""
    ws = new_workspace(tmp_path_factory.mktemp("reference"), tiny_archive)
    run = stages.train(ws, LONG)
    assert run.status == "computed" and run.meta["info"]["timings"]["first_epoch"] == 1
    return run


def _env():
    env = dict(os.environ)
    env.pop("CIFARCLI_CACHE_DIR", None)
    return env


def _cifarcli(cwd: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cifarcli", *map(str, args)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def _default_sigint():
    # A child started from a non-interactive shell may inherit SIGINT ignored; Ctrl-C must reach it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_and_stop_after_epoch_2(cwd: Path, cache: Path, key: str, sig: int) -> tuple[int, str, str, int]:
    """Start ``cifarcli train LONG``; once its checkpoint holds epoch >= 2, send ``sig``."""
    checkpoint = cache / "train" / ".scratch" / key / "checkpoint"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifarcli", "train", *cli_args(LONG), "--cache-dir", str(cache)],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        seen = -1
        while seen < 2:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"training finished (rc {proc.returncode}) before it could be interrupted: {err}")
            if checkpoint.is_file():
                try:
                    seen = joblib.load(checkpoint)["epoch"]  # a plain dict since checkpoints admit no class
                except Exception:  # replaced while we read it: look again
                    pass
            time.sleep(0.005)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err, seen


def _check_resumed(cache: Path, reference, stopped_at: int) -> None:
    run = Store(cache).load("train", reference.key)
    assert run is not None
    assert np.array_equal(run.payload["W"], reference.payload["W"])
    assert np.array_equal(run.payload["b"], reference.payload["b"])
    assert run.payload["history"] == reference.payload["history"]
    assert run.meta["payload_sha256"] == reference.meta["payload_sha256"]  # byte for byte, not just equal numbers
    # it started from the checkpoint, not from epoch 1
    first = run.meta["info"]["timings"]["first_epoch"]
    assert first > stopped_at >= 2
    assert len(run.meta["info"]["timings"]["epoch_seconds"]) == LONG.n_epochs - first + 1
    assert not (cache / "train" / ".scratch" / reference.key).exists()


def test_kill_9_mid_training_then_rerun_resumes_bit_identically(tmp_path, tiny_archive, long_reference):
    cache = tmp_path / "cache"
    assert _cifarcli(tmp_path, "fetch", "--source", tiny_archive, "--cache-dir", cache, "-q").returncode == 0
    rc, _, _, stopped_at = _start_and_stop_after_epoch_2(tmp_path, cache, long_reference.key, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert not (cache / "train" / long_reference.key).exists()  # nothing committed
    assert (cache / "train" / ".scratch" / long_reference.key / "checkpoint").is_file()

    rerun = _cifarcli(tmp_path, "train", *cli_args(LONG), "--cache-dir", cache, "--json")
    assert rerun.returncode == 0, rerun.stderr
    document = json.loads(rerun.stdout)
    assert document["run_id"] == long_reference.key and document["cached"] is False
    assert document["timings"]["first_epoch"] > stopped_at
    _check_resumed(cache, long_reference, stopped_at)


def test_ctrl_c_mid_training_exits_130_with_one_line_then_resumes(tmp_path, tiny_archive, long_reference):
    cache = tmp_path / "cache"
    assert _cifarcli(tmp_path, "fetch", "--source", tiny_archive, "--cache-dir", cache, "-q").returncode == 0
    rc, out, err, stopped_at = _start_and_stop_after_epoch_2(tmp_path, cache, long_reference.key, signal.SIGINT)
    assert rc == 130
    assert "Traceback" not in err
    lines = without_phases(err.strip().splitlines())
    assert len(lines) == 1, err
    assert "interrupted" in lines[0] and "resume" in lines[0]
    assert out == ""
    assert not (cache / "train" / long_reference.key).exists()

    rerun = _cifarcli(tmp_path, "train", *cli_args(LONG), "--cache-dir", cache)
    assert rerun.returncode == 0, rerun.stderr
    _check_resumed(cache, long_reference, stopped_at)


# -- divergence ------------------------------------------------------------------------


def test_divergence_exits_1_names_the_epoch_and_keeps_the_history(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    first = cli("train", *DIVERGING, "--json")
    assert first.exit_code == 1
    document = json.loads(first.stdout)  # valid JSON although the history holds NaN
    epoch = document["diverged_at"]
    assert isinstance(epoch, int) and epoch >= 1
    assert document["exit_code"] == 1 and "learning rate" in document["hint"]
    err = without_phases(first.stderr.strip().splitlines())
    assert len(err) == 1 and "Traceback" not in first.stderr
    assert f"epoch {epoch}" in err[0] and "smaller learning rate" in err[0]

    # the history up to the blow-up is in the cache
    run = Store(tmp_path / "cache").load("train", document["run_id"])
    assert run.payload["diverged_at"] == epoch == run.meta["info"]["diverged_at"]
    history = run.payload["history"]
    assert history["epoch"] == list(range(epoch + 1))
    assert all(np.isfinite(history["train_cost"][:epoch])) and all(np.isfinite(history["val_cost"][:epoch]))
    assert not (np.isfinite(history["train_cost"][epoch]) and np.isfinite(history["val_cost"][epoch]))
    assert run.meta["info"]["final"]["epoch"] == epoch - 1  # last finite row

    again = cli("train", *DIVERGING)  # cached: the same verdict, no retraining
    assert again.exit_code == 1 and f"epoch {epoch}" in again.stderr

    evaluated = cli("evaluate", *DIVERGING)
    assert evaluated.exit_code == 1
    lines = without_phases(evaluated.stderr.strip().splitlines())
    assert len(lines) == 1 and "diverged" in lines[0] and document["run_id"] in lines[0]
    assert evaluated.stdout == ""
    assert not (tmp_path / "cache" / "evaluate").exists()
    by_id = cli("evaluate", "--run", document["run_id"][:8])
    assert by_id.exit_code == 1 and "diverged" in by_id.stderr


# -- evaluate ------------------------------------------------------------------------------


def test_evaluate_by_run_prefix_equals_by_options_and_matches_the_artifact(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    by_options = cli("evaluate", *cli_args(SMALL), "--json")
    assert by_options.exit_code == 0, by_options.stderr
    doc = json.loads(by_options.stdout)
    run_id = doc["run_id"]
    by_run = cli("evaluate", "--run", run_id[:6], "--json")
    assert by_run.exit_code == 0, by_run.stderr
    assert json.loads(by_run.stdout) == doc

    C = np.array(doc["confusion_matrix"])
    assert C.shape == (10, 10)
    assert C.sum() == doc["test"]["n"] == 200
    assert np.trace(C) / C.sum() == pytest.approx(doc["test"]["accuracy"], abs=1e-12)
    assert {k: doc[k]["n"] for k in ("train", "val", "test")} == {"train": 160, "val": 40, "test": 200}
    for split in ("train", "val", "test"):
        assert doc[split]["cost"] >= doc[split]["loss"] > 0

    ws = stages.Workspace(tmp_path / "cache", tmp_path / "reports")
    run = stages.find_run(ws, run_id)
    metrics = stages.evaluate(ws, run)
    assert ws.events == [("evaluate", metrics.key, "hit")]
    for split in ("train", "val", "test"):
        assert doc[split] == metrics.payload[split]
    assert doc["confusion_matrix"] == metrics.payload["confusion_matrix"]
    assert doc["per_class_accuracy"] == metrics.payload["per_class_accuracy"]
    # training history's last row and evaluation agree on the training split
    assert run.payload["history"]["train_acc"][-1] == pytest.approx(doc["train"]["accuracy"], abs=1e-12)


def test_evaluate_trains_a_missing_run_first(workspace):
    config = replace(SMALL, seed=5)
    run = stages.train(workspace, config)
    metrics = stages.evaluate(workspace, run)
    assert workspace.events == [("train", run.key, "computed"), ("evaluate", metrics.key, "computed")]
    assert metrics.meta["inputs"] == {"train": run.key}


def test_evaluate_command_on_an_empty_cache_trains_then_evaluates(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    result = cli("evaluate", *cli_args(SMALL), "--json")
    assert result.exit_code == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    store = Store(tmp_path / "cache")
    assert [row["key"] for row in upkeep.ls(store, "train")] == [run_id]
    [evaluation] = upkeep.ls(store, "evaluate")
    assert json.loads((Path(evaluation["path"]) / "meta.json").read_text())["inputs"] == {"train": run_id}


def test_unknown_and_ambiguous_run_ids_are_one_line_exit_2(cli, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    result = cli("evaluate", "--run", "zzzz")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "zzzz" in result.stderr


# -- plot ------------------------------------------------------------------------------------


def test_plot_writes_five_pngs_then_reuses_and_restores_them(workspace):
    run = stages.train(workspace, SMALL)
    paths = stages.plot(workspace, run)
    folder = workspace.reports_dir / "figures" / run.key
    assert set(paths) == {"loss", "accuracy", "weights", "confusion", "probabilities"}
    assert {p.name for p in folder.iterdir()} == {
        "loss.png",
        "accuracy.png",
        "weights.png",
        "confusion.png",
        "probabilities.png",
    }
    assert all(paths[name] == folder / f"{name}.png" for name in paths)
    first = {name: p.read_bytes() for name, p in paths.items()}
    assert all(data.startswith(PNG_MAGIC) and len(data) > 1000 for data in first.values())
    assert len(computed(workspace, "plot")) == 1
    plot_key = computed(workspace, "plot")[0][1]

    workspace.events.clear()
    again = stages.plot(workspace, run)
    assert computed(workspace) == []
    assert ("plot", plot_key, "hit") in workspace.events
    assert {name: p.read_bytes() for name, p in again.items()} == first

    (folder / "weights.png").unlink()
    workspace.events.clear()
    restored = stages.plot(workspace, run)
    assert computed(workspace) == []
    assert statuses(workspace, "plot") == ["hit"]
    assert restored["weights"].read_bytes() == first["weights"]


def test_plot_command_writes_under_reports_figures_run_id(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    result = cli("plot", *cli_args(SMALL), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    folder = tmp_path / "reports" / "figures" / doc["run_id"]
    assert {name: Path(p).resolve() for name, p in doc["figures"].items()} == {
        name: (folder / f"{name}.png").resolve() for name in schemas.FIGURES
    }
    assert all((folder / f"{name}.png").read_bytes().startswith(PNG_MAGIC) for name in schemas.FIGURES)
    assert schemas.FIGURES == ("loss", "accuracy", "weights", "confusion", "probabilities")


# -- gradcheck --------------------------------------------------------------------------------


def test_gradcheck_is_accurate_and_cached(workspace):
    check = stages.gradcheck(workspace)
    result = check.payload
    assert [entry["lam"] for entry in result["results"]] == [0.0, 0.1]
    for entry in result["results"]:
        assert entry["W"]["max"] <= 1e-6 and entry["b"]["max"] <= 1e-6
        assert entry["W"]["n"] == 10 * 3072 and entry["b"]["n"] == 10
    assert result["max_error"] <= 1e-6
    assert result["n_samples"] == 100 and result["n_dims"] == 3072
    assert workspace.events == [("gradcheck", check.key, "computed")]
    again = stages.gradcheck(workspace)
    assert again.key == check.key
    assert workspace.events[-1] == ("gradcheck", check.key, "hit")
    assert again.payload["max_error"] == result["max_error"]


def test_gradcheck_command_with_fewer_dims_and_samples(cli, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    result = cli("gradcheck", "--n-dims", "20", "--n-samples", "10", "--tol", "1e-6", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["n_dims"] == 20 and doc["n_samples"] == 10
    assert doc["n_params"] == 10 * 20 + 10
    assert [entry["W"]["n"] for entry in doc["results"]] == [200, 200]
    assert doc["max_error"] <= 1e-6 and doc["passed"] is True and doc["cached"] is False
    again = json.loads(cli("gradcheck", "--n-dims", "20", "--n-samples", "10", "--json").stdout)
    assert again["cached"] is True and again["gradcheck"] == doc["gradcheck"]


# -- dataset recovery -------------------------------------------------------------------------


def test_deleted_dataset_is_reimported_from_the_remembered_source(workspace):
    state = workspace.read_state()["dataset"]
    folder = workspace.store.path("dataset", state["key"])
    first = stages.train(workspace, SMALL)
    shutil.rmtree(folder)
    assert not folder.exists()

    workspace.events.clear()
    run = stages.train(workspace, replace(SMALL, seed=3))
    assert run.status == "computed" and run.meta["inputs"] == {"dataset": state["key"]}
    assert ("dataset", state["key"], "computed") in workspace.events
    assert (folder / "meta.json").is_file()
    # the old run is still found: same data, same key
    assert stages.train(workspace, SMALL).key == first.key
    assert workspace.events[-1] == ("train", first.key, "hit")


def test_deleted_dataset_is_reimported_by_the_train_command(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    [dataset] = upkeep.ls(Store(tmp_path / "cache"), "dataset")
    shutil.rmtree(dataset["path"])
    result = cli("train", *cli_args(SMALL), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["split_sizes"] == {"train": 160, "val": 40, "test": 200}
    assert [row["key"] for row in upkeep.ls(Store(tmp_path / "cache"), "dataset")] == [dataset["key"]]
