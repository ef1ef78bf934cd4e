"""A doctored cache and the cache's edge: nothing found on disk runs, hangs or crashes, every result is recomputed.

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

The edge (links, special files, doctored state, allocation bombs, numbers out of range,
another user's artifact): a command that could hang (a FIFO, /dev/zero) runs as a real
process with a timeout.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import pkgutil
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import joblib
import numpy as np
import pytest

from cifarcli import safe_pickle, stages, workflows
from cifarcli.evaluate import without_predictions
from cifarcli.store import META, PAYLOAD, artifact_key
from doctored import (
    RUN,
    SETTINGS,
    STAGES,
    Evil,
    artifact_folder,
    assert_recomputed,
    assert_whole,
    comparable,
    doctor,
    invoke,
    notices,
    stage_command,
)
from procs import without_phases


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


def cli(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """cifarcli as a real process; a hang fails the test instead of blocking the run."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("CIFARCLI_CACHE_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "cifarcli", *map(str, args)],
        cwd=cwd,
        env=env,
        timeout=timeout,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def one_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2, lines  # the error and its hint
    return result.stderr


def listed_runs() -> dict:
    """run_id -> row of `cifarcli runs --json` (the reference holds the sweep's runs too)."""
    result = invoke("runs", "--json")
    assert result.exit_code == 0, result.stderr
    notices(result)
    return {row["run_id"]: row for row in json.loads(result.stdout)["runs"]}


def rewrite_meta(folder: Path, change) -> None:
    meta = json.loads((folder / META).read_text())
    change(meta)
    (folder / META).write_text(json.dumps(meta))


# -- 1. a link inside the cache is never followed -----------------------------------------------


@pytest.fixture
def thesis(tmp_path_factory) -> Path:
    """The user's precious folder outside the cache, with names the store would otherwise touch."""
    home = tmp_path_factory.mktemp("home") / "thesis"
    for name in (
        "chapter1.tex",
        ".tmp-abc-trash",
        "0123456789abcdef/meta.json",
        "0123456789abcdef/payload.joblib",
        ".scratch/k/.checkpoint.x.tmp",
        "x.part",
        ".y.tmp",
    ):
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text("mine")
    return home


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ls_gc_and_clear_leave_a_linked_folder_alone_and_unlink_only_the_links(ws, thesis):
    before = tree(thesis)
    cache_dir = ws / "cache"
    (cache_dir / "plot_old").symlink_to(thesis)  # a stage-like folder
    (cache_dir / "train" / "feedfacefeedface").symlink_to(thesis)  # an artifact-like folder
    shutil.rmtree(cache_dir / "downloads", ignore_errors=True)
    (cache_dir / "downloads").symlink_to(thesis)
    (cache_dir / "evaluate" / ".scratch").symlink_to(thesis)
    listed = invoke("cache", "ls", "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)["artifacts"]
    linked = {(r["stage"], r["key"]): r["damaged"] for r in rows if "damaged" in r}
    assert set(linked) == {("plot_old", ""), ("downloads", ""), ("train", "feedfacefeedface")}, linked
    assert all("symbolic link" in reason and "left alone" in reason for reason in linked.values())
    assert not any(r["stage"] == "plot_old" and r["key"] for r in rows)  # the target's folders are not listed
    verified = invoke("cache", "verify", "--json")
    assert verified.exit_code == 1
    assert {(r["stage"], r["key"]) for r in json.loads(verified.stdout)["damaged"]} == set(linked)
    assert invoke("cache", "gc").exit_code == 0
    assert tree(thesis) == before
    cleared = invoke("cache", "clear", "--yes")
    assert cleared.exit_code == 0, cleared.stderr
    assert tree(thesis) == before
    assert not any(p.is_symlink() for p in cache_dir.rglob("*"))  # the links themselves went


def test_an_artifact_folder_that_is_a_link_is_not_read_and_is_replaced(ws, reference, tmp_path_factory):
    folder = artifact_folder(ws / "cache", "evaluate", reference["run_id"])
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "evaluation"
    shutil.move(folder, elsewhere)
    doctor(elsewhere, {"not": "an evaluation"})  # whole and consistent, but it must never be read
    before = sorted(p.name for p in elsewhere.iterdir())
    folder.symlink_to(elsewhere)
    result = invoke(*stage_command("evaluate", reference["run_id"]))
    assert_recomputed(result, reference, "evaluate", "symbolic link", folder.name)
    assert folder.is_dir() and not folder.is_symlink()
    assert sorted(p.name for p in elsewhere.iterdir()) == before


# -- 2. special files: no hang, no memory exhaustion --------------------------------------------


@pytest.mark.parametrize("where", ["meta", "workspace"])
def test_a_fifo_as_meta_or_workspace_file_never_blocks(ws, reference, where):
    folder = artifact_folder(ws / "cache", "evaluate", reference["run_id"])
    target = folder / META if where == "meta" else ws / "cache" / "workspace.json"
    target.unlink()
    os.mkfifo(target)
    for command in (("runs", "--json"), ("cache", "ls", "--json"), ("status", *RUN, "--json")):
        result = cli(*command, cwd=ws, timeout=60)
        assert result.returncode == 0, (command, result.stderr)
        one_line(result)
    verified = cli("cache", "verify", "--json", cwd=ws, timeout=60)
    assert verified.returncode == (1 if where == "meta" else 0), verified.stderr
    result = cli("train", *RUN, "--json", cwd=ws, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run_id"] == reference["run_id"]


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "/proc/self/mem"])
def test_a_payload_that_is_no_regular_file_is_damaged_named_and_recomputed(ws, reference, kind):
    folder = artifact_folder(ws / "cache", "evaluate", reference["run_id"])
    (folder / PAYLOAD).unlink()
    if kind == "fifo":
        os.mkfifo(folder / PAYLOAD)
    else:
        (folder / PAYLOAD).symlink_to(kind)
    rewrite_meta(folder, lambda meta: meta.update(payload_size=0))
    status = cli("status", *RUN, "--json", cwd=ws, timeout=60)
    assert status.returncode == 0, status.stderr
    assert {r["stage"]: r["state"] for r in json.loads(status.stdout)["stages"]}["evaluate"] == "damaged"
    verified = cli("cache", "verify", "--json", cwd=ws, timeout=60)
    assert verified.returncode == 1 and folder.name in verified.stdout
    result = cli(*stage_command("evaluate", reference["run_id"]), cwd=ws, timeout=120)
    assert result.returncode == 0, result.stderr
    [line] = without_phases([line for line in result.stderr.splitlines() if line.strip()])
    assert f"evaluate/{folder.name}/{PAYLOAD}" in line and "recomputing" in line, line
    assert (folder / PAYLOAD).is_file() and not (folder / PAYLOAD).is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_settings_file_that_never_ends_is_one_error_line(tmp_path, kind):
    settings = tmp_path / "s.toml"
    if kind == "fifo":
        os.mkfifo(settings)
    else:
        settings.symlink_to(kind)
    result = cli("report", "--config", settings, "--jobs", "1", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "s.toml" in one_line(result)


def test_a_huge_sparse_meta_json_is_damaged_without_being_read(ws, reference):
    folder = artifact_folder(ws / "cache", "train", reference["run_id"])
    with open(folder / META, "r+b") as handle:
        handle.truncate(2 << 30)  # 2 GB of holes: reading it costs 2 GB
    result = cli("runs", "--json", cwd=ws, timeout=60)
    assert result.returncode == 0, result.stderr
    assert folder.name not in {row["run_id"] for row in json.loads(result.stdout)["runs"]}  # damaged: not listed
    listed = json.loads(cli("cache", "ls", "--json", cwd=ws, timeout=60).stdout)["artifacts"]
    [row] = [r for r in listed if r["key"] == folder.name]
    assert "bytes, more than the" in row["damaged"]


# -- 3. doctored state gives a notice, never a traceback ------------------------------------------


def _deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("where", ["meta", "workspace"])
@pytest.mark.parametrize("depth", [100_000, 500])
def test_deeply_nested_json_is_damaged_not_a_recursion_error(ws, reference, where, depth):
    folder = artifact_folder(ws / "cache", "evaluate", reference["run_id"])
    if where == "meta":
        rewrite_meta(folder, lambda meta: meta["info"].update(deep=json.loads(_deep(min(depth, 500)))))
        if depth > 500:
            (folder / META).write_text(_deep(depth))
    else:
        (ws / "cache" / "workspace.json").write_text(_deep(depth))
    for command in (("runs", "--json"), ("cache", "ls", "--json"), ("status", *RUN, "--json")):
        result = invoke(*command)
        assert result.exit_code == 0, (command, result.stderr)
        notices(result)
    assert invoke("cache", "verify", "--json").exit_code == (1 if where == "meta" else 0)
    result = invoke(*stage_command("evaluate", reference["run_id"]))
    assert result.exit_code == 0, result.stderr
    assert len(notices(result)) == (1 if where == "meta" else 2)


def test_an_evaluate_meta_of_the_wrong_form_does_not_reach_runs(ws, reference):
    folder = artifact_folder(ws / "cache", "evaluate", reference["run_id"])
    rewrite_meta(folder, lambda meta: meta["info"].update(test=[1, 2]))
    assert listed_runs()[reference["run_id"]]["test_acc"] is None  # the evaluation is damaged: not shown
    assert invoke("cache", "verify").exit_code == 1


@pytest.mark.parametrize(
    "created", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "2020-01-01T00:00:00", "yesterday"]
)
def test_an_absurd_creation_date_is_damaged(ws, reference, created):
    folder = artifact_folder(ws / "cache", "train", reference["run_id"])
    rewrite_meta(folder, lambda meta: meta.update(created=created))
    for tz in ("UTC", "Pacific/Kiritimati", "Etc/GMT+12"):
        os.environ["TZ"] = tz
        try:
            assert folder.name not in listed_runs()
        finally:
            del os.environ["TZ"]
    [row] = [r for r in json.loads(invoke("cache", "verify", "--json").stdout)["damaged"] if r["key"] == folder.name]
    assert "created" in row["reason"]


def test_a_planted_train_artifact_without_inputs_is_one_error_line(ws, reference):
    cache_dir = ws / "cache"
    source = artifact_folder(cache_dir, "train", reference["run_id"])
    meta = json.loads((source / META).read_text())
    key = artifact_key("train", meta["version"], meta["params"], {})
    planted = cache_dir / "train" / key
    shutil.copytree(source, planted)
    rewrite_meta(planted, lambda m: m.update(key=key, inputs={}, input_sha256={}))
    for command in (
        ("evaluate", "--run", key),
        ("plot", "--run", key),
        ("ensemble", "--run", key, "--run", reference["run_id"]),
    ):
        result = invoke(*command)
        assert result.exit_code in (1, 2), (command, result.stdout)
        assert key in one_line(result)
    assert planted.is_dir()  # nothing to retrain it from: left for `cache verify`/`clear`
    [row] = [r for r in json.loads(invoke("cache", "verify", "--json").stdout)["damaged"] if r["key"] == key]
    assert "inputs" in row["reason"]


# -- 4. the allow-list admits no allocation bomb ---------------------------------------------------


class _Call:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("bomb", ["bytearray", "ndarray", "memmap", "claimed-array"])
def test_a_small_payload_cannot_allocate_much(tmp_path, bomb):
    from joblib.numpy_pickle import NumpyArrayWrapper

    path = tmp_path / "payload.joblib"
    big = 300_000_000
    made = {
        "bytearray": _Call(bytearray, big),
        "ndarray": _Call(np.ndarray, (big,), "u1"),
        "memmap": _Call(np.memmap, str(tmp_path / "written"), "u1", "w+", 0, (big,)),
        "claimed-array": NumpyArrayWrapper(np.ndarray, (big,), "C", np.dtype("u1")),
    }[bomb]
    with open(path, "wb") as out:
        pickle.dump({"W": made}, out, protocol=4)
    assert path.stat().st_size < 400
    before = _peak_mb()
    with pytest.raises(safe_pickle.UnsafePickle):
        safe_pickle.safe_load(path)
    assert _peak_mb() - before < 100
    assert not (tmp_path / "written").exists()


def test_the_allow_list_still_loads_every_form_a_payload_takes(tmp_path):
    payload = {
        "W": np.arange(6, dtype=np.float32).reshape(2, 3),
        "F": np.asfortranarray(np.ones((2, 3))),
        "y": np.zeros(4, np.uint8),
        "s": np.float64(0.5),
        "n": np.int64(3),
        "png": b"\x89PNG",
        "rows": [1, 2.5, None, "x", True],
        "t": (1, 2),
        "set": {1},
    }
    joblib.dump(payload, tmp_path / "p.joblib")
    for mmap in (False, True):
        loaded = safe_pickle.safe_load(tmp_path / "p.joblib", mmap=mmap)
        assert set(loaded) == set(payload)
        for name in ("W", "F", "y"):
            assert np.array_equal(loaded[name], payload[name]) and loaded[name].dtype == payload[name].dtype
        assert [loaded[k] for k in ("s", "n", "png", "rows", "t", "set")] == [
            payload[k] for k in ("s", "n", "png", "rows", "t", "set")
        ]


def test_a_truncated_array_is_refused_before_it_is_allocated(tmp_path):
    joblib.dump({"W": np.ones(1000)}, tmp_path / "p.joblib")
    data = (tmp_path / "p.joblib").read_bytes()
    (tmp_path / "p.joblib").write_bytes(data[:-4000])
    with pytest.raises(safe_pickle.UnsafePickle, match="in .* bytes"):
        safe_pickle.safe_load(tmp_path / "p.joblib")


# -- 6. numbers out of range are damaged; verify compares meta with payload -----------------------

OUT_OF_RANGE = {
    "val_acc-7.5": lambda meta: meta["info"]["final"].update(val_acc=7.5),
    "val_acc-1e308": lambda meta: meta["info"]["final"].update(val_acc=1e308),
    "val_acc-true": lambda meta: meta["info"]["final"].update(val_acc=True),
    "train_loss-negative": lambda meta: meta["info"]["final"].update(train_loss=-1.0),
    "diverged_at-minus-5": lambda meta: meta["info"].update(diverged_at=-5),
    "diverged_at-past-the-epochs": lambda meta: meta["info"].update(diverged_at=99),
    "epoch-past-the-epochs": lambda meta: meta["info"]["final"].update(epoch=99),
}


@pytest.mark.parametrize("case", OUT_OF_RANGE)
def test_a_train_meta_number_out_of_range_is_damaged(ws, reference, case):
    folder = artifact_folder(ws / "cache", "train", reference["run_id"])
    rewrite_meta(folder, OUT_OF_RANGE[case])
    assert folder.name not in listed_runs()
    [row] = [r for r in json.loads(invoke("cache", "verify", "--json").stdout)["damaged"] if r["key"] == folder.name]
    assert "meta.json" in row["reason"]


@pytest.mark.parametrize("accuracy", [True, 1.5, -0.1])
def test_an_evaluate_accuracy_out_of_range_is_not_shown(ws, reference, accuracy):
    folder = artifact_folder(ws / "cache", "evaluate", reference["run_id"])
    rewrite_meta(folder, lambda meta: meta["info"]["test"].update(accuracy=accuracy))
    assert listed_runs()[reference["run_id"]]["test_acc"] is None


@pytest.mark.parametrize(
    "stage, change",
    [
        pytest.param("train", lambda meta: meta["info"]["final"].update(val_acc=0.99), id="train-val_acc"),
        pytest.param("train", lambda meta: meta["info"].update(diverged_at=1), id="train-diverged_at"),
        pytest.param("evaluate", lambda meta: meta["info"]["test"].update(accuracy=0.99), id="evaluate-accuracy"),
    ],
)
def test_cache_verify_finds_meta_metrics_that_are_not_the_payloads(ws, reference, stage, change):
    folder = artifact_folder(ws / "cache", stage, reference["run_id"])
    rewrite_meta(folder, change)
    result = invoke("cache", "verify", "--json")
    assert result.exit_code == 1
    [row] = json.loads(result.stdout)["damaged"]
    assert row["key"] == folder.name and "is not the payload's" in row["reason"], row


# -- 9. another user's artifact is unreadable, not damaged ------------------------------------------


@contextlib.contextmanager
def as_another_user():
    """Run as a user who may not read files of mode 0600 (root reads everything: it becomes nobody)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def shared(reference, monkeypatch, offline):
    """A copy of the reference cache in a folder every user may enter, as the working folder."""
    root = Path(tempfile.mkdtemp(prefix="cifarcli-shared-"))
    root.chmod(0o755)
    shutil.copytree(reference["root"] / "cache", root / "cache")
    for path in [root / "cache", *(root / "cache").rglob("*")]:  # a group-shared cache: everything readable
        path.chmod(0o755 if path.is_dir() else 0o644)
    # rich imports these on first use, which another user could not do from root's Python
    import rich._unicode_data

    for name in ["rich._emoji_codes"] + [
        f"rich._unicode_data.{m.name}" for m in pkgutil.iter_modules(rich._unicode_data.__path__)
    ]:
        importlib.import_module(name)
    monkeypatch.chdir(root)
    monkeypatch.delenv("CIFARCLI_CACHE_DIR", raising=False)
    yield root
    shutil.rmtree(root)


@pytest.mark.parametrize("stage, unreadable", [("train", META), ("train", PAYLOAD), ("evaluate", META)])
def test_an_unreadable_artifact_is_named_and_never_moved(shared, reference, stage, unreadable):
    from procs import checksums

    folder = artifact_folder(shared / "cache", stage, reference["run_id"])
    command = (
        ("evaluate", "--run", reference["run_id"], "--json")
        if stage == "train"
        else stage_command("evaluate", reference["run_id"])
    )
    assert invoke(*command).exit_code == 0  # (every lazy import done before the user changes)
    before = checksums(shared / "cache")
    (folder / unreadable).chmod(0o600 if os.geteuid() == 0 else 0)
    with as_another_user():
        result = invoke(*command)
        status = invoke("status", *RUN, "--json")
        verified = invoke("cache", "verify", "--json")
        runs = invoke("runs", "--json")
    assert result.exit_code == 1, result.stdout
    message = one_line(result)
    assert (
        "cannot read" in message and f"{stage}/{folder.name}/{unreadable}" in message and "cannot write" not in message
    )
    assert status.exit_code == 0 and "cannot write" not in status.stderr
    assert {r["stage"]: r["state"] for r in json.loads(status.stdout)["stages"]}[stage] == "unreadable"
    assert verified.exit_code == 1
    [row] = json.loads(verified.stdout)["damaged"]
    assert row["key"] == folder.name and "cannot read" in row["reason"]
    assert runs.exit_code == 0 and "cannot write" not in runs.stderr
    (folder / unreadable).chmod(0o644)
    assert checksums(shared / "cache") == before  # nothing moved, nothing recomputed
    assert not [p for p in folder.parent.iterdir() if "trash" in p.name]


@pytest.mark.parametrize("linked", ["evaluate", ".locks", "train/.scratch"])
def test_nothing_is_written_through_a_link_inside_the_cache(ws, reference, tmp_path_factory, linked):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    target = ws / "cache" / linked
    shutil.rmtree(target, ignore_errors=True)
    target.symlink_to(elsewhere)
    command = (
        ("train", "--lam", "0.2", "--eta", "0.01", "--n-epochs", "2", "--json")
        if "scratch" in linked
        else ("evaluate", *RUN, "--force", "--json")
    )
    result = invoke(*command)
    assert result.exit_code == 2, result.stdout
    assert f"{linked} is a symbolic link" in one_line(result)
    assert list(elsewhere.iterdir()) == []
