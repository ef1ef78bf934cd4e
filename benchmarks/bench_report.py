"""The whole study: a cold `cifarcli report` at a terminal, beside one cold `cifarcli train`, then warm.

    python benchmarks/bench_report.py             # 5 alternating rounds, medians
    python benchmarks/bench_report.py --runs 3

Each round, in this order (alternating, so a noisy neighbour hits both alike):
a cold default report (the stand-in imported, nothing else cached) with stderr
on a pseudo-terminal of 120 columns, as a user sees it; one cold `cifarcli
train` of the study's best setting (λ=0.1, η=0.001) in its own fresh cache;
the report again with everything cached (warm). Interpreter start-up included.

Targets (issue 20): cold report <= 10 s and <= 3.5 × the cold train of the same
round; warm <= 1 s; the longest stretch with no change on the terminal during
the cold report (the gaps between the writes read from the pty, the start and
the end included) <= 2 s. Stage shares come from each artifact's recorded
compute time (meta.json "duration"); trainings, evaluations and per-run figures
run on two worker processes, so the shares add up to more than the wall time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import archive, cifarcli, load, longest_silence, machine, median_of, on_pty, verdict  # noqa: E402

STAGES = ("gradcheck", "train", "evaluate", "plot", "comparison", "report")


def stage_seconds(cache: Path) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for stage in STAGES:
        for meta in (cache / stage).glob("*/meta.json"):
            seconds[stage] += json.loads(meta.read_text())["duration"]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    print(f"load before: {load()}")
    colds, trains, warms, silences, ratios, shares = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        imported = Path(tmp) / "imported"
        cifarcli("fetch", "--source", str(archive()), "--cache-dir", str(imported), "--quiet")
        for i in range(args.runs):
            cache, reports, alone = (Path(tmp) / f"{name}{i}" for name in ("cache", "reports", "train"))
            shutil.copytree(imported, cache, symlinks=True)
            shutil.copytree(imported, alone, symlinks=True)
            report = ("report", "--cache-dir", str(cache), "--reports-dir", str(reports))
            wall, writes, _ = on_pty(*report)
            if not (reports / "report.html").is_file():
                sys.exit("the cold report failed")
            colds.append(wall)
            silences.append(longest_silence(wall, writes))
            trains.append(cifarcli("train", "--lam", "0.1", "--eta", "0.001", "--cache-dir", str(alone), "--quiet"))
            ratios.append(colds[-1] / trains[-1])
            warms.append(cifarcli(*report, "--quiet"))
            shares.append(stage_seconds(cache))
            print(
                f"  round {i + 1}: cold report {colds[-1]:.2f} s (longest silence {silences[-1]:.2f} s), "
                f"cold train {trains[-1]:.2f} s, ratio {ratios[-1]:.2f}, warm report {warms[-1]:.2f} s",
                flush=True,
            )
    print(f"load after:  {load()}")
    cold = statistics.median(colds)
    print(f"cold report (pty, 120 columns)     {median_of(colds)} {verdict(cold, 10)}")
    print(f"cold train, λ=0.1 η=0.001          {median_of(trains)}")
    ratio = statistics.median(ratios)
    print(
        f"cold report / cold train, per round  median {ratio:5.2f} × "
        f"[{'ok' if ratio <= 3.5 else 'MISSED'}: target <= 3.5 ×]"
    )
    print(f"warm report, all cache hits        {median_of(warms)} {verdict(statistics.median(warms), 1)}")
    print(f"longest silence on the terminal    {median_of(silences)} {verdict(statistics.median(silences), 2)}")
    print("compute time per stage (median over rounds; trainings and per-run figures on 2 processes):")
    for stage in STAGES:
        value = statistics.median(s[stage] for s in shares)
        print(f"  {stage:10s} {value:6.2f} s  {value / cold:6.1%} of the wall time")


if __name__ == "__main__":
    main()
