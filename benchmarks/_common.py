"""Helpers shared by the benchmark scripts (not a test module)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = ROOT.parent / "shared" / "cifar10" / "cifar-10-proxy-binary.tar.gz"


def archive() -> Path:
    """The CIFAR-10 stand-in: $CIFARCLI_TEST_ARCHIVE or ../shared/cifar10/…; exits when absent."""
    path = Path(os.environ.get("CIFARCLI_TEST_ARCHIVE", STAND_IN))
    if not path.is_file():
        sys.exit(f"benchmark needs the CIFAR-10 stand-in; set CIFARCLI_TEST_ARCHIVE (looked for {path})")
    return path


def cifarcli(*args: str, cwd: Path | None = None) -> float:
    """Wall time of one `python -m cifarcli ...` run, interpreter start-up included."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cifarcli", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def median_of(times: list[float]) -> str:
    return f"median {statistics.median(times):6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})"


def verdict(value: float, target: float) -> str:
    return f"[{'ok' if value <= target else 'MISSED'}: target <= {target:g} s]"
