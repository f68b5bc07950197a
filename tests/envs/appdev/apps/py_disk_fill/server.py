"""The adder backend, but it first writes files without end (the sandbox's disk quota stops it)."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

PAGE = (Path(__file__).parent / "index.html").read_bytes()


def add(a, b):
    return a + b


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status, body, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/":
            return self._send(200, PAGE, "text/html; charset=utf-8")
        if url.path == "/api/sum":
            q = parse_qs(url.query)
            body = json.dumps({"sum": add(float(q["a"][0]), float(q["b"][0]))}).encode()
            return self._send(200, body, "application/json")
        return self._send(404, b"not found", "text/plain")

    do_HEAD = do_GET


for i in range(100_000):
    (Path(__file__).parent / f"junk{i}.bin").write_bytes(b"x" * 1_000_000)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
