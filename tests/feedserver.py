"""A real HTTP server on 127.0.0.1 for the tests, serving fixture feeds and misbehaving.

Each path is given a Reply, or a function from the request to a Reply, so a test can script
exactly what a publisher does: ETags and 304s, redirects, throttling, slow or huge bodies.
"""

from __future__ import annotations

import contextlib
import gzip
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FEEDS = Path(__file__).parent / "data" / "feeds"


@dataclass
class Request:
    path: str
    headers: dict[str, str]  # lower-case names
    started: float = 0.0  # time.monotonic() when it arrived
    finished: float = 0.0  # and when the reply was sent


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line
    drip_s: float = 0.0  # between chunks of the body
    chunks: int = 1
    # Stream `stream_bytes` of filler after `body` (for bodies too big to hold in memory).
    stream_bytes: int = 0


Route = Reply | Callable[[Request], Reply]


def feed(
    name: str, content_type: str = "application/rss+xml; charset=utf-8", **headers: str
) -> Reply:
    return Reply(200, (FEEDS / name).read_bytes(), {"Content-Type": content_type, **headers})


def conditional(
    body: bytes,
    etag: str | None = None,
    last_modified: str | None = None,
    content_type: str = "application/rss+xml; charset=utf-8",
) -> Callable[[Request], Reply]:
    """A publisher that honours If-None-Match / If-Modified-Since with 304."""

    def reply(request: Request) -> Reply:
        if etag and request.headers.get("if-none-match") == etag:
            return Reply(304, headers={"ETag": etag})
        if last_modified and not etag and request.headers.get("if-modified-since") == last_modified:
            return Reply(304)
        headers = {"Content-Type": content_type}
        if etag:
            headers["ETag"] = etag
        if last_modified:
            headers["Last-Modified"] = last_modified
        return Reply(200, body, headers)

    return reply


def gzipped(reply: Reply) -> Reply:
    return Reply(
        reply.status,
        gzip.compress(reply.body),
        {**reply.headers, "Content-Encoding": "gzip"},
    )


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 -- the name http.server calls
                request = Request(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic()
                )
                with server._lock:
                    server.requests.append(request)
                    route = server.routes.get(self.path)
                reply = (
                    Reply(404, b"not found")
                    if route is None
                    else (route(request) if callable(route) else route)
                )
                # The client may give up (a timeout or size limit): that is the point.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(reply)
                request.finished = time.monotonic()

            def _send(self, reply: Reply) -> None:
                time.sleep(reply.delay_s)
                self.send_response(reply.status)
                length = len(reply.body) + reply.stream_bytes
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.status != 304:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                if reply.status == 304:
                    return
                size = max(1, len(reply.body) // max(reply.chunks, 1))
                for start in range(0, len(reply.body), size):
                    self.wfile.write(reply.body[start : start + size])
                    self.wfile.flush()
                    time.sleep(reply.drip_s)
                filler = b" " * 65536
                remaining = reply.stream_bytes
                while remaining > 0:
                    self.wfile.write(filler[: min(remaining, len(filler))])
                    remaining -= len(filler)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # many pollers at once in the daemon tests

            def handle_error(self, request: object, client_address: object) -> None:
                # A client killed or gone mid-request (the crash tests) is no server error.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)  # type: ignore[arg-type]

        self._http = Server(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}{path}"

    def requests_to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
