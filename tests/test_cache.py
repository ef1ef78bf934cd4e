"""The artifact store: keys, atomic commits, one computation per key, damage detection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cifarcli import upkeep
from cifarcli.store import META, PAYLOAD, Store, artifact_key


def test_key_is_stable_and_sensitive_to_every_part():
    base = artifact_key("train", 1, {"lam": 0.1, "eta": 0.001}, {"dataset": "abc"})
    assert base == artifact_key("train", 1, {"eta": 0.001, "lam": 0.1}, {"dataset": "abc"})  # order-free
    assert len(base) == 16 and int(base, 16) >= 0
    variants = [
        artifact_key("evaluate", 1, {"lam": 0.1, "eta": 0.001}, {"dataset": "abc"}),
        artifact_key("train", 2, {"lam": 0.1, "eta": 0.001}, {"dataset": "abc"}),
        artifact_key("train", 1, {"lam": 0.1, "eta": 0.01}, {"dataset": "abc"}),
        artifact_key("train", 1, {"lam": 0.1, "eta": 0.001}, {"dataset": "abd"}),
    ]
    assert base not in variants and len(set(variants)) == 4


def test_key_is_the_same_in_another_process():
    code = "from cifarcli.store import artifact_key; print(artifact_key('train', 1, {'lam': 0.1}, {'d': 'x'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == artifact_key("train", 1, {"lam": 0.1}, {"d": "x"})


def test_compute_once_then_hit_with_meta(tmp_path):
    events = []
    store = Store(tmp_path, observer=lambda *event: events.append(event))
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(5)}, {"note": "hello"}

    first = store.get_or_compute("stage", 1, {"a": 1}, {}, compute)
    second = store.get_or_compute("stage", 1, {"a": 1}, {}, compute)
    assert first.status == "computed" and second.status == "hit" and len(calls) == 1
    np.testing.assert_array_equal(second.payload["x"], np.arange(5))
    meta = json.loads((tmp_path / "stage" / first.key / META).read_text())
    assert meta["params"] == {"a": 1} and meta["info"] == {"note": "hello"}
    assert meta["payload_size"] == (tmp_path / "stage" / first.key / PAYLOAD).stat().st_size
    assert len(meta["payload_sha256"]) == 64 and meta["cifarcli_version"]
    assert [e[2] for e in events] == ["computed", "hit"]


def test_force_recomputes_and_replaces(tmp_path):
    store = Store(tmp_path)
    values = iter([1, 2])
    store.get_or_compute("s", 1, {}, {}, lambda: ({"v": next(values)}, {}))
    again = store.get_or_compute("s", 1, {}, {}, lambda: ({"v": next(values)}, {}), force=True)
    assert again.payload == {"v": 2}
    assert store.load("s", again.key).payload == {"v": 2}
    assert [p.name for p in (tmp_path / "s").iterdir()] == [again.key]  # no trash left


def test_memory_mapped_load(tmp_path):
    store = Store(tmp_path)
    made = store.get_or_compute("d", 1, {}, {}, lambda: ({"x": np.ones((100, 3072), np.uint8)}, {}), mmap=True)
    assert isinstance(made.payload["x"], np.memmap)
    assert isinstance(store.load("d", made.key, mmap=True).payload["x"], np.memmap)


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta", "garbage"])
def test_damaged_payload_is_reported_removed_and_recomputed(tmp_path, damage):
    messages = []
    store = Store(tmp_path, log=messages.append)
    made = store.get_or_compute("s", 1, {}, {}, lambda: ({"x": np.arange(1000)}, {}))
    payload, meta = made.path / PAYLOAD, made.path / META
    if damage == "truncate":
        payload.write_bytes(payload.read_bytes()[:-100])
    elif damage == "flip":
        data = bytearray(payload.read_bytes())
        data[-50] ^= 0xFF
        payload.write_bytes(bytes(data))
    elif damage == "meta":
        meta.write_text("{not json")
    else:
        payload.write_bytes(b"\0" * payload.stat().st_size)
    again = store.get_or_compute("s", 1, {}, {}, lambda: ({"x": np.arange(1000)}, {}))
    assert again.status == "computed"
    assert len(messages) == 1 and f"damaged artifact s/{made.key}" in messages[0]
    np.testing.assert_array_equal(store.load("s", made.key).payload["x"], np.arange(1000))


def test_verify_finds_same_size_tampering_that_mtime_hides(tmp_path):
    store = Store(tmp_path)
    made = store.get_or_compute("s", 1, {}, {}, lambda: ({"x": np.arange(1000)}, {}))
    payload = made.path / PAYLOAD
    stat = payload.stat()
    data = bytearray(payload.read_bytes())
    data[-50] ^= 0xFF
    payload.write_bytes(bytes(data))
    os.utime(payload, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # hide the edit from the fast check
    assert [row["ok"] for row in upkeep.verify(store)] == [False]
    assert "checksum" in upkeep.verify(store)[0]["reason"]


def test_ls_reads_meta_only(tmp_path):
    store = Store(tmp_path)
    store.get_or_compute("a", 1, {"p": 1}, {}, lambda: ({"x": 1}, {}))
    store.get_or_compute("b", 1, {"p": 2}, {}, lambda: ({"x": 2}, {}))
    (tmp_path / "b").joinpath(upkeep.ls(store, "b")[0]["key"], PAYLOAD).unlink()  # ls must not need payloads
    rows = upkeep.ls(store)
    assert [(r["stage"], r["params"]) for r in rows] == [("a", {"p": 1}), ("b", {"p": 2})]
    assert upkeep.ls(store, "a")[0]["size"] > 0


_SLOW_WRITER = textwrap.dedent("""
    import sys, time, numpy as np
    from cifarcli.store import Store
    def compute():
        open(sys.argv[2], "w").close()   # tell the parent we are computing
        time.sleep(float(sys.argv[3]))
        return {"x": np.arange(10)}, {}
    art = Store(sys.argv[1]).get_or_compute("s", 1, {}, {}, compute)
    print(art.status)
""")


def _start_writer(tmp_path, marker, sleep):
    return subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(tmp_path / "cache"), str(marker), str(sleep)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _wait_for(path, timeout=20):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_killed_writer_leaves_nothing_that_reads_as_an_artifact(tmp_path):
    marker = tmp_path / "computing"
    child = _start_writer(tmp_path, marker, 30)
    _wait_for(marker)
    child.send_signal(signal.SIGKILL)
    child.wait()
    store = Store(tmp_path / "cache")
    assert upkeep.ls(store) == []
    # The dead writer's lock does not block: the next caller computes at once.
    made = store.get_or_compute("s", 1, {}, {}, lambda: ({"x": np.arange(10)}, {}))
    assert made.status == "computed"


def test_killed_mid_commit_leftovers_are_cleaned_by_gc(tmp_path):
    store = Store(tmp_path)
    leftover = tmp_path / "s" / ".tmp-0123456789abcdef-xyz"
    leftover.mkdir(parents=True)
    (leftover / PAYLOAD).write_bytes(b"half")
    assert upkeep.ls(store) == []
    assert upkeep.gc(store) == [leftover] and not leftover.exists()


def test_two_processes_compute_one_key_once(tmp_path):
    first = _start_writer(tmp_path, tmp_path / "m1", 1.5)
    _wait_for(tmp_path / "m1")
    second = _start_writer(tmp_path, tmp_path / "m2", 0)
    outs = [first.communicate(timeout=60)[0].strip(), second.communicate(timeout=60)[0].strip()]
    assert outs == ["computed", "hit"]
    assert not (tmp_path / "m2").exists()  # the second never ran compute


def test_scratch_roundtrip_and_unreadable_checkpoint(tmp_path):
    messages = []
    store = Store(tmp_path, log=messages.append)
    store.save_scratch("train", "k", "checkpoint", {"epoch": 3})
    assert store.load_scratch("train", "k", "checkpoint") == {"epoch": 3}
    (store.scratch("train", "k") / "checkpoint").write_bytes(b"garbage")
    assert store.load_scratch("train", "k", "checkpoint") is None and "unreadable" in messages[0]
    store.drop_scratch("train", "k")
    assert not store.scratch("train", "k").exists()


def test_clear_by_stage(tmp_path):
    store = Store(tmp_path)
    store.get_or_compute("a", 1, {}, {}, lambda: ({}, {}))
    store.get_or_compute("b", 1, {}, {}, lambda: ({}, {}))
    assert upkeep.clear(store, "a") == 1
    assert [r["stage"] for r in upkeep.ls(store)] == ["b"]
    assert upkeep.clear(store) == 1 and upkeep.ls(store) == []


def test_cache_keys_and_run_ids_are_pinned(workspace):
    """Content checks (input_sha256) must never change a key: every existing cache and run ID stays valid
    (but for the one planned change of issue 17)."""
    from cifarcli import data, stages
    from cifarcli.config import GradcheckConfig, TrainConfig

    data_key = "0123456789abcdef"
    run = stages.train_key(TrainConfig(0.1, 0.001), data_key)
    # The dataset is keyed by its decoded content (issue 17): every run ID changed once, on purpose.
    assert stages.DATASET.key({"content_sha256": "ab" * 32}, {}) == "84ae79959a96b665"
    pixels = np.arange(5 * 3072, dtype=np.uint8).reshape(5, 3072)
    labels = np.arange(5, dtype=np.uint8)
    tiny = data.Cifar10(pixels, labels, pixels[:2], labels[:2], tuple("abcdefghij"), 1)
    assert data.content_sha256(tiny) == "fddb9cffb609f91a7109dab784e217c8fb94b7c7fc8ff0a73521767ac707ee73"
    assert stages.GRADCHECK.key(GradcheckConfig().key_params(), {"dataset": data_key}) == "27023fcc20ae757f"
    assert run == "47603d9553e0f29c"
    assert stages.train_key(TrainConfig(0.1, 0.001, shuffle=True, flip=0.5, loss="bce"), data_key) == "d569ce1bd5b0de56"
    # evaluate 3 (predictions, intervals), plot 3 and report 4 made other payloads: new keys, on purpose
    assert stages.run_key(stages.EVALUATE, run) == "afd0ad64f25f8fab"
    assert stages.run_key(stages.PLOT, run) == "5d33c2613f960aae"
    assert (stages.EVALUATE.version, stages.PLOT.version, stages.REPORT.version) == (3, 3, 4)
    assert stages.REPORT.key({}, {"gradcheck": "g" * 16, "run0": run}) == "12593140e93cbfd7"
    grid = {"lam": [0.0, 0.1], "eta": [0.001], "n_batch": [100], "n_epochs": [40]}
    assert stages.SWEEP.key({"grid": grid}, {"dataset": data_key, "run0000": run}) == "890686415626a5b0"

    # And the stages really use these formulas: a tiny real pipeline, keys recomputed from its inputs.
    config = TrainConfig(0.1, 0.01, n_epochs=2)
    trained = stages.train(workspace, config)
    assert trained.key == stages.train_key(config, stages.dataset(workspace).key)
    assert stages.evaluate(workspace, trained).key == stages.run_key(stages.EVALUATE, trained.key)
    stages.plot(workspace, trained)
    assert (workspace.store.path("plot", stages.run_key(stages.PLOT, trained.key)) / META).is_file()


def test_the_history_schema_names_the_keys_training_records():
    from cifarcli import schemas, train

    assert schemas.HISTORY_KEYS == train.HISTORY_KEYS  # a literal there, so opening the store imports no numpy


def test_an_old_cache_keyed_by_the_source_file_migrates_once(cli, tiny_archive):
    """A cache from before issue 17 (dataset keyed by its file's sha256) keeps working: the dataset is
    stored again under its content's key without its source, every run ID changes once, the old runs
    leave `runs`, and `cache gc` removes the old dataset and everything made from it."""
    from pathlib import Path

    from cifarcli import stages
    from cifarcli.config import TrainConfig

    notices = []
    ws = stages.Workspace(Path("cache"), log=notices.append)
    current = stages.fetch(ws, str(tiny_archive))
    source_sha = current.meta["info"]["sha256"]
    payload = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in current.payload.items()}
    old_data = ws.store.get_or_compute(
        "dataset", 1, {"sha256": source_sha}, {}, lambda: (payload, current.meta["info"])
    )
    config = TrainConfig(0.1, 0.01, n_epochs=1)
    old_run = stages.train(ws, config, data_artifact=old_data)
    old_eval = stages.evaluate(ws, old_run)
    kept = stages.train(ws, TrainConfig(0.5, 0.01, n_epochs=1), data_artifact=current)
    ws.store.remove(ws.store.path("dataset", current.key))
    (Path("cache") / "workspace.json").write_text(
        json.dumps(
            {
                "dataset": {"key": old_data.key, "source": "/gone.tar.gz", "path": "/gone.tar.gz"},
                "names": {"old": old_run.key, "new": kept.key},
            }
        )
    )
    assert old_data.key != current.key

    cli_runs = cli("runs", "--json")
    assert cli_runs.exit_code == 0  # old runs are unreachable
    assert [row["run_id"] for row in json.loads(cli_runs.stdout)["runs"]] == [kept.key]
    migrated = stages.dataset(ws)
    assert migrated.key == current.key and migrated.status == "computed"  # from the old payload, no source
    assert any(f"dataset {old_data.key} is now {current.key}" in n and "cache gc" in n for n in notices)
    new_run = stages.train(ws, config)
    assert new_run.key == stages.train_key(config, current.key) != old_run.key
    state = json.loads((Path("cache") / "workspace.json").read_text())
    assert state["sources"][source_sha]["key"] == current.key  # the old source maps to the new key

    result = cli("cache", "gc", "--json")
    assert result.exit_code == 0, result.stderr
    gone = {str(Path(p)) for p in json.loads(result.stdout)["removed"]}
    assert gone == {
        str(ws.store.path(stage, key))
        for stage, key in [("dataset", old_data.key), ("train", old_run.key), ("evaluate", old_eval.key)]
    }
    assert {(r["stage"], r["key"]) for r in ws.cache_listing()} == {
        ("dataset", current.key),
        ("train", new_run.key),
        ("train", kept.key),
    }
    assert json.loads((Path("cache") / "workspace.json").read_text())["names"] == {"new": kept.key}
    again = cli("cache", "gc", "--json")
    assert json.loads(again.stdout)["removed"] == []
