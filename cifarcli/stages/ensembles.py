"""The ensemble stage: converged runs of one loss on one dataset and split, combined by majority vote and by
their mean output (``cifarcli.ensemble``), on validation and test."""

from __future__ import annotations

from cifarcli.config import TrainConfig
from cifarcli.ensemble import TIE_RULE, combine
from cifarcli.errors import OptionError
from cifarcli.store import Artifact

from .datasets import dataset_by_key, prepared
from .declarations import ENSEMBLE
from .labels import run_label
from .runs import config_of, require_converged
from .workspace import Workspace


def ensemble(ws: Workspace, runs: list[Artifact], force: bool = False) -> Artifact:
    """The majority vote and the mean output of ``runs`` on validation and test (ensemble.py), cached.

    The members are a set: their order does not change the key. They must be
    converged runs of one loss on one dataset and split.
    """
    members = _distinct_members(runs)
    configs = [config_of(run) for run in members]
    data_key = _shared_dataset(members, configs)
    return ENSEMBLE.get_or_compute(
        ws,
        {},
        {f"member{i}": run.key for i, run in enumerate(members)},
        lambda: _combined(ws, members, configs, data_key),
        force=force,
        depends=[("train", run.key) for run in members],
    )


def _distinct_members(runs: list[Artifact]) -> list[Artifact]:
    """The different runs of ``runs`` in the order of their IDs; at least two, each converged."""
    members = sorted({run.key: run for run in runs}.values(), key=lambda run: run.key)
    if len(members) < 2:
        raise OptionError(
            "run",
            f"an ensemble needs at least two different runs, got {len(members)}",
            hint="give `run` twice or more, or `seeds` 1,2,3",
        )
    for run in members:
        require_converged(run)
    return members


def _shared_dataset(members: list[Artifact], configs: list[TrainConfig]) -> str:
    """The key of the dataset every member was trained on, when they also share the loss, split and dtype."""
    shared = {(c.loss, c.split, c.val_size if c.split == "full" else None, c.dtype) for c in configs}
    datasets = {run.meta["inputs"]["dataset"] for run in members}
    if len(shared) > 1 or len(datasets) > 1:
        raise OptionError(
            "run",
            "the members of an ensemble must share the loss, the dataset, the split and the dtype",
            hint="these runs differ in " + ("the dataset" if len(datasets) > 1 else "loss, split or dtype"),
        )
    return next(iter(datasets))


def _combined(ws: Workspace, members: list[Artifact], configs: list[TrainConfig], data_key: str) -> tuple[dict, dict]:
    """The ensemble artifact's (payload, info): each member's and the combined accuracies on validation and test."""
    first = configs[0]
    ws.progress.phase(f"combining {len(members)} runs (majority vote, mean output)")
    split = prepared(dataset_by_key(ws, data_key), first.split, first.val_size, first.dtype)
    weights = [(run.payload["W"], run.payload["b"]) for run in members]
    results = {
        "val": combine(weights, split.X_val, split.y_val, first.loss),
        "test": combine(weights, split.X_test, split.y_test, first.loss),
    }
    payload = {
        "loss": first.loss,
        "combined": first.loss_fn.outputs,
        "tie_rule": TIE_RULE,
        "split": first.split,
        "n_members": len(members),
        "members": _member_rows(members, configs, results),
        **{name: {k: v for k, v in results[name].items() if k != "members"} for name in ("val", "test")},
    }
    ws.progress.phase_done()
    return payload, {"n_members": len(members), "val_vote": payload["val"]["vote"], "val_mean": payload["val"]["mean"]}


def _member_rows(members: list[Artifact], configs: list[TrainConfig], results: dict) -> list[dict]:
    """Each member's run ID, label, settings and its own results on validation and test."""
    return [
        {
            "run_id": run.key,
            "label": run_label(config) + f", seed {config.seed}",
            "config": run.meta["params"],
            "val": results["val"]["members"][i],
            "test": results["test"]["members"][i],
        }
        for i, (run, config) in enumerate(zip(members, configs))
    ]
