"""Looking after the cache: list, verify, clear and collect the leftovers of a ``store.Store``.

Every entry is looked at with lstat: a link found in the cache is listed as
such and, when the cache is cleared, unlinked itself; what it points to is
never read or removed. ``downloads`` is the folder where fetch keeps verified
archives (and ``*.part`` files while downloading): not a stage, kept or
removed as the data it is.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

from cifarcli.files import disk_size, entries, kind_of, remove_tree
from cifarcli.store import Store
from cifarcli.store_errors import DamagedArtifact, UnreadableArtifact


def stages(store: Store, downloads: Path | None = None) -> list[str]:
    return [
        path.name
        for path, mode in entries(store.root)
        if stat.S_ISDIR(mode) and not path.name.startswith(".") and path != downloads
    ]


def _folders(store: Store, stage: str | None, downloads: Path | None) -> Iterator[Path]:
    for name in [stage] if stage else stages(store, downloads):
        for path, mode in entries(store.root / name):
            if stat.S_ISDIR(mode) and not path.name.startswith("."):
                yield path


def strays(store: Store, stage: str | None = None, downloads: Path | None = None) -> list[dict]:
    """Links (and other non-folders) where a stage folder or an artifact folder should be: left alone."""
    found = (
        []
        if stage
        else [
            (path, mode, path.name, "")
            for path, mode in entries(store.root)
            if stat.S_ISLNK(mode) and not path.name.startswith(".")
        ]
    )
    found += [
        (path, mode, name, path.name)
        for name in ([stage] if stage else stages(store, downloads))
        for path, mode in entries(store.root / name)
        if not stat.S_ISDIR(mode) and not path.name.startswith(".")
    ]
    return [
        {
            "stage": name,
            "key": key,
            "path": str(path),
            "damaged": f"{kind_of(mode)}; left alone (the cache never follows links)",
        }
        for path, mode, name, key in found
    ]


def ls(store: Store, stage: str | None = None, downloads: Path | None = None) -> list[dict]:
    """One summary per artifact, read from meta.json only (payloads are never loaded), with its size
    on disk; a row made from one run (evaluate, plot) carries that run's ID and settings."""
    rows = []
    for folder in _folders(store, stage, downloads):
        try:
            meta = store.read_meta(folder)
        except (DamagedArtifact, UnreadableArtifact) as damage:
            meta = {"damaged": damage.reason}
        run = meta.get("inputs", {}).get("train") if len(meta.get("inputs", {})) == 1 else None
        run_meta = store.meta("train", run) if run else None
        rows.append(
            {
                "stage": folder.parent.name,
                "key": folder.name,
                "path": str(folder),
                "params": run_meta["params"] if run_meta else meta.get("params", {}),
                "size": disk_size(folder),
                "created": meta.get("created"),
                "info": meta.get("info", {}),
                **({"run": run} if run else {}),
                **({"damaged": meta["damaged"]} if "damaged" in meta else {}),
            }
        )
    return rows + [
        {"params": {}, "size": None, "created": None, "info": {}, **row} for row in strays(store, stage, downloads)
    ]


def verify(store: Store, stage: str | None = None, downloads: Path | None = None) -> list[dict]:
    """Re-hash every payload and read it as a load would (allow-list, schema, inputs), and check that
    what meta.json repeats of the payload (its metrics) is the payload's; one row per artifact with
    ``ok`` and, when damaged, stale or unreadable, ``reason``. Links are rows that are not ok."""
    rows = []
    for folder in _folders(store, stage, downloads):
        row = {"stage": folder.parent.name, "key": folder.name, "ok": True}
        try:
            meta = store.check(folder, full=True)
            payload = store.read_payload(folder, mmap=True)  # mapped: verifying a large dataset reads no array
            _check_summary(store, meta, payload)
            store.check_inputs(meta)
        except (DamagedArtifact, UnreadableArtifact) as damage:
            row.update(ok=False, reason=damage.reason)
        rows.append(row)
    return rows + [
        {"stage": row["stage"], "key": row["key"], "ok": False, "reason": row["damaged"]}
        for row in strays(store, stage, downloads)
    ]


def _check_summary(store: Store, meta: dict, payload) -> None:
    schema = store.schemas.get(meta["stage"])
    if schema is None or schema.summary is None:
        return
    for name, value in schema.summary(payload).items():
        if meta["info"].get(name) != value:
            raise DamagedArtifact(meta["stage"], meta["key"], f"meta.json info.{name} is not the payload's")


def clear_plan(
    store: Store, stage: str | None = None, downloads: Path | None = None, *, keep_data: bool = False
) -> dict:
    """What ``clear`` would remove: per stage its artifact count and bytes, and the links it would
    unlink (never their targets). ``keep_data``: the dataset and ``downloads`` stay."""
    plan = {}
    for name in [stage] if stage else stages(store, downloads):
        folders = [] if keep_data and name == "dataset" else list(_folders(store, name, downloads))
        if folders:
            plan[name] = {"artifacts": len(folders), "bytes": sum(disk_size(f) for f in folders)}
    if stage is None and not keep_data and downloads is not None and disk_size(downloads):
        plan["downloads"] = {"artifacts": 0, "bytes": disk_size(downloads)}
    links = [row["path"] for row in strays(store, stage, downloads) if not (keep_data and row["stage"] == "dataset")]
    return {"stages": plan, "links": links}


def clear(store: Store, stage: str | None = None, downloads: Path | None = None, *, keep_data: bool = False) -> int:
    """Remove artifacts (of one stage, or all; ``keep_data``: not the dataset and ``downloads``), links
    found where artifacts belong (the link, not its target) and leftovers; returns how many artifacts went."""
    removed = 0
    links = clear_plan(store, stage, downloads, keep_data=keep_data)["links"]
    for name in [stage] if stage else stages(store, downloads):
        if keep_data and name == "dataset":
            continue
        for folder in list(_folders(store, name, downloads)):
            with store.lock(name, folder.name):
                store.remove(folder)
            removed += 1
        remove_tree(store.root / name / ".scratch")
    for path in links:
        Path(path).unlink(missing_ok=True)
    if stage is None and not keep_data and downloads is not None:
        remove_tree(downloads)
    gc(store, downloads)
    return removed


def gc(store: Store, downloads: Path | None = None) -> list[Path]:
    """Remove temporary folders and files left by killed processes; returns what went.

    A temporary folder belongs to one key; it is removed only when nobody
    holds that key's lock, so a write in progress elsewhere is never touched.
    """
    removed = []
    for stage in stages(store, downloads):
        stage_dir = store.root / stage
        leftovers = [p for p, _ in entries(stage_dir) if p.name.startswith(".tmp-")]
        leftovers += [
            p
            for d, mode in entries(stage_dir / ".scratch")
            if stat.S_ISDIR(mode)
            for p, _ in entries(d)
            if p.name.startswith(".") and p.name.endswith(".tmp")
        ]
        for path in leftovers:
            key = path.parent.name if path.name.endswith(".tmp") else path.name.split("-")[1]
            if not store.is_locked(stage, key):
                remove_tree(path)
                removed.append(path)
    for path in store.root.glob(".*.tmp"):  # half-written workspace files
        path.unlink(missing_ok=True)
        removed.append(path)
    # A partial download is resumable, but gc is the user asking for a clean cache: it goes
    # unless a fetch is writing it (that fetch holds the "downloads" lock of its file name).
    for path, _ in entries(downloads) if downloads is not None else []:
        if (
            path.suffix == ".part"
            and not store.is_locked("downloads", path.name[: -len(".part")])
            or path.name.startswith(".")
            and path.name.endswith(".tmp")
        ):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
