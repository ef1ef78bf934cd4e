"""``status``: the key and state of each stage for one setting, read from the cache without computing anything."""

from __future__ import annotations

from cifarcli.config import GradcheckConfig

from .datasets import current_dataset_key
from .declarations import DATASET, EVALUATE, GRADCHECK, PLOT, TRAIN, gradcheck_key, run_key, train_key
from .runs import load_checkpoint
from .workspace import Workspace


def status(ws: Workspace, config) -> list[dict]:
    """Each stage's key and state (cached, missing, damaged, stale, partial) for ``config``; computes nothing."""
    config.validate()  # bad options are an error even before any dataset is imported
    rows = []

    def add(stage: str, key: str | None, state: tuple[str, str | None] = ("missing", None)) -> None:
        rows.append({"stage": stage, "key": key, "state": state[0], "reason": state[1]})

    data_key = current_dataset_key(ws)
    if data_key is None:
        for stage in ("dataset", "gradcheck", "train", "evaluate", "plot"):
            add(stage, None)
        return rows
    add("dataset", data_key, DATASET.state(ws, data_key))
    check = gradcheck_key(GradcheckConfig(), data_key)
    add("gradcheck", check, GRADCHECK.state(ws, check))
    run_id = train_key(config, data_key)
    train_state = TRAIN.state(ws, run_id)
    if train_state[0] == "missing":
        checkpoint = load_checkpoint(ws, run_id, config)
        if checkpoint is not None:
            train_state = ("partial", f"checkpoint at epoch {checkpoint.epoch} of {config.n_epochs}")
    add("train", run_id, train_state)
    for stage in (EVALUATE, PLOT):
        key = run_key(stage, run_id)
        add(stage.name, key, stage.state(ws, key))
    return rows
