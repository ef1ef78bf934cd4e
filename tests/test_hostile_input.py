"""Hostile input never destroys, hangs or garbles: `export --out` at a device, FIFO or symlink,
endless or huge sources and downloads, markup and control characters in class names and paths.

Real files, real FIFOs and device nodes, a real loopback HTTP server, real processes.
"""

from __future__ import annotations

import socket
import struct

from httpserver import LoopbackServer

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
