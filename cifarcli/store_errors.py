"""What the artifact store raises about an artifact: damaged, stale, unreadable, or behind a link.

A damaged or stale artifact is removed and recomputed; an unreadable one (another
user's) and a link inside the cache are left alone.
"""

from __future__ import annotations

from pathlib import Path

from cifarcli.errors import CifarError, WorkFailed


class DamagedArtifact(CifarError):
    def __init__(self, stage: str, key: str, reason: str):
        super().__init__(f"damaged artifact {stage}/{key}: {reason}")
        self.reason = reason


class UnreadableArtifact(WorkFailed):
    """Present but not ours to read (another user's, in a shared cache): not damaged, so never
    removed; the command stops here (exit 1)."""

    def __init__(self, stage: str, key: str, path: Path):
        super().__init__(
            f"cannot read {path}: permission denied",
            hint="ask its owner for read access, or use a cache folder of your own",
        )
        self.reason = f"cannot read {path.name}: permission denied"


class LinkInCache(CifarError):
    """A stage's folder is a link (or not a folder): the store never follows it."""

    def __init__(self, path: Path, kind: str):
        super().__init__(
            f"{path} is {kind}: the cache never follows links inside it",
            hint="remove that link (its target is left alone), or run cifarcli cache clear",
        )
        self.reason = f"{kind}; left alone"


class StaleArtifact(DamagedArtifact):
    """Whole and well-formed, but made from an input that has changed since."""

    def __init__(self, stage: str, key: str, reason: str):
        CifarError.__init__(self, f"{stage}/{key} {reason}")
        self.reason = f"stale: {reason}"
