"""Loading the dataset artifact: the store's allow-list unpickler against plain joblib.load.

    python benchmarks/bench_cache_load.py          # median of 21 of each, after one warm-up

The stand-in is imported once into a temporary cache; then its payload
(184 MB of uint8 arrays) is loaded memory-mapped (how the store reads
datasets) and read into memory, by ``joblib.load`` and by ``safe_pickle.safe_load``,
and finally through ``Store.load`` (meta.json checks, allow-list, the dataset
schema including the 0..9 range of the 60,000 labels). The file is in the page
cache for every run, so the figures are the unpickling cost, not the disk's.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import archive  # noqa: E402

RUNS = 21


def machine() -> str:
    """The CPU model (lscpu) and the BLAS kernel (threadpoolctl), printed with the figures."""
    import numpy as np
    from threadpoolctl import threadpool_info

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        cpu = "unknown CPU"
    np.ones((64, 64)) @ np.ones((64, 64))  # load the BLAS
    blas = [
        f"{p.get('internal_api')} {p.get('version')} kernel {p.get('architecture')}"
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
    return f"CPU: {cpu}, {os.cpu_count()} cores; numpy {np.__version__}; BLAS: {'; '.join(blas) or 'none found'}"


def timed(load) -> list[float]:
    load()  # warm-up: page cache, imports
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        load()
        times.append(time.perf_counter() - started)
    return times


def row(name: str, times: list[float]) -> str:
    spread = f"(min {min(times) * 1e3:.2f}, max {max(times) * 1e3:.2f})"
    return f"  {name:<44} median {statistics.median(times) * 1e3:8.2f} ms  {spread}"


def main() -> None:
    import joblib

    from cifarcli import stages
    from cifarcli.safe_pickle import safe_load
    from cifarcli.store import PAYLOAD

    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        ws = stages.Workspace(Path(tmp) / "cache", Path(tmp) / "reports")
        artifact = stages.fetch(ws, str(archive()))
        path = artifact.path / PAYLOAD
        print(f"dataset artifact {artifact.key}: {path.stat().st_size / 1e6:.0f} MB")
        cases = {
            "joblib.load, mmap_mode='r'": lambda: joblib.load(path, mmap_mode="r"),
            "safe_pickle.safe_load, mmap (allow-list)": lambda: safe_load(path, mmap=True),
            "joblib.load, into memory": lambda: joblib.load(path),
            "safe_pickle.safe_load, into memory": lambda: safe_load(path),
            "Store.load (meta, allow-list, schema), mmap": lambda: ws.store.load("dataset", artifact.key, mmap=True),
        }
        results = {name: timed(load) for name, load in cases.items()}
    for name, times in results.items():
        print(row(name, times))
    plain, safe = (statistics.median(results[n]) for n in list(cases)[:2])
    print(f"allow-list vs plain, memory-mapped: {safe / plain:.2f}×")


if __name__ == "__main__":
    main()
