"""``Workspace``: the cache and reports folders, the artifact store, where notices and progress go, and the
workspace file (the current dataset, checksums of sources already seen, run names)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cifarcli import schemas, upkeep
from cifarcli.files import UnsafeFile, read_json, write_atomic
from cifarcli.schema_language import SchemaError, validate
from cifarcli.store import Store

from .declarations import STAGES
from .progress import Progress

WORKSPACE_FILE = "workspace.json"


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
