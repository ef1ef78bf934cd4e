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
    subprocess.run(
        [sys.executable, "-m", "cifarcli", *args],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def median_of(times: list[float]) -> str:
    return f"median {statistics.median(times):6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})"


def verdict(value: float, target: float) -> str:
    return f"[{'ok' if value <= target else 'MISSED'}: target <= {target:g} s]"


def machine() -> str:
    """The CPU model (lscpu) and the BLAS build and kernel (threadpoolctl): print it with every figure."""
    import numpy as np
    from threadpoolctl import threadpool_info

    cpu = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    np.ones((64, 64)) @ np.ones((64, 64))  # make sure the BLAS is loaded
    blas = [
        f"{p.get('internal_api')} {p.get('version')} kernel {p.get('architecture')}"
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
    return f"CPU: {cpu}, {os.cpu_count()} cores; numpy {np.__version__}; BLAS: {'; '.join(blas) or 'none found'}"


class busy_core:
    """Context manager: one busy process beside the measurement (another user's job holding a core)."""

    def __enter__(self) -> busy_core:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


def load() -> str:
    """The machine's load as `uptime` says it (other users' work makes every figure noisier)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "uptime unavailable"


def on_pty(*args: str, columns: int = 120, until: bytes | None = None) -> tuple[float, list[tuple[float, int]], bytes]:
    """Run `python -m cifarcli ARGS` with stderr on a pseudo-terminal of ``columns``, as a user at a terminal.

    Returns (wall time, [(seconds since start, bytes) for every write the terminal received], all bytes).
    With ``until``, the command is interrupted (SIGINT to its group) as soon as those bytes arrive.
    """
    import select
    import signal

    env = {**os.environ, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    master, slave = os.openpty()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifarcli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    writes: list[tuple[float, int]] = []
    drawn = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal is gone
                    break
                if not chunk:
                    break
                writes.append((time.perf_counter() - started, len(chunk)))
                drawn += chunk
                if until is not None and until in drawn:
                    os.killpg(proc.pid, signal.SIGINT)
                    until = None
            elif proc.poll() is not None:
                break
        proc.wait()
    finally:
        os.close(master)
    return time.perf_counter() - started, writes, bytes(drawn)


def longest_silence(wall: float, writes: list[tuple[float, int]]) -> float:
    """The longest stretch with nothing new on the terminal: from the start, between writes, to the end."""
    moments = [0.0, *(t for t, _ in writes), wall]
    return max(b - a for a, b in zip(moments, moments[1:]))
