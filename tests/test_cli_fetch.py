"""`cifarcli fetch` through the real CLI: import, download, safety, bad input, discovery.

Every test runs the Typer app in its own tmp_path (see the ``cli`` fixture), on
real files and a real loopback HTTP server. Nothing here can reach the internet:
tests that could fall back to the official download point ``source_files.OFFICIAL`` at
a closed loopback port or at the loopback server first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

import tinycifar
from cifarcli import data, source_files, stages
from httpserver import http_server  # noqa: F401  (pytest fixture)

BIN = "cifar-10-batches-bin"
PY = "cifar-10-batches-py"
N = 20  # records per tiny batch in the hand-made archives


# --------------------------------------------------------------------------- helpers


def fetch_json(cli, *args) -> tuple[dict, object]:
    result = cli("fetch", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result


def error_line(result, *words: str) -> str:
    """The one ``error:`` line on stderr; it must contain every word and no traceback may appear."""
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def quiet_failure(cli, *args, code: int, words=()) -> str:
    """Run with --quiet: stderr must be exactly one error line, stdout empty."""
    result = cli(*args, "--quiet")
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return error_line(result, *words)


def dataset_artifacts(cache: Path) -> list[str]:
    """Committed dataset artifacts (folders not starting with a dot) under ``cache``."""
    stage = cache / "dataset"
    return sorted(p.name for p in stage.iterdir() if not p.name.startswith(".")) if stage.is_dir() else []


def snapshot(root: Path, ignore: Path) -> list[str]:
    """Every path under ``root`` except those inside ``ignore``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p != ignore and ignore not in p.parents)


def md5_of(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def tiny(fmt: str) -> dict[str, bytes]:
    members = tinycifar.binary_members if fmt == "binary" else tinycifar.python_members
    return members(n_per_batch=N, n_test=N)


def folder_of(fmt: str) -> str:
    return BIN if fmt == "binary" else PY


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, raw in members:
            tar.addfile(info, io.BytesIO(raw) if raw is not None else None)
    return path


def regular(name: str, raw: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    info.mode = 0o644
    return info, raw


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    """The same tiny images as a binary archive, a python archive and both extracted folders."""
    root = tmp_path_factory.mktemp("archives")
    return {
        "binary-archive": tinycifar.binary_archive(root / "cifar-10-binary.tar.gz"),
        "python-archive": tinycifar.python_archive(root / "cifar-10-python.tar.gz"),
        "binary-folder": tinycifar.write_folder(root / "bin", tinycifar.binary_members(), BIN),
        "python-folder": tinycifar.write_folder(root / "py", tinycifar.python_members(), PY),
    }


# --------------------------------------------------------------------------- importing


@pytest.mark.parametrize("kind", ["binary-archive", "python-archive", "binary-folder", "python-folder"])
def test_fetch_imports_each_layout_and_describes_it(cli, archives, kind):
    doc, _ = fetch_json(cli, "--source", archives[kind])
    assert doc["format"] == kind.split("-")[0]
    assert doc["n_train"] == 1000 and doc["n_test"] == 200 and doc["batch_size"] == 200
    assert doc["per_class"] == {"train": [100] * 10, "test": [20] * 10}
    assert doc["label_names"] == tinycifar.LABEL_NAMES
    assert doc["official"] is False and "not an official CIFAR-10 archive" in doc["note"]
    assert doc["cached"] is False
    assert doc["source"] == str(archives[kind].resolve())
    assert len(doc["dataset"]) == 16 and int(doc["dataset"], 16) >= 0
    assert dataset_artifacts(Path("cache")) == [doc["dataset"]]

    again, _ = fetch_json(cli, "--source", archives[kind])
    assert again["cached"] is True and again["dataset"] == doc["dataset"]
    assert again["md5"] == doc["md5"] and again["sha256"] == doc["sha256"]


def test_fetch_without_json_prints_a_summary_table(cli, archives):
    result = cli("fetch", "--source", archives["binary-archive"])
    assert result.exit_code == 0, result.stderr
    assert "binary" in result.stdout and "airplane" in result.stdout and "1000" in result.stdout
    assert "not the official archive" in result.stdout


@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_format_is_detected_from_content_not_name(cli, archives, tmp_path, fmt):
    renamed = tmp_path / "weird.name"
    renamed.write_bytes(archives[f"{fmt}-archive"].read_bytes())
    doc, _ = fetch_json(cli, "--source", renamed)
    assert doc["format"] == fmt
    assert doc["n_train"] == 1000 and doc["source"] == str(renamed.resolve())


def test_archive_checksums_are_reported(cli, archives):
    doc, _ = fetch_json(cli, "--source", archives["python-archive"])
    raw = archives["python-archive"].read_bytes()
    assert doc["md5"] == hashlib.md5(raw).hexdigest()
    assert doc["sha256"] == hashlib.sha256(raw).hexdigest()


def test_md5_pin_of_a_local_file_is_enforced(cli, archives):
    good = md5_of(archives["binary-archive"])
    doc, _ = fetch_json(cli, "--source", archives["binary-archive"], "--md5", good.upper())
    assert doc["md5"] == good
    line = quiet_failure(
        cli,
        "fetch",
        "--source",
        archives["binary-archive"],
        "--md5",
        "0" * 32,
        code=2,
        words=("md5 is " + good, "expected " + "0" * 32),
    )
    assert "cifar-10-binary.tar.gz" in line


def test_binary_and_python_versions_give_identical_arrays(cli, archives, tmp_path):
    ws = stages.Workspace(tmp_path / "cache")
    loaded = {}
    for kind in ("binary-archive", "python-archive", "python-folder"):
        doc, _ = fetch_json(cli, "--source", archives[kind])
        artifact = stages.dataset(ws)
        assert artifact.key == doc["dataset"]
        loaded[kind] = {
            k: np.array(v) for k, v in artifact.payload.items() if k in ("train_x", "train_y", "test_x", "test_y")
        }
    assert loaded["binary-archive"]["train_x"].shape == (1000, 3072)
    assert loaded["binary-archive"]["train_x"].dtype == np.uint8
    batches, (test_x, test_y) = tinycifar.make_arrays()
    np.testing.assert_array_equal(loaded["binary-archive"]["train_x"], np.concatenate([x for x, _ in batches]))
    np.testing.assert_array_equal(loaded["binary-archive"]["test_y"], test_y)
    for kind in ("python-archive", "python-folder"):
        for name, array in loaded["binary-archive"].items():
            np.testing.assert_array_equal(loaded[kind][name], array, err_msg=f"{kind} {name}")


def test_force_recomputes_the_dataset_with_the_same_key(cli, archives):
    first, _ = fetch_json(cli, "--source", archives["binary-archive"])
    forced, _ = fetch_json(cli, "--source", archives["binary-archive"], "--force")
    assert forced["cached"] is False and forced["dataset"] == first["dataset"]


# --------------------------------------------------------------------------- keyed by content


def test_every_form_of_the_same_images_is_one_dataset(cli, archives):
    """Binary or python, archive or folder: one key; after the first, each import is a cache hit,
    and each answer carries the checksums of the source it was given."""
    kinds = ["python-folder", "binary-archive", "python-archive", "binary-folder"]
    docs = [fetch_json(cli, "--source", archives[kind])[0] for kind in kinds]
    assert {doc["dataset"] for doc in docs} == {docs[0]["dataset"]}
    assert [doc["cached"] for doc in docs] == [False, True, True, True]
    assert dataset_artifacts(Path("cache")) == [docs[0]["dataset"]]
    for kind, doc in zip(kinds, docs):
        assert doc["format"] == kind.split("-")[0] and doc["source"] == str(archives[kind].resolve())
        assert (doc["md5"], doc["sha256"]) == source_files.checksums(archives[kind])


def test_run_ids_agree_across_forms_of_the_data(cli, archives, tmp_path):
    run_ids = set()
    for kind in ("binary-archive", "python-archive", "binary-folder"):
        cache = tmp_path / f"cache-{kind}"
        fetch_json(cli, "--source", archives[kind], "--cache-dir", cache)
        result = cli("train", "--n-epochs", "1", "--cache-dir", cache, "--json")
        assert result.exit_code == 0, result.stderr
        run_ids.add(json.loads(result.stdout)["run_id"])
    assert len(run_ids) == 1


def test_other_images_or_class_names_are_another_dataset(archives):
    binary, _ = data.read_cifar10(archives["binary-archive"])
    key = data.content_sha256(binary)
    assert data.content_sha256(data.read_cifar10(archives["python-folder"])[0]) == key
    pixel = binary.train_x.copy()
    pixel[0, 0] ^= 1
    names = (*binary.label_names[:9], "lorry")
    swapped = np.concatenate([binary.train_x[1:2], binary.train_x[:1], binary.train_x[2:]])
    for changed in (
        {"train_x": pixel},
        {"label_names": names},
        {"train_x": swapped},
        {"train_x": binary.test_x, "test_x": binary.train_x},
    ):
        other = dataclasses.replace(binary, **changed)
        assert data.content_sha256(other) != key, list(changed)


def test_a_known_source_is_not_decoded_again(cli, archives, monkeypatch):
    first, _ = fetch_json(cli, "--source", archives["python-archive"])
    state = json.loads(Path("cache/workspace.json").read_text())
    assert state["sources"] == {first["sha256"]: {"key": first["dataset"], "format": "python"}}
    monkeypatch.setattr(data, "read_cifar10", lambda *a, **k: pytest.fail("decoded twice"))
    again, _ = fetch_json(cli, "--source", archives["python-archive"])
    assert again["cached"] is True and again["dataset"] == first["dataset"] and again["format"] == "python"


def test_a_damaged_memory_of_sources_is_ignored_and_rewritten(cli, archives):
    first, _ = fetch_json(cli, "--source", archives["binary-archive"])
    path = Path("cache/workspace.json")
    state = json.loads(path.read_text())
    state["sources"][first["sha256"]]["key"] = "not a key"
    path.write_text(json.dumps(state))
    again, result = fetch_json(cli, "--source", archives["binary-archive"])
    assert again["dataset"] == first["dataset"] and again["cached"] is True
    assert "ignoring damaged" in result.stderr and "sources" in result.stderr
    assert json.loads(path.read_text())["sources"][first["sha256"]]["key"] == first["dataset"]


# --------------------------------------------------------------------------- downloading

URL_PATH = "/cifar-10-binary.tar.gz"


def test_download_through_the_cli(cli, http_server, tiny_archive):
    body = tiny_archive.read_bytes()
    http_server.route(URL_PATH, body=body)
    url = http_server.url(URL_PATH)
    doc, result = fetch_json(cli, "--source", url, "--md5", md5_of(tiny_archive))
    assert doc["source"] == url and doc["format"] == "binary" and doc["n_train"] == 1000
    assert doc["md5"] == md5_of(tiny_archive)
    assert f"downloading {url}" in result.stderr
    [download] = Path("cache/downloads").iterdir()  # named by the URL's hash and its file name
    assert download.name.endswith("-cifar-10-binary.tar.gz") and download.read_bytes() == body
    assert http_server.ranges(URL_PATH) == [None]

    # Same bytes imported directly: the very same dataset, from the cache.
    direct, _ = fetch_json(cli, "--source", tiny_archive)
    assert direct["cached"] is True and direct["dataset"] == doc["dataset"]


def test_download_resumes_after_a_cut_connection(cli, http_server, tiny_archive, tmp_path):
    body = tiny_archive.read_bytes()
    cut = len(body) // 2
    http_server.route(URL_PATH, body=body, cut_after=cut, cut_times=1)
    url = http_server.url(URL_PATH)
    doc, _ = fetch_json(cli, "--source", url, "--md5", md5_of(tiny_archive))
    assert http_server.ranges(URL_PATH) == [None, f"bytes={cut}-"]
    [download] = Path("cache/downloads").iterdir()  # the .part was renamed, not left beside it
    assert download.name.endswith("-cifar-10-binary.tar.gz") and download.read_bytes() == body

    # The resumed download equals a direct import of the archive, array for array.
    ws_direct = stages.Workspace(tmp_path / "direct-cache")
    direct = stages.fetch(ws_direct, str(tiny_archive))
    assert direct.key == doc["dataset"]
    resumed = stages.dataset(stages.Workspace(tmp_path / "cache"))
    for name in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(resumed.payload[name], direct.payload[name])


def test_download_with_a_wrong_md5_leaves_nothing(cli, http_server, tiny_archive):
    http_server.route(URL_PATH, body=tiny_archive.read_bytes())
    url = http_server.url(URL_PATH)
    line = quiet_failure(
        cli,
        "fetch",
        "--source",
        url,
        "--md5",
        "0" * 32,
        code=2,
        words=(url, "checksum mismatch", "0" * 32, md5_of(tiny_archive)),
    )
    assert line.startswith("error: checksum mismatch")
    assert list(Path("cache/downloads").glob("*")) == []  # neither the archive nor its .part
    assert dataset_artifacts(Path("cache")) == []

    # Nothing bad was kept: the right pin now downloads afresh and succeeds.
    doc, _ = fetch_json(cli, "--source", url, "--md5", md5_of(tiny_archive))
    assert doc["n_train"] == 1000
    assert http_server.ranges(URL_PATH) == [None, None]


def test_download_with_a_wrong_md5_and_json_reports_the_error(cli, http_server, tiny_archive):
    http_server.route(URL_PATH, body=tiny_archive.read_bytes())
    url = http_server.url(URL_PATH)
    result = cli("fetch", "--source", url, "--md5", "0" * 32, "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 2 and url in doc["error"] and "checksum mismatch" in doc["error"]


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("text/html", b"<!doctype html><html><body>Please log in</body></html>"),
        ("application/octet-stream", b"<html><body>Not here</body></html>"),
    ],
)
def test_download_of_a_web_page_is_refused(cli, http_server, content_type, body):
    http_server.route(URL_PATH, body=body, content_type=content_type)
    url = http_server.url(URL_PATH)
    quiet_failure(cli, "fetch", "--source", url, code=2, words=(url, "web page instead of the archive"))
    assert list(Path("cache/downloads").glob("*")) == []
    assert dataset_artifacts(Path("cache")) == []


def test_download_of_a_missing_file_names_the_url_and_suggests_source(cli, http_server):
    url = http_server.url("/nothing/cifar-10-binary.tar.gz")
    line = quiet_failure(cli, "fetch", "--source", url, code=1, words=(url, "HTTP 404", "--source"))
    assert line.startswith("error: cannot download")
    assert len(http_server.requests) == 1  # a 404 is not retried
    assert dataset_artifacts(Path("cache")) == []


def test_default_download_uses_the_official_url_and_recognises_the_official_archive(
    cli, http_server, tiny_archive, monkeypatch, offline
):
    # Pretend the tiny archive is the official one, served from loopback.
    body = tiny_archive.read_bytes()
    http_server.route(URL_PATH, body=body)
    monkeypatch.setitem(
        source_files.OFFICIAL,
        "binary",
        source_files.OfficialArchive("binary", http_server.url(URL_PATH), md5_of(tiny_archive), len(body)),
    )
    doc, result = fetch_json(cli)
    assert doc["official"] is True and doc["note"] is None
    assert doc["source"] == http_server.url(URL_PATH)
    assert http_server.ranges(URL_PATH) == [None]
    assert "using the copy found" not in result.stderr


def test_without_source_or_local_copy_the_failed_download_suggests_source(cli, offline):
    url = f"http://127.0.0.1:{offline}/cifar-10-binary.tar.gz"
    quiet_failure(cli, "fetch", code=1, words=(url, "connection refused", "--source"))
    assert dataset_artifacts(Path("cache")) == []


# --------------------------------------------------------------------------- safety


class Payload:
    """Unpickling this calls ``func(arg)``: what a malicious batch file would do."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def evil_archive(path: Path, case: str, marker: Path) -> tuple[Path, tuple[str, ...]]:
    """(archive, words the error must contain) for one unsafe archive."""
    if case == "python-pickle":
        members = tiny("python") | {"data_batch_2": pickle.dumps(Payload(os.system, f"touch {marker}"), protocol=2)}
        good = [regular(f"{PY}/{name}", raw) for name, raw in members.items()]
        return write_tar(path, good), ("data_batch_2", "refusing to unpickle", "system")
    good = [regular(f"{BIN}/{name}", raw) for name, raw in tiny("binary").items()]
    if case == "dotdot":
        return write_tar(path, [*good, regular("../evil", b"#!/bin/sh\necho pwned\n")]), (
            "'../evil'",
            "outside the archive folder",
        )
    if case == "dotdot-inside":
        return write_tar(path, [*good, regular(f"{BIN}/../../evil", b"pwned")]), (
            f"'{BIN}/../../evil'",
            "outside the archive folder",
        )
    if case == "symlink":
        link = tarfile.TarInfo(f"{BIN}/evil")
        link.type, link.linkname = tarfile.SYMTYPE, "../../evil"
        return write_tar(path, [*good, (link, None)]), (f"'{BIN}/evil'", "is a symlink")
    if case == "symlink-first":
        link = tarfile.TarInfo(f"{BIN}/data_batch_1.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        return write_tar(path, [(link, None), *good]), (f"'{BIN}/data_batch_1.bin'", "is a symlink")
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["dotdot", "dotdot-inside", "symlink", "symlink-first", "python-pickle"])
def test_unsafe_archives_are_refused_and_nothing_is_written(cli, tmp_path, monkeypatch, case):
    # Work one level down, so that "../evil" from the working folder would land in tmp_path.
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    marker = tmp_path / "pwned"
    archive, words = evil_archive(tmp_path / "evil.tar.gz", case, marker)
    before = snapshot(tmp_path, ignore=work / "cache")

    quiet_failure(cli, "fetch", "--source", archive, code=2, words=words)

    assert snapshot(tmp_path, ignore=work / "cache") == before
    assert not marker.exists()
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()
    assert dataset_artifacts(work / "cache") == []
    listing = json.loads(cli("cache", "ls", "--json").stdout)
    assert listing["artifacts"] == []


def test_the_pickle_payload_really_runs_under_plain_pickle(tmp_path):
    # Without this control, the refusal above could pass because the payload is inert.
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(os.system, f"touch {marker}"), protocol=2))
    assert marker.exists()


# --------------------------------------------------------------------------- bad input


def test_missing_source_path_is_named(cli):
    quiet_failure(
        cli,
        "fetch",
        "--source",
        "nowhere/cifar-10-binary.tar.gz",
        code=2,
        words=("no such file or folder", "nowhere/cifar-10-binary.tar.gz"),
    )
    assert dataset_artifacts(Path("cache")) == []


def test_empty_file_is_refused(cli, tmp_path):
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    quiet_failure(cli, "fetch", "--source", "empty.tar.gz", code=2, words=("empty.tar.gz", "is empty"))
    assert dataset_artifacts(Path("cache")) == []


def test_not_an_archive_is_refused(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("hello, this is not CIFAR-10\n" * 40)
    quiet_failure(cli, "fetch", "--source", "notes.txt", code=2, words=("notes.txt", "not a CIFAR-10 archive"))


def test_truncated_archive_is_refused(cli, tmp_path, tiny_archive):
    raw = tiny_archive.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(raw[: len(raw) // 2])
    quiet_failure(cli, "fetch", "--source", "cut.tar.gz", code=2, words=("cut.tar.gz", "damaged or truncated"))
    assert dataset_artifacts(Path("cache")) == []


def narrow_binary(x: np.ndarray, y: np.ndarray) -> bytes:
    return np.hstack([y[:, None], x[:, :3071]]).astype(np.uint8).tobytes()


def bad_members(fmt: str, case: str) -> tuple[dict[str, bytes], str, str]:
    """(members, file the message must name, words) for one malformed copy."""
    members = tiny(fmt)
    batches, _ = tinycifar.make_arrays(N, N)
    x, y = batches[2]
    if case == "3071-columns":
        if fmt == "binary":
            members["data_batch_3.bin"] = narrow_binary(x, y)
            return members, f"{BIN}/data_batch_3.bin", "not a whole number of 3073-byte records"
        members["data_batch_3"] = pickle.dumps({b"data": x[:, :3071].copy(), b"labels": y.tolist()}, protocol=2)
        return members, f"{PY}/data_batch_3", f"shape (N, 3072), got ({N}, 3071)"
    if case == "label-10":
        y = y.copy()
        y[5] = 10
        if fmt == "binary":
            members["data_batch_3.bin"] = np.hstack([y[:, None], x]).astype(np.uint8).tobytes()
            return members, f"{BIN}/data_batch_3.bin", "label 10 is outside 0-9"
        members["data_batch_3"] = pickle.dumps({b"data": x, b"labels": y.tolist()}, protocol=2)
        return members, f"{PY}/data_batch_3", "label 10 is outside 0-9"
    if case == "no-test-batch":
        name = "test_batch.bin" if fmt == "binary" else "test_batch"
        del members[name]
        return members, f"{folder_of(fmt)}/{name}", "missing"
    raise AssertionError(case)


@pytest.mark.parametrize("fmt", ["binary", "python"])
@pytest.mark.parametrize("case", ["3071-columns", "label-10", "no-test-batch"])
@pytest.mark.parametrize("shape", ["archive", "folder"])
def test_malformed_copies_are_refused_naming_the_file(cli, tmp_path, fmt, case, shape):
    members, named, words = bad_members(fmt, case)
    if shape == "archive":
        source = tinycifar.write_archive(tmp_path / "bad.tar.gz", members, folder_of(fmt))
    else:
        source = tinycifar.write_folder(tmp_path / "copy", members, folder_of(fmt))
    quiet_failure(cli, "fetch", "--source", source, code=2, words=(named, words))
    assert dataset_artifacts(Path("cache")) == []


def test_bad_input_with_json_is_one_document_with_the_error(cli, tmp_path):
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    result = cli("fetch", "--source", "empty.tar.gz", "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 2 and "empty.tar.gz is empty" in doc["error"] and doc["hint"]
    error_line(result, "empty.tar.gz")


def test_unknown_format_option_is_refused(cli, offline):
    quiet_failure(cli, "fetch", "--format", "jpeg", code=2, words=("--format", "'jpeg'"))


# --------------------------------------------------------------------------- discovery


def test_a_copy_in_datasets_is_found_without_source(cli, tmp_path, offline):
    folder = tinycifar.write_folder(tmp_path / "Datasets", tinycifar.python_members(), PY)
    doc, result = fetch_json(cli)
    assert doc["source"] == str(folder.resolve())
    assert doc["format"] == "python" and doc["n_train"] == 1000
    assert "using the copy found at Datasets/cifar-10-batches-py" in result.stderr

    # The same folder given explicitly is the same dataset.
    again, _ = fetch_json(cli, "--source", folder)
    assert again["cached"] is True and again["dataset"] == doc["dataset"]


@pytest.mark.parametrize(
    "place",
    [
        "binary archive in data",
        "python archive symlinked in data",
        "keras archive in home",
        "python folder symlinked in data",
    ],
)
def test_a_copy_in_the_usual_places_imports_without_touching_the_network(
    cli, tmp_path, http_server, monkeypatch, archives, offline, place
):
    # Any default download would reach this loopback server, which records every request.
    for fmt, official in list(source_files.OFFICIAL.items()):
        monkeypatch.setitem(
            source_files.OFFICIAL,
            fmt,
            source_files.OfficialArchive(fmt, http_server.url(f"/{fmt}.tar.gz"), official.md5, official.size),
        )
    kind, how, where = {
        "binary archive in data": ("binary-archive", "copy", "data/cifar-10-binary.tar.gz"),
        "python archive symlinked in data": ("python-archive", "link", "data/cifar-10-python.tar.gz"),
        "keras archive in home": ("python-archive", "copy", "home/.keras/datasets/cifar-10-batches-py.tar.gz"),
        "python folder symlinked in data": ("python-folder", "link", f"data/{PY}"),
    }[place]
    target = tmp_path / where
    target.parent.mkdir(parents=True, exist_ok=True)
    source = archives[kind]
    if how == "link":
        target.symlink_to(source)
    else:
        target.write_bytes(source.read_bytes())
    doc, result = fetch_json(cli)
    assert http_server.requests == []
    assert doc["format"] == kind.split("-")[0] and doc["n_train"] == 1000 and doc["cached"] is False
    assert "using the copy found at" in result.stderr and target.name in result.stderr
    assert (doc["md5"], doc["sha256"]) == source_files.checksums(source)


def test_source_dir_uses_the_archive_inside_and_names_it(cli, tmp_path, archives):
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "cifar-10-binary.tar.gz").write_bytes(archives["binary-archive"].read_bytes())
    doc, result = fetch_json(cli, "--source", folder)
    assert doc["format"] == "binary" and doc["source"] == str((folder / "cifar-10-binary.tar.gz").resolve())
    assert f"using the archive found at {(folder / 'cifar-10-binary.tar.gz').resolve()}" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    quiet_failure(
        cli,
        "fetch",
        "--source",
        empty,
        code=2,
        words=("holds no CIFAR-10 batch files", "cifar-10-binary.tar.gz", "cifar-10-python.tar.gz"),
    )


def test_an_incomplete_copy_in_datasets_is_not_used(cli, tmp_path, offline):
    members = tinycifar.python_members()
    del members["data_batch_5"]
    tinycifar.write_folder(tmp_path / "Datasets", members, PY)
    result = cli("fetch", "--quiet")
    assert result.exit_code == 1  # it fell through to the (closed, loopback) download
    error_line(result, f"127.0.0.1:{offline}", "--source")


def test_later_stages_import_the_discovered_copy_themselves(cli, tmp_path, offline):
    tinycifar.write_folder(tmp_path / "Datasets", tinycifar.binary_members(), BIN)
    result = cli("train", "--n-epochs", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert "using the copy found at Datasets/cifar-10-batches-bin" in result.stderr
    run = json.loads(result.stdout)
    assert run["split_sizes"] == {"train": 160, "val": 40, "test": 200}


# --------------------------------------------------------------------------- the real-sized stand-in


@pytest.mark.realdata
def test_real_stand_in_imports_as_cifar10(cli, real_archive):
    doc, _ = fetch_json(cli, "--source", real_archive)
    assert doc["format"] == "binary"
    assert doc["n_train"] == 50000 and doc["n_test"] == 10000 and doc["batch_size"] == 10000
    assert doc["per_class"] == {"train": [5000] * 10, "test": [1000] * 10}
    assert doc["md5"] == "83f765e75e7bc028bd30a158b4ee76b7"
    assert doc["official"] is False and doc["note"]
    assert doc["label_names"][0] == "airplane" and doc["label_names"][9] == "truck"
    again, _ = fetch_json(cli, "--source", real_archive)
    assert again["cached"] is True and again["dataset"] == doc["dataset"]


@pytest.mark.realdata
def test_real_stand_in_in_every_form_is_one_dataset(cli, real_archive, tmp_path):
    """The stand-in's binary archive, a python archive of the same pixels built here, and the extracted
    binary folder: one dataset key, the second and third imports cache hits."""
    decoded, _ = data.read_cifar10(real_archive)
    n = decoded.batch_size
    batches = [(decoded.train_x[i * n : (i + 1) * n], decoded.train_y[i * n : (i + 1) * n]) for i in range(5)]
    python_archive = tinycifar.write_archive(
        tmp_path / "cifar-10-python.tar.gz",
        tinycifar.python_members_of(batches, (decoded.test_x, decoded.test_y), list(decoded.label_names)),
        PY,
    )
    del decoded, batches
    with tarfile.open(real_archive) as tar:
        members = {Path(m.name).name: tar.extractfile(m).read() for m in tar if m.isfile()}
    folder = tinycifar.write_folder(tmp_path / "extracted", members, BIN)
    docs = [fetch_json(cli, "--source", source)[0] for source in (real_archive, python_archive, folder)]
    assert [doc["format"] for doc in docs] == ["binary", "python", "binary"]
    assert len({doc["sha256"] for doc in docs}) == 3
    assert {doc["dataset"] for doc in docs} == {docs[0]["dataset"]}
    assert [doc["cached"] for doc in docs] == [False, True, True]


def test_bare_fetch_after_an_import_reuses_the_current_dataset(cli, tiny_archive, monkeypatch):
    monkeypatch.setattr(data, "find_local_copy", lambda *a, **k: pytest.fail("must not search for copies"))
    first, _ = fetch_json(cli, "--source", tiny_archive)
    again, _ = fetch_json(cli)
    assert again["dataset"] == first["dataset"] and again["cached"] is True
