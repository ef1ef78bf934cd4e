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

Nothing read from the cache is trusted: payloads and checkpoints are unpickled
with an allow-list (``safe_load``: numpy arrays, dtypes and scalars, joblib's
array frames, plain containers; nothing else is imported or called), then
checked against their stage's schema (``validate``), and every ``meta.json``
against the store's own. A payload also records the ``payload_sha256`` of the
artifacts it was made from (``input_sha256``): when one of them has changed
since, the payload is stale. Damaged or stale, it is reported in one line,
removed and recomputed. Nothing inside the cache is looked at through a link. Listing,
verifying and clearing live in ``upkeep``; ``Store.observer`` hears what was hit or computed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cifarcli import __version__
from cifarcli.errors import disk_error
from cifarcli.files import UnsafeFile, approx_size, entries, file_sha256, kind_of, open_regular, read_json
from cifarcli.locks import held, is_held
from cifarcli.safe_pickle import UnsafePickle, safe_load
from cifarcli.schema_language import Schema, SchemaError, validate
from cifarcli.schemas import META_SCHEMA
from cifarcli.store_errors import DamagedArtifact, LinkInCache, StaleArtifact, UnreadableArtifact

PAYLOAD = "payload.joblib"
META = "meta.json"
KEY_LENGTH = 16


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def artifact_key(stage: str, version: int, params: dict, inputs: dict[str, str]) -> str:
    """The content address of an artifact: 16 hex digits of a sha256."""
    document = {"stage": stage, "version": version, "params": params, "inputs": inputs}
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()[:KEY_LENGTH]


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
    """The cache folder. ``log`` receives one-line notices (waiting, damage found).

    ``schemas`` maps a stage to the ``Schema`` its artifacts must fit; a stage
    without one is only read through the allow-list.
    """

    root: Path
    log: Callable[[str], None] = lambda message: None
    observer: Callable[[str, str, str], None] = lambda stage, key, status: None  # told each (stage, key, status)
    schemas: dict[str, Schema] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    # -- reading ---------------------------------------------------------

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def load(self, stage: str, key: str, *, mmap: bool = False) -> Artifact | None:
        """The artifact if it is present, whole, of its schema and up to date; None if absent.

        Raises ``DamagedArtifact`` when it is present but its meta.json or
        payload is not what the store wrote (``StaleArtifact`` when an input it
        was made from has changed since). The payload is re-hashed only when its
        mtime differs from the one recorded at commit, so a cache hit stays cheap.
        """
        folder = self._folder(stage, key)
        if folder is None:
            return None
        meta = self.check(folder, full=False)
        payload = self.read_payload(folder, mmap)
        self.check_inputs(meta)
        return Artifact(stage, key, folder, meta, payload)

    def _folder(self, stage: str, key: str) -> Path | None:
        """The artifact's folder, None when absent; checked with lstat, so a link is never followed.

        Raises ``DamagedArtifact`` when something else has its name (removing it
        unlinks the link, never its target), ``UnreadableArtifact`` when it cannot be
        looked at, and ``LinkInCache`` when the stage's folder itself is a link.
        """
        folder = self._stage_dir(stage) / key
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise UnreadableArtifact(stage, key, folder) from None
        if not stat.S_ISDIR(info.st_mode):
            raise DamagedArtifact(stage, key, f"{folder} is {kind_of(info.st_mode)}, not a folder; never followed")
        return folder

    def _stage_dir(self, stage: str) -> Path:
        path = self.root / stage
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return path
        except PermissionError:
            raise UnreadableArtifact(stage, "", path) from None
        if not stat.S_ISDIR(info.st_mode):
            raise LinkInCache(path, kind_of(info.st_mode))
        return path

    def read_payload(self, folder: Path, mmap: bool) -> Any:
        """The payload, read through the allow-list and checked against its stage's schema."""
        stage, key = folder.parent.name, folder.name
        try:
            payload = safe_load(folder / PAYLOAD, mmap=mmap)
        except PermissionError:
            raise UnreadableArtifact(stage, key, folder / PAYLOAD) from None
        except UnsafeFile as unsafe:
            raise DamagedArtifact(stage, key, f"{folder / PAYLOAD} is {unsafe}") from None
        except UnsafePickle as refused:
            raise DamagedArtifact(stage, key, f"payload refused: it names {refused}") from None
        except (Exception, RecursionError) as exc:  # any unpickling failure means the file is damaged
            raise DamagedArtifact(stage, key, f"payload does not load ({type(exc).__name__})") from None
        schema = self.schemas.get(stage)
        if schema is not None:
            try:
                validate(payload, schema.payload, "payload")
            except SchemaError as wrong:
                raise DamagedArtifact(stage, key, f"not a {stage} payload: {wrong}") from None
        return payload

    def read_meta(self, folder: Path) -> dict:
        """meta.json, checked: the store's fields, the stage's params and info, and a key that is
        the hash of its stage, version, params and inputs (so params can be trusted to rebuild a config)."""
        stage, key = folder.parent.name, folder.name
        try:
            meta = read_json(folder / META)
        except PermissionError:
            raise UnreadableArtifact(stage, key, folder / META) from None
        except UnsafeFile as unsafe:
            raise DamagedArtifact(stage, key, f"meta.json is {unsafe}") from None
        except OSError:
            raise DamagedArtifact(stage, key, "meta.json is missing or unreadable") from None
        schema = self.schemas.get(stage, Schema(payload=object))
        try:
            validate(meta, META_SCHEMA, "meta.json")
            validate(meta["params"], schema.params, "meta.json params")
            validate(meta["info"], schema.info, "meta.json info")
            validate(meta["inputs"], schema.inputs, "meta.json inputs")
            validate(meta, schema.meta, "meta.json")
        except SchemaError as wrong:
            raise DamagedArtifact(stage, key, str(wrong)) from None
        try:
            hashed = artifact_key(meta["stage"], meta["version"], meta["params"], meta["inputs"])
        except ValueError:  # NaN or infinity in params
            hashed = None
        if (meta["stage"], meta["key"], hashed) != (stage, key, key):
            raise DamagedArtifact(stage, key, "meta.json does not describe this artifact (its key differs)")
        return meta

    def meta(self, stage: str, key: str) -> dict | None:
        """The checked meta.json of an artifact, or None when it is absent or damaged."""
        try:
            folder = self._folder(stage, key)
            return self.read_meta(folder) if folder else None
        except (DamagedArtifact, UnreadableArtifact, LinkInCache):
            return None

    def check(self, folder: Path, *, full: bool) -> dict:
        stage, key = folder.parent.name, folder.name
        meta = self.read_meta(folder)
        try:
            info = os.lstat(folder / PAYLOAD)
        except PermissionError:
            raise UnreadableArtifact(stage, key, folder / PAYLOAD) from None
        except OSError:
            raise DamagedArtifact(stage, key, "payload is missing") from None
        if not stat.S_ISREG(info.st_mode):  # a link (to /dev/zero, /proc/self/mem), a FIFO: never opened
            raise DamagedArtifact(stage, key, f"{folder / PAYLOAD} is {kind_of(info.st_mode)}, not a payload")
        recorded_size, recorded_mtime, recorded_sha = (
            meta["payload_size"],
            meta["payload_mtime_ns"],
            meta["payload_sha256"],
        )
        if info.st_size != recorded_size:
            raise DamagedArtifact(stage, key, f"payload is {info.st_size} bytes, expected {recorded_size}")
        try:
            if full or info.st_mtime_ns != recorded_mtime:
                changed = file_sha256(folder / PAYLOAD) != recorded_sha
            else:
                open_regular(folder / PAYLOAD).close()  # readable by us: another user's may not be
                changed = False
        except PermissionError:
            raise UnreadableArtifact(stage, key, folder / PAYLOAD) from None
        except (OSError, UnsafeFile):  # swapped for something else since the lstat, or an I/O error
            raise DamagedArtifact(stage, key, "payload is not readable") from None
        if changed:
            raise DamagedArtifact(stage, key, "payload checksum does not match meta.json")
        return meta

    def _input_sha256(self, stage: str, key: str) -> str | None:
        """The current payload_sha256 of an input, None when it is absent or unreadable (it is then
        recomputed by whoever needs it, and checked again then)."""
        meta = self.meta(stage, key)
        return meta["payload_sha256"] if meta else None

    def check_inputs(self, meta: dict) -> None:
        """Raise ``StaleArtifact`` when an input this artifact was made from has changed since.

        An artifact written before inputs were recorded (no ``input_sha256``) but made
        from inputs cannot show it is current, so it counts as stale (recomputed once).
        """
        stage, key = meta["stage"], meta["key"]
        recorded = meta.get("input_sha256")
        if recorded is None:
            if meta["inputs"]:
                raise StaleArtifact(stage, key, "was made before the checksums of its inputs were recorded")
            return
        for name, sha in recorded.items():
            input_stage, _, input_key = name.partition("/")
            current = self._input_sha256(input_stage, input_key)
            if current is not None and current != sha:
                raise StaleArtifact(stage, key, f"was made from an older {input_stage} artifact ({name})")

    def state(self, stage: str, key: str) -> tuple[str, str | None]:
        """("cached" | "missing" | "damaged" | "stale", reason) without loading the payload."""
        try:
            folder = self._folder(stage, key)
            if folder is None:
                return "missing", None
            self.check_inputs(self.check(folder, full=False))
        except StaleArtifact as stale:
            return "stale", stale.reason
        except DamagedArtifact as damage:
            return "damaged", damage.reason
        except (UnreadableArtifact, LinkInCache) as other:
            return ("unreadable" if isinstance(other, UnreadableArtifact) else "damaged"), other.message
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
        depends: Iterable[tuple[str, str]] = (),
    ) -> Artifact:
        """Return the artifact for these inputs, computing it at most once across processes.

        ``compute()`` returns ``(payload, info)``; ``info`` is kept in meta.json
        (small, JSON) so that listings never load payloads. ``depends`` names the
        artifacts (stage, key) the payload is made from; their payload_sha256 are
        recorded, and when one changes the payload is stale (see ``_check_inputs``).
        They are not part of the key: run IDs do not move.
        """
        key = artifact_key(stage, version, params, inputs)
        if not force:
            found = self._load_or_discard(stage, key, mmap)
            if found:
                self.observer(stage, key, "hit")
                return found
        with self.lock(stage, key):
            if not force:  # another process may have finished it while we waited
                found = self._load_or_discard(stage, key, mmap)
                if found:
                    self.observer(stage, key, "hit")
                    return found
            started = time.perf_counter()
            payload, info = compute()
            # Read after compute: the inputs it used are the ones on disk now.
            made_from = {f"{s}/{k}": self._input_sha256(s, k) for s, k in depends}
            meta = {
                "stage": stage,
                "key": key,
                "version": version,
                "params": params,
                "inputs": inputs,
                "input_sha256": {name: sha for name, sha in made_from.items() if sha is not None},
                "info": info,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "duration": round(time.perf_counter() - started, 4),
                "cifarcli_version": __version__,
            }
            self._commit(stage, key, payload, meta)
        self.observer(stage, key, "computed")
        artifact = (
            self.load(stage, key, mmap=mmap) if mmap else Artifact(stage, key, self.path(stage, key), meta, payload)
        )
        artifact.status = "computed"
        return artifact

    def _load_or_discard(self, stage: str, key: str, mmap: bool) -> Artifact | None:
        try:
            return self.load(stage, key, mmap=mmap)
        except DamagedArtifact as damage:
            self.log(f"{damage.message}; removing it and recomputing")
            self.observer(stage, key, "stale" if isinstance(damage, StaleArtifact) else "damaged")
            self.remove(self.path(stage, key))
            return None

    def _commit(self, stage: str, key: str, payload: Any, meta: dict) -> None:
        import joblib

        stage_dir = self.root / stage
        try:
            _made_here(stage_dir)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=stage_dir))
        except OSError as exc:
            raise disk_error(exc, stage_dir / key, approx_size(payload)) from None
        try:
            joblib.dump(payload, tmp / PAYLOAD)
            info = (tmp / PAYLOAD).stat()
            meta.update(
                payload_size=info.st_size, payload_mtime_ns=info.st_mtime_ns, payload_sha256=file_sha256(tmp / PAYLOAD)
            )
            # meta.json last and synced: its presence marks a complete artifact.
            with open(tmp / META, "w") as out:
                out.write(json.dumps(meta, indent=2, allow_nan=False))
                out.flush()
                os.fsync(out.fileno())
            final = stage_dir / key
            if final.exists():  # --force: move the old one aside, then swap in the new one
                self.remove(final)
            os.rename(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise disk_error(exc, stage_dir / key, approx_size(payload)) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def remove(self, folder: Path) -> None:
        """Remove an artifact folder; renamed first so no half-deleted folder keeps its name."""
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode):  # a link goes, never what it points to
            folder.unlink()
            return
        trash = folder.with_name(f".tmp-{folder.name}-trash-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    @contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """Hold the per-key lock. A second process waits here, then finds the artifact made."""
        lock_dir = self.root / ".locks"
        try:
            _made_here(lock_dir)
        except OSError as exc:
            raise disk_error(exc, lock_dir) from None
        waiting = f"waiting for another cifarcli process computing {stage} {key}"
        with held(lock_dir / f"{stage}-{key}.lock", lambda: self.log(waiting)):
            yield

    def is_locked(self, stage: str, key: str) -> bool:
        return is_held(self.root / ".locks" / f"{stage}-{key}.lock")

    # -- scratch space for resumable work ----------------------------------

    def scratch(self, stage: str, key: str) -> Path:
        return self.root / stage / ".scratch" / key

    def save_scratch(self, stage: str, key: str, name: str, value: Any) -> None:
        """Persist partial work (e.g. a checkpoint) atomically; the previous one stays until replaced."""
        import joblib

        folder = self.scratch(stage, key)
        try:
            for level in (folder.parent.parent, folder.parent, folder):  # the stage, .scratch, the key
                _made_here(level)
            handle, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            os.close(handle)
            try:
                joblib.dump(value, tmp)
                os.replace(tmp, folder / name)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            raise disk_error(exc, folder / name, approx_size(value)) from None

    def load_scratch(self, stage: str, key: str, name: str, schema: Any = object) -> Any | None:
        """The saved partial work, or None (with a notice) when there is none, or it does not
        load through the allow-list, or does not fit ``schema``."""
        path = self.scratch(stage, key) / name
        if not path.is_file():
            return None
        try:
            value = safe_load(path)
            validate(value, schema, name)
        except UnsafePickle as refused:  # a damaged checkpoint only costs the work it held
            self.log(f"ignoring checkpoint {path}: it names {refused}")
            return None
        except SchemaError as wrong:
            self.log(f"ignoring checkpoint {path}: {wrong}")
            return None
        except Exception:
            self.log(f"ignoring unreadable checkpoint {path}")
            return None
        return value

    def drop_scratch(self, stage: str, key: str) -> None:
        shutil.rmtree(self.scratch(stage, key), ignore_errors=True)

    # -- finding ---------------------------------------------------------

    def find(self, stage: str, prefix: str) -> list[str]:
        """Keys of ``stage`` that start with ``prefix`` (for user-typed run IDs); folders only, never a link."""
        try:
            stage_dir = self._stage_dir(stage)
        except (LinkInCache, UnreadableArtifact):
            return []
        return [
            path.name
            for path, mode in entries(stage_dir)
            if stat.S_ISDIR(mode) and not path.name.startswith(".") and path.name.startswith(prefix)
        ]


def _made_here(folder: Path) -> None:
    """Make ``folder`` if missing; ``LinkInCache`` when it is a link (nothing is written through one)."""
    folder.mkdir(parents=True, exist_ok=True)
    mode = os.lstat(folder).st_mode
    if not stat.S_ISDIR(mode):
        raise LinkInCache(folder, kind_of(mode))
