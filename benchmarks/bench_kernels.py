"""How far the study's numbers move from one CPU kind to another.

    CIFARCLI_TEST_ARCHIVE=../shared/cifar10/cifar-10-proxy-binary.tar.gz \
        python benchmarks/bench_kernels.py [--kernels Haswell,SkylakeX,Zen,Sandybridge]

A run's bits are fixed by its run ID and the numpy/BLAS build *and* the
kernel OpenBLAS picks for the CPU. OpenBLAS builds for many CPUs pick the
kernel at start-up and honour OPENBLAS_CORETYPE, so one machine can run the
kernels of other CPU kinds (those its instruction set supports): this script
trains the study's four settings under each kernel, in a fresh process each,
and prints the test accuracy, and how far W lies from the first kernel's.
Each process also trains the unstable setting twice with one thread and
with two, to show the bits do not move within a kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SETTINGS = ((0.0, 0.1), (0.0, 0.001), (0.1, 0.001), (1.0, 0.001))


def child() -> None:
    from threadpoolctl import threadpool_info

    from bench_train import load_arrays
    from cifarcli.config import TrainConfig
    from cifarcli.evaluate import evaluate_model
    from cifarcli.prepare import prepare
    from cifarcli.train import train

    arrays = load_arrays(1)
    data = prepare(*arrays[:5], batch_size=10000, split="seed", dtype="float32")
    kernel = next((p.get("architecture") for p in threadpool_info() if p.get("user_api") == "blas"), None)
    rows = []
    for lam, eta in SETTINGS:
        result = train(TrainConfig(lam=lam, eta=eta), data)
        rows.append(
            {
                "lam": lam,
                "eta": eta,
                "test_acc": evaluate_model(result.W, result.b, lam, data)["test"]["accuracy"],
                "W": result.W.tolist(),
            }
        )
    unstable = TrainConfig(lam=0.0, eta=0.1)
    same = train(unstable, data, threads=1).W.tobytes() == train(unstable, data, threads=2).W.tobytes()
    print(json.dumps({"kernel": kernel, "rows": rows, "one_and_two_threads_equal": same}))


def main() -> None:
    import numpy as np

    from _common import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", default="Haswell,SkylakeX,Zen,Sandybridge")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    print(machine())
    results = {}
    for kernel in args.kernels.split(","):
        env = {**os.environ, "OPENBLAS_CORETYPE": kernel}
        env.pop("OPENBLAS_L2_SIZE", None)
        out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{kernel}: failed ({out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode})")
            continue
        results[kernel] = json.loads(out.stdout.strip().splitlines()[-1])
    first = next(iter(results.values()), None)
    print(
        f"\n{'asked for':<12} {'ran':<12} "
        + " ".join(f"λ={lam:g},η={eta:g}".rjust(14) for lam, eta in SETTINGS)
        + "   max|ΔW| vs first (unstable, stable)   1 = 2 threads"
    )
    for kernel, doc in results.items():
        accs = " ".join(f"{row['test_acc']:14.4f}" for row in doc["rows"])
        dW = [
            float(np.abs(np.array(row["W"]) - np.array(ref["W"])).max()) for row, ref in zip(doc["rows"], first["rows"])
        ]
        print(
            f"{kernel:<12} {str(doc['kernel']):<12} {accs}   {dW[0]:.1e}, {max(dW[1:]):.1e}"
            f"{'':>22}{doc['one_and_two_threads_equal']}"
        )


if __name__ == "__main__":
    main()
