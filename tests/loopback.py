"""A real HTTP server on 127.0.0.1 for download tests: serves archives from memory, with ``Range``
support (206) or without it (200 every time), and can cut a response short to simulate a dropped link.

Not a mock: the code under test opens real sockets and reads real HTTP responses.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ArchiveServer:
    """``files``: {name: bytes} served at ``url/name``. ``ranges``: honour ``Range`` headers.
    ``truncate``: {name: n}: the next request for ``name`` sends the full ``Content-Length`` but only
    ``n`` bytes of the body, then closes (once). ``requests`` logs (name, Range header) per request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.truncate: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/").rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start, status = server.files[name], 0, 200
                if rng and server.ranges:
                    start = int(rng.split("=", 1)[1].split("-", 1)[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                cut = server.truncate.pop(name, None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ArchiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def downloads(self, name: str) -> list[str | None]:
        """The Range header of each request for ``name`` (None: a request from the start)."""
        return [r for n, r in self.requests if n == name]
