"""A real loopback HTTP server with scripted misbehaviour, for download tests.

    with LoopbackServer() as server:
        server.route("/a.tar.gz", body=data, cut_after=1000, cut_times=1)
        download(server.url("/a.tar.gz"), dest)
        server.requests   # [(path, headers), ...] in arrival order

Each route serves its bytes with Range support (206 + Content-Range, 416 past
the end). Misbehaviour is scripted per route and applies to the first N
requests only, so every retry loop in the code under test ends.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Route:
    body: bytes = b""
    status: int = 200  # e.g. 404: answer every request with this status
    content_type: str = "application/octet-stream"
    cut_after: int | None = None  # close the connection after this many body bytes...
    cut_times: int = 0  # ...on this many first requests
    fail_times: int = 0  # answer 500 to this many first requests
    stall: float = 0.0  # sleep this long before answering...
    stall_times: int = 0  # ...on this many first requests
    location: str | None = None  # answer 302 to this URL (absolute, or a path here)
    honour_range: bool = True  # False: ignore Range and send the whole body with 200
    trickle: int = 0  # send the body in pieces of this many bytes...
    trickle_delay: float = 0.0  # ...sleeping this long before each (a slow link)
    endless: bool = False  # stream the body over and over, without a Content-Length...
    endless_for: float = 20.0  # ...until the client hangs up or this many seconds pass
    announce: int | None = None  # with endless: claim this Content-Length anyway
    hits: int = 0


# A client that hangs up mid-response is a scripted event in these tests (a kill, a cap reached),
# not a server failure: socketserver would print its traceback into whichever test runs next.
_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler):
        super().__init__(address, handler)
        self._finished = threading.Condition()
        self.finished = 0  # requests whose handling is over (answered, failed or cut)

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], _DISCONNECTS):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request) -> None:
        super().shutdown_request(request)
        with self._finished:
            self.finished += 1
            self._finished.notify_all()

    def wait_finished(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` requests have been handled to the end; False on timeout."""
        with self._finished:
            return self._finished.wait_for(lambda: self.finished >= n, timeout)


class LoopbackServer:
    """ThreadingHTTPServer on 127.0.0.1, random port, serving scripted routes."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.app = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def route(self, path: str, **kw) -> Route:
        self.routes[path] = Route(**kw)
        return self.routes[path]

    def wait_finished(self, n: int, timeout: float = 10) -> bool:
        """Wait until ``n`` requests in all have been handled to the end (the handler thread is done)."""
        return self._httpd.wait_finished(n, timeout)

    def ranges(self, path: str) -> list[str | None]:
        """The Range header of each request for ``path``, in order (None when absent)."""
        return [headers.get("Range") for p, headers in self.requests if p == path]

    def _take(self, path: str, headers: dict[str, str]) -> tuple[Route | None, int]:
        """Record the request; return its route and which request to it this is (0-based)."""
        with self._lock:
            self.requests.append((path, headers))
            route = self.routes.get(path)
            if route is None:
                return None, 0
            route.hits += 1
            return route, route.hits - 1


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        route, n = self.server.app._take(self.path, dict(self.headers))
        if route is None:
            return self._simple(404, b"not found")
        if n < route.stall_times:
            time.sleep(route.stall)
        if route.location is not None:
            return self._redirect(route.location)
        if n < route.fail_times:
            return self._simple(500, b"try later")
        if route.status != 200:
            return self._simple(route.status, route.body)
        if route.endless:
            return self._endless(route)
        start = self._range_start(route) if route.honour_range else 0
        if start is None:
            return self._simple(416, b"")
        body = route.body[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(route.body) - 1}/{len(route.body)}")
        self.end_headers()
        if n < route.cut_times and route.cut_after is not None:
            # Promise the full length, deliver less, hang up: a connection cut mid-body.
            self.wfile.write(body[: route.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        if route.trickle:
            for i in range(0, len(body), route.trickle):
                time.sleep(route.trickle_delay)
                try:
                    self.wfile.write(body[i : i + route.trickle])
                    self.wfile.flush()
                except OSError:  # the client was killed mid-download
                    self.close_connection = True
                    return
            return
        self.wfile.write(body)

    def _endless(self, route: Route) -> None:
        """Send ``route.body`` again and again (a body that never ends), bounded by ``endless_for``."""
        self.send_response(200)
        self.send_header("Content-Type", route.content_type)
        if route.announce is not None:
            self.send_header("Content-Length", str(route.announce))
        self.end_headers()
        self.close_connection = True  # no length: the body ends when the connection does
        piece = route.body or bytes(64 << 10)
        deadline = time.monotonic() + route.endless_for
        while time.monotonic() < deadline:
            try:
                self.wfile.write(piece)
            except _DISCONNECTS:  # the client stopped reading: what the test wants
                return

    def _range_start(self, route: Route) -> int | None:
        """First byte asked for (0 without Range); None when past the end (416)."""
        value = self.headers.get("Range")
        if not value:
            return 0
        start = int(value.removeprefix("bytes=").split("-")[0])
        return start if start < len(route.body) else None

    def _simple(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def http_server():
    """A started ``LoopbackServer``, shut down after the test."""
    with LoopbackServer() as server:
        yield server
