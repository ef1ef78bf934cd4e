"""Hostile input never destroys, hangs or garbles: `export --out` at a device, FIFO or symlink,
endless or huge sources and downloads, markup and control characters in class names and paths.

Real files, real FIFOs and device nodes, a real loopback HTTP server, real processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import struct
import threading
import time
from pathlib import Path

import pytest

import tinycifar
from httpserver import LoopbackServer, http_server  # noqa: F401  (fixture)
from procs import cli_process, env_for, error_lines, one_error

# Bounds on a subprocess that must end at once: a timeout, never a speed target.
PROMPT = 20


# -- the loopback test server (issue 9) ----------------------------------------------------


def test_a_client_hanging_up_mid_body_leaves_nothing_on_stderr(capfd):
    """A download cut by its client (a kill, a cap reached) is routine here, not a server traceback
    leaking into another test's captured stderr."""
    with LoopbackServer() as server:
        server.route("/big", body=bytes(32 << 20))
        host, port = server.url("/").split("/")[2].split(":")
        client = socket.create_connection((host, int(port)))
        client.sendall(b"GET /big HTTP/1.0\r\n\r\n")
        assert client.recv(1 << 16).startswith(b"HTTP/1.0 200")
        # Reset, not a polite close: the server's next write fails with ECONNRESET or EPIPE.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        assert server.wait_finished(1, timeout=PROMPT)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


# -- helpers -------------------------------------------------------------------------------


BIG = 64 << 20


def snapshot(root: Path, skip: tuple[str, ...] = ("cache",)) -> dict[str, str]:
    """relative path -> what it is, for everything under ``root`` but ``skip``.

    Like ``procs.tree`` but never opens anything that is not a regular file (reading a
    FIFO would block): those are recorded by kind and device number.
    """
    found = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            found[rel] = "link -> " + os.readlink(path)
        elif stat.S_ISREG(st.st_mode) and st.st_size > BIG:  # a sparse giant: hashing it would take minutes
            found[rel] = f"{st.st_size} bytes, mtime {st.st_mtime_ns}"
        elif stat.S_ISREG(st.st_mode):
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[rel] = f"{stat.S_IFMT(st.st_mode):o} {st.st_rdev}"
    return found


def unix_socket(path: Path) -> socket.socket:
    """A listening AF_UNIX socket bound at ``path`` (close it when done)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    return sock


def char_device(path: Path) -> Path:
    """Our own character device node (a twin of /dev/null, 1:3), or skip where mknod is refused."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc})")
    return path


@pytest.fixture(scope="module")
def trained_cache(tmp_path_factory, tiny_archive) -> tuple[Path, str]:
    """A cache holding the tiny dataset and one short training run: (cache folder, run ID)."""
    from cifarcli import stages
    from cifarcli.config import TrainConfig

    ws = stages.Workspace(tmp_path_factory.mktemp("trained") / "cache")
    stages.fetch(ws, str(tiny_archive))
    run = stages.train(ws, TrainConfig(lam=0.0, eta=0.01, n_epochs=1, n_batch=50))
    return ws.cache_dir, run.key


def with_cache(tmp_path: Path, trained_cache) -> str:
    """Copy the trained cache into ``tmp_path/cache``; returns the run ID."""
    shutil.copytree(trained_cache[0], tmp_path / "cache")
    env_for(tmp_path)  # the processes' HOME and TMPDIR, made before any snapshot is taken
    return trained_cache[1]


# -- endless or huge inputs never hang (issue 10, item 5) -------------------------------------

SPARSE = 20 << 30  # a 20 GB file that takes no disk: hashing it used to take 74 s


def _local_source(kind: str, tmp_path: Path):
    """(path given to --source, words the error line must hold)."""
    if kind in ("/dev/zero", "/dev/urandom"):
        return kind, ("character device",)
    if kind == "fifo":
        os.mkfifo(tmp_path / "cifar-10-binary.tar.gz")
        return tmp_path / "cifar-10-binary.tar.gz", ("FIFO",)
    if kind == "socket":
        tmp_path.joinpath("s").mkdir()
        _keep.append(unix_socket(tmp_path / "s" / "cifar.tar.gz"))
        return tmp_path / "s" / "cifar.tar.gz", ("socket",)
    if kind == "sparse-20GB":
        with open(tmp_path / "cifar-10-binary.tar.gz", "wb") as f:
            f.truncate(SPARSE)
        return tmp_path / "cifar-10-binary.tar.gz", ("21.5 GB", "far larger")
    folder = tinycifar.write_folder(
        tmp_path, tinycifar.binary_members(n_per_batch=20, n_test=20), "cifar-10-batches-bin"
    )
    member = folder / "data_batch_3.bin"
    member.unlink()
    if kind == "folder-member-fifo":
        os.mkfifo(member)
        return folder, ("data_batch_3.bin", "FIFO")
    if kind == "folder-member-link-to-dev-zero":
        member.symlink_to("/dev/zero")
        return folder, ("data_batch_3.bin", "character device")
    if kind == "folder-member-link-to-a-sparse-file":
        with open(tmp_path / "huge", "wb") as f:
            f.truncate(SPARSE)
        member.symlink_to(tmp_path / "huge")
        return folder, ("data_batch_3.bin", "far larger")
    raise AssertionError(kind)


_keep: list = []  # sockets bound for a test, alive until the module ends


@pytest.mark.parametrize(
    "kind",
    [
        "/dev/zero",
        "/dev/urandom",
        "fifo",
        "socket",
        "sparse-20GB",
        "folder-member-fifo",
        "folder-member-link-to-dev-zero",
        "folder-member-link-to-a-sparse-file",
    ],
)
def test_an_endless_or_huge_local_source_is_refused_at_once(tmp_path, kind):
    source, words = _local_source(kind, tmp_path)
    env = env_for(tmp_path)
    before = snapshot(tmp_path)
    # The timeout bounds a hang (it used to be forever for /dev/zero and a FIFO); it is no speed target.
    result = cli_process(tmp_path, "fetch", "--source", source, "--cache-dir", "cache", timeout=PROMPT, env=env)
    one_error(result, 2, str(source), "refusing to read it", *words)
    assert not (tmp_path / "cache" / "dataset").exists()
    assert snapshot(tmp_path) == before


def test_a_folder_whose_members_are_all_fifos_names_one(tmp_path):
    """Before, FIFOs under the official names were skipped and the folder called empty; or read, forever."""
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin", "batches.meta.txt"]:
        os.mkfifo(folder / name)
    result = cli_process(tmp_path, "fetch", "--source", folder, "--cache-dir", "cache", timeout=PROMPT)
    one_error(result, 2, "FIFO", "refusing to read it")


def _watch_size(path: Path, stop: threading.Event, sizes: list[int]) -> None:
    """Record the size of ``path`` every millisecond until ``stop``."""
    while not stop.is_set():
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            pass
        time.sleep(0.001)


def test_an_endless_download_is_stopped_at_the_cap_and_its_part_removed(cli, tmp_path, http_server, monkeypatch):
    """A body without a Content-Length that never ends (it grew a 2.8 GB .part in 8 s)."""
    from cifarcli import download
    from cifarcli.source_files import CHUNK

    cap = 8 << 20  # the real cap (682 MB) works the same; a small one keeps the test light on disk
    monkeypatch.setattr(download, "MAX_SOURCE_BYTES", cap)
    http_server.route("/cifar.tar.gz", body=b"\x1f\x8b" + bytes(64 << 10), endless=True, endless_for=PROMPT)
    downloads = tmp_path / "cache" / "downloads"
    sizes: list[int] = []
    stop = threading.Event()
    downloads.mkdir(parents=True)
    before = snapshot(tmp_path)
    url = http_server.url("/cifar.tar.gz")
    part = downloads / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-cifar.tar.gz.part"
    watcher = threading.Thread(target=_watch_size, args=(part, stop, sizes), daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        result = cli("fetch", "--source", url)
    finally:
        stop.set()
        watcher.join()
    assert time.monotonic() - started < PROMPT  # stopped by the cap, not by the server giving up
    assert result.exit_code == 2
    [line] = error_lines(result.stderr)  # beside the "downloading …" notice
    assert "sent more than 8.4 MB" in line and url in line
    assert sizes and max(sizes) <= cap + CHUNK  # never past the cap by more than one chunk
    assert list(downloads.iterdir()) == []  # the .part is gone, nothing under the final name
    assert snapshot(tmp_path) == before
    assert len(http_server.requests) == 1  # refused, not retried


def test_a_download_announcing_a_huge_size_is_refused_before_its_body(tmp_path, http_server):
    """The real cap, in a real process: a Content-Length of 20 GB is refused before a byte is kept."""
    http_server.route("/cifar.tar.gz", endless=True, endless_for=PROMPT, announce=SPARSE)
    env = env_for(tmp_path)
    before = snapshot(tmp_path)
    result = cli_process(
        tmp_path, "fetch", "--source", http_server.url("/cifar.tar.gz"), "--cache-dir", "cache", timeout=PROMPT, env=env
    )
    one_error(result, 2, "21.5 GB", "far larger than any CIFAR-10 archive", "not downloading it")
    assert list((tmp_path / "cache" / "downloads").iterdir()) == []
    assert snapshot(tmp_path) == before


def test_a_leftover_part_past_the_cap_is_discarded_not_resumed(tmp_path, http_server, tiny_archive):
    """A .part an older version let grow (sparse here: 700 MB that take no disk) is started over."""
    from cifarcli import source_files

    body = tiny_archive.read_bytes()
    http_server.route("/cifar.tar.gz", body=body)
    url = http_server.url("/cifar.tar.gz")
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    part = downloads / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-cifar.tar.gz.part"
    with open(part, "wb") as f:
        f.truncate(source_files.MAX_SOURCE_BYTES + 1)
    result = cli_process(tmp_path, "fetch", "--source", url, "--cache-dir", "cache", "--json", timeout=PROMPT * 3)
    assert result.returncode == 0, result.stderr
    assert http_server.ranges("/cifar.tar.gz") == [None]  # a fresh download, no Range from the huge .part
    assert not part.exists() and part.with_suffix("").read_bytes() == body
    assert json.loads(result.stdout)["n_train"] == 1000


# -- strings from an archive are text, never markup or control sequences (issue 10, item 6) ----

# Rich markup, a closing tag alone, a trailing backslash (escapes the next tag), printable unicode.
HOSTILE_NAMES = [
    "[/]",
    "[bold red]x",
    "café",
    "飞机",
    "[link=https://example.com]l[/link]",
    "back\\",
    "[b]bird[/b]",
    "[red",
    "deer]",
    "truck",
]


def _hostile_archive(folder: Path, layout: str, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "binary":
        members = tinycifar.binary_members(n_per_batch=50, n_test=50, label_names=names)
        return tinycifar.write_archive(folder / "cifar-10-binary.tar.gz", members, "cifar-10-batches-bin")
    members = tinycifar.python_members(n_per_batch=50, n_test=50, label_names=names)
    return tinycifar.write_archive(folder / "cifar-10-python.tar.gz", members, "cifar-10-batches-py")


@pytest.mark.parametrize("layout", ["binary", "python"])
def test_class_names_with_markup_and_paths_with_brackets_print_literally(tmp_path, layout):
    """`[/]` as a class name crashed fetch and predict (rich.errors.MarkupError); `[b]` in a path vanished."""
    from PIL import Image

    odd = tmp_path / "a[b]"  # `[b]` is rich's bold tag: it must print as itself
    archive = _hostile_archive(odd, layout, HOSTILE_NAMES)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(odd / "img[1].png")
    env = env_for(tmp_path)

    def run(*args: str) -> str:
        result = cli_process(tmp_path, *args, "--cache-dir", "cache", timeout=120, env=env)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout

    shown = run("fetch", "--source", archive)
    assert str(archive) in shown
    for name in HOSTILE_NAMES:
        assert name in shown, name
    run_id = json.loads(run("train", "--n-epochs", "1", "--n-batch", "20", "--json"))["run_id"]
    shown = run("evaluate", "--run", run_id)
    for name in HOSTILE_NAMES:
        assert name in shown, name
    top = json.loads(run("predict", "--run", run_id, odd / "img[1].png", "--json"))["images"][0]["top3"]
    shown = run("predict", "--run", run_id, odd / "img[1].png")
    assert "img[1].png" in shown and all(f"{t['class']} {t['probability']:.3f}" in shown for t in top)
    shown = run("export", "--run", run_id, "--out", odd / "m[2].npz")
    assert f"wrote {odd / 'm[2].npz'}" in shown
    assert "dataset" in run("cache", "ls")
    assert "cached" in run("status", "--n-epochs", "1", "--n-batch", "20")
    run("plot", "--run", run_id)  # the names are axis labels and titles of the figures


@pytest.mark.parametrize("name", ["\x1b[2J", "ca\rt", "bell\x07", "tab\there", "nul\x00", "del\x7f", "nel\x85"])
@pytest.mark.parametrize("layout", ["binary", "python"])
def test_a_control_character_in_a_class_name_is_refused_naming_the_entry(tmp_path, layout, name):
    names = [*tinycifar.LABEL_NAMES[:3], name, *tinycifar.LABEL_NAMES[4:]]
    archive = _hostile_archive(tmp_path / "src", layout, names)
    env = env_for(tmp_path)
    before = snapshot(tmp_path)
    result = cli_process(tmp_path, "fetch", "--source", archive, "--cache-dir", "cache", timeout=PROMPT, env=env)
    meta = "batches.meta.txt" if layout == "binary" else "batches.meta"
    one_error(result, 2, meta, "class name 4", "control character")
    # The message names it by its escaped form: the control character itself never reaches the terminal.
    assert not any(c in result.stderr for c in name if ord(c) < 32 or 127 <= ord(c) < 160 and c != "\n")
    assert not (tmp_path / "cache" / "dataset").exists() or not any((tmp_path / "cache" / "dataset").iterdir())
    assert snapshot(tmp_path) == before


def test_crlf_and_padding_in_batches_meta_txt_are_layout_not_names(tmp_path):
    """A batches.meta.txt saved on Windows (CRLF) or with padded lines still reads as the ten names."""
    from cifarcli import data

    members = tinycifar.binary_members(n_per_batch=10, n_test=10)
    members["batches.meta.txt"] = "".join(f"  {n}\t\r\n" for n in tinycifar.LABEL_NAMES).encode() + b"\r\n"
    archive = tinycifar.write_archive(tmp_path / "c.tar.gz", members, "cifar-10-batches-bin")
    dataset, _ = data.read_cifar10(archive)
    assert list(dataset.label_names) == tinycifar.LABEL_NAMES


# -- export --out never destroys what it points at (issue 10, item 3) ------------------------


def _make_target(kind: str, folder: Path):
    """(path given to --out, a check that it is still what it was)."""
    target = folder / "out.npz"
    if kind == "fifo":
        os.mkfifo(target)
        return target, lambda: stat.S_ISFIFO(os.lstat(target).st_mode)
    if kind == "char-device":
        char_device(target)
        return target, lambda: stat.S_ISCHR(os.lstat(target).st_mode) and os.lstat(target).st_rdev == os.makedev(1, 3)
    if kind == "socket":
        sock = unix_socket(target)
        return target, lambda: sock and stat.S_ISSOCK(os.lstat(target).st_mode)
    if kind == "symlink-to-a-file":
        (folder / "precious.npz").write_bytes(b"precious")
        target.symlink_to("precious.npz")
        return (
            target,
            lambda: os.readlink(target) == "precious.npz" and (folder / "precious.npz").read_bytes() == b"precious",
        )
    if kind == "dangling-symlink":
        target.symlink_to("nowhere.npz")
        return target, lambda: os.readlink(target) == "nowhere.npz" and not (folder / "nowhere.npz").exists()
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, words",
    [
        pytest.param(kind, words, id=kind)
        for kind, words in [
            ("fifo", ("FIFO", "not a regular file")),
            ("char-device", ("character device", "not a regular file")),
            ("socket", ("socket", "not a regular file")),
            ("symlink-to-a-file", ("symlink",)),
            ("dangling-symlink", ("symlink",)),
        ]
    ],
)
def test_export_refuses_anything_but_a_regular_file_at_out(tmp_path, trained_cache, kind, words):
    run_id = with_cache(tmp_path, trained_cache)
    (tmp_path / "models").mkdir()
    target, unchanged = _make_target(kind, tmp_path / "models")
    before = snapshot(tmp_path)
    result = cli_process(tmp_path, "export", "--run", run_id, "--out", target, "--cache-dir", "cache", timeout=PROMPT)
    line = one_error(result, 2, "--out", str(target), *words)
    assert "(" in line  # the hint
    assert unchanged()
    assert snapshot(tmp_path) == before  # no temporary file beside it, nothing else written


def test_export_to_dev_null_leaves_it_a_character_device(tmp_path, trained_cache):
    """As root the old rename replaced the machine's /dev/null with a regular file."""
    run_id = with_cache(tmp_path, trained_cache)
    before = os.stat("/dev/null")
    result = cli_process(
        tmp_path, "export", "--run", run_id, "--out", "/dev/null", "--cache-dir", "cache", timeout=PROMPT
    )
    one_error(result, 2, "/dev/null", "character device")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert not list(Path("/dev").glob(".null.*"))  # no temporary left in /dev


def test_export_creates_missing_folders_follows_the_umask_and_refuses_a_file_as_folder(tmp_path, trained_cache):
    run_id = with_cache(tmp_path, trained_cache)

    def umask_027():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.umask(0o027)

    result = cli_process(
        tmp_path,
        "export",
        "--run",
        run_id,
        "--out",
        "a/b/model.npz",
        "--cache-dir",
        "cache",
        preexec_fn=umask_027,
        timeout=PROMPT,
    )
    assert result.returncode == 0, result.stderr
    written = tmp_path / "a" / "b" / "model.npz"
    assert stat.S_IMODE(written.stat().st_mode) == 0o640  # 0666 less the umask, like any new file
    assert [p.name for p in written.parent.iterdir()] == ["model.npz"]

    (tmp_path / "afile").write_bytes(b"x")
    before = snapshot(tmp_path)
    result = cli_process(
        tmp_path, "export", "--run", run_id, "--out", "afile/model.npz", "--cache-dir", "cache", timeout=PROMPT
    )
    one_error(result, 2, "afile", "not a folder")
    assert snapshot(tmp_path) == before
