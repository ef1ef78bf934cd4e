"""The stages of the study: what each needs, its key, how it is produced, how its state reads.

    fetch ──► dataset ──► gradcheck
                     └──► train(config) ──► evaluate ──► plot ──► report(all configs)
                                   └──► ensemble(runs)

Each stage is declared once below (``Stage``: name, version, schema); its
function here asks the artifact store for it and computes it when missing, so
asking for a stage runs the missing stages upstream of it and reuses everything
else. This module is the only user of ``store.Store``. Nothing here prints
(notices go to ``Workspace.log``, progress to ``Workspace.progress``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifarcli import data, plots, schemas, upkeep
from cifarcli import train as training
from cifarcli.config import GradcheckConfig, TrainConfig, run_name_problem
from cifarcli.ensemble import TIE_RULE, combine
from cifarcli.errors import CifarError, OptionError, WorkFailed, disk_error
from cifarcli.evaluate import evaluate_model, template_roughness, update_sizes
from cifarcli.files import UnsafeFile, read_json, write_atomic
from cifarcli.gradcheck import check_gradients
from cifarcli.model import init_parameters, one_hot
from cifarcli.prepare import prepare, split_indices
from cifarcli.report.analysis import instability
from cifarcli.schemas import Schema, SchemaError, validate
from cifarcli.store import Artifact, DamagedArtifact, Store, artifact_key

WORKSPACE_FILE = "workspace.json"


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline: its folder in the cache, the version of its output, what its artifacts hold.

    Bump a stage's version when its output for the same inputs changes.
    """

    name: str
    version: int
    schema: Schema

    def key(self, params: dict, inputs: dict[str, str]) -> str:
        """The artifact's address: a hash of the stage, its version, its parameters and its inputs' keys."""
        return artifact_key(self.name, self.version, params, inputs)

    def get_or_compute(
        self, ws: Workspace, params: dict, inputs: dict[str, str], compute: Callable[[], tuple[Any, dict]], **options
    ) -> Artifact:
        return ws.store.get_or_compute(self.name, self.version, params, inputs, compute, **options)

    def state(self, ws: Workspace, key: str) -> tuple[str, str | None]:
        """("cached" | "missing" | "damaged" | "stale", reason), without loading the payload."""
        return ws.store.state(self.name, key)


DATASET = Stage("dataset", 1, schemas.DATASET)
GRADCHECK = Stage("gradcheck", 1, schemas.GRADCHECK)
TRAIN = Stage("train", 1, schemas.TRAIN)
# evaluate 2, plot 2, report 2: the true-class probability summary, its histogram figure and report sections.
# plot 3: with λ = 0 the loss curve is drawn once, "loss = cost (λ = 0)".
# report 3: the comparison section at the top, figures two to a row with numbered captions, print CSS,
# the data source as a file name.
# evaluate 3: each split's predicted classes (for McNemar's test), accuracy intervals, the size of one update.
EVALUATE = Stage("evaluate", 3, schemas.EVALUATE)
PLOT = Stage("plot", 3, schemas.PLOT)
# report 4: intervals, McNemar's tests, roughness and update sizes, the discussion, --brief, report.typ.
REPORT = Stage("report", 4, schemas.REPORT)
SWEEP = Stage("sweep", 1, schemas.SWEEP)
# comparison 2: the unstable runs' loss in a panel of its own, the legend below the panels, run colours in the grid.
COMPARISON = Stage("comparison", 2, schemas.COMPARISON)  # every run of a report side by side
ENSEMBLE = Stage("ensemble", 1, schemas.ENSEMBLE)  # runs combined: majority vote and mean output
STAGES = {
    stage.name: stage for stage in (DATASET, GRADCHECK, TRAIN, EVALUATE, PLOT, REPORT, SWEEP, COMPARISON, ENSEMBLE)
}


def train_key(config: TrainConfig, data_key: str) -> str:
    """The run ID of ``config`` on dataset ``data_key``."""
    return TRAIN.key(config.key_params(), {"dataset": data_key})


def gradcheck_key(config: GradcheckConfig, data_key: str) -> str:
    return GRADCHECK.key(config.key_params(), {"dataset": data_key})


def run_key(stage: Stage, run_id: str) -> str:
    """The key of a stage made from one run alone (evaluate, plot)."""
    return stage.key({}, {"train": run_id})


class Progress:
    """Progress sink; the CLI subclasses it with rich bars. All methods are optional no-ops."""

    def download(self, done: int, total: int | None) -> None: ...

    def run_started(self, run_id: str, n_epochs: int, n_batches: int, start_epoch: int, label: str = "") -> None: ...

    def batch(self, epoch: int, index: int, n_batches: int) -> None: ...

    def epoch(self, epoch: int, history: dict) -> None: ...

    def run_finished(self, run_id: str) -> None: ...

    # Something slow without steps to count (reading an archive): ``what`` until ``done_working``.
    def working(self, what: str) -> None: ...

    def done_working(self) -> None: ...

    # Settings trained elsewhere at once (worker processes, a Dask cluster), seen from this process:
    # ``setting`` is called whenever one is seen to move (``epoch`` of ``n_epochs``, the latest
    # metrics of its history: train_acc, val_acc, ...), ``setting_finished`` once it is stored.
    def settings_started(self, n_settings: int, where: str) -> None: ...

    def setting(self, run_id: str, label: str, epoch: int, n_epochs: int, latest: dict) -> None: ...

    def setting_finished(self, run_id: str, label: str, n_epochs: int, latest: dict) -> None: ...

    def settings_finished(self) -> None: ...

    # A setting stored, its worker still busy with it (``what``: evaluating, drawing its figures).
    def setting_busy(self, run_id: str, label: str, n_epochs: int, what: str) -> None: ...

    # A phase of a command without steps to count (the gradient check, an evaluation, writing the
    # report): on screen from ``phase`` until ``phase_done`` (or the next phase).
    def phase(self, what: str) -> None: ...

    def phase_done(self) -> None: ...

    # ``total`` things to make one after another (``what``: "figures"), ``step`` after each.
    def steps(self, what: str, total: int) -> None: ...

    def step(self) -> None: ...

    # Everything on screen goes, at once (before an error line: nothing may be drawn below it).
    def close(self) -> None: ...


@dataclass
class Workspace:
    """Where artifacts and reports live, and where notices and progress go."""

    cache_dir: Path = Path("cache")
    reports_dir: Path = Path("reports")
    log: Callable[[str], None] = lambda message: None
    progress: Progress = field(default_factory=Progress)
    jobs: int = 1

    def __post_init__(self) -> None:
        self.cache_dir, self.reports_dir = Path(self.cache_dir), Path(self.reports_dir)
        self.events: list[tuple[str, str, str]] = []  # (stage, key, "hit" | "computed" | ...) of this command
        self.store = Store(
            self.cache_dir,
            log=self.log,
            observer=self.record,
            schemas={name: stage.schema for name, stage in STAGES.items()},
        )
        self._state_noticed = False

    def record(self, stage: str, key: str, status: str) -> None:
        """What became of one artifact this command asked for (the store calls this)."""
        self.events.append((stage, key, status))

    @property
    def downloads(self) -> Path:
        """Verified downloaded archives, kept so a damaged dataset can be re-imported offline."""
        return self.cache_dir / "downloads"

    # The cache commands: listing, verifying and clearing the store (``upkeep``), downloads included.
    def cache_listing(self, stage: str | None = None) -> list[dict]:
        return upkeep.ls(self.store, stage, self.downloads)

    def verify_cache(self, stage: str | None = None) -> list[dict]:
        return upkeep.verify(self.store, stage, self.downloads)

    def clear_plan(self, stage: str | None = None, keep_data: bool = False) -> dict:
        return upkeep.clear_plan(self.store, stage, self.downloads, keep_data=keep_data)

    def clear_cache(self, stage: str | None = None, keep_data: bool = False) -> int:
        return upkeep.clear(self.store, stage, self.downloads, keep_data=keep_data)

    def collect_garbage(self) -> list[Path]:
        return upkeep.gc(self.store, self.downloads)

    # The workspace file remembers the current dataset and the checksums of
    # sources already seen, so a repeated fetch need not re-hash 170 MB.
    # It is a convenience, never needed: a damaged one reads as empty (once noticed).
    def read_state(self) -> dict:
        path = self.cache_dir / WORKSPACE_FILE
        try:
            state = read_json(path)
            validate(state, schemas.WORKSPACE_SCHEMA, WORKSPACE_FILE)
        except FileNotFoundError:
            return {}
        except PermissionError:
            if not self._state_noticed:
                self._state_noticed = True
                self.log(f"cannot read {path} (permission denied); going on without it")
            return {}
        except (OSError, UnsafeFile, SchemaError) as damage:
            if not self._state_noticed:
                self._state_noticed = True
                reason = damage if isinstance(damage, (SchemaError, UnsafeFile)) else "not readable"
                self.log(f"ignoring damaged {path} ({reason}); it is rewritten on the next import")
            return {}
        return state

    def write_state(self, state: dict) -> None:
        path = self.cache_dir / WORKSPACE_FILE
        if not path.exists():
            self.log(f"new workspace: {self.cache_dir.resolve()}")
        write_atomic(path, json.dumps(state, indent=2).encode())


def workspace_above(start: Path | None = None) -> Path | None:
    """The nearest ``cache/`` holding a workspace file in a parent of ``start`` (default: the current
    folder), as git finds ``.git``; None when the folder itself has a ``cache/`` (with a workspace file
    or not: a cache here is never passed over), or no parent has one."""
    here = (Path.cwd() if start is None else Path(start)).resolve()
    if (here / "cache").is_dir():
        return None
    return next((parent / "cache" for parent in here.parents if (parent / "cache" / WORKSPACE_FILE).is_file()), None)


# -- dataset -----------------------------------------------------------------


def fetch(
    ws: Workspace,
    source: str | None = None,
    fmt: str = "binary",
    md5: str | None = None,
    sha256: str | None = None,
    force: bool = False,
) -> Artifact:
    """Import CIFAR-10 from ``source`` (URL, archive or folder), a local copy, or the official site."""
    if fmt not in data.OFFICIAL:
        raise OptionError("format", f"unknown archive format {fmt!r}", hint="use binary or python")
    if source is None and not force:
        current = _current_dataset(ws)
        if current is not None:
            return current
    if source is None:
        local = data.find_local_copy()
        if local is not None:
            ws.log(f"using the copy found at {local}")
        source = str(local) if local else data.OFFICIAL[fmt].url
    if data.is_url(source):
        path = _download(ws, source, fmt, md5, sha256)
    else:
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
        data.check_source(path)  # a device, FIFO or huge file is refused before it is hashed
    ws.progress.working(f"checking {path.name}")
    try:
        sums = _checksums(ws, path)
    finally:
        ws.progress.done_working()
    _check_pins(path, sums, md5, sha256)
    official = next((a for a in data.OFFICIAL.values() if a.md5 == sums["md5"]), None)
    this_import = {
        "source": source if data.is_url(source) else str(path),
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
    official = data.OFFICIAL[fmt] if url == data.OFFICIAL[fmt].url else None
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
        return data.download(
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
        md5, sha = data.checksums(path)
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
                hint="check the file, or drop the --" + name + " pin",
            )


def _current_dataset_key(ws: Workspace) -> str | None:
    """The key of the dataset the workspace last imported; without a (readable) workspace file,
    the newest whole dataset artifact in the store, so a lost file never means a download."""
    remembered = ws.read_state().get("dataset")
    if remembered:
        return remembered["key"]
    found = [row for row in ws.cache_listing("dataset") if "damaged" not in row]
    return max(found, key=lambda row: row["created"])["key"] if found else None


def _current_dataset(ws: Workspace) -> Artifact | None:
    """The current dataset (re-imported from its recorded source when damaged), or None."""
    key = _current_dataset_key(ws)
    if key is None:
        return None
    try:
        artifact = dataset_by_key(ws, key)
    except CifarError as failure:
        ws.log(failure.message)
        return None
    legacy = is_legacy_dataset(artifact.meta)
    if legacy:
        artifact = _migrated(ws, artifact)
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


def is_legacy_dataset(meta: dict) -> bool:
    """True for a dataset keyed by its source file's checksum (before keys followed the content)."""
    return "content_sha256" not in meta["params"]


def _migrated(ws: Workspace, old: Artifact) -> Artifact:
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
    return next((c for c in candidates if data.is_url(c) or Path(c).exists()), None)


# -- training ----------------------------------------------------------------


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
    params = config.key_params()
    key = train_key(config, data_artifact.key)

    def compute():
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

    artifact = TRAIN.get_or_compute(
        ws, params, {"dataset": data_artifact.key}, compute, force=force, depends=[("dataset", data_artifact.key)]
    )
    ws.store.drop_scratch("train", key)
    if name is not None:
        set_name(ws, name, artifact.key)
    return artifact


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


def run_payload(config: TrainConfig, split, result: dict) -> tuple[dict, dict]:
    """The train artifact's (payload, info) from ``train_keeping_last_good``'s result on the prepared
    ``split``: the same whether trained here, in a worker process or on a Dask worker."""

    # Canonical objects throughout: pickle records which objects are shared (down to dtype
    # instances), so a resumed run's unpickled checkpoint would otherwise give other payload
    # bytes for the same numbers, and "bit-identical" could not be checked on the checksum.
    def canonical(array):
        if array is None:
            return None
        fresh = np.empty(array.shape, dtype=np.dtype(array.dtype.name))  # the built-in dtype, not a copy of it
        fresh[...] = array
        return fresh

    history, diverged_at = result["history"], result["diverged_at"]
    payload = {
        "W": canonical(result["W"]),
        "b": canonical(result["b"]),
        "mean": canonical(split.mean),
        "std": canonical(split.std),
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


STABILITY_CURVES = ("epoch", "train_cost", "val_loss")


def n_train(data_artifact: Artifact, config: TrainConfig) -> int:
    """The size of the training split ``config`` takes from the dataset."""
    p = data_artifact.payload
    return len(split_indices(config.split, len(p["train_y"]), p["batch_size"], config.val_size)[0])


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


def run_id_of(ws: Workspace, text: str) -> str:
    """The full ID of the run named ``text``, or whose ID starts with it (a name can never look like an ID)."""
    named = ws.read_state().get("names", {}).get(text.strip())
    keys = [named] if named else ws.store.find("train", text.strip().lower()) if text.strip() else []
    if not keys or not ws.store.path(TRAIN.name, keys[0]).is_dir():
        raise CifarError(f"no training run {text!r} in {ws.cache_dir}", hint="list runs with: cifarcli runs")
    if len(keys) > 1:
        raise CifarError(f"run ID {text!r} is ambiguous: {', '.join(keys[:5])}", hint="type more of the ID")
    return keys[0]


def run_names(ws: Workspace) -> dict[str, str]:
    """Run ID -> its name, for the named runs (names live in the workspace file, never in a key)."""
    return {key: name for name, key in ws.read_state().get("names", {}).items()}


def check_run_name(name: str) -> str:
    problem = run_name_problem(name)
    if problem:
        raise CifarError(f"cannot name a run {name!r}: {problem}", hint="e.g. base, lam0.1_eta1e-3")
    return name


def set_name(ws: Workspace, name: str, run: str | None) -> dict:
    """Name ``run`` (a name or ID prefix) ``name``; with ``run`` None, take the name off.

    A name is unique in the workspace: naming another run moves it there. A run has one
    name: a new one replaces the old. Returns ``{"name", "run_id" (None when removed), "was"}``:
    ``was`` is the run the name left, or None.
    """
    check_run_name(name)
    state = ws.read_state()
    names = dict(state.get("names", {}))
    was = names.get(name)
    if run is None:
        if was is None:
            raise CifarError(f"no run is named {name!r}", hint="list runs and their names with: cifarcli runs")
        del names[name]
        key = None
    else:
        key = run_id_of(ws, run)
        names = {n: k for n, k in names.items() if k != key and n != name}
        names[name] = key
    ws.write_state({**state, "names": names})
    return {"name": name, "run_id": key, "was": was if was != key else None}


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


# -- gradcheck, evaluate, plot ------------------------------------------------


def gradcheck(ws: Workspace, config: GradcheckConfig = GradcheckConfig(), force: bool = False) -> Artifact:
    """Analytic against centred-difference gradients on the first training images."""
    config.validate()
    data_artifact = dataset(ws)

    def compute():
        ws.progress.phase(f"checking gradients ({len(config.lams)} λ values, {config.n_samples} images)")
        split = prepared(data_artifact, dtype="float64")
        if config.n_samples > split.sizes["train"]:
            raise OptionError(
                "n_samples", f"{config.n_samples} is more than the {split.sizes['train']} training images"
            )
        dims = split.X_train.shape[0] if config.n_dims is None else min(config.n_dims, split.X_train.shape[0])
        X = np.ascontiguousarray(split.X_train[:dims, : config.n_samples], dtype=np.float64)
        Y = one_hot(split.y_train[: config.n_samples], len(split.label_names)).astype(np.float64)
        W, b = init_parameters(Y.shape[0], dims, np.random.default_rng(config.seed), dtype=np.float64)
        result = check_gradients(
            X, Y, W, b, lams=tuple(float(lam) for lam in config.lams), h=config.h, loss=config.loss
        )
        elapsed = sum(entry["seconds"] for entry in result["results"])
        result = {**result, "n_samples": config.n_samples, "n_dims": dims, "seed": config.seed, "elapsed": elapsed}
        ws.progress.phase_done()
        return result, {"max_error": result["max_error"], "elapsed": elapsed}

    return GRADCHECK.get_or_compute(
        ws,
        config.key_params(),
        {"dataset": data_artifact.key},
        compute,
        force=force,
        depends=[("dataset", data_artifact.key)],
    )


def evaluate(ws: Workspace, run: Artifact, force: bool = False) -> Artifact:
    """Loss, cost, accuracy per split, per-class accuracy and the test confusion matrix of a run."""
    require_converged(run)
    config = config_of(run)
    data_key = run.meta["inputs"]["dataset"]

    def compute():
        ws.progress.phase(f"evaluating {run_label(config)}")
        split = prepared(dataset_by_key(ws, data_key), config.split, config.val_size, config.dtype)
        metrics = evaluate_model(run.payload["W"], run.payload["b"], config.lam, split, loss=config.loss)
        metrics["update"] = update_sizes(
            run.payload["W"],
            run.payload["b"],
            config.lam,
            config.eta,
            config.n_batch,
            split.X_train,
            split.y_train,
            config.loss,
        )
        metrics["weights"] = template_roughness(run.payload["W"])
        ws.progress.phase_done()
        return metrics, schemas.EVALUATE.summary(metrics)

    return EVALUATE.get_or_compute(ws, {}, {"train": run.key}, compute, force=force, depends=[("train", run.key)])


def plot(ws: Workspace, run: Artifact, force: bool = False) -> dict[str, Path]:
    """The run's figures as PNG files under ``reports/figures/<run-id>/``; drawn once, then copied from the cache."""
    return materialise(ws.reports_dir / "figures" / run.key, plot_artifact(ws, run, force).payload)


def plot_artifact(ws: Workspace, run: Artifact, force: bool = False) -> Artifact:
    """The run's figures (PNG bytes by name) in the cache, evaluated first; nothing under ``reports/``.

    A worker process that trained the run calls this as soon as the training ends (execute.py).
    """
    evaluated = evaluate(ws, run)
    metrics = evaluated.payload
    config = config_of(run)

    def compute():
        # Drawn inside the cache (a .tmp- folder of this key, which `cache gc` removes if we are
        # killed), not in the system temp folder: nothing is ever written outside the cache.
        stage_dir = ws.store.root / "plot"
        stage_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".tmp-{run_key(PLOT, run.key)}-draw-", dir=stage_dir) as tmp:
            folder = Path(tmp)
            history, W, names = run.payload["history"], run.payload["W"], run.payload["label_names"]
            chosen = run.payload.get("chosen_epoch") if config.keep == "best" else None  # marked on the curves
            plots.plot_loss(history, folder / "loss.png", title=run_label(config), lam=config.lam, chosen_epoch=chosen)
            ws.progress.step()
            plots.plot_accuracy(history, folder / "accuracy.png", title=run_label(config), chosen_epoch=chosen)
            ws.progress.step()
            plots.plot_weights(W, names, folder / "weights.png")
            ws.progress.step()
            plots.plot_confusion(metrics["confusion_matrix"], names, folder / "confusion.png")
            ws.progress.step()
            if not config.loss_fn.gives_probabilities:  # scores: the true class's margin instead
                plots.plot_margins(
                    metrics["margins"],
                    folder / "margins.png",
                    title=f"True-class margin on the test set, λ={config.lam:g}, η={config.eta:g}, loss svm",
                )
            else:
                plots.plot_probabilities(
                    metrics["probabilities"],
                    folder / "probabilities.png",
                    title=f"True-class probability on the test set, λ={config.lam:g}, "
                    f"η={config.eta:g}, loss {config.loss}",
                )
            ws.progress.step()
            names = figure_names(config)
            return {name: (folder / f"{name}.png").read_bytes() for name in names}, {}

    return PLOT.get_or_compute(
        ws, {}, {"train": run.key}, compute, force=force, depends=[("train", run.key), ("evaluate", evaluated.key)]
    )


def comparison_key(runs: list[Artifact]) -> str:
    """The comparison's key: the run IDs, in the report's order."""
    return COMPARISON.key({}, {f"run{i}": run.key for i, run in enumerate(runs)})


def comparison(ws: Workspace, runs: list[Artifact], force: bool = False) -> tuple[str, dict[str, Path]]:
    """Every run's validation curves overlaid and their weights one row per run, as PNG files under
    ``reports/figures/comparison-<key>/``; drawn once per set of runs, then copied from the cache.
    Returns (key, {"curves": path, "weights": path})."""
    if not runs:
        raise CifarError("no run to compare")
    key = comparison_key(runs)

    def compute():
        def diverged(run):
            at = run.payload["diverged_at"]
            return "" if at is None else f" (diverged at epoch {at})"

        labelled = [(run_label(config_of(run)), run) for run in runs]
        stage_dir = ws.store.root / COMPARISON.name
        stage_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".tmp-{key}-draw-", dir=stage_dir) as tmp:
            folder = Path(tmp)
            # The unstable runs (the report's rule) get a loss panel of their own: the stable ones stay apart.
            apart = [
                instability({"history": run.payload["history"], "diverged_at": run.payload["diverged_at"]}) is not None
                for run in runs
            ]
            plots.plot_comparison_curves(
                [(label + diverged(run), run.payload["history"]) for label, run in labelled],
                folder / "curves.png",
                apart=apart,
            )
            ws.progress.step()
            plots.plot_comparison_weights(
                [(label, run.payload["W"]) for label, run in labelled],
                runs[0].payload["label_names"],
                folder / "weights.png",
            )
            ws.progress.step()
            return (
                {name: (folder / f"{name}.png").read_bytes() for name in schemas.COMPARISON_FIGURES},
                {"n_runs": len(runs)},
            )

    artifact = COMPARISON.get_or_compute(
        ws,
        {},
        {f"run{i}": run.key for i, run in enumerate(runs)},
        compute,
        force=force,
        depends=[("train", run.key) for run in runs],
    )
    return artifact.key, materialise(ws.reports_dir / "figures" / f"comparison-{artifact.key}", artifact.payload)


def ensemble(ws: Workspace, runs: list[Artifact], force: bool = False) -> Artifact:
    """The majority vote and the mean output of ``runs`` on validation and test (ensemble.py), cached.

    The members are a set: their order does not change the key. They must be
    converged runs of one loss on one dataset and split.
    """
    runs = sorted({run.key: run for run in runs}.values(), key=lambda run: run.key)
    if len(runs) < 2:
        raise OptionError(
            "run",
            f"an ensemble needs at least two different runs, got {len(runs)}",
            hint="give `run` twice or more, or `seeds` 1,2,3",
        )
    for run in runs:
        require_converged(run)
    configs = [config_of(run) for run in runs]
    shared = {(c.loss, c.split, c.val_size if c.split == "full" else None, c.dtype) for c in configs}
    datasets = {run.meta["inputs"]["dataset"] for run in runs}
    if len(shared) > 1 or len(datasets) > 1:
        raise OptionError(
            "run",
            "the members of an ensemble must share the loss, the dataset, the split and the dtype",
            hint="these runs differ in " + ("the dataset" if len(datasets) > 1 else "loss, split or dtype"),
        )
    first = configs[0]

    def compute():
        ws.progress.phase(f"combining {len(runs)} runs (majority vote, mean output)")
        split = prepared(dataset_by_key(ws, next(iter(datasets))), first.split, first.val_size, first.dtype)
        weights = [(run.payload["W"], run.payload["b"]) for run in runs]
        results = {
            "val": combine(weights, split.X_val, split.y_val, first.loss),
            "test": combine(weights, split.X_test, split.y_test, first.loss),
        }
        members = [
            {
                "run_id": run.key,
                "label": run_label(config) + f", seed {config.seed}",
                "config": run.meta["params"],
                "val": results["val"]["members"][i],
                "test": results["test"]["members"][i],
            }
            for i, (run, config) in enumerate(zip(runs, configs))
        ]
        payload = {
            "loss": first.loss,
            "combined": first.loss_fn.outputs,
            "tie_rule": TIE_RULE,
            "split": first.split,
            "n_members": len(runs),
            "members": members,
            **{name: {k: v for k, v in results[name].items() if k != "members"} for name in ("val", "test")},
        }
        ws.progress.phase_done()
        return payload, {"n_members": len(runs), "val_vote": payload["val"]["vote"], "val_mean": payload["val"]["mean"]}

    return ENSEMBLE.get_or_compute(
        ws,
        {},
        {f"member{i}": run.key for i, run in enumerate(runs)},
        compute,
        force=force,
        depends=[("train", run.key) for run in runs],
    )


def figure_names(config: TrainConfig) -> tuple[str, ...]:
    """The figures of one run: the true-class probability, or for a loss without probabilities its margin."""
    return schemas.FIGURES if config.loss_fn.gives_probabilities else schemas.SVM_FIGURES


def figures_to_draw(ws: Workspace, runs: list[Artifact], compared: bool) -> int:
    """How many figures asking for these runs' plots (and, with ``compared``, their comparison) will draw."""
    count = sum(
        len(figure_names(config_of(run)))
        for run in runs
        if run.payload["diverged_at"] is None and PLOT.state(ws, run_key(PLOT, run.key))[0] != "cached"
    )
    if compared and runs and COMPARISON.state(ws, comparison_key(runs))[0] != "cached":
        count += len(schemas.COMPARISON_FIGURES)
    return count


def materialise(folder: Path, files: dict[str, bytes]) -> dict[str, Path]:
    """Write cached figure bytes to the reports folder unless an identical file is already there."""
    paths = {name: folder / f"{name}.png" for name in files}
    for name, path in paths.items():
        write_if_changed(path, files[name])
    return paths


def run_label(config: TrainConfig) -> str:
    # A BCE run says so: a softmax and a BCE run of the same λ, η are otherwise indistinguishable.
    return f"λ={config.lam:g}, η={config.eta:g}" + (f", {config.loss_fn.tag}" if config.loss_fn.tag else "")


# Settings a run's label names when they are not the same in every run shown together.
_TELLING = (
    ("seed", "seed {}"),
    ("n_batch", "batch {}"),
    ("n_epochs", "{} epochs"),
    ("split", "split {}"),
    ("init", "init {}"),
    ("dtype", "{}"),
)


def distinct_labels(configs: list[TrainConfig]) -> list[str]:
    """``run_label`` of each config, with the settings that tell them apart (members of one ensemble: the seed)."""
    differing = [(name, form) for name, form in _TELLING if len({getattr(c, name) for c in configs}) > 1]
    return [", ".join([run_label(c), *(form.format(getattr(c, name)) for name, form in differing)]) for c in configs]


def trained_line(label: str, n_epochs: int, info: dict) -> str:
    """One run's outcome in one short line (it must fit 80 columns): ``trained λ=0.1, η=0.001: epoch 40/40,
    val acc 0.3876, 2.3 s``, or ``... diverged at epoch 12, ...``."""
    seconds = (info.get("timings") or {}).get("total_seconds")
    took = f", {seconds:.1f} s" if seconds else ""
    if info.get("diverged_at") is not None:
        return f"trained {label}: diverged at epoch {info['diverged_at']}{took}"
    final = info.get("final") or {}
    return (
        f"trained {label}: epoch {final.get('epoch', n_epochs)}/{n_epochs}, "
        f"val acc {final.get('val_acc', float('nan')):.4f}{took}"
    )


def write_if_changed(path: Path, content: bytes) -> None:
    try:
        if not (path.is_file() and path.read_bytes() == content):
            write_atomic(path, content, mode=0o666)  # a file for the user (reports/): their umask applies
    except OSError as exc:
        raise disk_error(exc, path) from None


# -- status ------------------------------------------------------------------------


def status(ws: Workspace, config) -> list[dict]:
    """Each stage's key and state (cached, missing, damaged, stale, partial) for ``config``; computes nothing."""
    config.validate()  # bad options are an error even before any dataset is imported
    rows = []

    def add(stage: str, key: str | None, state: tuple[str, str | None] = ("missing", None)) -> None:
        rows.append({"stage": stage, "key": key, "state": state[0], "reason": state[1]})

    data_key = _current_dataset_key(ws)
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
