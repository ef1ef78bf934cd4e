"""The train stage: a run trained or resumed from its checkpoint, its stored payload, a run trained elsewhere
stored here, and finding and reading the runs in the cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from cifarcli import schemas
from cifarcli import train as training
from cifarcli.config import TrainConfig
from cifarcli.errors import CifarError, WorkFailed
from cifarcli.store import Artifact
from cifarcli.store_errors import DamagedArtifact

from .datasets import dataset, dataset_by_key, n_train, prepared
from .declarations import DATASET, EVALUATE, TRAIN, run_key, train_key
from .labels import run_label
from .names import check_run_name, run_id_of, set_name
from .workspace import Workspace

STABILITY_CURVES = ("epoch", "train_cost", "val_loss")


def train(
    ws: Workspace, config, force: bool = False, data_artifact: Artifact | None = None, name: str | None = None
) -> Artifact:
    """The training run for ``config`` (on the current dataset unless ``data_artifact`` is given),
    trained (or resumed from its checkpoint) when missing; named ``name`` when given (see ``set_name``)."""
    config.validate()  # a bad option is reported before any dataset is looked for (or downloaded)
    if name is not None:
        check_run_name(name)
    data_artifact = data_artifact or dataset(ws)
    config.validate(n_train(data_artifact, config))
    key = train_key(config, data_artifact.key)
    artifact = TRAIN.get_or_compute(
        ws,
        config.key_params(),
        {"dataset": data_artifact.key},
        lambda: _trained(ws, config, data_artifact, key, force),
        force=force,
        depends=[("dataset", data_artifact.key)],
    )
    ws.store.drop_scratch("train", key)
    if name is not None:
        set_name(ws, name, artifact.key)
    return artifact


def _trained(ws: Workspace, config: TrainConfig, data_artifact: Artifact, key: str, force: bool) -> tuple[dict, dict]:
    """Run ``key`` trained here, resumed from its checkpoint unless ``force``, checkpointed after each epoch."""
    split = prepared(data_artifact, config.split, config.val_size, config.dtype)
    resume = None if force else load_checkpoint(ws, key, config, split.X_train.shape[0])
    n_batches = -(-split.sizes["train"] // config.n_batch)
    if resume is not None:  # a line of its own: on the bar it would squeeze the bar out of a narrow terminal
        ws.log(f"resuming {run_label(config)} at epoch {resume.epoch} of {config.n_epochs} (run {key[:12]})")
    ws.progress.run_started(key, config.n_epochs, n_batches, resume.epoch if resume else 0, label=run_label(config))

    def on_epoch(checkpoint):
        # A plain dict, not the Checkpoint class: loading admits no class of ours.
        saved = {"epoch": checkpoint.epoch, "W": checkpoint.W, "b": checkpoint.b, "history": checkpoint.history}
        if checkpoint.best_W is not None:  # keep="best": the best-so-far weights survive a kill -9
            saved.update(best_epoch=checkpoint.best_epoch, best_W=checkpoint.best_W, best_b=checkpoint.best_b)
        ws.store.save_scratch("train", key, "checkpoint", saved)
        ws.progress.epoch(checkpoint.epoch, checkpoint.history)

    result = training.train_keeping_last_good(
        config, split, resume=resume, on_epoch=on_epoch, on_batch=ws.progress.batch
    )
    ws.progress.run_finished(key)
    return run_payload(config, split, result)


def load_checkpoint(ws: Workspace, key: str, config=None, d: int | None = None):
    """The run's last checkpoint as a ``train.Checkpoint``, or None (with a notice) when there is
    none or it is not one of this run: wrong form, wrong shapes, more epochs than the run has."""
    saved = ws.store.load_scratch("train", key, "checkpoint", schema=schemas.CHECKPOINT)
    if saved is None:
        return None
    K, width = saved["W"].shape
    if (config is not None and saved["epoch"] > config.n_epochs) or (d is not None and (K, width) != (10, d)):
        ws.log(f"ignoring the checkpoint of run {key}: epoch {saved['epoch']}, W {K} × {width} do not fit this run")
        return None
    if (
        config is not None
        and config.keep == "best"
        and training.best_epoch(saved["history"]["val_acc"]) != saved.get("best_epoch")
    ):
        ws.log(f"ignoring the checkpoint of run {key}: it does not hold the weights of its best epoch")
        return None
    return training.Checkpoint(
        saved["epoch"],
        saved["W"],
        saved["b"],
        saved["history"],
        saved.get("best_epoch"),
        saved.get("best_W"),
        saved.get("best_b"),
    )


def _canonical(array):
    """A fresh array of the built-in dtype (not a copy of the dtype instance), or None.

    Pickle records which objects are shared (down to dtype instances), so a resumed run's
    unpickled checkpoint would otherwise give other payload bytes for the same numbers, and
    "bit-identical" could not be checked on the checksum.
    """
    if array is None:
        return None
    fresh = np.empty(array.shape, dtype=np.dtype(array.dtype.name))
    fresh[...] = array
    return fresh


def run_payload(config: TrainConfig, split, result: dict) -> tuple[dict, dict]:
    """The train artifact's (payload, info) from ``train_keeping_last_good``'s result on the prepared
    ``split``: the same whether trained here, in a worker process or on a Dask worker."""
    history, diverged_at = result["history"], result["diverged_at"]
    payload = {
        "W": _canonical(result["W"]),
        "b": _canonical(result["b"]),
        "mean": _canonical(split.mean),
        "std": _canonical(split.std),
        "history": json.loads(json.dumps(history)),
        "label_names": list(split.label_names),
        "diverged_at": diverged_at,
    }
    info = {
        "config": config.key_params(),
        "split_sizes": split.sizes,
        "timings": result["timings"],
        "diverged_at": diverged_at,
        "final": schemas.final_row(history),
        # what the report's stability rule reads, so `runs` applies it from meta.json alone
        "curves": {
            key: [v if key == "epoch" or math.isfinite(v) else None for v in history[key]] for key in STABILITY_CURVES
        },
    }
    if config.stops_early:  # the epoch whose weights these are (a run without early stopping: the last)
        payload["chosen_epoch"] = info["chosen_epoch"] = result.get("chosen_epoch")
        if info["chosen_epoch"] is not None:
            row = history["epoch"].index(info["chosen_epoch"])
            info["chosen"] = {k: v[row] for k, v in history.items()}
    return payload, info


def store_trained(ws: Workspace, config: TrainConfig, data_artifact: Artifact, split, result: dict) -> Artifact:
    """Store a run trained elsewhere (e.g. on a Dask worker) under the run ID ``train`` gives it.

    ``result`` is ``train_keeping_last_good``'s; ``split`` is the prepared split
    it was trained on. Only this process writes the cache.
    """
    return TRAIN.get_or_compute(
        ws,
        config.key_params(),
        {"dataset": data_artifact.key},
        lambda: run_payload(config, split, result),
        depends=[("dataset", data_artifact.key)],
    )


def find_run(ws: Workspace, run_id: str) -> Artifact:
    """The training run named ``run_id``, or whose ID starts with it."""
    key = run_id_of(ws, run_id)
    try:
        found = ws.store.load("train", key)
    except DamagedArtifact as damage:
        found = _train_again(ws, key, damage)
    if found is None:
        raise CifarError(f"training run {key} is not readable", hint="run cifarcli cache verify")
    return found


def _train_again(ws: Workspace, key: str, damage: DamagedArtifact) -> Artifact:
    """A damaged or stale run, trained again from the settings its (checked) meta.json records."""
    meta = ws.store.meta("train", key)
    if meta is None:  # no trustworthy settings: nothing to retrain from
        raise CifarError(damage.message, hint="train it again with its options, or run cifarcli cache clear")
    # train() reports the damage itself (one line) when it finds the artifact.
    return train(ws, TrainConfig(**meta["params"]), data_artifact=dataset_by_key(ws, meta["inputs"]["dataset"]))


def run_metas(ws: Workspace) -> list[tuple[dict, dict | None]]:
    """Every readable training run's checked meta.json, with its evaluate meta.json when that is
    cached and made from the run as it is now (else None). Reads meta.json files only, never a payload."""
    found = []
    legacy = {row["key"] for row in ws.cache_listing(DATASET.name) if "sha256" in row["params"]}
    for key in ws.store.find(TRAIN.name, ""):
        meta = ws.store.meta(TRAIN.name, key)
        if meta is None or meta["inputs"]["dataset"] in legacy:  # damaged (`cache verify` names it), or unreachable
            continue
        evaluated = ws.store.meta(EVALUATE.name, run_key(EVALUATE, key))
        made_from = (evaluated or {}).get("input_sha256") or {}
        if evaluated is not None and made_from.get(f"{TRAIN.name}/{key}") != meta["payload_sha256"]:
            evaluated = None  # stale: an evaluation of weights that were retrained since
        found.append((meta, evaluated))
    return found


def config_of(run: Artifact) -> TrainConfig:
    return TrainConfig(**run.meta["params"])


def require_converged(run: Artifact) -> None:
    if run.payload["diverged_at"] is not None:
        raise WorkFailed(
            f"run {run.key} diverged at epoch {run.payload['diverged_at']}: cost became NaN or inf",
            hint="train it with a smaller learning rate η",
        )


def checkpoint_file(ws: Workspace, key: str) -> Path:
    """Where run ``key`` keeps its latest checkpoint while it trains (a progress display reads it)."""
    return ws.store.scratch(TRAIN.name, key) / "checkpoint"


def trained_meta(ws: Workspace, key: str) -> dict | None:
    """meta.json of the trained run ``key``; None while it is not trained."""
    return ws.store.meta(TRAIN.name, key) if ws.store.path(TRAIN.name, key).is_dir() else None
