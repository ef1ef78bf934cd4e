"""The artifact store: content-addressed, atomic, locked and self-checking.

Layout under the cache root::

    <stage>/<key>/payload.joblib   the artifact, uncompressed so arrays can be memory-mapped
    <stage>/<key>/meta.json        written last: params, inputs, created, duration, versions,
                                   payload size, mtime and sha256
    <stage>/.tmp-<key>-*           a write in progress, renamed into place when whole
    <stage>/.scratch/<key>/        resumable partial work (training checkpoints)
    .locks/<stage>-<key>.lock      per-key lock (fcntl.flock: the kernel releases it when
                                   its holder dies, so a killed process never blocks others)

A key is the hash of the stage name, the stage's version, its parameters as
canonical JSON and the keys of its inputs: same inputs, same key; any change
upstream changes every key downstream.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from cifarcli import __version__
from cifarcli.errors import CifarError, disk_error  # noqa: F401  (disk_error: re-exported)

PAYLOAD = "payload.joblib"
META = "meta.json"
KEY_LENGTH = 16
_CHUNK = 1 << 20


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def artifact_key(stage: str, version: int, params: dict, inputs: dict[str, str]) -> str:
    """The content address of an artifact: 16 hex digits of a sha256."""
    document = {"stage": stage, "version": version, "params": params, "inputs": inputs}
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()[:KEY_LENGTH]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    ``mode``: create the file with these permission bits less the umask, as ``open()`` does
    (for a file the user asked for, e.g. ``export --out``); None: 0600, as ``mkstemp`` does.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode is None:
            handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        else:
            tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
            handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise disk_error(exc, path, len(data)) from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise disk_error(exc, path, len(data)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def approx_size(value: Any) -> int:
    """Roughly the bytes ``value`` takes when dumped: its arrays and byte strings, recursively."""
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, dict):
        return sum(approx_size(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(approx_size(v) for v in value)
    if hasattr(value, "__dict__"):
        return approx_size(vars(value))
    return 8


@dataclass
class Artifact:
    stage: str
    key: str
    path: Path
    meta: dict
    payload: Any = None
    status: str = "hit"  # "hit" or "computed"


@dataclass
class Store:
    """The cache folder. ``log`` receives one-line notices (waiting, damage found)."""

    root: Path
    log: Callable[[str], None] = lambda message: None
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # -- reading ---------------------------------------------------------

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def load(self, stage: str, key: str, *, mmap: bool = False) -> Artifact | None:
        """The artifact if it is present and whole; None if absent.

        Raises ``DamagedArtifact`` when it is present but its payload does not
        match its ``meta.json``. The payload is re-hashed only when its mtime
        differs from the one recorded at commit, so a cache hit stays cheap.
        """
        folder = self.path(stage, key)
        if not folder.is_dir():
            return None
        meta = self._check(folder, full=False)
        import joblib

        try:
            payload = joblib.load(folder / PAYLOAD, mmap_mode="r" if mmap else None)
        except Exception as exc:  # any unpickling failure means the file is damaged
            raise DamagedArtifact(stage, key, f"payload does not load ({type(exc).__name__})") from None
        return Artifact(stage, key, folder, meta, payload)

    def _check(self, folder: Path, *, full: bool) -> dict:
        stage, key = folder.parent.name, folder.name
        try:
            meta = json.loads((folder / META).read_text())
            recorded_size, recorded_mtime, recorded_sha = (
                meta["payload_size"], meta["payload_mtime_ns"], meta["payload_sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            raise DamagedArtifact(stage, key, "meta.json is missing or unreadable") from None
        try:
            info = (folder / PAYLOAD).stat()
        except OSError:
            raise DamagedArtifact(stage, key, "payload is missing") from None
        if info.st_size != recorded_size:
            raise DamagedArtifact(stage, key, f"payload is {info.st_size} bytes, expected {recorded_size}")
        if (full or info.st_mtime_ns != recorded_mtime) and file_sha256(folder / PAYLOAD) != recorded_sha:
            raise DamagedArtifact(stage, key, "payload checksum does not match meta.json")
        return meta

    def state(self, stage: str, key: str) -> tuple[str, str | None]:
        """("cached" | "missing" | "damaged", reason) without loading the payload."""
        folder = self.path(stage, key)
        if not folder.is_dir():
            return "missing", None
        try:
            self._check(folder, full=False)
        except DamagedArtifact as damage:
            return "damaged", damage.reason
        return "cached", None

    # -- computing -------------------------------------------------------

    def get_or_compute(
        self,
        stage: str,
        version: int,
        params: dict,
        inputs: dict[str, str],
        compute: Callable[[], tuple[Any, dict]],
        *,
        force: bool = False,
        mmap: bool = False,
    ) -> Artifact:
        """Return the artifact for these inputs, computing it at most once across processes.

        ``compute()`` returns ``(payload, info)``; ``info`` is kept in meta.json
        (small, JSON) so that listings never load payloads.
        """
        key = artifact_key(stage, version, params, inputs)
        if not force:
            found = self._load_or_discard(stage, key, mmap)
            if found:
                self.events.append((stage, key, "hit"))
                return found
        with self.lock(stage, key):
            if not force:  # another process may have finished it while we waited
                found = self._load_or_discard(stage, key, mmap)
                if found:
                    self.events.append((stage, key, "hit"))
                    return found
            started = time.perf_counter()
            payload, info = compute()
            meta = {
                "stage": stage, "key": key, "version": version, "params": params, "inputs": inputs,
                "info": info, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "duration": round(time.perf_counter() - started, 4), "cifarcli_version": __version__,
            }
            self._commit(stage, key, payload, meta)
        self.events.append((stage, key, "computed"))
        artifact = self.load(stage, key, mmap=mmap) if mmap else Artifact(stage, key, self.path(stage, key), meta, payload)
        artifact.status = "computed"
        return artifact

    def _load_or_discard(self, stage: str, key: str, mmap: bool) -> Artifact | None:
        try:
            return self.load(stage, key, mmap=mmap)
        except DamagedArtifact as damage:
            self.log(f"{damage.message}; removing it and recomputing")
            self.events.append((stage, key, "damaged"))
            self._remove(self.path(stage, key))
            return None

    def _commit(self, stage: str, key: str, payload: Any, meta: dict) -> None:
        import joblib

        stage_dir = self.root / stage
        try:
            stage_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=stage_dir))
        except OSError as exc:
            raise disk_error(exc, stage_dir / key, approx_size(payload)) from None
        try:
            joblib.dump(payload, tmp / PAYLOAD)
            info = (tmp / PAYLOAD).stat()
            meta.update(payload_size=info.st_size, payload_mtime_ns=info.st_mtime_ns,
                        payload_sha256=file_sha256(tmp / PAYLOAD))
            # meta.json last and synced: its presence marks a complete artifact.
            with open(tmp / META, "w") as out:
                out.write(json.dumps(meta, indent=2, allow_nan=False))
                out.flush()
                os.fsync(out.fileno())
            final = stage_dir / key
            if final.exists():  # --force: move the old one aside, then swap in the new one
                self._remove(final)
            os.rename(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise disk_error(exc, stage_dir / key, approx_size(payload)) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _remove(self, folder: Path) -> None:
        """Remove an artifact folder; renamed first so no half-deleted folder keeps its name."""
        if not folder.exists():
            return
        trash = folder.with_name(f".tmp-{folder.name}-trash-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    @contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """Hold the per-key lock. A second process waits here, then finds the artifact made."""
        lock_dir = self.root / ".locks"
        try:
            lock_dir.mkdir(parents=True, exist_ok=True)
            handle = open(lock_dir / f"{stage}-{key}.lock", "a+")
        except OSError as exc:
            raise disk_error(exc, lock_dir) from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.log(f"waiting for another cifarcli process computing {stage} {key}")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _is_locked(self, stage: str, key: str) -> bool:
        path = self.root / ".locks" / f"{stage}-{key}.lock"
        if not path.exists():
            return False
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    # -- scratch space for resumable work ----------------------------------

    def scratch(self, stage: str, key: str) -> Path:
        return self.root / stage / ".scratch" / key

    def save_scratch(self, stage: str, key: str, name: str, value: Any) -> None:
        """Persist partial work (e.g. a checkpoint) atomically; the previous one stays until replaced."""
        import joblib

        folder = self.scratch(stage, key)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            os.close(handle)
            try:
                joblib.dump(value, tmp)
                os.replace(tmp, folder / name)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            raise disk_error(exc, folder / name, approx_size(value)) from None

    def load_scratch(self, stage: str, key: str, name: str) -> Any | None:
        """The saved partial work, or None when there is none or it does not load."""
        import joblib

        path = self.scratch(stage, key) / name
        if not path.is_file():
            return None
        try:
            return joblib.load(path)
        except Exception:  # a damaged checkpoint only costs the work it held
            self.log(f"ignoring unreadable checkpoint {path}")
            return None

    def drop_scratch(self, stage: str, key: str) -> None:
        shutil.rmtree(self.scratch(stage, key), ignore_errors=True)

    # -- listing and upkeep ------------------------------------------------

    @property
    def downloads(self) -> Path:
        """Verified downloaded archives, kept so a damaged dataset can be re-imported offline."""
        return self.root / "downloads"

    def stages(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and p != self.downloads)

    def _folders(self, stage: str | None) -> Iterator[Path]:
        for name in [stage] if stage else self.stages():
            stage_dir = self.root / name
            if stage_dir.is_dir():
                yield from sorted(p for p in stage_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def ls(self, stage: str | None = None) -> list[dict]:
        """One summary per artifact, read from meta.json only (payloads are never loaded)."""
        rows = []
        for folder in self._folders(stage):
            try:
                meta = json.loads((folder / META).read_text())
            except (OSError, ValueError):
                meta = {"damaged": "meta.json is missing or unreadable"}
            rows.append({"stage": folder.parent.name, "key": folder.name, "path": str(folder),
                         "params": meta.get("params", {}), "size": meta.get("payload_size"),
                         "created": meta.get("created"), "info": meta.get("info", {}),
                         **({"damaged": meta["damaged"]} if "damaged" in meta else {})})
        return rows

    def find(self, stage: str, prefix: str) -> list[str]:
        """Keys of ``stage`` that start with ``prefix`` (for user-typed run IDs)."""
        return [folder.name for folder in self._folders(stage) if folder.name.startswith(prefix)]

    def verify(self, stage: str | None = None) -> list[dict]:
        """Re-hash every payload; one row per artifact with ``ok`` and, when damaged, ``reason``."""
        rows = []
        for folder in self._folders(stage):
            row = {"stage": folder.parent.name, "key": folder.name, "ok": True}
            try:
                self._check(folder, full=True)
            except DamagedArtifact as damage:
                row.update(ok=False, reason=damage.reason)
            rows.append(row)
        return rows

    def clear(self, stage: str | None = None) -> int:
        """Remove artifacts (of one stage, or all) and leftovers; returns how many artifacts went."""
        removed = 0
        for folder in list(self._folders(stage)):
            with self.lock(folder.parent.name, folder.name):
                self._remove(folder)
            removed += 1
        for name in [stage] if stage else self.stages():
            shutil.rmtree(self.root / name / ".scratch", ignore_errors=True)
        if stage is None:
            shutil.rmtree(self.downloads, ignore_errors=True)
        self.gc()
        return removed

    def gc(self) -> list[Path]:
        """Remove temporary folders and files left by killed processes; returns what went.

        A temporary folder belongs to one key; it is removed only when nobody
        holds that key's lock, so a write in progress elsewhere is never touched.
        """
        removed = []
        for stage in self.stages():
            stage_dir = self.root / stage
            leftovers = [p for p in stage_dir.iterdir() if p.name.startswith(".tmp-")]
            scratch = stage_dir / ".scratch"
            if scratch.is_dir():
                leftovers += [p for d in scratch.iterdir() if d.is_dir() for p in d.glob(".*.tmp")]
            for path in leftovers:
                key = path.parent.name if path.name.endswith(".tmp") else path.name.split("-")[1]
                if self._is_locked(stage, key):
                    continue
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        for path in self.root.glob(".*.tmp"):  # half-written workspace files
            path.unlink(missing_ok=True)
            removed.append(path)
        # A partial download is resumable, but gc is the user asking for a clean cache: it goes
        # unless a fetch is writing it (that fetch holds the "downloads" lock of its file name).
        if self.downloads.is_dir():
            for path in [*self.downloads.glob("*.part"), *self.downloads.glob(".*.tmp")]:
                if path.suffix == ".part" and self._is_locked("downloads", path.name[:-len(".part")]):
                    continue
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed


class DamagedArtifact(CifarError):
    def __init__(self, stage: str, key: str, reason: str):
        super().__init__(f"damaged artifact {stage}/{key}: {reason}")
        self.reason = reason
