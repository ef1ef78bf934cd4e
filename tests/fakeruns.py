"""Fake training runs written through the store itself: real meta.json files (checked, keyed like real
runs) with a tiny payload, for listing tests and benchmarks that must not train thousands of runs."""

from __future__ import annotations

import json
from pathlib import Path

from cifarcli import stages
from cifarcli.config import TrainConfig

DATA_KEY = "0123456789abcdef"  # a dataset key no real import has


def fake_run(
    ws: stages.Workspace,
    config: TrainConfig,
    *,
    val_acc: float = 0.38,
    train_acc: float = 0.42,
    train_cost: float = 1.9,
    val_cost: float = 2.0,
    diverged_at: int | None = None,
    seconds: float = 1.5,
    created: str | None = None,
    test_acc: float | None = None,
    force: bool = False,
    payload: dict | None = None,
    curves: dict | None = None,
) -> str:
    """Commit a train artifact for ``config`` (and, with ``test_acc``, its evaluation); return its run ID."""
    params = config.key_params()
    final = {
        "epoch": config.n_epochs,
        "train_loss": train_cost,
        "train_cost": train_cost,
        "train_acc": train_acc,
        "val_loss": val_cost,
        "val_cost": val_cost,
        "val_acc": val_acc,
    }
    info = {
        "config": params,
        "split_sizes": {"train": 8000, "val": 2000, "test": 10000},
        "timings": {"total_seconds": seconds},
        "diverged_at": diverged_at,
        "final": final,
        **({"curves": curves} if curves is not None else {}),
    }
    run = stages.TRAIN.get_or_compute(
        ws, params, {"dataset": DATA_KEY}, lambda: (payload or {"fake": 1}, info), force=force
    )
    if created is not None:  # the store stamps "now"; the key does not cover it, so it can be set afterwards
        meta_path = Path(run.path) / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["created"] = created
        meta_path.write_text(json.dumps(meta, indent=2))
    if test_acc is not None:
        test = {"loss": 1.8, "cost": 1.9, "accuracy": test_acc}
        stages.EVALUATE.get_or_compute(
            ws, {}, {"train": run.key}, lambda: ({"fake": 1}, {"test": test}), depends=[("train", run.key)]
        )
    return run.key
