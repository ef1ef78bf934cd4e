"""Real cifarcli processes for fault-injection and reliability tests.

    result = cli_process(tmp_path, "train", "--n-epochs", "2", "--cache-dir", cache)
    proc = spawn(tmp_path, "report", ...); kill_group(proc)
    before = tree(tmp_path); ...; assert tree(tmp_path) == before

Every process runs with HOME and TMPDIR inside the test's own folder, so a
write outside the cache (matplotlib's font cache, a system temp file) shows up
in ``tree()`` instead of going unnoticed.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

TEMPORARY_PATTERNS = (".tmp-*", "*.part", "*.tmp")


def env_for(root: Path) -> dict:
    env = dict(os.environ)
    env.pop("CIFARCLI_CACHE_DIR", None)
    for name, folder in (("HOME", "home"), ("TMPDIR", "systmp"), ("MPLCONFIGDIR", "mplconfig")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        env[name] = str(root / folder)
    env["COLUMNS"] = "200"
    return env


def _default_signals():
    # A child of a non-interactive shell may inherit SIGINT ignored; Ctrl-C must reach it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_process(
    cwd: Path, *args, preexec_fn=None, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m cifarcli ARGS`` in ``cwd`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "cifarcli", *map(str, args)],
        cwd=cwd,
        env=env or env_for(Path(cwd)),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn or _default_signals,
    )


def spawn(cwd: Path, *args, env: dict | None = None) -> subprocess.Popen:
    """Start ``python -m cifarcli ARGS`` in its own process group (so joblib workers die with it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "cifarcli", *map(str, args)],
        cwd=cwd,
        env=env or env_for(Path(cwd)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_signals,
    )


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to the process group of ``proc``; True when it was still running."""
    running = proc.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.communicate(timeout=120)
    return running


# The plain lines that say which phase a command is in when stderr is not a terminal (issue 20).
PHASE = re.compile(
    r"^(training λ=|training \d+ settings on |checking gradients |gradient check: (PASS|FAIL)|"
    r"evaluating λ=|drawing figures: \d+$|drawing the heat-map$|rendering the report|writing \S*report\.md|"
    r"combining \d+ runs )"
)


def without_phases(lines: list[str]) -> list[str]:
    """``lines`` of stderr without the phase lines: the notices and errors a test looks at."""
    return [line for line in lines if not PHASE.match(line)]


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def one_error(result, code: int, *words: str) -> str:
    """The run failed with ``code`` and exactly one ``error:`` line holding every word."""
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """relative path -> sha256 (files) or 'dir', for everything under ``root``."""
    root = Path(root)
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        found[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def temporaries(root: Path) -> list[Path]:
    """Leftovers of interrupted writes under ``root``."""
    return sorted({p for pattern in TEMPORARY_PATTERNS for p in Path(root).rglob(pattern)})


def checksums(cache: Path) -> dict[str, str]:
    """'stage/key' -> payload_sha256 of every committed artifact."""
    found = {}
    for meta in sorted(Path(cache).glob("*/*/meta.json")):
        if meta.parent.name.startswith("."):  # a write in progress (or killed mid-commit), not an artifact
            continue
        found[f"{meta.parent.parent.name}/{meta.parent.name}"] = json.loads(meta.read_text())["payload_sha256"]
    return found


# -- permissions as root --------------------------------------------------------------------

_CAPS_THAT_BYPASS_PERMISSIONS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
_PR_CAPBSET_DROP = 24


def without_root_powers():
    """preexec_fn: the child keeps uid 0 but loses the capabilities that ignore file permissions.

    As root every folder is writable, so permission errors cannot be seen. Switching to
    'nobody' does not work here: the interpreter lives under /root (mode 0700). Dropping
    CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH / CAP_FOWNER from the bounding set makes the
    exec'd process obey mode bits: a 0555 folder or one owned by another user is read-only.
    Not root: nothing to drop, permissions already bite.
    """
    _default_signals()
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _CAPS_THAT_BYPASS_PERMISSIONS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


# -- a small real file system -----------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str):
    """A tmpfs of ``size`` (e.g. '600k') mounted at ``mountpoint``; unmounted afterwards."""
    import pytest

    mountpoint.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def resize(mountpoint: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mountpoint)], check=True)


def used_kib(mountpoint: Path) -> int:
    st = os.statvfs(mountpoint)
    return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024


def imported_cache(root: Path, archive: Path) -> Path:
    """``root/cache`` with ``archive`` imported by a real ``cifarcli fetch``."""
    done = cli_process(root, "fetch", "--source", archive, "--cache-dir", "cache", "-q")
    assert done.returncode == 0, done.stderr
    return root / "cache"


def copied_workspace(tmp_path: Path, cache: Path, settings: str) -> Path:
    """``tmp_path`` holding a copy of ``cache`` and the report settings ``s.toml``."""
    shutil.copytree(cache, tmp_path / "cache")
    (tmp_path / "s.toml").write_text(settings)
    return tmp_path


class Terminal:
    """``python -m cifarcli ARGS`` with stderr on a pty of ``columns`` × 30; ``drawn`` is what it received."""

    def __init__(self, cwd: Path, *args, columns: int = 80):
        env = {**env_for(cwd), "COLUMNS": str(columns), "LINES": "30", "TERM": "xterm"}
        for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
            env.pop(name, None)
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cifarcli", *map(str, args)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_default_signals,  # Ctrl-C must reach it, even under a shell that ignores SIGINT
        )
        os.close(slave)
        self.drawn = bytearray()

    def read(self, until=lambda drawn: False, timeout: float = 240) -> bool:
        """Read until ``until(text drawn so far)`` holds (True) or the command is done (False)."""
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"still running after {timeout} s: {self.drawn[-2000:]!r}"
            if until(self.text()):
                return True
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the command and its workers are gone
                    return False
                if not chunk:
                    return False
                self.drawn += chunk
            elif self.proc.poll() is not None:
                return False

    def finish(self) -> tuple[int, str]:
        try:
            self.read()
            out = self.proc.communicate(timeout=60)[0].decode()
        finally:
            os.close(self.master)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.communicate()
        return self.proc.returncode, out

    def text(self) -> str:
        return self.drawn.decode(errors="replace")


def on_terminal(cwd: Path, *args, columns: int = 80) -> tuple[int, str, str]:
    """(exit code, stdout, what stderr drew on a ``columns`` × 30 terminal) of ``python -m cifarcli ARGS``."""
    terminal = Terminal(cwd, *args, columns=columns)
    code, out = terminal.finish()
    return code, out, terminal.text()


COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # within a line
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]")  # cursor moves: between lines


def frames(drawn: str) -> list[str]:
    """Every line the terminal showed at some moment: escapes out, split at carriage returns and newlines."""
    plain = ESCAPES.sub("\n", COLOURS.sub("", drawn))
    return [line.strip() for line in re.split(r"[\r\n]", plain) if line.strip()]


SPINNER = re.compile(r"^[\u2800-\u28ff] ")  # rich's spinner glyph leading a row


def bar_lines(lines: list[str], label: str) -> list[str]:
    """The rows of the bars whose label is ``label`` (the spinner in front taken off)."""
    rows = [SPINNER.sub("", line) for line in lines]
    return [row for row in rows if row.startswith(label + " ") and "━" in row]
