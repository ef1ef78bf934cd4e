"""examples/ci-pipeline.sh end to end on tiny data: once passing, once with a gate set to fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "ci-pipeline.sh"


def run_pipeline(tmp_path, tiny_archive, **settings):
    env = {
        **os.environ,
        "CIFAR_SOURCE": str(tiny_archive),
        "CIFARCLI_CACHE_DIR": str(tmp_path / "cache"),
        "REPORTS_DIR": str(tmp_path / "reports"),
        "N_EPOCHS": "5",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **settings,
    }
    return subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_ci_pipeline_passes_then_fails_on_its_gate(tmp_path, tiny_archive):
    passed = run_pipeline(tmp_path, tiny_archive, MIN_ACCURACY="0.5")
    assert passed.returncode == 0, passed.stderr
    accuracy = float(passed.stdout.split("test accuracy ", 1)[1].split()[0])
    assert 0.5 <= accuracy <= 1.0  # the gate held, and the tiny data is learnable
    assert (tmp_path / "reports" / "report.html").is_file()
    run_id = passed.stdout.split("run ", 1)[1].split(":", 1)[0]
    assert (tmp_path / "cache" / "train" / run_id / "meta.json").is_file()

    failed = run_pipeline(tmp_path, tiny_archive, MIN_ACCURACY="1.01")
    assert failed.returncode == 1
    assert "--min-accuracy 1.01" in failed.stderr  # the message names the gate
    assert "::group::report" not in failed.stdout  # set -e stopped the pipeline at the gate
    # The cache was reused: the second run recomputed no training run.
    runs = [json.loads(p.read_text())["key"] for p in (tmp_path / "cache" / "train").glob("*/meta.json")]
    assert run_id in runs


def test_ci_pipeline_gradient_gate(tmp_path, tiny_archive):
    failed = run_pipeline(tmp_path, tiny_archive, GRAD_TOL="1e-30")
    assert failed.returncode == 1
    assert "--tol 1e-30" in failed.stderr and "::group::train" not in failed.stdout
