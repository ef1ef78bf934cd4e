"""`cifarcli status`: each stage's key and state for a setting, computing nothing."""

from __future__ import annotations

import json

import numpy as np

from cifarcli import stages
from cifarcli.config import TrainConfig
from cifarcli.store import PAYLOAD
from cifarcli.train import HISTORY_KEYS, Checkpoint


def states(rows):
    return {row["stage"]: row["state"] for row in rows}


def test_status_follows_the_pipeline(workspace):
    config = TrainConfig(lam=0.1, eta=0.01, n_epochs=3)
    assert states(stages.status(workspace, config)) == {
        "dataset": "cached",
        "gradcheck": "missing",
        "train": "missing",
        "evaluate": "missing",
        "plot": "missing",
    }
    assert workspace.events == []  # status computed nothing

    run = stages.train(workspace, config)
    metrics = stages.evaluate(workspace, run)
    rows = stages.status(workspace, config)
    assert states(rows)["train"] == "cached" and states(rows)["evaluate"] == "cached"
    keys = {row["stage"]: row["key"] for row in rows}
    assert keys["train"] == run.key and keys["evaluate"] == metrics.key

    (run.path / PAYLOAD).write_bytes(b"broken")
    row = next(r for r in stages.status(workspace, config) if r["stage"] == "train")
    assert row["state"] == "damaged" and "bytes" in row["reason"]


def test_status_shows_a_resumable_checkpoint(workspace):
    config = TrainConfig(lam=0.0, eta=0.01, n_epochs=5)
    key = stages.train_key(config, stages.dataset(workspace).key)
    history = {name: [0, 1, 2] if name == "epoch" else [0.5] * 3 for name in HISTORY_KEYS}
    workspace.store.save_scratch(
        "train", key, "checkpoint", {"epoch": 2, "W": np.zeros((10, 3072)), "b": np.zeros((10, 1)), "history": history}
    )
    row = next(r for r in stages.status(workspace, config) if r["stage"] == "train")
    assert row["state"] == "partial" and row["reason"] == "checkpoint at epoch 2 of 5"
    # The old form (a pickled train.Checkpoint) is a class outside the allow-list: ignored, not resumed.
    workspace.store.save_scratch(
        "train", key, "checkpoint", Checkpoint(2, np.zeros((10, 3072)), np.zeros((10, 1)), history)
    )
    row = next(r for r in stages.status(workspace, config) if r["stage"] == "train")
    assert row["state"] == "missing"


def test_status_cli_on_an_empty_folder(cli, tmp_path):
    result = cli("status", "--json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert {row["state"] for row in document["stages"]} == {"missing"}
    assert not (tmp_path / "cache").exists()  # looking creates nothing
