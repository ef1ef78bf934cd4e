"""Fault injection with real processes: kill -9, Ctrl-C, four at once, a full disk, no permission.

Goal: whatever happens to a command, the next run finishes with exactly the
result an undisturbed run gives, and nothing half-written is ever read.

What "exactly the result" means here (decided, see docs/reliability.md):

* dataset, train, evaluate and plot artifacts: the same ``payload_sha256`` as
  in an undisturbed cache (their payloads hold no time; a train payload is
  written in a canonical form, so a run resumed from its checkpoint is
  byte-identical to an uninterrupted one).
* gradcheck: the same payload except its timings (``elapsed``, ``seconds``).
* report: report.md and report.html equal the undisturbed ones once the date
  and the durations ("1.2 s") are masked; the --json document equals the
  undisturbed one without ``created``, durations and the per-stage hit list.

Kill moments are ones the command itself reveals, never a timer: a lock, a
scratch checkpoint of epoch N, a ``.part`` file that has grown past a size, a
temporary artifact folder, a committed artifact (see ``Milestone``). The kill
follows the moment at once, so it lands whatever the machine's load; one that
still comes after the command finished is retried in a fresh folder (a bounded
number of times), and every kill must land. Each kill runs in its own cache;
after all kills, ``cifarcli cache gc`` must leave no ``.tmp-*``, ``*.part`` or
``*.tmp`` anywhere in any of them. The 20-kill runs are marked slow
(``python -m pytest -m slow``); a 2-kill smoke run of each is in the default run.
"""

from __future__ import annotations

import contextlib
import html.parser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import pytest

from httpserver import LoopbackServer
from procs import (
    checksums,
    cli_process,
    kill_group,
    one_error,
    resize,
    spawn,
    temporaries,
    tmpfs,
    tree,
    used_kib,
    without_root_powers,
)

SLOW_KILLS = 20
SMOKE_KILLS = 2
TRAIN = ("--lam", "0.1", "--eta", "0.001", "--n-epochs", "30", "--n-batch", "1")
SETTINGS = """\
[defaults]
n_epochs = 3
n_batch = 20

[gradcheck]
n_samples = 5
n_dims = 20

[[run]]
lam = 0.0
eta = 0.01

[[run]]
lam = 0.1
eta = 0.01
"""
_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")
_DURATION = re.compile(r"\b\d+(\.\d+)? s\b|\b\d+ min \d+ s\b")


def mask(text: str) -> str:
    return _DURATION.sub("<duration>", _DATE.sub("<date>", text))


def stable_doc(doc: dict) -> dict:
    """A report --json document without what legitimately differs between two processes."""

    def strip(value):
        if isinstance(value, dict):
            return {
                k: strip(v)
                for k, v in value.items()
                if k not in ("created", "train_seconds", "elapsed", "seconds", "stages", "timings")
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(doc)


def compare_caches(cache: Path, reference: Path) -> None:
    """Every artifact of ``reference`` is in ``cache`` with the same result (see the module doc)."""
    ours, theirs = checksums(cache), checksums(reference)
    assert set(ours) == set(theirs)
    for name, sha in theirs.items():
        stage, key = name.split("/")
        if stage == "gradcheck":
            a, b = (joblib.load(c / stage / key / "payload.joblib") for c in (cache, reference))
            assert stable_doc(a) == stable_doc(b)
        elif stage == "report":
            a, b = (joblib.load(c / stage / key / "payload.joblib") for c in (cache, reference))
            assert mask(a["report.md"]) == mask(b["report.md"])
        else:
            assert ours[name] == sha, name


class Milestone:
    """A moment a command reveals in its folder: ``reached(folder)`` once it has happened."""

    def __init__(self, name: str, reached):
        self.name, self.reached = name, reached

    def __repr__(self) -> str:
        return self.name


def appears(pattern: str) -> Milestone:
    """A path matching ``pattern`` (a glob under the kill folder) exists."""
    return Milestone(pattern, lambda folder: any(folder.glob(pattern)))


def appeared(pattern: str, n: int) -> Milestone:
    return Milestone(f"{n} x {pattern}", lambda folder: len(list(folder.glob(pattern))) >= n)


def grown(pattern: str, size: int) -> Milestone:
    """A file matching ``pattern`` holds at least ``size`` bytes (a download in progress)."""

    def reached(folder):
        return any(_size(p) >= size for p in folder.glob(pattern))

    return Milestone(f"{pattern} >= {size} B", reached)


def checkpoint_of_epoch(epoch: int) -> Milestone:
    """The training's scratch checkpoint records at least ``epoch`` epochs."""

    def reached(folder):
        for path in folder.glob("cache/train/.scratch/*/checkpoint"):
            with contextlib.suppress(Exception):  # replaced or dropped while read: not yet seen
                if joblib.load(path)["epoch"] >= epoch:
                    return True
        return False

    return Milestone(f"checkpoint of epoch {epoch}", reached)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


KILL_TRIES = 4  # a kill that came after the command had finished is retried this many times in all


def kill_at(folder: Path, args: tuple, milestones: list[Milestone], target: int) -> bool:
    """Start ``cifarcli ARGS`` and kill -9 its group as soon as ``milestones[target]`` (or a later
    one, should the poll have missed a short-lived file) is seen; True when the kill landed."""
    proc = spawn(folder, *args)
    deadline = time.monotonic() + 240
    while proc.poll() is None and not any(m.reached(folder) for m in milestones[target:]):
        assert time.monotonic() < deadline, f"{milestones[target]} never came"
        time.sleep(0.002)
    return kill_group(proc)


def kill_and_rerun(root: Path, args: tuple, milestones: list[Milestone], n: int, prepare, check) -> dict:
    """Kill ``cifarcli ARGS`` at ``n`` moments spread over ``milestones``, each in a fresh folder;
    rerun it there and ``check`` the result.

    Returns counts: kills landed while running, finished first (after every try), retries,
    leftovers that gc removed.
    """
    counts = {"landed": 0, "finished_first": 0, "retries": 0, "gc_removed": 0, "leftovers": 0}
    folders = []
    for i in range(n):
        target = i * len(milestones) // n
        folder = root / f"kill{i:02d}"
        for attempt in range(KILL_TRIES):
            if attempt:
                counts["retries"] += 1
                shutil.rmtree(folder)
            prepare(folder)
            landed = kill_at(folder, args, milestones, target)
            if landed:
                break
        counts["landed" if landed else "finished_first"] += 1
        rerun = cli_process(folder, *args, "--json")
        assert rerun.returncode == 0, (i, milestones[target], rerun.stderr)
        check(folder, json.loads(rerun.stdout))
        folders.append(folder)
    for folder in folders:
        counts["leftovers"] += len(temporaries(folder / "cache"))
        gc = cli_process(folder, "cache", "gc", "--cache-dir", "cache", "--json")
        assert gc.returncode == 0, gc.stderr
        counts["gc_removed"] += len(json.loads(gc.stdout)["removed"])
        assert temporaries(folder / "cache") == []
        assert cli_process(folder, "cache", "verify", "--cache-dir", "cache").returncode == 0
        # Nothing in the system temp folder the processes were given.
        assert list((folder / "systmp").iterdir()) == []
    print(f"\n{args[0]}: {counts}")
    assert counts == {**counts, "landed": n, "finished_first": 0}, "a kill came after the command finished"
    return counts


def run_ok(cwd: Path, *args) -> None:
    done = cli_process(cwd, *args)
    assert done.returncode == 0, done.stderr


# -- references: one undisturbed run of each command ------------------------------------------


@pytest.fixture(scope="module")
def fetched_cache(tmp_path_factory, tiny_archive) -> Path:
    """A cache holding only the imported tiny archive (copied for each kill)."""
    root = tmp_path_factory.mktemp("fetched")
    run_ok(root, "fetch", "--source", tiny_archive, "--cache-dir", "cache", "-q")
    return root / "cache"


def fresh_copy(fetched_cache: Path):
    def prepare(folder: Path) -> None:
        folder.mkdir(parents=True)
        shutil.copytree(fetched_cache, folder / "cache")

    return prepare


def empty(folder: Path) -> None:
    folder.mkdir(parents=True)


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory, fetched_cache) -> Path:
    root = tmp_path_factory.mktemp("train-reference")
    fresh_copy(fetched_cache)(root / "r")
    run_ok(root / "r", "train", *TRAIN, "--cache-dir", "cache", "-q")
    return root / "r" / "cache"


@pytest.fixture(scope="module")
def report_reference(tmp_path_factory, fetched_cache):
    root = tmp_path_factory.mktemp("report-reference")
    fresh_copy(fetched_cache)(root / "r")
    (root / "study.toml").write_text(SETTINGS)
    done = cli_process(root / "r", "report", "--config", root / "study.toml", "--cache-dir", "cache", "--json")
    assert done.returncode == 0, done.stderr
    return root / "r", json.loads(done.stdout), root / "study.toml"


# -- kill -9 -------------------------------------------------------------------------------------


# What each command reveals, in order. An artifact: its key's lock, its temporary folder, the
# payload and meta.json written there, then the committed folder.
def commit_of(stage: str) -> list[Milestone]:
    return [
        appears(f"cache/.locks/{stage}-*.lock"),
        appears(f"cache/{stage}/.tmp-*"),
        appears(f"cache/{stage}/.tmp-*/payload.joblib"),
        appears(f"cache/{stage}/[0-9a-f]*/meta.json"),
    ]


IMPORT_MILESTONES = [appears("cache"), *commit_of("dataset")]
TRAIN_MILESTONES = [
    appears("cache/.locks/train-*.lock"),
    appears("cache/train/.scratch/*/checkpoint"),
    *(checkpoint_of_epoch(e) for e in (5, 10, 15, 20, 25)),
    *commit_of("train")[1:],
]
REPORT_MILESTONES = [
    *commit_of("gradcheck"),
    appears("cache/train/.scratch/*/checkpoint"),
    appeared("cache/train/[0-9a-f]*/meta.json", 1),
    appeared("cache/train/[0-9a-f]*/meta.json", 2),
    appears("cache/evaluate/[0-9a-f]*/meta.json"),
    appears("cache/plot/.tmp-*-draw-*/loss.png"),
    appears("cache/plot/.tmp-*-draw-*/confusion.png"),
    appeared("cache/plot/[0-9a-f]*/meta.json", 1),
    appeared("cache/plot/[0-9a-f]*/meta.json", 2),
    appears("cache/comparison/.tmp-*-draw-*"),
    *commit_of("comparison")[1:],
    *commit_of("report"),
]


def _fetch_local(tmp_path, tiny_archive, fetched_cache, n):
    want = checksums(fetched_cache)

    def check(folder, doc):
        assert doc["dataset"] in {k.split("/")[1] for k in want}
        assert checksums(folder / "cache") == want

    return kill_and_rerun(
        tmp_path, ("fetch", "--source", tiny_archive, "--cache-dir", "cache"), IMPORT_MILESTONES, n, empty, check
    )


def _fetch_download(tmp_path, tiny_archive, fetched_cache, n):
    body = tiny_archive.read_bytes()
    with LoopbackServer() as server:
        # ~40 pieces of 96 kB, 30 ms apart: the download is killed at ten sizes of its .part.
        server.route("/cifar-10-binary.tar.gz", body=body, trickle=96 * 1024, trickle_delay=0.03)
        url = server.url("/cifar-10-binary.tar.gz")
        want = checksums(fetched_cache)
        milestones = [
            *(grown("cache/downloads/*.part", len(body) * k // 10) for k in range(10)),
            appears("cache/downloads/*.tar.gz"),
            *commit_of("dataset"),
        ]

        def check(folder, doc):
            assert checksums(folder / "cache") == want
            [archive] = (folder / "cache" / "downloads").glob("*.tar.gz")
            assert archive.read_bytes() == body
            assert not list((folder / "cache" / "downloads").glob("*.part"))

        counts = kill_and_rerun(
            tmp_path, ("fetch", "--source", url, "--cache-dir", "cache"), milestones, n, empty, check
        )
        resumed = [r for r in server.ranges("/cifar-10-binary.tar.gz") if r]
    print(f"download resumed with a Range request {len(resumed)} time(s)")
    assert resumed, "no kill left a .part for the rerun to resume"
    return counts


def _train(tmp_path, fetched_cache, train_reference, n):
    def check(folder, doc):
        assert doc["diverged_at"] is None
        compare_caches(folder / "cache", train_reference)
        assert not list((folder / "cache" / "train" / ".scratch").glob("*/checkpoint"))

    return kill_and_rerun(
        tmp_path, ("train", *TRAIN, "--cache-dir", "cache"), TRAIN_MILESTONES, n, fresh_copy(fetched_cache), check
    )


def without_temporaries(files: dict[str, str]) -> dict[str, str]:
    return {name: sha for name, sha in files.items() if not name.endswith(".tmp")}


def _report(tmp_path, fetched_cache, report_reference, n):
    reference, reference_doc, settings = report_reference

    def check(folder, doc):
        compare_caches(folder / "cache", reference / "cache")
        assert stable_doc(doc) == stable_doc(reference_doc)
        for name in ("report.md", "report.html"):
            assert mask((folder / "reports" / name).read_text()) == mask((reference / "reports" / name).read_text())
        # A kill while a figure was copied to reports/ leaves that copy's temporary file (nothing
        # cleans reports/ of it yet); every file under its final name is whole.
        assert without_temporaries(tree(folder / "reports" / "figures")) == tree(reference / "reports" / "figures")

    return kill_and_rerun(
        tmp_path,
        ("report", "--config", settings, "--cache-dir", "cache"),
        REPORT_MILESTONES,
        n,
        fresh_copy(fetched_cache),
        check,
    )


def test_kill_9_during_a_local_import_smoke(tmp_path, tiny_archive, fetched_cache):
    _fetch_local(tmp_path, tiny_archive, fetched_cache, SMOKE_KILLS)


def test_kill_9_during_a_download_smoke(tmp_path, tiny_archive, fetched_cache):
    _fetch_download(tmp_path, tiny_archive, fetched_cache, SMOKE_KILLS)


def test_kill_9_during_report_smoke(tmp_path, fetched_cache, report_reference):
    _report(tmp_path, fetched_cache, report_reference, SMOKE_KILLS)


@pytest.mark.slow
def test_kill_9_at_20_moments_of_a_local_import(tmp_path, tiny_archive, fetched_cache):
    _fetch_local(tmp_path, tiny_archive, fetched_cache, SLOW_KILLS)


@pytest.mark.slow
def test_kill_9_at_20_moments_of_a_download(tmp_path, tiny_archive, fetched_cache):
    _fetch_download(tmp_path, tiny_archive, fetched_cache, SLOW_KILLS)


@pytest.mark.slow
def test_kill_9_at_20_moments_of_train(tmp_path, fetched_cache, train_reference):
    _train(tmp_path, fetched_cache, train_reference, SLOW_KILLS)


@pytest.mark.slow
def test_kill_9_at_20_moments_of_report(tmp_path, fetched_cache, report_reference):
    _report(tmp_path, fetched_cache, report_reference, SLOW_KILLS)


# -- Ctrl-C during a download ----------------------------------------------------------------------


def test_ctrl_c_during_a_download_exits_130_with_one_line_and_resumes(tmp_path, tiny_archive, fetched_cache):
    body = tiny_archive.read_bytes()
    with LoopbackServer() as server:
        server.route("/cifar-10-binary.tar.gz", body=body, trickle=64 * 1024, trickle_delay=0.05)
        url = server.url("/cifar-10-binary.tar.gz")
        proc = spawn(tmp_path, "fetch", "--source", url, "--cache-dir", "cache")
        downloads = tmp_path / "cache" / "downloads"
        # Interrupt once some bytes have arrived (the .part has grown), not on a timer.
        while not any(p.stat().st_size > 0 for p in downloads.glob("*.part")) if downloads.is_dir() else True:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert out == ""
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("downloading")]
        assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err
        # Nothing half-written under a final name: only the .part, no archive, no dataset.
        [part] = downloads.glob("*.part")
        assert 0 < part.stat().st_size < len(body)
        assert [p.name for p in downloads.iterdir()] == [part.name]
        assert checksums(tmp_path / "cache") == {}

        again = cli_process(tmp_path, "fetch", "--source", url, "--cache-dir", "cache", "--json")
        assert again.returncode == 0, again.stderr
        assert server.ranges("/cifar-10-binary.tar.gz")[-1] is not None  # resumed, not restarted
    assert checksums(tmp_path / "cache") == checksums(fetched_cache)
    assert temporaries(tmp_path / "cache") == []


# -- four processes at once -------------------------------------------------------------------------


def test_four_trainings_of_one_setting_compute_it_once(tmp_path, fetched_cache, train_reference):
    fresh_copy(fetched_cache)(tmp_path / "w")
    args = (
        "train",
        "--lam",
        "0.1",
        "--eta",
        "0.01",
        "--n-epochs",
        "20",
        "--n-batch",
        "5",
        "--cache-dir",
        "cache",
        "--json",
    )
    procs = [spawn(tmp_path / "w", *args) for _ in range(4)]
    results = [(p.communicate(timeout=300), p.returncode) for p in procs]
    assert [rc for _, rc in results] == [0, 0, 0, 0], [err for (_, err), _ in results]
    docs = [json.loads(out) for (out, _), _ in results]
    assert len({d["run_id"] for d in docs}) == 1
    assert sorted(d["cached"] for d in docs) == [False, True, True, True]  # computed exactly once
    assert len({json.dumps(d["history"]) for d in docs}) == 1
    assert len(list((tmp_path / "w" / "cache" / "train").glob("*/meta.json"))) == 1
    assert temporaries(tmp_path / "w" / "cache") == []


class _Html(html.parser.HTMLParser):
    """Checks that a document is whole: every opened element closed, and it ends with </html>."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack, self.closed_html = [], False

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()
        self.closed_html |= tag == "html"


def whole_html(text: str) -> None:
    parser = _Html()
    parser.feed(text)
    parser.close()
    assert parser.closed_html and parser.stack == [] and text.rstrip().endswith("</html>")


def test_four_reports_at_once_all_succeed_and_write_whole_files(tmp_path, fetched_cache, report_reference):
    reference, reference_doc, settings = report_reference
    fresh_copy(fetched_cache)(tmp_path / "w")
    procs = [spawn(tmp_path / "w", "report", "--config", settings, "--cache-dir", "cache", "--json") for _ in range(4)]
    results = [(p.communicate(timeout=600), p.returncode) for p in procs]
    assert [rc for _, rc in results] == [0, 0, 0, 0], [err for (_, err), _ in results]
    docs = [json.loads(out) for (out, _), _ in results]
    assert all(stable_doc(d) == stable_doc(reference_doc) for d in docs)
    assert len({d["created"] for d in docs}) == 1  # one report artifact, made once, used by all four
    md = (tmp_path / "w" / "reports" / "report.md").read_text()
    page = (tmp_path / "w" / "reports" / "report.html").read_text()
    whole_html(page)
    assert mask(md) == mask((reference / "reports" / "report.md").read_text())
    assert mask(page) == mask((reference / "reports" / "report.html").read_text())
    compare_caches(tmp_path / "w" / "cache", reference / "cache")
    assert temporaries(tmp_path / "w") == []


# -- a full disk -------------------------------------------------------------------------------------


def _verify_ok(folder: Path, cache: Path) -> None:
    done = cli_process(folder, "cache", "verify", "--cache-dir", cache, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["damaged"] == []


def test_full_disk_during_fetch_is_one_line_exit_1_and_leaves_nothing(tmp_path, tiny_archive):
    with tmpfs(tmp_path / "disk", "600k") as disk:
        done = cli_process(tmp_path, "fetch", "--source", tiny_archive, "--cache-dir", disk / "cache")
        one_error(done, 1, "no space left writing", str(disk / "cache" / "dataset"), "MB needed")
        assert checksums(disk / "cache") == {} and temporaries(disk / "cache") == []
        resize(disk, "16m")  # space freed: the same command now works
        assert cli_process(tmp_path, "fetch", "--source", tiny_archive, "--cache-dir", disk / "cache").returncode == 0
        _verify_ok(tmp_path, disk / "cache")


def test_full_disk_during_a_download_names_the_part_file(tmp_path, tiny_archive):
    with LoopbackServer() as server, tmpfs(tmp_path / "disk", "400k") as disk:
        server.route("/cifar-10-binary.tar.gz", body=tiny_archive.read_bytes())
        url = server.url("/cifar-10-binary.tar.gz")
        done = cli_process(tmp_path, "fetch", "--source", url, "--cache-dir", disk / "cache")
        line = one_error(done, 1, "no space left writing", ".part", "MB needed")
        assert str(disk / "cache" / "downloads") in line
        assert not [p for p in (disk / "cache" / "downloads").iterdir() if not p.name.endswith(".part")]
        resize(disk, "16m")
        assert cli_process(tmp_path, "fetch", "--source", url, "--cache-dir", disk / "cache").returncode == 0
        assert server.ranges("/cifar-10-binary.tar.gz")[-1] is not None  # the bytes already there were kept


@pytest.fixture
def cache_on_small_disk(tmp_path, tiny_archive):
    """A tmpfs holding the imported dataset with ~40 kB to spare."""
    with tmpfs(tmp_path / "disk", "16m") as disk:
        assert cli_process(tmp_path, "fetch", "--source", tiny_archive, "--cache-dir", disk / "cache").returncode == 0
        resize(disk, f"{used_kib(disk) + 40}k")
        yield disk


def test_full_disk_during_train_is_one_line_and_earlier_artifacts_stay_whole(tmp_path, cache_on_small_disk):
    disk = cache_on_small_disk
    before = checksums(disk / "cache")
    done = cli_process(tmp_path, "train", "--n-epochs", "3", "--n-batch", "20", "--cache-dir", disk / "cache")
    line = one_error(done, 1, "no space left writing", str(disk / "cache" / "train"), "needed")
    assert re.search(r"about [\d.]+ (kB|MB) needed", line)
    assert checksums(disk / "cache") == before
    _verify_ok(tmp_path, disk / "cache")
    resize(disk, "16m")
    again = cli_process(tmp_path, "train", "--n-epochs", "3", "--n-batch", "20", "--cache-dir", disk / "cache")
    assert again.returncode == 0, again.stderr


def test_full_disk_while_writing_reports_is_one_line_and_the_cache_stays_whole(
    tmp_path, fetched_cache, report_reference
):
    _, _, settings = report_reference
    fresh_copy(fetched_cache)(tmp_path / "w")
    with tmpfs(tmp_path / "rdisk", "40k") as rdisk:
        done = cli_process(
            tmp_path / "w", "report", "--config", settings, "--cache-dir", "cache", "--reports-dir", rdisk / "reports"
        )
        one_error(done, 1, "no space left writing", str(rdisk / "reports"), "needed")
        _verify_ok(tmp_path / "w", Path("cache"))
        assert temporaries(rdisk) == [] and temporaries(tmp_path / "w" / "cache") == []
        kept = checksums(tmp_path / "w" / "cache")
        assert any(name.startswith("plot/") for name in kept)  # the failure came after real work
        resize(rdisk, "16m")
        again = cli_process(
            tmp_path / "w",
            "report",
            "--config",
            settings,
            "--cache-dir",
            "cache",
            "--reports-dir",
            rdisk / "reports",
            "--json",
        )
        assert again.returncode == 0, again.stderr
        # Nothing done before the failure is done again.
        stages = json.loads(again.stdout)["stages"]
        assert all(s["status"] == "hit" for s in stages if f"{s['stage']}/{s['key']}" in kept)
        assert checksums(tmp_path / "w" / "cache").items() >= kept.items()


def test_full_cache_disk_during_report_is_one_line(tmp_path, cache_on_small_disk, report_reference):
    disk = cache_on_small_disk
    _, _, settings = report_reference
    before = checksums(disk / "cache")
    done = cli_process(tmp_path, "report", "--config", settings, "--cache-dir", disk / "cache", "--jobs", "1")
    one_error(done, 1, "no space left writing", str(disk / "cache"), "needed")
    assert {k: v for k, v in checksums(disk / "cache").items() if k in before} == before
    _verify_ok(tmp_path, disk / "cache")


# -- permissions -----------------------------------------------------------------------------------


def as_user(cwd: Path, *args):
    return cli_process(cwd, *args, preexec_fn=without_root_powers)


@pytest.fixture
def locked_folders(tmp_path, fetched_cache):
    """readonly/ (0555, empty), theirs/ (0755, owned by uid 65534), and a full cache made read-only."""
    (tmp_path / "readonly").mkdir(mode=0o555)
    (tmp_path / "readonly").chmod(0o555)
    (tmp_path / "theirs").mkdir()
    os.chown(tmp_path / "theirs", 65534, 65534)
    yield tmp_path
    (tmp_path / "readonly").chmod(0o755)


@pytest.mark.parametrize("folder", ["readonly", "theirs", "readonly/sub"])
@pytest.mark.parametrize(
    "command", [("fetch", "--source", "{archive}"), ("train", "--n-epochs", "2"), ("report", "--config", "{settings}")]
)
def test_unwritable_cache_folder_is_one_line_exit_2(locked_folders, tiny_archive, report_reference, folder, command):
    tmp_path = locked_folders
    args = [a.format(archive=tiny_archive, settings=report_reference[2]) for a in command]
    before = tree(tmp_path, skip=("systmp", "mplconfig", "home"))
    done = as_user(tmp_path, *args, "--cache-dir", folder, "-q")
    one_error(done, 2, "cannot write to", folder.split("/")[0], "Permission denied")
    assert tree(tmp_path, skip=("systmp", "mplconfig", "home")) == before


def test_unwritable_reports_folder_is_one_line_exit_2_and_the_cache_is_kept(tmp_path, fetched_cache):
    fresh_copy(fetched_cache)(tmp_path / "w")
    (tmp_path / "w" / "reports").mkdir(mode=0o555)
    (tmp_path / "w" / "reports").chmod(0o555)
    try:
        done = as_user(tmp_path / "w", "plot", "--n-epochs", "2", "--cache-dir", "cache", "-q")
        one_error(done, 2, "cannot write to", "reports", "Permission denied")
        assert list((tmp_path / "w" / "reports").iterdir()) == []
        # The work done before the failing write is cached: the next plot elsewhere reuses it.
        doc = json.loads(
            cli_process(
                tmp_path / "w",
                "plot",
                "--n-epochs",
                "2",
                "--cache-dir",
                "cache",
                "--reports-dir",
                "elsewhere",
                "--json",
            ).stdout
        )
        assert len(doc["figures"]) == 5
        _verify_ok(tmp_path / "w", Path("cache"))
    finally:
        (tmp_path / "w" / "reports").chmod(0o755)


def test_read_only_cache_still_serves_what_it_holds(tmp_path, fetched_cache):
    fresh_copy(fetched_cache)(tmp_path / "w")
    trained = cli_process(tmp_path / "w", "train", "--n-epochs", "2", "--cache-dir", "cache", "--json")
    assert trained.returncode == 0
    cache = tmp_path / "w" / "cache"
    folders = [cache, *[p for p in cache.rglob("*") if p.is_dir()]]
    for folder in folders:
        folder.chmod(0o555)
    try:
        before = tree(cache)
        hit = as_user(tmp_path / "w", "train", "--n-epochs", "2", "--cache-dir", "cache", "--json")
        assert hit.returncode == 0, hit.stderr
        assert json.loads(hit.stdout)["cached"] is True
        for args in (("cache", "ls"), ("cache", "verify"), ("status", "--n-epochs", "2")):
            assert as_user(tmp_path / "w", *args, "--cache-dir", "cache").returncode == 0
        one_error(
            as_user(tmp_path / "w", "train", "--n-epochs", "3", "--cache-dir", "cache"),
            2,
            "cannot write to",
            "Permission denied",
        )
        assert tree(cache) == before
    finally:
        for folder in folders:
            folder.chmod(0o755)


def test_a_missing_cache_folder_and_its_parents_are_created(tmp_path, tiny_archive):
    done = cli_process(tmp_path, "fetch", "--source", tiny_archive, "--cache-dir", "a/b/c/cache", "--json")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a/b/c/cache/workspace.json").is_file()


@pytest.mark.parametrize("option", ["--cache-dir", "--reports-dir"])
def test_a_cache_or_reports_path_that_is_a_file_is_exit_2(tmp_path, tiny_archive, option):
    (tmp_path / "taken").write_text("not a folder")
    args = ("plot", "--n-epochs", "2") if option == "--reports-dir" else ("fetch", "--source", tiny_archive)
    before = tree(tmp_path, skip=("systmp", "mplconfig", "home"))
    done = cli_process(tmp_path, *args, option, "taken", "-q")
    one_error(done, 2, "taken", "is a file, not a folder")
    assert tree(tmp_path, skip=("systmp", "mplconfig", "home")) == before


def test_a_killed_writers_temporary_is_removed_by_the_next_write_of_that_file(tmp_path):
    """A figure write killed with kill -9 leaves ``.curves.png.<pid>-<hex>.tmp``; the next write of
    curves.png removes it, and leaves alone a live writer's temporary and another file's."""
    from cifarcli.files import write_atomic

    target = tmp_path / "figures" / "curves.png"
    target.parent.mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER_KILLED_MID_WRITE, str(target)], stdout=subprocess.PIPE, text=True
    )
    dead = Path(writer.stdout.readline().strip())  # printed once its half-written temporary exists
    assert dead.read_bytes() == b"half"
    writer.kill()
    assert writer.wait() == -signal.SIGKILL
    live = target.parent / f".curves.png.{os.getpid()}-{'0' * 12}.tmp"
    other = target.parent / f".weights.png.{writer.pid}-{'0' * 12}.tmp"
    for path in (live, other):
        path.write_bytes(b"keep")

    write_atomic(target, b"whole", mode=0o666)

    assert target.read_bytes() == b"whole"
    assert not dead.exists()
    assert live.read_bytes() == other.read_bytes() == b"keep"
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(["curves.png", live.name, other.name])


# Writes a temporary named as write_atomic names it, says where, and waits to be killed.
WRITER_KILLED_MID_WRITE = """
import os, sys, time
from pathlib import Path
target = Path(sys.argv[1])
tmp = target.parent / f".{target.name}.{os.getpid()}-{'ab' * 6}.tmp"
tmp.write_bytes(b"half")
print(tmp, flush=True)
time.sleep(120)
"""
