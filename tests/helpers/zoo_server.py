"""A local HTTP server for the model-zoo tests: serves stand-in files from memory on 127.0.0.1.

It counts the requests per path, can hold a response until released (to overlap two clients) and
can cut a response short after sending its Content-Length (an interrupted transfer). No other
network is touched.
"""
from __future__ import annotations

import hashlib
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from dekr.zoo import ZooEntry, ZooFile


class StandInServer:
    """``with StandInServer() as server: server.files["/a.pth"] = b"..."; server.url("/a.pth")``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: Counter[str] = Counter()
        self.truncate_next: set[str] = set()  # paths whose next response stops half-way
        self.gate = threading.Event()  # responses wait for it (set by default)
        self.gate.set()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> StandInServer:  # noqa: PYI034 (typing.Self is 3.11+, we support 3.10)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests[self.path] += 1
                    body = server.files.get(self.path)
                    truncate = self.path in server.truncate_next
                    server.truncate_next.discard(self.path)
                server.gate.wait(timeout=10)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if truncate:
                    # Promise the whole body, send half, hang up: what a dropped connection looks like.
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
                pass

        return Handler


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def standin_entry(url: str | None, sha256: str | None, *, filename: str = "standin.pth",
                  name: str = "test/standin") -> ZooEntry:
    """A test-only zoo entry: a small stand-in file with its real hash (or none)."""
    return ZooEntry(name=name, format="mmpose", weights=ZooFile(filename, url=url, sha256=sha256), spec="coco",
                    config=None, ap=None, ap_protocol="n/a", ap_source="n/a", licence="n/a",
                    homepage="https://example.invalid/standin")
