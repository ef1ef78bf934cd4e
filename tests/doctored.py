"""A reference cache to doctor: every stage made once, the commands that read each stage, and the checks
that a doctored artifact was noticed, recomputed and gave the untouched result.

The fixtures ``reference`` (the cache, built once per session) and ``ws`` (a copy of it to doctor)
are in conftest.py; this module holds what the tests of the cache's edge share.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import joblib
from typer.testing import CliRunner

from cifarcli import stages
from cifarcli.cli import app
from cifarcli.files import file_sha256
from cifarcli.store import META, PAYLOAD
from procs import without_phases

RUN = ("--lam", "0.1", "--eta", "0.01", "--n-epochs", "2")
GRADCHECK = ("--n-samples", "5", "--n-dims", "20")
SETTINGS = """
[defaults]
n_epochs = 2
[gradcheck]
n_samples = 5
n_dims = 20
[[run]]
lam = 0.1
eta = 0.01
"""
SWEEP = ("--lam", "0,0.1", "--eta", "0.01", "--n-epochs", "2", "--jobs", "1")
# Fields that differ between two runs of one command although the results are the same.
VOLATILE = {
    "cached",
    "created",
    "elapsed",
    "seconds",
    "timings",
    "train_seconds",
    "stages",
    "computed",
    "status",
    "duration",
    "total_seconds",
    "epoch_seconds",
}


class Evil:
    """Unpickling this runs ``touch MARKER``: what a doctored cache would do with plain joblib.load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def stage_command(stage: str, run_id: str) -> tuple:
    """The command that reads the artifact of ``stage`` (and must recompute it)."""
    return {
        "dataset": ("train", *RUN, "--json"),
        "gradcheck": ("gradcheck", *GRADCHECK, "--json"),
        "train": ("evaluate", "--run", run_id, "--json"),
        "evaluate": ("evaluate", *RUN, "--json"),
        "plot": ("plot", *RUN, "--json"),
        "report": ("report", "--config", "s.toml", "--jobs", "1", "--json"),
        "sweep": ("sweep", *SWEEP, "--json"),
    }[stage]


STAGES = ("dataset", "gradcheck", "train", "evaluate", "plot", "report", "sweep")


def artifact_folder(cache: Path, stage: str, run_id: str) -> Path:
    """The one artifact of ``stage`` the stage's command reads."""
    keys = {
        "train": run_id,
        "evaluate": stages.run_key(stages.EVALUATE, run_id),
        "plot": stages.run_key(stages.PLOT, run_id),
        "dataset": json.loads((cache / "workspace.json").read_text())["dataset"]["key"],
    }
    if stage in keys:
        return cache / stage / keys[stage]
    [folder] = [p for p in (cache / stage).iterdir() if not p.name.startswith(".")]
    return folder


def doctor(folder: Path, value) -> None:
    """Replace the payload by ``value`` and make meta.json agree with it (size, mtime, sha256)."""
    joblib.dump(value, folder / PAYLOAD)
    meta = json.loads((folder / META).read_text())
    info = (folder / PAYLOAD).stat()
    meta.update(
        payload_size=info.st_size, payload_mtime_ns=info.st_mtime_ns, payload_sha256=file_sha256(folder / PAYLOAD)
    )
    (folder / META).write_text(json.dumps(meta))


def comparable(value):
    """``value`` without the fields that vary between identical runs; floats rounded to 6 digits."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def notices(result) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return without_phases([line for line in result.stderr.splitlines() if line.strip()])


def assert_recomputed(result, reference, stage: str, *words: str) -> None:
    """Exit 0, one notice line holding ``words``, and the result of an untouched cache."""
    assert result.exit_code == 0, result.stderr
    lines = notices(result)
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert comparable(json.loads(result.stdout)) == comparable(reference["results"][stage])
    assert_whole()


def assert_whole() -> None:
    """``cache verify`` finds nothing damaged. A recomputed artifact whose bytes changed (gradcheck
    keeps its timings) leaves what was made from it stale, which is right: that is recomputed on use."""
    damaged = json.loads(invoke("cache", "verify", "--json").stdout)["damaged"]
    assert all(row["reason"].startswith("stale: was made from an older") for row in damaged), damaged
