"""Full gradient check time: all 30,730 parameters, 100 images, λ = 0 and 0.1.

    CIFARCLI_TEST_ARCHIVE=../shared/cifar10/cifar-10-proxy-binary.tar.gz \
        python benchmarks/bench_gradcheck.py [--repeats 3]

Uses the first 100 images of data_batch_1 normalised as in training (random
data of the same shape without the archive); W, b from N(0, 0.01²), seed 42.
Prints the median of the repeats (target: <= 2 s) and the error summary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cifarcli.gradcheck import check_gradients  # noqa: E402
from cifarcli.model import init_parameters, one_hot  # noqa: E402
from cifarcli.prepare import normalisation_stats, normalise  # noqa: E402


def first_batch():
    archive = os.environ.get("CIFARCLI_TEST_ARCHIVE")
    if archive and Path(archive).is_file():
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if Path(member.name).name == "data_batch_1.bin":
                    rec = np.frombuffer(tar.extractfile(member).read(), np.uint8).reshape(-1, 3073)
                    return rec[:, 1:], rec[:, 0], archive
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (10000, 3072), dtype=np.uint8), rng.integers(0, 10, 10000), "random")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    x, y, source = first_batch()
    mean, std = normalisation_stats(x[:8000])
    X = normalise(x[: args.n], mean, std, np.float64)
    Y = one_hot(y[: args.n])
    W, b = init_parameters(10, 3072, np.random.default_rng(42), std=0.01)
    times, report = [], None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        report = check_gradients(X, Y, W, b, lams=(0.0, 0.1), h=1e-6)
        times.append(time.perf_counter() - t0)
    print(f"data: {source}; {report['n_params']} parameters, {report['n_images']} images, lambdas 0 and 0.1")
    print(
        f"full gradcheck: median {statistics.median(times):.3f} s  runs {[round(t, 3) for t in times]}  (target <= 2 s)"
    )
    for r in report["results"]:
        for p in ("W", "b"):
            s = r[p]
            print(
                f"  lam={r['lam']:<4g} {p}: max {s['max']:.2e}  mean {s['mean']:.2e}  median {s['median']:.2e}"
                f"  share<1e-6 {s['share_below_tol']:.4f}"
            )


if __name__ == "__main__":
    main()
