"""The two ends of the loopback bridge between the browser's sandbox and the app's sandbox.

Each sandbox has a network namespace with only its own loopback, so Chromium cannot reach the
app's port and neither can reach the host. The host (trusted) creates one listening unix socket,
`<root>/bridge/app.sock`, in a directory only it may write, and hands the listening descriptor
to the app's sandbox at its start: there `serve_app` accepts on it and forwards every connection
to the app's `127.0.0.1:PORT`. The directory is bound read-only into the browser's sandbox
(`/bridge`), where `serve_browser` listens on `127.0.0.1:PORT` and forwards every connection to
`/bridge/app.sock`. The page thus sees an ordinary `http://127.0.0.1:PORT` origin and nothing
else, and the app never has a writable path outside its own workspace.

This file runs INSIDE the sandboxes as `python3 -c <this file> ...` (standard library only; the
host imports it only for `connect_unix`). Connections open the socket with O_PATH|O_NOFOLLOW and
check it is a socket, so nothing at that path can redirect them elsewhere.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading

SOCKET = "/bridge/app.sock"
_CHUNK = 65536


def connect_unix(path: str, timeout: float | None = None) -> socket.socket:
    """Connect to the unix socket at `path` without following a symlink there."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise ConnectionRefusedError(f"{path} is not a socket")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(f"/proc/self/fd/{fd}")
        except BaseException:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(_CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _forward(client: socket.socket, connect) -> None:
    try:
        upstream = connect()
    except OSError:
        client.close()
        return
    threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
    _pipe(upstream, client)
    client.close()
    upstream.close()


def _accept_forever(listener: socket.socket, connect) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_forward, args=(client, connect), daemon=True).start()


def serve_browser(port: int, ready: str) -> None:
    """Browser side: 127.0.0.1:port -> /bridge/app.sock; touches `ready` once listening."""
    listener = socket.create_server(("127.0.0.1", port), backlog=64)
    with open(ready, "w"):
        pass
    _accept_forever(listener, lambda: connect_unix(SOCKET))


def serve_app(kind: str, port: int, script: str, listen_fd: int) -> int:
    """App side: the inherited listening socket -> 127.0.0.1:port, then run the app server (the
    verifier's static file server over the workspace, or the app's own `python3 <script> <port>`)."""
    listener = socket.socket(fileno=listen_fd)
    tcp = lambda: socket.create_connection(("127.0.0.1", port), timeout=10)  # noqa: E731
    threading.Thread(target=_accept_forever, args=(listener, tcp), daemon=True).start()
    if kind == "static":
        from functools import partial
        from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

        ThreadingHTTPServer(("127.0.0.1", port), partial(Quiet, directory=os.getcwd())).serve_forever()
        return 0
    return subprocess.call([sys.executable, script, str(port)])


if __name__ == "__main__":
    if sys.argv[1] == "browser":
        serve_browser(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(serve_app(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])))
