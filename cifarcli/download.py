"""Downloading a CIFAR-10 archive over HTTP(S): resumable through a ``.part`` file, retried, verified.

A network failure is ``WorkFailed`` (exit 1); a wrong answer from the server (a web
page, a wrong size or checksum, an insecure redirect) is ``CifarError`` (exit 2).
Nothing is kept under the final name unless its size and checksums match.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from cifarcli import __version__
from cifarcli.errors import CifarError, WorkFailed, disk_error, human_size
from cifarcli.source_files import CHUNK, MAX_SOURCE_BYTES, checksums, is_url


class _Transient(Exception):
    """A failure worth retrying (timeouts, cut connections, 5xx)."""


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urlsplit(req.full_url).scheme, urlsplit(newurl).scheme
        if new not in ("http", "https") or (old == "https" and new != "https"):
            fp.close()
            raise CifarError(
                f"refusing redirect from {req.full_url} to {newurl} (insecure or not HTTP)", setting="source"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _with_read_timeout(connection_class, read_timeout: float):
    """Connection factory: connect with urlopen's timeout, then wait ``read_timeout`` per read."""

    class Connection(connection_class):
        def connect(self):
            super().connect()
            self.sock.settimeout(read_timeout)

    return Connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float):
        super().__init__()
        self._connection = _with_read_timeout(http.client.HTTPConnection, read_timeout)

    def http_open(self, req):
        return self.do_open(self._connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float):
        super().__init__(context=ssl.create_default_context())
        self._connection = _with_read_timeout(http.client.HTTPSConnection, read_timeout)

    def https_open(self, req):
        return self.do_open(self._connection, req, context=self._context)


def download(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    expected_size: int | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    connect_timeout: float = 10,
    read_timeout: float = 60,
    retries: int = 4,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming, retrying and verifying.

    Nothing is ever left under ``dest`` unless its size and checksums (when
    given) match. A ``.part`` left by an interrupted run is resumed with an
    HTTP Range request. Transient failures are retried ``retries`` times with
    exponential back-off (an attempt that grew the file starts a fresh count).
    """
    if not is_url(url):
        raise CifarError(f"not an http(s) URL: {url}")
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, dest.parent, expected_size) from None
    opener = urllib.request.build_opener(_RedirectHandler, _HTTPHandler(read_timeout), _HTTPSHandler(read_timeout))
    failures = 0
    while True:
        before = _size(part)
        try:
            _fetch(opener, url, part, expected_size, on_progress, connect_timeout)
            break
        except _Transient as exc:
            failures = 1 if _size(part) > before else failures + 1
            if failures > retries:
                raise WorkFailed(
                    f"cannot download {url}: {exc} (gave up after {retries} retries)", setting="source"
                ) from exc
            time.sleep(backoff * 2 ** (failures - 1))
    _verify(url, part, md5, sha256, expected_size)
    os.replace(part, dest)
    return dest


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _fetch(
    opener,
    url: str,
    part: Path,
    expected_size: int | None,
    on_progress: Callable[[int, int | None], None] | None,
    timeout: float,
) -> None:
    """One attempt: append the rest of ``url`` to ``part`` (or rewrite it when the server restarts)."""
    offset = _size(part)
    if expected_size is not None and offset >= expected_size:
        if offset == expected_size:
            return  # an earlier run got every byte; verification decides
        offset = _discard(part)
    if offset > MAX_SOURCE_BYTES:  # grown past the cap (by an older version): no CIFAR-10 copy to resume
        offset = _discard(part)
    response, offset = _open(opener, url, part, offset, timeout)
    with response:
        total = _total_size(response, offset) or expected_size
        _check_response(url, part, response, total, expected_size)
        if on_progress:
            on_progress(offset, total)
        try:
            out = open(part, "ab" if offset else "wb")
        except OSError as exc:
            raise disk_error(exc, part, total - offset if total else None) from None
        with out:
            _stream(url, part, response, out, offset, total, expected_size, on_progress)


def _open(opener, url: str, part: Path, offset: int, timeout: float):
    """(response, offset to write at): resume from ``offset`` if the server honours the Range."""
    headers = {"User-Agent": f"cifarcli/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            # Our .part no longer fits the file on the server: start over.
            return _open(opener, url, part, _discard(part), timeout)
        raise _network_error(url, exc) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(url, exc) from exc
    if response.status != 206:
        return response, 0  # 200: the server ignored Range and sends the whole file
    if offset and _range_start(response) == offset:
        return response, offset
    response.close()
    _discard(part)
    raise _Transient("server answered with a range we did not ask for; starting over")


def _discard(part: Path) -> int:
    part.unlink(missing_ok=True)
    return 0


def _range_start(response) -> int | None:
    """Start offset of a ``Content-Range: bytes START-END/TOTAL`` header."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _total_size(response, offset: int) -> int | None:
    """Full file size: the total of a Content-Range, else offset + Content-Length."""
    if response.status == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length", "")
    return offset + int(length) if length.isdigit() else None


def _check_response(url: str, part: Path, response, total: int | None, expected_size: int | None) -> None:
    """Refuse, before reading the body, a web page or a file of the wrong size."""
    if response.headers.get_content_type() == "text/html":
        _discard(part)
        raise _html_error(url)
    if expected_size is not None and total is not None and total != expected_size:
        _discard(part)
        raise CifarError(f"{url} is {total} bytes, expected {expected_size}", setting="source")
    if total is not None and total > MAX_SOURCE_BYTES:
        _discard(part)
        raise CifarError(
            f"{url} is {human_size(total)}, far larger than any CIFAR-10 archive "
            f"(at most {human_size(MAX_SOURCE_BYTES)}); not downloading it",
            setting="source",
        )


def _html_error(url: str) -> CifarError:
    return CifarError(
        f"{url} served a web page instead of the archive",
        hint="the address may lead to a landing or login page",
        setting="source",
    )


def _stream(url, part, response, out, offset, total, expected_size, on_progress) -> None:
    """Copy the body to ``out`` chunk by chunk; network trouble becomes ``_Transient``."""
    first = offset == 0
    # The official size when known; else the cap. A Content-Length is enforced by http.client,
    # but a body without one (or chunked) could otherwise grow the .part until the disk is full.
    limit = expected_size if expected_size is not None else MAX_SOURCE_BYTES
    while True:
        try:
            chunk = response.read(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(_describe(exc)) from exc
        if not chunk:
            break
        if first and _looks_like_html(chunk):
            out.close()
            _discard(part)
            raise _html_error(url)
        first = False
        if offset + len(chunk) > limit:  # checked before writing: the .part never exceeds the limit
            out.close()
            _discard(part)
            raise _too_long(url, expected_size)
        try:
            out.write(chunk)
            if total is not None and offset + len(chunk) >= total:
                out.flush()  # a full disk shows here, not in the close after the loop
        except OSError as exc:
            raise disk_error(exc, part, total - offset if total else None) from None
        offset += len(chunk)
        if on_progress:
            on_progress(offset, total)
    # http.client returns b"" rather than raising when a body stops short of its length.
    if total is not None and offset < total:
        raise _Transient(f"connection closed after {offset} of {total} bytes")


def _too_long(url: str, expected_size: int | None) -> CifarError:
    if expected_size is not None:
        return CifarError(f"{url} sent more than the expected {expected_size} bytes", setting="source")
    return CifarError(
        f"{url} sent more than {human_size(MAX_SOURCE_BYTES)}, more than any CIFAR-10 archive; "
        "stopped and removed the partial download",
        setting="source",
    )


def _looks_like_html(chunk: bytes) -> bool:
    # Some hosts answer a missing file with a 200 page labelled application/octet-stream.
    return chunk[:512].lstrip().lower().startswith((b"<!doctype", b"<html"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed mid-download"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    return str(exc) or type(exc).__name__


def _network_error(url: str, exc: BaseException) -> Exception:
    """Classify a failure to get a response: ``_Transient`` to retry, else ``WorkFailed``."""
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code in (408, 429) or exc.code >= 500:
            return _Transient(f"HTTP {exc.code} {exc.reason}")
        if 300 <= exc.code < 400:
            return WorkFailed(f"cannot download {url}: too many redirects", setting="source")
        return WorkFailed(f"cannot download {url}: HTTP {exc.code} {exc.reason}", setting="source")
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(
        reason,
        (
            TimeoutError,
            socket.timeout,
            ConnectionResetError,
            ConnectionAbortedError,
            BrokenPipeError,
            http.client.HTTPException,
        ),
    ):
        return _Transient(_describe(reason))
    if isinstance(reason, socket.gaierror):
        return WorkFailed(f"cannot download {url}: host not found", setting="source")
    if isinstance(reason, ConnectionRefusedError):
        return WorkFailed(f"cannot download {url}: connection refused", setting="source")
    return WorkFailed(f"cannot download {url}: {reason}", setting="source")


def _verify(url: str, part: Path, md5: str | None, sha256: str | None, expected_size: int | None) -> None:
    """Check size and checksums of the finished ``.part``; delete it when they do not match."""
    size = _size(part)
    if expected_size is not None and size != expected_size:
        _discard(part)
        raise CifarError(f"{url} gave {size} bytes, expected {expected_size}", setting="source")
    if md5 is None and sha256 is None:
        return
    got_md5, got_sha256 = checksums(part)
    for kind, want, got in (("md5", md5, got_md5), ("sha256", sha256, got_sha256)):
        if want is not None and want.lower() != got:
            _discard(part)
            raise CifarError(
                f"checksum mismatch for {url}: expected {kind} {want.lower()}, got {got}",
                hint="the download is damaged or the file changed; retry",
                setting="source",
            )
