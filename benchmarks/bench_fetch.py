"""Fetch and start-up speed: import of the stand-in, a repeated fetch, `--help`, mmap loading.

    python benchmarks/bench_fetch.py          # median of 3 of each figure

The import includes the dataset's content key (sha256 of the decoded arrays, issue 17), also
timed on its own. Targets (issue 2): import <= 5 s, repeated fetch (cache hit) <= 1 s wall
including interpreter start-up, `cifarcli --help` <= 0.3 s.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import archive, cifarcli, machine, median_of, verdict  # noqa: E402

RUNS = 3


def main() -> None:
    source = str(archive())
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        imports, repeats = [], []
        for i in range(RUNS):
            cache = Path(tmp) / f"cache{i}"
            imports.append(cifarcli("fetch", "--source", source, "--cache-dir", str(cache), "--quiet"))
            repeats.append(cifarcli("fetch", "--source", source, "--cache-dir", str(cache), "--quiet"))
        helps = [cifarcli("--help") for _ in range(RUNS)]
        print(f"import the stand-in archive      {median_of(imports)} {verdict(statistics.median(imports), 5)}")
        print(f"repeated fetch (cache hit)       {median_of(repeats)} {verdict(statistics.median(repeats), 1)}")
        print(f"cifarcli --help                  {median_of(helps)} {verdict(statistics.median(helps), 0.3)}")
        mmap_figures(Path(tmp) / "cache0")
        content_key_figure(source)


def content_key_figure(source: str) -> None:
    """The dataset key hashes the decoded arrays (issue 17): its share of an import."""
    from cifarcli import data

    dataset, _ = data.read_cifar10(Path(source))
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        data.content_sha256(dataset)
        times.append(time.perf_counter() - started)
    print(f"content key (sha256 of the arrays) {median_of(times)}")


def mmap_figures(cache: Path) -> None:
    """Load the 184 MB dataset artifact with and without mmap, then prepare the default split."""
    from cifarcli import stages

    ws = stages.Workspace(cache)
    key = ws.read_state()["dataset"]["key"]
    for mmap in (False, True):
        loads, prepares = [], []
        for _ in range(RUNS):
            started = time.perf_counter()
            artifact = ws.store.load("dataset", key, mmap=mmap)
            loaded = time.perf_counter()
            stages.forget_prepared()  # measure the preparation, not the per-process memo
            stages.prepared(artifact)
            loads.append(loaded - started)
            prepares.append(time.perf_counter() - started)
        label = "mmap_mode='r'" if mmap else "read into memory"
        print(
            f"dataset load, {label:17s}  {median_of(loads)};  "
            f"load + prepare seed split {statistics.median(prepares):.2f} s"
        )


if __name__ == "__main__":
    main()
