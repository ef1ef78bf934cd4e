"""A doctored cache: nothing found on disk runs, nothing crashes, every result is recomputed.

A reference cache (dataset, gradcheck, a trained run, its evaluation and figures,
a report, a sweep) is built once; every test works on a copy of it, doctors one
file the way an attacker with write access to a shared CI cache would (payload
and meta.json kept consistent, so only the content betrays it), runs the real
command and checks:

* the marker file the malicious pickle would create never appears,
* stderr holds exactly one notice naming the doctored artifact, and no traceback,
* the command succeeds with the result an untouched cache gives.

``test_the_malicious_pickle_is_live`` shows the same file does run its code
through a plain ``joblib.load``, so the other tests would fail if loading did.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
from typer.testing import CliRunner

from cifarcli import stages, workflows
from cifarcli.cli import app
from cifarcli.evaluate import without_predictions
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


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_archive):
    """A cache holding every stage, and each stage command's JSON result on it (all cache hits)."""
    root = tmp_path_factory.mktemp("reference")
    (root / "s.toml").write_text(SETTINGS)
    with contextlib.chdir(root):
        assert invoke("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
        run_id = json.loads(invoke("train", *RUN, "--json").stdout)["run_id"]
        for stage in STAGES:
            assert invoke(*stage_command(stage, run_id)).exit_code == 0
        results = {stage: json.loads(invoke(*stage_command(stage, run_id)).stdout) for stage in STAGES}
    return {"root": root, "run_id": run_id, "results": results}


@pytest.fixture
def ws(reference, tmp_path, monkeypatch, offline):
    """tmp_path holding a copy of the reference cache and settings, as the working folder; no network."""
    shutil.copytree(reference["root"] / "cache", tmp_path / "cache")
    shutil.copy(reference["root"] / "s.toml", tmp_path / "s.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIFARCLI_CACHE_DIR", raising=False)
    return tmp_path


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


def test_the_malicious_pickle_is_live(tmp_path):
    marker = tmp_path / "marker"
    joblib.dump({"W": Evil(marker)}, tmp_path / "evil.joblib")
    joblib.load(tmp_path / "evil.joblib")  # plain joblib runs it: this is what the store must never do
    assert marker.exists()


@pytest.mark.parametrize("stage", STAGES)
def test_a_pickle_that_runs_code_is_refused_and_recomputed(ws, reference, stage):
    marker = ws / "marker"
    folder = artifact_folder(ws / "cache", stage, reference["run_id"])
    doctor(folder, {"payload": Evil(marker)})
    verified = invoke("cache", "verify", "--json")
    assert verified.exit_code == 1 and "posix.system" in verified.stdout
    assert not marker.exists()
    result = invoke(*stage_command(stage, reference["run_id"]))
    assert not marker.exists()
    assert_recomputed(result, reference, stage, f"{stage}/{folder.name}", "refused", "posix.system")
    assert not marker.exists()


def _dataset_labels_out_of_range(payload):
    return {**payload, "train_y": np.full_like(payload["train_y"], 10)}


# (stage, how the payload is doctored from the genuine one, words of the notice)
WRONG = {
    "dataset-42": ("dataset", lambda p: 42, "expected a dict"),
    "dataset-missing-key": ("dataset", lambda p: {k: v for k, v in p.items() if k != "test_y"}, "test_y"),
    "dataset-float-pixels": ("dataset", lambda p: {**p, "train_x": np.asarray(p["train_x"], np.float32)}, "dtype"),
    "dataset-label-10": ("dataset", _dataset_labels_out_of_range, "values outside"),
    "dataset-9-class-names": ("dataset", lambda p: {**p, "label_names": p["label_names"][:9]}, "label_names"),
    "gradcheck-42": ("gradcheck", lambda p: 42, "expected a dict"),
    "gradcheck-missing-key": ("gradcheck", lambda p: {k: v for k, v in p.items() if k != "results"}, "results"),
    "train-42": ("train", lambda p: 42, "expected a dict"),
    "train-W-3071-columns": ("train", lambda p: {**p, "W": p["W"][:, :3071]}, "3071"),
    "train-b-int": ("train", lambda p: {**p, "b": p["b"].astype(np.int64)}, "payload.b"),
    "train-history-short": ("train", lambda p: {**p, "history": {**p["history"], "val_acc": [0.5]}}, "val_acc"),
    "evaluate-42": ("evaluate", lambda p: 42, "expected a dict"),
    "evaluate-missing-keys": ("evaluate", lambda p: {"lam": 0.1}, "missing key"),
    "evaluate-accuracy-str": ("evaluate", lambda p: {**p, "test": {**p["test"], "accuracy": "high"}}, "accuracy"),
    "plot-empty": ("plot", lambda p: {}, "missing key"),
    "plot-not-png": ("plot", lambda p: {**p, "loss": b"GIF89a"}, "a PNG file"),
    "report-42": ("report", lambda p: 42, "expected a dict"),
    "report-missing-doc": ("report", lambda p: {k: v for k, v in p.items() if k != "doc"}, "doc"),
    "sweep-not-png": ("sweep", lambda p: {"heatmap": b"<svg/>"}, "a PNG file"),
}


@pytest.mark.parametrize("case", WRONG)
def test_a_well_formed_but_wrong_payload_is_damaged_and_recomputed(ws, reference, case):
    stage, change, word = WRONG[case]
    folder = artifact_folder(ws / "cache", stage, reference["run_id"])
    doctor(folder, change(joblib.load(folder / PAYLOAD)))
    verified = invoke("cache", "verify", "--json")
    assert verified.exit_code == 1 and folder.name in verified.stdout  # verify found it too (it said ok before)
    result = invoke(*stage_command(stage, reference["run_id"]))
    assert_recomputed(result, reference, stage, f"damaged artifact {stage}/{folder.name}", word)


# -- checkpoints ----------------------------------------------------------------------

LONGER = ("--lam", "0.1", "--eta", "0.01", "--n-epochs", "3")


def _checkpoint_path(cache: Path) -> Path:
    from cifarcli.config import TrainConfig

    data_key = json.loads((cache / "workspace.json").read_text())["dataset"]["key"]
    key = stages.train_key(TrainConfig(lam=0.1, eta=0.01, n_epochs=3), data_key)
    path = cache / "train" / ".scratch" / key / "checkpoint"
    path.parent.mkdir(parents=True)
    return path


@pytest.mark.parametrize("checkpoint", ["code", "42", "W-wrong-shape"])
def test_a_doctored_checkpoint_is_ignored_and_training_restarts(ws, reference, tmp_path_factory, checkpoint):
    clean = json.loads(invoke("train", *LONGER, "--json").stdout)  # the untouched run, then forgotten
    shutil.rmtree(ws / "cache" / "train" / clean["run_id"])
    marker = ws / "marker"
    history = {name: [0] if name == "epoch" else [0.5] for name in clean["history"]}
    joblib.dump(
        {
            "code": {"epoch": 0, "W": Evil(marker), "b": np.zeros((10, 1)), "history": history},
            "42": 42,
            "W-wrong-shape": {"epoch": 0, "W": np.zeros((10, 5)), "b": np.zeros((10, 1)), "history": history},
        }[checkpoint],
        _checkpoint_path(ws / "cache"),
    )
    result = invoke("train", *LONGER, "--json")
    assert result.exit_code == 0, result.stderr
    assert not marker.exists()
    lines = notices(result)
    assert len(lines) == 1 and "ignoring" in lines[0] and "checkpoint" in lines[0], lines
    again = json.loads(result.stdout)
    assert again["run_id"] == clean["run_id"] and again["cached"] is False
    assert comparable(again) == comparable(clean)  # trained from scratch, not from the doctored state


# -- meta.json ------------------------------------------------------------------------

BAD_META = {
    "a-list": lambda meta: [1],
    "size-a-string": lambda meta: {**meta, "payload_size": "big"},
    "params-a-list": lambda meta: {**meta, "params": [1]},
    "inputs-not-str": lambda meta: {**meta, "inputs": {"train": 7}},
    "key-of-other-params": lambda meta: {**meta, "params": {"lam": 1}},
}


@pytest.mark.parametrize("case", BAD_META)
def test_a_meta_json_of_the_wrong_form_is_damaged_everywhere_and_recomputed(ws, reference, case):
    folder = artifact_folder(ws / "cache", "evaluate", reference["run_id"])
    meta = json.loads((folder / META).read_text())
    (folder / META).write_text(json.dumps(BAD_META[case](meta)))
    listed = invoke("cache", "ls", "--json")
    assert listed.exit_code == 0, listed.stderr
    [row] = [r for r in json.loads(listed.stdout)["artifacts"] if r["key"] == folder.name]
    assert "damaged" in row
    assert invoke("cache", "ls").exit_code == 0  # the table too
    assert invoke("cache", "verify", "--quiet").exit_code == 1
    status = invoke("status", *RUN, "--json")
    assert status.exit_code == 0, status.stderr
    assert {r["stage"]: r["state"] for r in json.loads(status.stdout)["stages"]}["evaluate"] == "damaged"
    result = invoke(*stage_command("evaluate", reference["run_id"]))
    assert_recomputed(result, reference, "evaluate", f"damaged artifact evaluate/{folder.name}")


# -- workspace.json ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", ["[]", "null", '{"dataset": "x"}', '{"dataset": {"key": 1}}', "garbage{", '{"checksums": []}']
)
def test_a_damaged_workspace_file_reads_as_empty_and_nothing_is_downloaded(ws, reference, content):
    from procs import checksums

    before = checksums(ws / "cache")
    (ws / "cache" / "workspace.json").write_text(content)
    status = invoke("status", *RUN, "--json")
    assert status.exit_code == 0 and "Traceback" not in status.stderr
    states = {r["stage"]: r["state"] for r in json.loads(status.stdout)["stages"]}
    assert states == {
        "dataset": "cached",
        "gradcheck": "missing",
        "train": "cached",
        "evaluate": "cached",
        "plot": "cached",
    }  # (the default gradcheck was never run)
    result = invoke(*stage_command("evaluate", reference["run_id"]))
    assert result.exit_code == 0, result.stderr
    lines = notices(result)
    assert any("workspace.json" in line for line in lines) and len(lines) == 2, lines  # damaged; dataset found
    assert comparable(json.loads(result.stdout)) == comparable(reference["results"]["evaluate"])
    assert not (ws / "cache" / "downloads").exists()  # the intact dataset was used, nothing downloaded
    assert checksums(ws / "cache") == before  # nothing recomputed
    assert json.loads((ws / "cache" / "workspace.json").read_text())["dataset"]["key"]  # remembered again
    assert notices(invoke(*stage_command("evaluate", reference["run_id"]))) == []


# -- the dataset is imported again from where it came from --------------------------------


def test_a_zeroed_dataset_payload_is_reimported_from_the_recorded_source(ws, reference, tiny_archive):
    cache = ws / "cache"
    folder = artifact_folder(cache, "dataset", reference["run_id"])
    size = (folder / PAYLOAD).stat().st_size
    (folder / PAYLOAD).write_bytes(b"\0" * size)  # meta.json untouched: the checksum betrays it
    shutil.rmtree(artifact_folder(cache, "evaluate", reference["run_id"]))  # evaluate must read the dataset
    for _ in range(2):  # and the next command finds it whole (it gave exit 2 on every rerun)
        result = invoke(*stage_command("train", reference["run_id"]))
        assert result.exit_code == 0, result.stderr
        assert len(notices(result)) == (1 if _ == 0 else 0), result.stderr
        assert comparable(json.loads(result.stdout)) == comparable(reference["results"]["train"])
    assert json.loads((folder / META).read_text())["info"]["source"] == str(tiny_archive.resolve())
    assert_whole()


# -- stale results (issue 9) -----------------------------------------------------------------


def test_a_changed_train_artifact_makes_evaluate_plot_and_report_stale(workspace, tmp_path):
    from cifarcli.config import TrainConfig
    from cifarcli.evaluate import evaluate_model

    config = TrainConfig(lam=0.1, eta=0.01, n_epochs=2)
    run = stages.train(workspace, config)
    old = stages.evaluate(workspace, run)
    stages.plot(workspace, run)
    settings = tmp_path / "s.toml"
    settings.write_text(SETTINGS)
    workflows.report(workspace, settings)
    rows = {r["stage"]: r["state"] for r in stages.status(workspace, config)}
    assert rows == {
        "dataset": "cached",
        "gradcheck": "missing",
        "train": "cached",
        "evaluate": "cached",
        "plot": "cached",
    }

    # The same run ID, other weights: e.g. a `train --force` that came out differently.
    payload = {**run.payload, "W": run.payload["W"] * 3}
    info = run.meta["info"]
    data_key = run.meta["inputs"]["dataset"]
    rewritten = workspace.store.get_or_compute(
        "train",
        stages.TRAIN.version,
        run.meta["params"],
        run.meta["inputs"],
        lambda: (payload, info),
        force=True,
        depends=[("dataset", data_key)],
    )
    assert rewritten.key == run.key and rewritten.meta["payload_sha256"] != run.meta["payload_sha256"]
    rows = {r["stage"]: (r["state"], r["reason"]) for r in stages.status(workspace, config)}
    assert rows["evaluate"][0] == rows["plot"][0] == "stale" and "older train artifact" in rows["evaluate"][1]
    assert rows["train"] == ("cached", None)

    messages = []
    workspace.log = workspace.store.log = messages.append
    workspace.events.clear()
    run = stages.find_run(workspace, run.key)
    new = stages.evaluate(workspace, run)
    assert new.status == "computed" and new.key == old.key  # same key, recomputed
    assert messages == [
        f"evaluate/{old.key} was made from an older train artifact (train/{run.key}); removing it and recomputing"
    ]
    data = stages.prepared(stages.dataset_by_key(workspace, data_key), config.split, config.val_size, config.dtype)
    expected = evaluate_model(payload["W"], payload["b"], config.lam, data)
    assert new.payload["test"] == expected["test"] and new.payload["test"] != old.payload["test"]
    doc = workflows.report(workspace, settings)
    assert doc["runs"][0]["metrics"]["test"] == expected["test"]  # the report shows the new numbers
    assert ("report", workspace.events[-1][1], "computed") in workspace.events
    assert {r["state"] for r in stages.status(workspace, config)} == {"cached", "missing"}


def test_an_artifact_made_before_inputs_were_recorded_counts_as_stale(workspace):
    from cifarcli.config import TrainConfig

    run = stages.train(workspace, TrainConfig(lam=0.1, eta=0.01, n_epochs=2))
    made = stages.evaluate(workspace, run)
    meta = json.loads((made.path / META).read_text())
    assert meta["input_sha256"] == {f"train/{run.key}": run.meta["payload_sha256"]}
    del meta["input_sha256"]  # as every meta.json written before this check existed
    (made.path / META).write_text(json.dumps(meta))
    assert workspace.store.state("evaluate", made.key)[0] == "stale"
    again = stages.evaluate(workspace, run)
    assert again.status == "computed"
    assert without_predictions(again.payload) == without_predictions(made.payload)
    for split, predicted in made.payload["predictions"].items():
        assert np.array_equal(again.payload["predictions"][split], predicted)
    assert workspace.store.state("evaluate", made.key) == ("cached", None)
