"""The dataset stage: the import policy (a source given, the current dataset, a local copy, or the official
site), checksums memoised in the workspace file, the current dataset, and the prepared split kept per process."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from cifarcli import data, download, source_files
from cifarcli.config import TrainConfig
from cifarcli.errors import CifarError, OptionError
from cifarcli.prepare import prepare, split_indices
from cifarcli.store import Artifact
from cifarcli.store_errors import DamagedArtifact

from .declarations import DATASET
from .legacy import is_legacy_dataset, migrated
from .workspace import Workspace


def fetch(
    ws: Workspace,
    source: str | None = None,
    fmt: str = "binary",
    md5: str | None = None,
    sha256: str | None = None,
    force: bool = False,
) -> Artifact:
    """Import CIFAR-10 from ``source`` (URL, archive or folder), a local copy, or the official site."""
    if fmt not in source_files.OFFICIAL:
        raise OptionError("format", f"unknown archive format {fmt!r}", hint="use binary or python")
    if source is None and not force:
        current = _current_dataset(ws)
        if current is not None:
            return current
    source, path = _source_path(ws, source, fmt, md5, sha256)
    ws.progress.working(f"checking {path.name}")
    try:
        sums = _checksums(ws, path)
    finally:
        ws.progress.done_working()
    _check_pins(path, sums, md5, sha256)
    official = next((a for a in source_files.OFFICIAL.values() if a.md5 == sums["md5"]), None)
    this_import = {
        "source": source if source_files.is_url(source) else str(path),
        **sums,
        "official": official is not None,
        "note": None if official else "not an official CIFAR-10 archive (checksum unknown); its structure is valid",
    }
    found = None if force else _known_source(ws, sums["sha256"])
    artifact, found_format = found or _import(ws, path, this_import, force)
    state = ws.read_state()
    state["dataset"] = {"key": artifact.key, "source": source, "path": str(path)}
    state.setdefault("sources", {})[sums["sha256"]] = {"key": artifact.key, "format": found_format}
    ws.write_state(state)
    # meta.json keeps the import that made the artifact; the answer describes this one.
    return dataclasses.replace(
        artifact, meta={**artifact.meta, "info": {**artifact.meta["info"], **this_import, "format": found_format}}
    )


def _source_path(ws: Workspace, source: str | None, fmt: str, md5: str | None, sha256: str | None) -> tuple[str, Path]:
    """The source to import (``source``, else a local copy, else the official URL) and the local file or
    folder that holds it: a URL downloaded, a folder holding an archive replaced by that archive."""
    if source is None:
        local = data.find_local_copy()
        if local is not None:
            ws.log(f"using the copy found at {local}")
        source = str(local) if local else source_files.OFFICIAL[fmt].url
    if source_files.is_url(source):
        return source, _download(ws, source, fmt, md5, sha256)
    path = Path(source).expanduser()
    if not path.exists():
        raise CifarError(
            f"no such file or folder: {source}",
            hint="give a CIFAR-10 archive, an extracted cifar-10-batches-* folder, or a URL",
        )
    path = path.resolve()
    if path.is_dir() and not data.holds_batches(path) and data.archive_in(path) is not None:
        path = data.archive_in(path)
        ws.log(f"using the archive found at {path}")
    source_files.check_source(path)  # a device, FIFO or huge file is refused before it is hashed
    return source, path


def _known_source(ws: Workspace, source_sha256: str) -> tuple[Artifact, str] | None:
    """(dataset, format) a source with this sha256 decoded to before, when that dataset is still whole."""
    known = ws.read_state().get("sources", {}).get(source_sha256)
    if known is None:
        return None
    try:
        found = ws.store.load(DATASET.name, known["key"], mmap=True)
    except DamagedArtifact as damage:
        ws.log(f"{damage.message}; importing it again")
        return None
    return (found, known["format"]) if found is not None else None


def _import(ws: Workspace, path: Path, this_import: dict, force: bool) -> tuple[Artifact, str]:
    """Decode ``path`` and store it under the key of its content (a hit when that content is cached)."""
    ws.progress.working(f"reading {path.name}")
    try:
        dataset, found_format = data.read_cifar10(
            path, on_member=lambda name: ws.progress.working(f"reading {path.name}: {name}")
        )
        content = data.content_sha256(dataset)
    finally:
        ws.progress.done_working()

    def compute():
        info = {
            **this_import,
            "format": found_format,
            "n_train": int(len(dataset.train_y)),
            "n_test": int(len(dataset.test_y)),
            "batch_size": dataset.batch_size,
            "label_names": list(dataset.label_names),
            "per_class": {
                "train": np.bincount(dataset.train_y, minlength=10).tolist(),
                "test": np.bincount(dataset.test_y, minlength=10).tolist(),
            },
        }
        payload = {
            "train_x": dataset.train_x,
            "train_y": dataset.train_y,
            "test_x": dataset.test_x,
            "test_y": dataset.test_y,
            "label_names": list(dataset.label_names),
            "batch_size": dataset.batch_size,
        }
        return payload, info

    artifact = DATASET.get_or_compute(ws, {"content_sha256": content}, {}, compute, force=force, mmap=True)
    if artifact.status == "hit":
        ws.log(f"{path.name} holds the same images as dataset {artifact.key}, already in the cache")
    return artifact, found_format


def _download(ws: Workspace, url: str, fmt: str, md5: str | None, sha256: str | None) -> Path:
    official = source_files.OFFICIAL[fmt] if url == source_files.OFFICIAL[fmt].url else None
    # The URL's hash in the name: the same file name from another server is another download.
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "cifar-10.tar.gz"
    target = ws.downloads / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"
    if target.is_file():
        return target
    # One writer per .part: two fetches appending to the same file would interleave their bytes,
    # and `cache gc` leaves a .part alone while its lock is held.
    with ws.store.lock("downloads", target.name):
        if target.is_file():  # another fetch finished it while we waited
            return target
        ws.log(f"downloading {url}")
        return download.download(
            url,
            target,
            md5=md5 or (official.md5 if official else None),
            sha256=sha256,
            expected_size=official.size if official else None,
            on_progress=ws.progress.download,
        )


def _checksums(ws: Workspace, path: Path) -> dict:
    """md5 and sha256 of a source, memoised on (path, size, mtime) in the workspace file."""
    # A folder's own mtime does not change when a file in it is rewritten: fingerprint its files.
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    fingerprint = f"{path}:" + hashlib.sha256(repr(stats).encode()).hexdigest()[:16]
    state = ws.read_state()
    memo = state.get("checksums", {})
    if fingerprint not in memo:
        md5, sha = source_files.checksums(path)
        memo = {k: v for k, v in memo.items() if not k.startswith(f"{path}:")}
        memo[fingerprint] = {"md5": md5, "sha256": sha}
        state["checksums"] = memo
        ws.write_state(state)
    return memo[fingerprint]


def _check_pins(path: Path, sums: dict, md5: str | None, sha256: str | None) -> None:
    for name, pinned in (("md5", md5), ("sha256", sha256)):
        if pinned and pinned.lower() != sums[name]:
            raise CifarError(
                f"{path}: {name} is {sums[name]}, expected {pinned.lower()}",
                hint=f"check the file, or drop the `{name}` pin",
            )


def current_dataset_key(ws: Workspace) -> str | None:
    """The key of the dataset the workspace last imported; without a (readable) workspace file,
    the newest whole dataset artifact in the store, so a lost file never means a download."""
    remembered = ws.read_state().get("dataset")
    if remembered:
        return remembered["key"]
    found = [row for row in ws.cache_listing("dataset") if "damaged" not in row]
    return max(found, key=lambda row: row["created"])["key"] if found else None


def _current_dataset(ws: Workspace) -> Artifact | None:
    """The current dataset (re-imported from its recorded source when damaged), or None."""
    key = current_dataset_key(ws)
    if key is None:
        return None
    try:
        artifact = dataset_by_key(ws, key)
    except CifarError as failure:
        ws.log(failure.message)
        return None
    legacy = is_legacy_dataset(artifact.meta)
    if legacy:
        artifact = migrated(ws, artifact)
    elif not ws.read_state().get("dataset"):  # found in the store: remember it again (best effort)
        ws.log(f"using the dataset {key} found in {ws.cache_dir}")
    if legacy or not ws.read_state().get("dataset"):
        info = artifact.meta["info"]
        state = {**ws.read_state(), "dataset": {"key": artifact.key, "source": info["source"], "path": info["source"]}}
        state.setdefault("sources", {})[info["sha256"]] = {"key": artifact.key, "format": info["format"]}
        try:
            ws.write_state(state)
        except CifarError:  # a read-only cache still serves what it holds
            pass
    return artifact


def dataset(ws: Workspace) -> Artifact:
    """The current dataset; imports it first when there is none (from its last source, else by default)."""
    return fetch(ws)


def dataset_by_key(ws: Workspace, key: str) -> Artifact:
    """The dataset artifact ``key``. A damaged or missing one is imported again from its recorded
    source: the local file or folder, or for a URL the verified download kept in cache/downloads/."""
    try:
        found = ws.store.load("dataset", key, mmap=True)
    except DamagedArtifact as damage:
        ws.log(f"{damage.message}; importing it again")
        found = None
    if found is not None:
        return found
    source = _dataset_source(ws, key)
    if source is None:
        raise CifarError(f"dataset {key} is no longer in the cache and its source is gone", setting="source")
    artifact = fetch(ws, source, force=True)
    if artifact.key != key:
        raise CifarError(
            f"dataset {key} is no longer in the cache, and {source} now holds other data",
            hint="use the original data",
            setting="source",
        )
    return artifact


def _dataset_source(ws: Workspace, key: str) -> str | None:
    """Where dataset ``key`` was imported from, as its meta.json or the workspace file remember it."""
    meta = ws.store.meta("dataset", key)
    remembered = ws.read_state().get("dataset") or {}
    candidates = [meta["info"]["source"]] if meta else []
    if remembered.get("key") == key:
        candidates += [remembered["path"], remembered["source"]]
    # A URL is fetched again, which reuses its verified download when cache/downloads/ still has it.
    return next((c for c in candidates if source_files.is_url(c) or Path(c).exists()), None)


_last_prepared: dict = {}


def forget_prepared() -> None:
    """Drop the kept prepared split (benchmarks measure the preparation itself)."""
    _last_prepared.clear()


def prepared(data_artifact: Artifact, split: str = "seed", val_size: int = 1000, dtype: str = "float32"):
    """The normalised splits of a dataset; the last one is kept, so a sweep or a report
    that trains and evaluates many settings on one split normalises it once per process.
    Nothing writes into these arrays."""
    key = (data_artifact.key, split, val_size if split == "full" else None, dtype)
    if key not in _last_prepared:
        p = data_artifact.payload
        _last_prepared.clear()  # one at a time: a full split in float64 is 1.5 GB
        ready = prepare(
            p["train_x"],
            p["train_y"],
            p["test_x"],
            p["test_y"],
            p["label_names"],
            p["batch_size"],
            split,
            val_size,
            dtype,
        )
        for array in vars(ready).values():
            if isinstance(array, np.ndarray):
                array.flags.writeable = False  # shared by every later caller: enforce "nothing writes"
        _last_prepared[key] = ready
    return _last_prepared[key]


def n_train(data_artifact: Artifact, config: TrainConfig) -> int:
    """The size of the training split ``config`` takes from the dataset."""
    p = data_artifact.payload
    return len(split_indices(config.split, len(p["train_y"]), p["batch_size"], config.val_size)[0])
