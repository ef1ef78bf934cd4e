"""The stages of the study: what each needs, its key, how it is produced.

    fetch ──► dataset ──► gradcheck
                     └──► train(config) ──► evaluate ──► plot ──► report(all configs)

Every stage goes through the artifact store, so asking for a stage runs the
missing stages upstream of it and reuses everything else. The CLI calls one
function here per command; nothing here prints (notices go to ``Workspace.log``,
progress to ``Workspace.progress``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cifarcli.cache import (HEX64, NUMBER, Array, Artifact, Check, DamagedArtifact, DictOf, ListOf, OneOf, Opt,
                            Schema, SchemaError, Store, artifact_key, disk_error, validate, write_atomic)
from cifarcli.errors import CifarError, WorkFailed

# Bump a stage's version when its output for the same inputs changes.
# evaluate 2, plot 2, report 2: the true-class probability summary, its histogram figure and report sections.
VERSIONS = {"dataset": 1, "gradcheck": 1, "train": 1, "evaluate": 2, "plot": 2, "report": 2, "sweep": 1}
WORKSPACE_FILE = "workspace.json"


# -- what each stage's artifacts hold -----------------------------------------------
#
# Checked on every load (cache.Store.schemas): a payload, checkpoint or meta.json that
# does not fit is "damaged" — reported, removed, recomputed — instead of a traceback
# further down. See cache.validate for the notation.

FLOATS = ("float32", "float64")
LABELS = ("i", "u")  # any integer dtype
PNG = Check(bytes, lambda data: data.startswith(b"\x89PNG\r\n\x1a\n"), "a PNG file")
NAMES = ListOf(str, 10)
# train.HISTORY_KEYS (a literal here so that opening the store does not import numpy)
HISTORY_KEYS = ("epoch", "train_loss", "train_cost", "train_acc", "val_loss", "val_cost", "val_acc")
HISTORY = {key: ListOf(int if key == "epoch" else NUMBER, "rows") for key in HISTORY_KEYS}
MAYBE_NUMBER = OneOf((None, NUMBER))
MAYBE_INT = OneOf((None, int))


def _valid_train_params(params: dict) -> bool:
    """A train meta's params rebuild a valid config whose key params are exactly these."""
    from cifarcli.train import TrainConfig

    try:
        return TrainConfig(**params).validate().key_params() == params
    except (TypeError, ValueError, CifarError):
        return False


DATASET_PAYLOAD = {
    "train_x": Array(("uint8",), ("n", 3072)), "train_y": Array(LABELS, ("n",), within=(0, 9)),
    "test_x": Array(("uint8",), ("m", 3072)), "test_y": Array(LABELS, ("m",), within=(0, 9)),
    "label_names": NAMES, "batch_size": Check(int, lambda n: n >= 1, "at least 1"),
}
DATASET_INFO = {
    "source": str, "format": str, "md5": str, "sha256": HEX64, "official": bool, "note": OneOf((None, str)),
    "n_train": int, "n_test": int, "batch_size": int, "label_names": NAMES,
    "per_class": {"train": ListOf(int, 10), "test": ListOf(int, 10)},
}
TRAIN_PAYLOAD = Check(
    {"W": OneOf((None, Array(FLOATS, ("K", "d")))), "b": OneOf((None, Array(FLOATS, ("K", 1)))),
     "mean": Array(FLOATS, ("d", 1)), "std": Array(FLOATS, ("d", 1)), "history": HISTORY,
     "label_names": ListOf(str, "K"), "diverged_at": MAYBE_INT},
    lambda p: (p["W"] is None) == (p["b"] is None) and (p["W"] is not None or p["diverged_at"] is not None),
    "W and b both present, or both absent in a diverged run")
TRAIN_INFO = {"config": dict, "split_sizes": DictOf(str, int), "timings": {"total_seconds": Opt(NUMBER)},
              "diverged_at": MAYBE_INT, "final": DictOf(str, MAYBE_NUMBER)}
CHECKPOINT = Check({"epoch": int, "W": Array(FLOATS, ("K", "d")), "b": Array(FLOATS, ("K", 1)), "history": HISTORY},
                   lambda c: c["epoch"] >= 0 and len(c["history"]["epoch"]) == c["epoch"] + 1,
                   "a checkpoint whose history has one row per epoch, epoch 0 included")
_SPLIT_METRICS = {"loss": NUMBER, "cost": NUMBER, "accuracy": NUMBER, "n": int}
_PROBABILITY_GROUP = {"n": int, "mean": MAYBE_NUMBER, "median": MAYBE_NUMBER, "counts": ListOf(int, "bins")}
EVALUATE_PAYLOAD = {
    "lam": NUMBER, "loss": Opt(str), "train": _SPLIT_METRICS, "val": _SPLIT_METRICS, "test": _SPLIT_METRICS,
    "confusion_matrix": ListOf(ListOf(int, "K"), "K"), "per_class_accuracy": DictOf(str, NUMBER),
    "probabilities": {"kind": str, "bins": ListOf(NUMBER), "threshold": NUMBER, "correct": _PROBABILITY_GROUP,
                      "incorrect": _PROBABILITY_GROUP, "confident_mistakes": MAYBE_NUMBER},
    "label_names": ListOf(str, "K"),
}
_ERRORS = {"max": NUMBER, "mean": NUMBER, "median": NUMBER, "share_below_tol": NUMBER, "n": int,
           "corner": ListOf(ListOf(NUMBER))}
GRADCHECK_PAYLOAD = {
    "h": NUMBER, "eps": NUMBER, "loss": str, "n_images": int, "n_params": int, "max_error": NUMBER,
    "results": ListOf({"lam": NUMBER, "W": _ERRORS, "b": _ERRORS, "seconds": NUMBER}),
    "n_samples": int, "n_dims": int, "seed": int, "elapsed": NUMBER,
}
FIGURES = ("loss", "accuracy", "weights", "confusion", "probabilities")
_REPORT_RUN = {"run_id": str, "label": str, "config": {"lam": NUMBER, "eta": NUMBER, "n_batch": int, "n_epochs": int},
               "split_sizes": DictOf(str, int), "history": HISTORY, "diverged_at": MAYBE_INT,
               "train_seconds": MAYBE_NUMBER, "metrics": OneOf((None, EVALUATE_PAYLOAD)), "figures": DictOf(str, str)}
REPORT_PAYLOAD = {
    "doc": {"title": str, "cifarcli_version": str, "dataset": dict, "preprocessing": dict, "initialisation": dict,
            "gradcheck": {**GRADCHECK_PAYLOAD, "tol": NUMBER, "passed": bool}, "runs": ListOf(_REPORT_RUN),
            "sweep": Opt(dict), "created": str},
    "report.md": str, "report.html": str,
}
SCHEMAS = {
    "dataset": Schema(DATASET_PAYLOAD, params={"sha256": HEX64}, info=DATASET_INFO),
    "gradcheck": Schema(GRADCHECK_PAYLOAD, info={"max_error": NUMBER, "elapsed": NUMBER}),
    "train": Schema(TRAIN_PAYLOAD, params=Check(dict, _valid_train_params, "valid training settings"),
                    info=TRAIN_INFO),
    "evaluate": Schema(EVALUATE_PAYLOAD),
    "plot": Schema({name: PNG for name in FIGURES}),
    "report": Schema(REPORT_PAYLOAD),
    "sweep": Schema({"heatmap": PNG}, info={"n_points": int}),
}
WORKSPACE_SCHEMA = {
    "dataset": Opt({"key": Check(str, lambda k: len(k) == 16 and all(c in "0123456789abcdef" for c in k),
                                 "a 16-digit key"), "source": str, "path": str}),
    "checksums": Opt(DictOf(str, {"md5": str, "sha256": HEX64})),
}


class Progress:
    """Progress sink; the CLI subclasses it with rich bars. All methods are optional no-ops."""

    def download(self, done: int, total: int | None) -> None: ...

    def run_started(self, run_id: str, n_epochs: int, n_batches: int, start_epoch: int) -> None: ...

    def batch(self, epoch: int, index: int, n_batches: int) -> None: ...

    def epoch(self, epoch: int, history: dict) -> None: ...

    def run_finished(self, run_id: str) -> None: ...


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
        self.store = Store(self.cache_dir, log=self.log, schemas=SCHEMAS)
        self._state_noticed = False

    # The workspace file remembers the current dataset and the checksums of
    # sources already seen, so a repeated fetch need not re-hash 170 MB.
    # It is a convenience, never needed: a damaged one reads as empty (once noticed).
    def read_state(self) -> dict:
        path = self.cache_dir / WORKSPACE_FILE
        try:
            state = json.loads(path.read_text())
            validate(state, WORKSPACE_SCHEMA, WORKSPACE_FILE)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, SchemaError) as damage:
            if not self._state_noticed:
                self._state_noticed = True
                reason = damage if isinstance(damage, SchemaError) else "not readable JSON"
                self.log(f"ignoring damaged {path} ({reason}); it is rewritten on the next import")
            return {}
        return state

    def write_state(self, state: dict) -> None:
        write_atomic(self.cache_dir / WORKSPACE_FILE, json.dumps(state, indent=2).encode())


# -- dataset -----------------------------------------------------------------


def fetch(ws: Workspace, source: str | None = None, fmt: str = "binary", md5: str | None = None,
          sha256: str | None = None, force: bool = False) -> Artifact:
    """Import CIFAR-10 from ``source`` (URL, archive or folder), a local copy, or the official site."""
    from cifarcli import data

    if fmt not in data.OFFICIAL:
        raise CifarError(f"unknown --format {fmt!r}", hint="use binary or python")
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
            raise CifarError(f"no such file or folder: {source}",
                             hint="give a CIFAR-10 archive, an extracted cifar-10-batches-* folder, or a URL")
        path = path.resolve()
        data.check_source(path)  # a device, FIFO or huge file is refused before it is hashed
    sums = _checksums(ws, path)
    _check_pins(path, sums, md5, sha256)
    official = next((a for a in data.OFFICIAL.values() if a.md5 == sums["md5"]), None)

    def compute():
        import numpy as np

        dataset, found_format = data.read_cifar10(path)
        note = None if official else "not an official CIFAR-10 archive (checksum unknown); its structure is valid"
        info = {"source": source if data.is_url(source) else str(path), "format": found_format, **sums,
                "official": official is not None, "note": note,
                "n_train": int(len(dataset.train_y)), "n_test": int(len(dataset.test_y)),
                "batch_size": dataset.batch_size, "label_names": list(dataset.label_names),
                "per_class": {"train": np.bincount(dataset.train_y, minlength=10).tolist(),
                              "test": np.bincount(dataset.test_y, minlength=10).tolist()}}
        payload = {"train_x": dataset.train_x, "train_y": dataset.train_y, "test_x": dataset.test_x,
                   "test_y": dataset.test_y, "label_names": list(dataset.label_names),
                   "batch_size": dataset.batch_size}
        return payload, info

    artifact = ws.store.get_or_compute("dataset", VERSIONS["dataset"], {"sha256": sums["sha256"]}, {},
                                       compute, force=force, mmap=True)
    state = ws.read_state()
    state["dataset"] = {"key": artifact.key, "source": source, "path": str(path)}
    ws.write_state(state)
    return artifact


def _download(ws: Workspace, url: str, fmt: str, md5: str | None, sha256: str | None) -> Path:
    from cifarcli import data

    official = data.OFFICIAL[fmt] if url == data.OFFICIAL[fmt].url else None
    # The URL's hash in the name: the same file name from another server is another download.
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "cifar-10.tar.gz"
    target = ws.store.downloads / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"
    if target.is_file():
        return target
    # One writer per .part: two fetches appending to the same file would interleave their bytes,
    # and `cache gc` leaves a .part alone while its lock is held.
    with ws.store.lock("downloads", target.name):
        if target.is_file():  # another fetch finished it while we waited
            return target
        ws.log(f"downloading {url}")
        return data.download(url, target, md5=md5 or (official.md5 if official else None), sha256=sha256,
                             expected_size=official.size if official else None, on_progress=ws.progress.download)


def _checksums(ws: Workspace, path: Path) -> dict:
    """md5 and sha256 of a source, memoised on (path, size, mtime) in the workspace file."""
    from cifarcli import data

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
            raise CifarError(f"{path}: {name} is {sums[name]}, expected {pinned.lower()}",
                             hint="check the file, or drop the --" + name + " pin")


def _current_dataset_key(ws: Workspace) -> str | None:
    """The key of the dataset the workspace last imported; without a (readable) workspace file,
    the newest whole dataset artifact in the store, so a lost file never means a download."""
    remembered = ws.read_state().get("dataset")
    if remembered:
        return remembered["key"]
    found = [row for row in ws.store.ls("dataset") if "damaged" not in row]
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
    if not ws.read_state().get("dataset"):  # found in the store: remember it again (best effort)
        ws.log(f"using the dataset {key} found in {ws.cache_dir}")
        try:
            ws.write_state({**ws.read_state(), "dataset": {"key": key, "source": artifact.meta["info"]["source"],
                                                           "path": artifact.meta["info"]["source"]}})
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
        raise CifarError(f"dataset {key} is no longer in the cache and its source is gone",
                         hint="run cifarcli fetch --source PATH again")
    artifact = fetch(ws, source, force=True)
    if artifact.key != key:
        raise CifarError(f"dataset {key} is no longer in the cache, and {source} now holds other data",
                         hint="run cifarcli fetch --source PATH with the original data")
    return artifact


def _dataset_source(ws: Workspace, key: str) -> str | None:
    """Where dataset ``key`` was imported from, as its meta.json or the workspace file remember it."""
    from cifarcli import data

    meta = ws.store.meta("dataset", key)
    remembered = ws.read_state().get("dataset") or {}
    candidates = [meta["info"]["source"]] if meta else []
    if remembered.get("key") == key:
        candidates += [remembered["path"], remembered["source"]]
    # A URL is fetched again, which reuses its verified download when cache/downloads/ still has it.
    return next((c for c in candidates if data.is_url(c) or Path(c).exists()), None)


# -- training ----------------------------------------------------------------


_last_prepared: dict = {}


def prepared(data_artifact: Artifact, split: str = "seed", val_size: int = 1000, dtype: str = "float32"):
    """The normalised splits of a dataset; the last one is kept, so a sweep or a report
    that trains and evaluates many settings on one split normalises it once per process.
    Nothing writes into these arrays."""
    import numpy as np

    from cifarcli.prepare import prepare

    key = (data_artifact.key, split, val_size if split == "full" else None, dtype)
    if key not in _last_prepared:
        p = data_artifact.payload
        _last_prepared.clear()  # one at a time: a full split in float64 is 1.5 GB
        data = prepare(p["train_x"], p["train_y"], p["test_x"], p["test_y"], p["label_names"],
                       p["batch_size"], split, val_size, dtype)
        for array in vars(data).values():
            if isinstance(array, np.ndarray):
                array.flags.writeable = False  # shared by every later caller: enforce "nothing writes"
        _last_prepared[key] = data
    return _last_prepared[key]


def train(ws: Workspace, config, force: bool = False, data_artifact: Artifact | None = None) -> Artifact:
    """The training run for ``config`` (on the current dataset unless ``data_artifact`` is given),
    trained (or resumed from its checkpoint) when missing."""
    from cifarcli import train as training

    config.validate()  # a bad option is reported before any dataset is looked for (or downloaded)
    data_artifact = data_artifact or dataset(ws)
    config.validate(_n_train(data_artifact, config))
    params = config.key_params()
    key = _train_key(config, data_artifact.key)

    def compute():
        data = prepared(data_artifact, config.split, config.val_size, config.dtype)
        resume = None if force else load_checkpoint(ws, key, config, data.X_train.shape[0])
        n_batches = -(-data.sizes["train"] // config.n_batch)
        ws.progress.run_started(key, config.n_epochs, n_batches, resume.epoch if resume else 0)

        def on_epoch(checkpoint):
            # A plain dict, not the Checkpoint class: loading admits no class of ours.
            ws.store.save_scratch("train", key, "checkpoint", {
                "epoch": checkpoint.epoch, "W": checkpoint.W, "b": checkpoint.b, "history": checkpoint.history})
            ws.progress.epoch(checkpoint.epoch, checkpoint.history)

        diverged_at = None
        try:
            result = training.train(config, data, resume=resume, on_epoch=on_epoch, on_batch=ws.progress.batch)
            W, b, history, seconds = result.W, result.b, result.history, result.timings
        except training.TrainingDiverged as diverged:
            # Keep what was learnt before the blow-up: the history and the last finite weights.
            last = load_checkpoint(ws, key, config, data.X_train.shape[0])
            W, b = (last.W, last.b) if last else (None, None)
            history, seconds, diverged_at = diverged.history, {}, diverged.epoch
        ws.progress.run_finished(key)
        return run_payload(config, data, W, b, history, seconds, diverged_at)

    artifact = ws.store.get_or_compute("train", VERSIONS["train"], params, {"dataset": data_artifact.key},
                                       compute, force=force, depends=[("dataset", data_artifact.key)])
    ws.store.drop_scratch("train", key)
    return artifact


def load_checkpoint(ws: Workspace, key: str, config=None, d: int | None = None):
    """The run's last checkpoint as a ``train.Checkpoint``, or None (with a notice) when there is
    none or it is not one of this run: wrong form, wrong shapes, more epochs than the run has."""
    from cifarcli.train import Checkpoint

    saved = ws.store.load_scratch("train", key, "checkpoint", schema=CHECKPOINT)
    if saved is None:
        return None
    K, width = saved["W"].shape
    if (config is not None and saved["epoch"] > config.n_epochs) or (d is not None and (K, width) != (10, d)):
        ws.log(f"ignoring the checkpoint of run {key}: epoch {saved['epoch']}, W {K} × {width} do not fit this run")
        return None
    return Checkpoint(saved["epoch"], saved["W"], saved["b"], saved["history"])


def run_payload(config, data, W, b, history: dict, seconds: dict, diverged_at: int | None) -> tuple[dict, dict]:
    """The train artifact's (payload, info), the same whether trained here or on a remote worker."""
    import numpy as np

    # Canonical objects throughout: pickle records which objects are shared (down to dtype
    # instances), so a resumed run's unpickled checkpoint would otherwise give other payload
    # bytes for the same numbers, and "bit-identical" could not be checked on the checksum.
    def canonical(array):
        if array is None:
            return None
        fresh = np.empty(array.shape, dtype=np.dtype(array.dtype.name))  # the built-in dtype, not a copy of it
        fresh[...] = array
        return fresh

    payload = {"W": canonical(W), "b": canonical(b), "mean": canonical(data.mean), "std": canonical(data.std),
               "history": json.loads(json.dumps(history)), "label_names": list(data.label_names),
               "diverged_at": diverged_at}
    info = {"config": config.key_params(), "split_sizes": data.sizes, "timings": seconds,
            "diverged_at": diverged_at, "final": _final_row(history)}
    return payload, info


def store_trained(ws: Workspace, config, data_artifact: Artifact, data, result: dict, force: bool = False) -> Artifact:
    """Store a run trained elsewhere (e.g. on a Dask worker) under the run ID ``train`` gives it.

    ``result`` holds W, b, history, timings and diverged_at; ``data`` is the
    prepared split it was trained on. Only this process writes the cache.
    """
    def compute():
        return run_payload(config, data, result["W"], result["b"], result["history"], result["timings"],
                           result["diverged_at"])

    return ws.store.get_or_compute("train", VERSIONS["train"], config.key_params(),
                                   {"dataset": data_artifact.key}, compute, force=force,
                                   depends=[("dataset", data_artifact.key)])


def _final_row(history: dict) -> dict:
    """The last history row with a finite cost: a diverged run's last row holds NaN/inf, which JSON cannot."""
    import math

    rows = [i for i, (a, b) in enumerate(zip(history["train_cost"], history["val_cost"]))
            if math.isfinite(a) and math.isfinite(b)]
    i = rows[-1] if rows else -1
    return {k: v[i] if not isinstance(v[i], float) or math.isfinite(v[i]) else None for k, v in history.items()}


def _n_train(data_artifact: Artifact, config) -> int:
    from cifarcli.prepare import split_indices

    p = data_artifact.payload
    return len(split_indices(config.split, len(p["train_y"]), p["batch_size"], config.val_size)[0])


def find_run(ws: Workspace, run_id: str) -> Artifact:
    """The training run whose ID starts with ``run_id``."""
    keys = ws.store.find("train", run_id.strip().lower()) if run_id.strip() else []
    if not keys:
        raise CifarError(f"no training run {run_id!r} in {ws.cache_dir}", hint="list runs with: cifarcli cache ls --stage train")
    if len(keys) > 1:
        raise CifarError(f"run ID {run_id!r} is ambiguous: {', '.join(keys[:5])}", hint="type more of the ID")
    try:
        found = ws.store.load("train", keys[0])
    except DamagedArtifact as damage:
        found = _train_again(ws, keys[0], damage)
    if found is None:
        raise CifarError(f"training run {keys[0]} is not readable", hint="run cifarcli cache verify")
    return found


def _train_again(ws: Workspace, key: str, damage: DamagedArtifact) -> Artifact:
    """A damaged or stale run, trained again from the settings its (checked) meta.json records."""
    from cifarcli.train import TrainConfig

    meta = ws.store.meta("train", key)
    if meta is None:  # no trustworthy settings: nothing to retrain from
        raise CifarError(damage.message, hint="train it again with its options, or run cifarcli cache clear")
    # train() reports the damage itself (one line) when it finds the artifact.
    return train(ws, TrainConfig(**meta["params"]), data_artifact=dataset_by_key(ws, meta["inputs"]["dataset"]))


def config_of(run: Artifact):
    from cifarcli.train import TrainConfig

    return TrainConfig(**run.meta["params"])


def require_converged(run: Artifact) -> None:
    if run.payload["diverged_at"] is not None:
        raise WorkFailed(f"run {run.key} diverged at epoch {run.payload['diverged_at']}: cost became NaN or inf",
                         hint="train with a smaller --eta")


# -- gradcheck, evaluate, plot ------------------------------------------------


def gradcheck(ws: Workspace, n_samples: int = 100, n_dims: int | None = None, lams=(0.0, 0.1),
              h: float = 1e-6, seed: int = 42, force: bool = False, loss: str = "softmax") -> Artifact:
    """Analytic against centred-difference gradients on the first training images (``loss``: softmax or bce)."""
    from cifarcli import gradcheck as checker
    from cifarcli.model import LOSSES, init_parameters, one_hot

    data_artifact = dataset(ws)
    # nan and inf fail these comparisons, so they are refused too (they crashed the cache key).
    if n_samples < 1 or (n_dims is not None and n_dims < 1) or not 0 < h < float("inf") \
            or not all(0 <= lam < float("inf") for lam in lams):
        raise CifarError("--n-samples and --n-dims must be at least 1, --h finite and positive, "
                         "--lam finite and not negative")
    if loss not in LOSSES:
        raise CifarError(f"--loss: unknown loss {loss!r}", hint=f"use one of: {', '.join(LOSSES)}")
    params = _gradcheck_params(n_samples, n_dims, lams, h, seed, loss)

    def compute():
        import numpy as np

        data = prepared(data_artifact, dtype="float64")
        if n_samples > data.sizes["train"]:
            raise CifarError(f"--n-samples {n_samples} is more than the {data.sizes['train']} training images")
        dims = data.X_train.shape[0] if n_dims is None else min(n_dims, data.X_train.shape[0])
        X = np.ascontiguousarray(data.X_train[:dims, :n_samples], dtype=np.float64)
        Y = one_hot(data.y_train[:n_samples], len(data.label_names)).astype(np.float64)
        W, b = init_parameters(Y.shape[0], dims, np.random.default_rng(seed), dtype=np.float64)
        result = checker.check_gradients(X, Y, W, b, lams=tuple(params["lams"]), h=h, loss=loss)
        elapsed = sum(entry["seconds"] for entry in result["results"])
        result = {**result, "n_samples": n_samples, "n_dims": dims, "seed": seed, "elapsed": elapsed}
        return result, {"max_error": result["max_error"], "elapsed": elapsed}

    return ws.store.get_or_compute("gradcheck", VERSIONS["gradcheck"], params, {"dataset": data_artifact.key},
                                   compute, force=force, depends=[("dataset", data_artifact.key)])


def _gradcheck_params(n_samples=100, n_dims=None, lams=(0.0, 0.1), h=1e-6, seed=42, loss="softmax") -> dict:
    params = {"n_samples": n_samples, "n_dims": n_dims, "lams": [float(lam) for lam in lams], "h": h, "seed": seed}
    if loss != "softmax":  # only a non-default loss enters the key: existing gradcheck keys stay
        params["loss"] = loss
    return params


def evaluate(ws: Workspace, run: Artifact, force: bool = False) -> Artifact:
    """Loss, cost, accuracy per split, per-class accuracy and the test confusion matrix of a run."""
    from cifarcli.evaluate import evaluate_model

    require_converged(run)
    config = config_of(run)
    data_key = run.meta["inputs"]["dataset"]

    def compute():
        data = prepared(dataset_by_key(ws, data_key), config.split, config.val_size, config.dtype)
        return evaluate_model(run.payload["W"], run.payload["b"], config.lam, data, loss=config.loss), {}

    return ws.store.get_or_compute("evaluate", VERSIONS["evaluate"], {}, {"train": run.key}, compute, force=force,
                                   depends=[("train", run.key)])



def plot(ws: Workspace, run: Artifact, force: bool = False) -> dict[str, Path]:
    """The run's figures as PNG files under ``reports/figures/<run-id>/``; drawn once, then copied from the cache."""
    evaluated = evaluate(ws, run)
    metrics = evaluated.payload
    config = config_of(run)

    def compute():
        import tempfile

        from cifarcli import plots

        # Drawn inside the cache (a .tmp- folder of this key, which `cache gc` removes if we are
        # killed), not in the system temp folder: nothing is ever written outside the cache.
        stage_dir = ws.store.root / "plot"
        stage_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".tmp-{_key('plot', {}, {'train': run.key})}-draw-",
                                         dir=stage_dir) as tmp:
            folder = Path(tmp)
            history, W, names = run.payload["history"], run.payload["W"], run.payload["label_names"]
            plots.plot_loss(history, folder / "loss.png", title=_label(config))
            plots.plot_accuracy(history, folder / "accuracy.png", title=_label(config))
            plots.plot_weights(W, names, folder / "weights.png")
            plots.plot_confusion(metrics["confusion_matrix"], names, folder / "confusion.png")
            plots.plot_probabilities(metrics["probabilities"], folder / "probabilities.png",
                                     title=f"True-class probability on the test set, λ={config.lam:g}, "
                                           f"η={config.eta:g}, loss {config.loss}")
            return {name: (folder / f"{name}.png").read_bytes() for name in FIGURES}, {}

    artifact = ws.store.get_or_compute("plot", VERSIONS["plot"], {}, {"train": run.key}, compute, force=force,
                                       depends=[("train", run.key), ("evaluate", evaluated.key)])
    return _materialise(ws.reports_dir / "figures" / run.key, artifact.payload)


def _materialise(folder: Path, files: dict[str, bytes]) -> dict[str, Path]:
    """Write cached figure bytes to the reports folder unless an identical file is already there."""
    paths = {name: folder / f"{name}.png" for name in files}
    for name, path in paths.items():
        _write_if_changed(path, files[name])
    return paths


def _label(config) -> str:
    # A BCE run says so: a softmax and a BCE run of the same λ, η are otherwise indistinguishable.
    return f"λ={config.lam:g}, η={config.eta:g}" + (f", {config.loss.upper()}" if config.loss != "softmax" else "")


# -- using the model ----------------------------------------------------------------


def read_images(paths) -> list[dict]:
    """Each path with its CIFAR record (``record``), or the one line saying why it is unreadable (``error``)."""
    from cifarcli.predict import ImageError, load_image

    images = []
    for path in paths:
        try:
            images.append({"path": str(path), "record": load_image(path)})
        except ImageError as bad:
            images.append({"path": str(path), "error": bad.message})
    return images


def predict(ws: Workspace, run: Artifact, images: list[dict]) -> dict:
    """The top-3 classes of every readable image in ``images`` (from ``read_images``) under ``run``'s model.

    Returns ``{"run_id", "loss", "output": {"kind", "sums_to_one", "note"}, "preprocessing", "images": [
    {"path", "top3": [{"class", "probability"}] × 3, "probabilities": {class: p}} or {"path", "error"}]}``.
    """
    import numpy as np

    from cifarcli.predict import RESAMPLE, classify, top_k

    require_converged(run)
    config, p = config_of(run), run.payload
    names = list(p["label_names"])
    results: list[dict] = [{"path": im["path"], "error": im.get("error")} for im in images]
    good = [i for i, im in enumerate(images) if "record" in im]
    if good:
        P = classify(np.stack([images[i]["record"] for i in good]), p["W"], p["b"], p["mean"], p["std"],
                     config.loss)
        for j, (i, top) in enumerate(zip(good, top_k(P, names, 3))):
            results[i] = {"path": images[i]["path"], "top3": top,
                          "probabilities": {name: float(P[k, j]) for k, name in enumerate(names)}}
    kind = {"kind": "sigmoid", "sums_to_one": False,
            "note": "bce run: each class has its own sigmoid probability (a yes/no answer per class); "
                    "they do not sum to 1"} if config.loss == "bce" else \
        {"kind": "softmax", "sums_to_one": True, "note": "softmax over the 10 classes: they sum to 1"}
    return {"run_id": run.key, "loss": config.loss, "output": kind,
            "preprocessing": f"RGB, resized to 32×32 ({RESAMPLE}), pixels / 255, normalised with the "
                             "run's training mean and std", "images": results}


def export(ws: Workspace, run: Artifact, out: Path) -> dict:
    """Write ``run``'s model as a plain ``.npz`` at ``out`` (atomically: temp file beside it, then rename)."""
    import io
    from dataclasses import asdict

    import numpy as np

    from cifarcli import __version__
    from cifarcli.predict import export_arrays

    require_converged(run)
    out = Path(out)
    _check_export_target(out)
    config, p = config_of(run), run.payload
    arrays = export_arrays(p["W"], p["b"], p["mean"], p["std"], p["label_names"], config.loss,
                           asdict(config), run.key, __version__)  # every setting, defaults included
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(out, buffer.getvalue(), mode=0o666)  # a file for the user: their umask applies
    return {"run_id": run.key, "path": str(out), "bytes": len(buffer.getvalue()), "loss": config.loss,
            "arrays": {name: {"shape": list(a.shape), "dtype": a.dtype.str} for name, a in arrays.items()}}


_OUT_HINT = "give a new file name or a regular file, e.g. --out model.npz"


def _check_export_target(out: Path) -> None:
    """Refuse an ``--out`` that the atomic rename would destroy; make sure its folder exists.

    The rename replaces whatever is at ``out``: a device node (``/dev/null``, as root), a FIFO or
    a socket would be swapped for a regular file. Only a regular file (replaced whole) or nothing
    is accepted. A symlink is refused, never followed or replaced: writing through it would
    change a file the user did not name, replacing it would silently drop the link; naming the
    link's target is explicit.
    """
    import os
    import stat

    from cifarcli import data

    try:
        mode = os.lstat(out).st_mode
    except (FileNotFoundError, NotADirectoryError):  # absent (a file in a folder's place: below)
        mode = None
    except OSError as exc:
        raise CifarError(f"--out {out}: {exc.strerror or exc}", hint=_OUT_HINT) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise CifarError(f"--out {out} is a folder", hint="give a file name, e.g. --out model.npz")
    if mode is not None and stat.S_ISLNK(mode):
        raise CifarError(f"--out {out} is a symlink; refusing to replace it or write through it",
                         hint=f"to write its target, give --out {os.path.realpath(out)}; else a new file name")
    if mode is not None and not stat.S_ISREG(mode):
        raise CifarError(f"--out {out} is {data.file_kind(mode)}, not a regular file; refusing to replace it",
                         hint=_OUT_HINT)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in out.parents if os.path.lexists(p)), out.parent)  # nearest existing one
        raise CifarError(f"--out {out}: {blocker} is not a folder", hint=_OUT_HINT) from None
    except OSError as exc:
        raise disk_error(exc, out.parent) from None


# -- report ------------------------------------------------------------------------


def report(ws: Workspace, settings_path: Path | None = None, force: bool = False) -> dict:
    """The whole study: every stage for every setting, then reports/report.md and report.html."""
    from cifarcli import __version__
    from cifarcli.settings import load_settings

    settings = load_settings(settings_path)
    data_artifact = dataset(ws)
    check = gradcheck(ws, **settings.gradcheck)
    _train_missing_in_parallel(ws, settings.runs)
    runs = [_report_run(ws, train(ws, config)) for config in settings.runs]
    swept = None
    if settings.sweep is not None:  # [sweep] table: heat-map, sorted points, the best run's section
        from cifarcli.sweep import report_section

        swept = report_section(ws, settings.sweep)
    info = data_artifact.meta["info"]
    doc = {
        "title": "One-layer network on CIFAR-10",
        "cifarcli_version": __version__,
        "dataset": {"source": info["source"], "format": info["format"], "md5": info["md5"], "sha256": info["sha256"],
                    "official": info["official"], "note": info["note"], "n_train_total": info["n_train"],
                    "n_test": info["n_test"]},
        "preprocessing": {"scale": "pixels / 255",
                          "normalisation": "per-dimension mean and std of the training split"},
        "initialisation": _initialisation(runs),
        "gradcheck": {**check.payload, "tol": 1e-6, "passed": check.payload["max_error"] <= 1e-6},
        "runs": runs,
    }
    inputs = {"gradcheck": check.key, **{f"run{i}": run["run_id"] for i, run in enumerate(runs)}}
    if swept is not None:
        doc["sweep"] = swept
        inputs["sweep"] = swept["key"]

    def compute():
        from datetime import datetime, timezone

        from cifarcli.report import render_html, render_markdown

        doc["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return {"doc": doc, "report.md": render_markdown(doc),
                "report.html": render_html(doc, ws.reports_dir)}, {}

    # Made from more than its key names: every run's metrics and figures, and the sweep's best run.
    depends = [("gradcheck", check.key), *(d for run in runs for d in _run_depends(run))]
    if swept is not None:
        depends += [("sweep", swept["key"]), *(_run_depends(swept["best"]) if swept["best"] else [])]
    artifact = ws.store.get_or_compute("report", VERSIONS["report"], {}, inputs, compute, force=force,
                                       depends=depends)
    paths = {}
    for name in ("report.md", "report.html"):
        paths[name] = ws.reports_dir / name
        _write_if_changed(paths[name], artifact.payload[name].encode())
    return {**artifact.payload["doc"], "paths": {k: str(v) for k, v in paths.items()},
            "stages": [{"stage": s, "key": k, "status": st} for s, k, st in ws.store.events]}


def _run_depends(entry: dict) -> list[tuple[str, str]]:
    """The artifacts a report section of one run (``_report_run``) is made from."""
    run_id = entry["run_id"]
    made_from = [("train", run_id)]
    if entry["metrics"] is not None:
        made_from += [(stage, _key(stage, {}, {"train": run_id})) for stage in ("evaluate", "plot")]
    return made_from


def _initialisation(runs: list[dict]) -> dict:
    seeds = sorted({run["config"]["seed"] for run in runs})
    if any(run["config"].get("init", "normal") != "normal" for run in runs):
        return {"distribution": "normal, std 0.01 (init normal) or 1/√d (init xavier)", "std": None, "seed": seeds}
    return {"distribution": "normal", "std": 0.01, "seed": seeds}


def _report_run(ws: Workspace, run: Artifact) -> dict:
    config = config_of(run)
    entry = {"run_id": run.key, "label": _label(config), "config": run.meta["params"],
             "split_sizes": run.meta["info"]["split_sizes"], "history": run.payload["history"],
             "diverged_at": run.payload["diverged_at"], "train_seconds": run.meta["info"]["timings"].get("total_seconds"),
             "metrics": None, "figures": {}}
    if run.payload["diverged_at"] is None:
        entry["metrics"] = evaluate(ws, run).payload
        figures = plot(ws, run)
        entry["figures"] = {name: path.relative_to(ws.reports_dir).as_posix() for name, path in figures.items()}
    return entry


def _train_missing_in_parallel(ws: Workspace, configs: list) -> None:
    """Train the settings not yet cached on up to ``ws.jobs`` processes.

    Each worker writes its run to the store like a sequential run would, and
    training is deterministic, so the report is the same for any ``jobs``.
    Interrupted (Ctrl-C, SIGTERM, SIGHUP: all a KeyboardInterrupt by then),
    the workers are killed before the interruption goes on: their finished
    epochs are in their checkpoints, and a rerun resumes from there.
    """
    data_key = dataset(ws).key
    missing = [c for c in configs
               if not (ws.store.path("train", _train_key(c, data_key)) / "meta.json").exists()]
    if ws.jobs <= 1 or len(missing) <= 1:
        return
    from joblib import Parallel, delayed, parallel_config
    from joblib.externals.loky.process_executor import BrokenProcessPool

    ws.log(f"training {len(missing)} settings on {min(ws.jobs, len(missing))} processes")
    # An absolute path: joblib reuses its worker processes, whose working folder is the one they started in.
    cache_dir = ws.cache_dir.resolve()
    results = None
    try:
        with parallel_config(backend="loky", initializer=_worker_started):
            parallel = Parallel(n_jobs=min(ws.jobs, len(missing)), return_as="generator")
        # The call starts the workers and hands them the first tasks; the results come as they finish.
        with _workers_starting():
            results = parallel(delayed(_train_in_worker)(cache_dir, c) for c in missing)
        done = list(results)
    except BrokenProcessPool as exc:  # a worker died: killed from outside, out of memory, ...
        _stop_workers(results)
        raise WorkFailed(f"a training worker process died: {str(exc).splitlines()[0]}",
                         hint="finished epochs are kept; rerun to resume (or use --jobs 1)") from None
    except BaseException:
        _stop_workers(results)
        raise
    ws.store.events.extend(("train", key, status) for key, status in done)


@contextlib.contextmanager
def _workers_starting():
    """While the worker processes start: no stray signal reaches them, and none cuts a start in half.

    Ctrl-C in a terminal reaches the whole process group. A worker caught by it
    while its interpreter was still starting printed a KeyboardInterrupt
    traceback (dozens of lines); workers are stopped by this process instead
    (``_stop_workers``). A blocked signal mask is kept across fork and exec, so
    SIGINT blocked in this thread while the workers start stays blocked in
    them for good. SIGHUP is blocked too: loky's and the stdlib's resource
    trackers ignore SIGINT and SIGTERM but died of a SIGHUP to the group, and
    their successors printed a traceback per shared resource; the workers
    unblock it as they start (``_worker_started``).

    Meanwhile a stop signal (taken by another thread of this process) is only
    noted, and sent again at the end, once every started worker is registered
    where ``_stop_workers`` finds it.
    """
    from multiprocessing import resource_tracker as stdlib_tracker

    from joblib.externals.loky.backend import resource_tracker as loky_tracker

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for signum, handler in handlers.items():
        if callable(handler):  # a Python handler (Ctrl-C's, the CLI's); SIG_DFL and SIG_IGN stay as they are
            signal.signal(signum, lambda number, frame: arrived.append(number))
    blocked = {signal.SIGINT, signal.SIGHUP}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        loky_tracker.ensure_running()
        stdlib_tracker.ensure_running()
        # Python 3.11's tracker launch ends with SIG_UNBLOCK of SIGINT instead of restoring the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in handlers.items():
            if callable(handler):
                signal.signal(signum, handler)
        if arrived:
            signal.raise_signal(arrived[0])  # now its own handler runs: KeyboardInterrupt or Terminated


def _worker_started() -> None:
    """Run first in every worker process: Ctrl-C is for the parent, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # also for a worker started later, outside _workers_starting
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # a hang-up of the group ends it quietly


def _quiet_loky_threads() -> None:
    """From now on, an exception in loky's executor manager thread is not printed.

    Shut down while it was still handing out the first tasks, that thread can
    die of a KeyError (a race inside loky): its traceback on stderr would be
    noise after an interruption that already says what happened. Exceptions in
    any other thread are shown as before.
    """
    previous = threading.excepthook
    if getattr(previous, "_quiets_loky", False):
        return

    def hook(args):
        if args.thread is None or args.thread.name != "ExecutorManagerThread":
            previous(args)

    hook._quiets_loky = True
    threading.excepthook = hook


def _stop_workers(results) -> None:
    """Kill this process's worker processes now, and wait (briefly) until they are gone.

    joblib kills its loky workers itself when the exception reaches it while it
    waits for ``results``; this covers the moments around that (while the tasks
    are handed out, or when a worker died and the pool broke).
    """
    import multiprocessing
    import warnings

    from joblib.externals.loky import get_reusable_executor

    _quiet_loky_threads()
    if results is not None:
        with warnings.catch_warnings():  # joblib's "N tasks ... not used": abandoned on purpose
            warnings.simplefilter("ignore")
            results.close()  # joblib aborts the tasks and kills its workers
    children = multiprocessing.active_children()  # loky's workers are multiprocessing processes
    if not children:
        return
    get_reusable_executor(reuse=True).shutdown(wait=False, kill_workers=True)  # no new tasks, no respawn
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)  # mid-training: its finished epochs are in its checkpoint
    for child in children:
        child.join(timeout=5)


def _key(stage: str, params: dict, inputs: dict[str, str]) -> str:
    return artifact_key(stage, VERSIONS[stage], params, inputs)


def _train_key(config, data_key: str) -> str:
    return _key("train", config.key_params(), {"dataset": data_key})


def _train_in_worker(cache_dir: Path, config) -> tuple[str, str]:
    run = train(Workspace(cache_dir), config)
    return run.key, run.status


def _write_if_changed(path: Path, content: bytes) -> None:
    try:
        if not (path.is_file() and path.read_bytes() == content):
            write_atomic(path, content)
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
    add("dataset", data_key, ws.store.state("dataset", data_key))
    gradcheck_key = _key("gradcheck", _gradcheck_params(), {"dataset": data_key})
    add("gradcheck", gradcheck_key, ws.store.state("gradcheck", gradcheck_key))
    train_key = _train_key(config, data_key)
    train_state = ws.store.state("train", train_key)
    if train_state[0] == "missing":
        checkpoint = load_checkpoint(ws, train_key, config)
        if checkpoint is not None:
            train_state = ("partial", f"checkpoint at epoch {checkpoint.epoch} of {config.n_epochs}")
    add("train", train_key, train_state)
    for stage in ("evaluate", "plot"):
        key = _key(stage, {}, {"train": train_key})
        add(stage, key, ws.store.state(stage, key))
    return rows
