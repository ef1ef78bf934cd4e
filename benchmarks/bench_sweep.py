"""A 15-point sweep (5 λ × 3 η, the seed configuration otherwise) with --jobs 2 against --jobs 1.

    python benchmarks/bench_sweep.py            # median of 3 per setting
    python benchmarks/bench_sweep.py --runs 1   # one run each
    python benchmarks/bench_sweep.py --blas 1   # also: loky workers with 1 BLAS thread each vs 2
    python benchmarks/bench_sweep.py --first-bar  # only: time to the first bar at a terminal, median of 5

Each measurement is `cifarcli sweep` in a fresh cache with the CIFAR-10
stand-in already imported (the import is not timed), interpreter start-up
included. Target: --jobs 2 takes <= 0.65 × the --jobs 1 wall time.

``--first-bar`` (issue 20): the same cold sweep on 2 jobs with stderr on a
pseudo-terminal; the time from starting the command to the first progress bar
drawn (a ``━``), then the sweep is interrupted. Target: <= 1 s.

BLAS threads: joblib's loky backend caps the BLAS threads of each worker at
cpu_count // n_jobs (1 on two cores with --jobs 2) unless told otherwise.
``--blas`` compares that default with ``CIFARCLI_BENCH_INNER_THREADS=2``,
which the script passes to joblib as ``inner_max_num_threads`` through
``joblib.parallel_config`` in a small wrapper (nothing in cifarcli reads it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import archive, load, machine, median_of, on_pty, verdict  # noqa: E402

GRID = ["--lam", "0,0.001,0.01,0.1,1", "--eta", "0.001,0.01,0.1"]
WRAPPER = """
import os, sys
from joblib import parallel_config
from cifarcli.cli import main
inner = int(os.environ["CIFARCLI_BENCH_INNER_THREADS"])
with parallel_config(backend="loky", inner_max_num_threads=inner):
    sys.argv = ["cifarcli", *sys.argv[1:]]
    main()
"""


def sweep(cache: Path, reports: Path, jobs: int, inner: int | None) -> float:
    command = [sys.executable, "-m", "cifarcli"] if inner is None else [sys.executable, "-c", WRAPPER]
    env = dict(os.environ)
    if inner is not None:
        env["CIFARCLI_BENCH_INNER_THREADS"] = str(inner)
    started = time.perf_counter()
    done = subprocess.run(
        [
            *command,
            "sweep",
            *GRID,
            "--jobs",
            str(jobs),
            "--cache-dir",
            str(cache),
            "--reports-dir",
            str(reports),
            "--quiet",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"cifarcli sweep --jobs {jobs} failed (exit {done.returncode}): {done.stderr.strip()}")
    return time.perf_counter() - started


def fresh(tmp: Path, name: str) -> tuple[Path, Path]:
    cache = tmp / f"cache-{name}"
    subprocess.run(
        [sys.executable, "-m", "cifarcli", "fetch", "--source", str(archive()), "--cache-dir", str(cache), "--quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return cache, tmp / f"reports-{name}"


def first_bar(runs: int) -> None:
    """Seconds from the start of a cold 15-point sweep on 2 jobs to its first bar on a terminal."""
    print(machine())
    print(f"load before: {load()}")
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            cache, reports = fresh(Path(tmp), f"first-{i}")
            _, writes, drawn = on_pty(
                "sweep",
                *GRID,
                "--jobs",
                "2",
                "--cache-dir",
                str(cache),
                "--reports-dir",
                str(reports),
                until="━".encode(),
            )
            seen = 0
            for moment, size in writes:  # the write that brought the first bar
                seen += size
                if "━".encode() in drawn[:seen]:
                    times.append(moment)
                    break
            else:
                sys.exit(f"no bar drawn: {drawn[-500:]!r}")
            print(f"  run {i + 1}: first bar after {times[-1]:.2f} s", flush=True)
    print(f"load after:  {load()}")
    print(f"15-point sweep, 2 jobs, first bar  {median_of(times)} {verdict(statistics.median(times), 1)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--blas", action="store_true", help="also compare 1 and 2 BLAS threads per worker")
    parser.add_argument("--first-bar", action="store_true", help="only the time to the first bar (median of 5)")
    args = parser.parse_args()
    if args.first_bar:
        first_bar(5)
        return
    settings = [("jobs 1", 1, None), ("jobs 2", 2, None)]
    if args.blas:
        settings.append(("jobs 2, 2 BLAS threads/worker", 2, 2))
    times: dict[str, list[float]] = {name: [] for name, _, _ in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for name, jobs, inner in settings:  # interleaved, so a noisy neighbour hits every setting alike
                cache, reports = fresh(Path(tmp), f"{i}-{jobs}-{inner}")
                times[name].append(sweep(cache, reports, jobs, inner))
                print(f"  run {i + 1}: {name:30s} {times[name][-1]:6.2f} s", flush=True)
    one = statistics.median(times["jobs 1"])
    for name, _, _ in settings:
        t = statistics.median(times[name])
        ratio = (
            ""
            if name == "jobs 1"
            else f"  ratio {t / one:.2f}× [{'ok' if t / one <= 0.65 else 'MISSED'}: target <= 0.65×]"
        )
        print(f"15-point sweep, {name:30s} {median_of(times[name])}{ratio}")


if __name__ == "__main__":
    main()
