"""The whole study: `cifarcli report` from an imported dataset, then again from a full cache.

    python benchmarks/bench_report.py        # median of 3

Targets (issue 4): the default report (gradient check, four trainings,
evaluations, figures, both report files) <= 30 s with the data imported and
nothing else cached; a second run with nothing changed <= 2 s. Stage shares
come from each artifact's recorded compute time (meta.json "duration");
trainings run on two processes, so the shares add up to more than the wall time.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import archive, cifarcli, machine, median_of, verdict  # noqa: E402

RUNS = 3
STAGES = ("gradcheck", "train", "evaluate", "plot", "report")


def stage_seconds(cache: Path) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for stage in STAGES:
        for meta in (cache / stage).glob("*/meta.json"):
            seconds[stage] += json.loads(meta.read_text())["duration"]
    return seconds


def main() -> None:
    print(machine())
    source = str(archive())
    firsts, seconds_again, shares = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(RUNS):
            cache, reports = Path(tmp) / f"cache{i}", Path(tmp) / f"reports{i}"
            cifarcli("fetch", "--source", source, "--cache-dir", str(cache), "--quiet")
            args = ("report", "--cache-dir", str(cache), "--reports-dir", str(reports), "--quiet")
            firsts.append(cifarcli(*args))
            seconds_again.append(cifarcli(*args))
            shares.append(stage_seconds(cache))
    first = statistics.median(firsts)
    print(f"report, data imported, rest cold  {median_of(firsts)} {verdict(first, 30)}")
    print(f"report again, all cache hits      {median_of(seconds_again)} {verdict(statistics.median(seconds_again), 2)}")
    print("compute time per stage (median over runs; trainings overlap on 2 processes):")
    for stage in STAGES:
        value = statistics.median(s[stage] for s in shares)
        print(f"  {stage:10s} {value:6.2f} s  {value / first:6.1%} of the wall time")


if __name__ == "__main__":
    main()
