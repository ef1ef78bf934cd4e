"""Training speed and memory: cifarcli's numpy loop vs an idiomatic PyTorch loop.

    CIFARCLI_TEST_ARCHIVE=../shared/cifar10/cifar-10-proxy-binary.tar.gz \
        python benchmarks/bench_train.py [--repeats 3] [--compare-dtypes]

The seed configuration of the study: data_batch_1 split 8000 / 2000, 40 epochs,
n_batch 100, λ = 0.1, η = 0.001, train and validation loss/cost/accuracy after
every epoch, float32. Without the archive, random data of the same shape is used.
Peak memory (VmHWM) is measured in fresh subprocesses: load + prepare + train
for split seed (all 40 epochs) and split full (2 epochs: memory does not grow
with epochs). --compare-dtypes trains the four study settings in float32 and
float64 and prints the test accuracies side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import busy_core, machine  # noqa: E402
from cifarcli.config import TrainConfig
from cifarcli.evaluate import evaluate_model  # noqa: E402
from cifarcli.model import init_parameters  # noqa: E402
from cifarcli.prepare import prepare  # noqa: E402
from cifarcli.train import train  # noqa: E402

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
RECORD = 1 + 3072


def load_arrays(n_batches: int = 5):
    """(train_x N×3072 uint8, train_y, test_x, test_y, labels, source) from the binary archive.

    Reads the first ``n_batches`` training batches and the test batch straight
    into preallocated arrays (one member's bytes in memory at a time).
    """
    archive = os.environ.get("CIFARCLI_TEST_ARCHIVE")
    if archive and Path(archive).is_file():
        train_x = np.empty((n_batches * 10000, 3072), np.uint8)
        train_y = np.empty(n_batches * 10000, np.uint8)
        test_x = np.empty((10000, 3072), np.uint8)
        test_y = np.empty(10000, np.uint8)
        wanted = {
            f"data_batch_{i}.bin": (train_x[(i - 1) * 10000 : i * 10000], train_y[(i - 1) * 10000 : i * 10000])
            for i in range(1, n_batches + 1)
        }
        wanted["test_batch.bin"] = (test_x, test_y)
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                target = wanted.get(Path(member.name).name)
                if member.isfile() and target is not None:
                    records = np.frombuffer(tar.extractfile(member).read(), np.uint8).reshape(-1, RECORD)
                    target[0][...] = records[:, 1:]
                    target[1][...] = records[:, 0]
                    del records
        return train_x, train_y, test_x, test_y, LABELS, archive
    rng = np.random.default_rng(0)
    print("CIFARCLI_TEST_ARCHIVE not set or missing: using random data of the same shape", file=sys.stderr)
    return (
        rng.integers(0, 256, (n_batches * 10000, 3072), dtype=np.uint8),
        rng.integers(0, 10, n_batches * 10000, dtype=np.uint8),
        rng.integers(0, 256, (10000, 3072), dtype=np.uint8),
        rng.integers(0, 10, 10000, dtype=np.uint8),
        LABELS,
        "random",
    )


def torch_train(torch, data, cfg: TrainConfig):
    """The same study loop, written as a PyTorch user would: autograd, cross_entropy + λ‖W‖²."""
    import torch.nn.functional as F

    X = torch.from_numpy(np.ascontiguousarray(data.X_train.T))  # n × d rows
    y = torch.from_numpy(data.y_train.astype(np.int64))
    Xv = torch.from_numpy(np.ascontiguousarray(data.X_val.T))
    yv = torch.from_numpy(data.y_val.astype(np.int64))
    W0, b0 = init_parameters(10, X.shape[1], np.random.default_rng(cfg.seed), dtype=np.float32)
    W = torch.from_numpy(W0).requires_grad_()
    b = torch.from_numpy(b0.ravel().copy()).requires_grad_()
    history = []

    def metrics():
        with torch.no_grad():
            reg = cfg.lam * W.pow(2).sum()
            row = []
            for Xs, ys in ((X, y), (Xv, yv)):
                S = Xs @ W.T + b
                loss = F.cross_entropy(S, ys)
                row += [loss.item(), (loss + reg).item(), (S.argmax(1) == ys).float().mean().item()]
            history.append(row)

    metrics()
    n = X.shape[0]
    for _ in range(cfg.n_epochs):
        for s in range(0, n, cfg.n_batch):
            S = X[s : s + cfg.n_batch] @ W.T + b
            J = F.cross_entropy(S, y[s : s + cfg.n_batch]) + cfg.lam * W.pow(2).sum()
            J.backward()
            with torch.no_grad():
                W -= cfg.eta * W.grad
                b -= cfg.eta * b.grad
            W.grad = None
            b.grad = None
        metrics()
    return W.detach().numpy(), history


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    VmHWM from /proc (reset by exec) where available; ru_maxrss otherwise (on
    Linux that one survives exec, so a child forked from a big parent would
    report the parent's size).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_memory(split: str, n_epochs: int) -> None:
    """Run in a subprocess: load, prepare, train; print peak RSS figures as JSON."""
    arrays = load_arrays({"seed": 1, "dd2424": 2, "full": 5}[split])  # what the split needs
    after_load = peak_rss_mb()
    data = prepare(*arrays[:5], batch_size=10000, split=split, val_size=1000, dtype="float32")
    after_prepare = peak_rss_mb()
    train(TrainConfig(lam=0.1, eta=0.001, n_epochs=n_epochs, split=split), data)
    print(json.dumps({"load_mb": after_load, "prepare_mb": after_prepare, "peak_mb": peak_rss_mb()}))


def measure_memory(split: str, n_epochs: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child-memory", split, "--epochs", str(n_epochs)],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare_dtypes(arrays) -> None:
    print("\nfloat32 vs float64, seed split, 40 epochs, n_batch 100 (test accuracy / final val cost)")
    print(f"{'lam':>5} {'eta':>6} | {'acc32':>7} {'acc64':>7} {'diff':>8} | {'s32':>5} {'s64':>5}")
    d32 = prepare(*arrays[:5], batch_size=10000, split="seed", dtype="float32")
    d64 = prepare(*arrays[:5], batch_size=10000, split="seed", dtype="float64")
    for lam, eta in ((0.0, 0.1), (0.0, 0.001), (0.1, 0.001), (1.0, 0.001)):
        row = []
        for data, dtype in ((d32, "float32"), (d64, "float64")):
            t0 = time.perf_counter()
            res = train(TrainConfig(lam=lam, eta=eta, dtype=dtype), data)
            sec = time.perf_counter() - t0
            row.append((evaluate_model(res.W, res.b, lam, data)["test"]["accuracy"], sec))
        (a32, s32), (a64, s64) = row
        print(f"{lam:5g} {eta:6g} | {a32:7.4f} {a64:7.4f} {a32 - a64:+8.4f} | {s32:5.2f} {s64:5.2f}")


def compare_with_torch(torch, data, cfg: TrainConfig, repeats: int) -> None:
    """Time cifarcli's training and PyTorch's, alternating, and print the ratio of the medians."""
    train(TrainConfig(lam=0.1, eta=0.001, n_epochs=1), data)  # warm-up
    if torch is not None:
        torch_train(torch, data, TrainConfig(lam=0.1, eta=0.001, n_epochs=1))
    t_np, t_pt, res, W_pt, hist = [], [], None, None, None
    for _ in range(repeats):  # alternated, so a change of load hits both alike
        t, _, res = timed(lambda: train(cfg, data), 1)
        t_np.append(t)
        if torch is not None:
            t, _, (W_pt, hist) = timed(lambda: torch_train(torch, data, cfg), 1)
            t_pt.append(t)
    med_np = statistics.median(t_np)
    print(
        f"cifarcli (numpy {np.__version__}): median {med_np:.3f} s  runs {[round(t, 3) for t in t_np]}"
        f"  final val acc {res.history['val_acc'][-1]:.4f}"
    )
    if torch is not None:
        med_pt = statistics.median(t_pt)
        print(
            f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads): median {med_pt:.3f} s"
            f"  runs {[round(t, 3) for t in t_pt]}  final val acc {hist[-1][5]:.4f}"
        )
        print(
            f"speed-up cifarcli vs PyTorch: {med_pt / med_np:.2f}x (medians)"
            f"  (max |W_numpy - W_torch| = {np.abs(res.W - W_pt).max():.2e})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare-dtypes", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--busy", action="store_true", help="also time both with one busy process beside them")
    ap.add_argument("--child-memory", choices=["seed", "dd2424", "full"], help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, default=40, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_memory:
        child_memory(args.child_memory, args.epochs)
        return

    arrays = load_arrays()
    print(f"data: {arrays[5]}")
    data = prepare(*arrays[:5], batch_size=10000, split="seed", dtype="float32")
    cfg = TrainConfig(lam=0.1, eta=0.001)
    print(f"config: {cfg.key_params()}  train {data.sizes['train']}, val {data.sizes['val']}")

    print(machine())
    try:
        import torch
    except ImportError:
        torch = None
        print("torch not importable: PyTorch comparison skipped")
    for load in ["idle", "one busy process beside it"] if args.busy else ["idle"]:
        with busy_core() if load != "idle" else contextlib.nullcontext():
            print(f"-- {load}")
            compare_with_torch(torch, data, cfg, args.repeats)
    if not args.no_memory:
        for split, epochs in (("seed", 40), ("full", 2)):
            m = measure_memory(split, epochs)
            print(
                f"peak memory, split {split} ({epochs} epochs, incl. loading the batches it needs): "
                f"{m['peak_mb']:.0f} MB  (after load {m['load_mb']:.0f} MB, after prepare {m['prepare_mb']:.0f} MB)"
            )
    if args.compare_dtypes:
        compare_dtypes(arrays)


if __name__ == "__main__":
    main()
