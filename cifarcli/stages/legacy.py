"""Datasets keyed by their source file's checksum, from before keys followed the images: stored again under
the key of their content when used, and removed with everything made from them by ``collect_garbage``."""

from __future__ import annotations

from pathlib import Path

from cifarcli import data
from cifarcli.store import Artifact

from .declarations import DATASET
from .workspace import Workspace


def is_legacy_dataset(meta: dict) -> bool:
    """True for a dataset keyed by its source file's checksum (before keys followed the content)."""
    return "content_sha256" not in meta["params"]


def migrated(ws: Workspace, old: Artifact) -> Artifact:
    """A dataset keyed by its source file, stored again under the key of its content (no source needed)."""
    p = old.payload
    content = data.content_sha256(
        data.Cifar10(p["train_x"], p["train_y"], p["test_x"], p["test_y"], tuple(p["label_names"]), p["batch_size"])
    )
    new = DATASET.get_or_compute(ws, {"content_sha256": content}, {}, lambda: (dict(p), old.meta["info"]), mmap=True)
    ws.log(
        f"dataset keys now follow the images, not the file they came from: dataset {old.key} is now "
        f"{new.key}, so every run ID changes once (old runs are left unused; `cifarcli cache gc` removes them)"
    )
    return new


def collect_garbage(ws: Workspace) -> list[Path]:
    """Remove the leftovers of killed processes, and the artifacts no key reaches any more: datasets
    keyed by their source file (before keys followed the content) and everything made from them."""
    removed = ws.collect_garbage()
    metas = [
        (row["stage"], row["key"], ws.store.meta(row["stage"], row["key"]))
        for row in ws.cache_listing()
        if row.get("key")
    ]
    metas = [(stage, key, meta) for stage, key, meta in metas if meta is not None]
    dead = {key for stage, key, meta in metas if stage == DATASET.name and is_legacy_dataset(meta)}
    grew = True
    while grew:  # made from a dead artifact: dead too (inputs name keys, 16 hex digits, unique across stages)
        before = len(dead)
        dead |= {key for _, key, meta in metas if set(meta["inputs"].values()) & dead}
        grew = len(dead) > before
    for stage, key, _ in metas:
        if key in dead:
            with ws.store.lock(stage, key):  # once no other process holds its key
                ws.store.remove(ws.store.path(stage, key))
            removed.append(ws.store.path(stage, key))
    state = ws.read_state()
    names = state.get("names", {})
    if set(names.values()) & dead:  # a name of a removed run would only say "no training run"
        ws.write_state({**state, "names": {name: key for name, key in names.items() if key not in dead}})
    return removed
