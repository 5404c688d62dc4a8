"""Fetching feeds over HTTP, politely and within bounds: the one module that imports httpx.

feedparser can fetch by itself, but with no timeout and no size cap; here every fetch has
connect and read timeouts, a total deadline and a body limit (counted after gzip decoding, so
a compressed bomb stops at the limit too), sends the validators from the last 200 response,
and follows redirects itself so that a permanent one can move the feed (RFC 9110 §15.4).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from tracker import __version__

USER_AGENT = f"tracker/{__version__} (news feed poller; +python-httpx)"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 5
_PERMANENT = (301, 308)
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    deadline_s: float = 60.0  # the whole fetch, redirects and body included
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class Fetched:
    """A response we can use: 200 with a body, or 304 Not Modified."""

    status: int
    url: str  # where the body came from, after any redirects
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    moved_to: str | None = None  # where permanent redirects (301, 308) point the feed now
    moved_by: int | None = None  # the status of the first of those redirects

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")

    @property
    def max_age(self) -> timedelta | None:
        """Cache-Control max-age: the server asks not to be asked again sooner."""
        for directive in self.headers.get("cache-control", "").split(","):
            name, _, value = directive.strip().partition("=")
            if name.lower() == "max-age":
                value = value.strip('"')
                if not re.fullmatch(r"[0-9]{1,12}", value) or not int(value):
                    return None
                return min(timedelta(seconds=int(value)), MAX_PUBLISHER_WAIT)
        return None


class FetchFailed(Exception):
    """The fetch did not give us a feed. `kind` says how the poller should treat it."""

    def __init__(
        self,
        kind: str,
        reason: str,
        status: int | None = None,
        retry_after: timedelta | None = None,
        moved_to: str | None = None,
        moved_by: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind = (
            kind  # "gone", "blocked", "throttled", "http", "timeout", "too_large", "network"
        )
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.moved_to = moved_to
        self.moved_by = moved_by


# A publisher's "come back later" longer than this is taken as this: a typo in a header must
# not stop polling for a year.
MAX_PUBLISHER_WAIT = timedelta(days=1)


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Retry-After as seconds or an HTTP date (RFC 9110 §10.2.3), at most a day."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,12}", value):
        return min(timedelta(seconds=int(value)), MAX_PUBLISHER_WAIT)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(when - now, timedelta(0)), MAX_PUBLISHER_WAIT)


class Fetcher:
    """Fetches feeds; one per process, shared by every thread (connections are reused)."""

    def __init__(
        self, limits: FetchLimits | None = None, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.limits = limits or FetchLimits()
        self._cancelled = threading.Event()
        self._client = httpx.Client(
            # Only encodings we decode ourselves, within the body limit (see _decoded).
            headers={
                "User-Agent": USER_AGENT,
                "Accept": _ACCEPT,
                "Accept-Encoding": "gzip, deflate",
            },
            timeout=httpx.Timeout(
                self.limits.read_timeout_s, connect=self.limits.connect_timeout_s
            ),
            follow_redirects=False,
            # A new connection per fetch: feeds are polled minutes apart, and a connection of
            # its own is what lets a fetch past its deadline be cut (see fetch).
            limits=httpx.Limits(max_keepalive_connections=0),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Make every fetch in flight, and every later one, fail at once as "cancelled"."""
        self._cancelled.set()

    def fetch(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """GET a feed, conditionally; FetchFailed for anything but a usable 200 or a 304.

        The work runs in a thread of its own so that the deadline is a hard one: httpx's
        timeouts bound each read, but a server can trickle bytes (even header lines) forever.
        """
        deadline = time.monotonic() + self.limits.deadline_s
        outcome: dict[str, Any] = {}
        done = threading.Event()
        sockets: list[socket.socket] = []  # the fetch's connections, to cut when it must end

        def work() -> None:
            try:
                outcome["fetched"] = self._fetch(url, etag, last_modified, deadline, sockets)
            except BaseException as error:  # handed to the waiting thread below
                outcome["error"] = error
            finally:
                done.set()

        threading.Thread(target=work, name=f"fetch {url}", daemon=True).start()
        while not done.wait(0.05):
            if self._cancelled.is_set() or time.monotonic() > deadline:
                # Shutting the socket down makes the worker's blocked read fail at once, so
                # the thread and its connection end now rather than whenever the server stops.
                for sock in sockets:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                if self._cancelled.is_set():
                    raise FetchFailed("cancelled", "cancelled: tracker is stopping")
                raise FetchFailed("timeout", f"not done within {self.limits.deadline_s:g}s")
        if "error" in outcome:
            raise outcome["error"]
        fetched: Fetched = outcome["fetched"]
        return fetched

    def _fetch(
        self,
        url: str,
        etag: str | None,
        last_modified: str | None,
        deadline: float,
        sockets: list[socket.socket],
    ) -> Fetched:
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        moved_to: str | None = None
        moved_by: int | None = None
        permanent_so_far = True
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                fetched = self._get(current, headers, deadline, sockets)
            except FetchFailed as failure:
                failure.moved_to, failure.moved_by = moved_to, moved_by
                raise
            except httpx.TimeoutException:
                raise FetchFailed("timeout", "timed out", None, None, moved_to, moved_by) from None
            except (httpx.HTTPError, httpx.InvalidURL) as error:
                reason = _network_reason(error)
                raise FetchFailed("network", reason, None, None, moved_to, moved_by) from None
            if fetched.status not in _REDIRECTS:
                return Fetched(
                    fetched.status, current, fetched.body, fetched.headers, moved_to, moved_by
                )
            location = fetched.headers.get("location")
            try:
                current = urljoin(current, location or "")
            except ValueError:
                location = None
            if not location or urlsplit(current).scheme not in ("http", "https"):
                reason = f"HTTP {fetched.status} without a usable Location"
                raise FetchFailed("http", reason, fetched.status, None, moved_to, moved_by)
            if permanent_so_far and fetched.status in _PERMANENT:
                moved_to = current
                moved_by = moved_by or fetched.status
            else:
                permanent_so_far = False
        raise FetchFailed(
            "http", f"more than {MAX_REDIRECTS} redirects", None, None, moved_to, moved_by
        )

    def _get(
        self, url: str, headers: dict[str, str], deadline: float, sockets: list[socket.socket]
    ) -> Fetched:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self._cancelled.is_set():
            raise FetchFailed("timeout", f"not done within {self.limits.deadline_s:g}s")
        timeout = httpx.Timeout(
            min(self.limits.read_timeout_s, remaining),
            connect=min(self.limits.connect_timeout_s, remaining),
        )

        def trace(event: str, info: dict[str, Any]) -> None:
            if event == "connection.connect_tcp.complete":
                sock = info["return_value"].get_extra_info("socket")
                if sock is not None:
                    sockets.append(sock)

        with self._client.stream(
            "GET", url, headers=headers, timeout=timeout, extensions={"trace": trace}
        ) as response:
            response_headers = {key.lower(): value for key, value in response.headers.items()}
            status = response.status_code
            if status in _REDIRECTS or status == 304:
                return Fetched(status, url, b"", response_headers)
            if status != 200:
                raise _failure(status, response_headers)
            declared = response_headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.limits.max_bytes:
                raise _too_large(self.limits.max_bytes)
            encoding = response_headers.pop("content-encoding", "identity")
            chunks, size = [], 0
            # iter_raw() without a size hands over each read as it comes, so the deadline and
            # a cancel are checked at every read, however slowly the bytes trickle.
            for chunk in _decoded(response.iter_raw(), encoding):
                size += len(chunk)
                if size > self.limits.max_bytes:
                    raise _too_large(self.limits.max_bytes)
                if time.monotonic() > deadline or self._cancelled.is_set():
                    raise FetchFailed("timeout", f"not done within {self.limits.deadline_s:g}s")
                chunks.append(chunk)
            # The body is decoded now: feedparser must not think it is still compressed.
            return Fetched(status, url, b"".join(chunks), response_headers)


_CHUNK = 64 * 1024


def _decoded(raw_chunks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """The body decoded, in pieces of at most _CHUNK bytes whatever the compression ratio, so
    that a small compressed bomb is stopped at the body limit, not after inflating in memory
    (httpx's own decoder inflates each chunk whole)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        yield from raw_chunks
        return
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise FetchFailed("http", f"unsupported Content-Encoding {encoding!r}")
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
    try:
        for raw in raw_chunks:
            data = raw
            while data:
                yield decoder.decompress(data, _CHUNK)
                data = decoder.unconsumed_tail
        yield decoder.flush()
    except zlib.error as error:
        raise FetchFailed("http", f"corrupt {encoding} body: {error}") from None


_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)


def _too_large(limit: int) -> FetchFailed:
    size = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit} bytes"
    return FetchFailed("too_large", f"body larger than {size}: not read further")


def _failure(status: int, headers: dict[str, str]) -> FetchFailed:
    now = datetime.now(UTC)
    if status == 410:
        return FetchFailed("gone", "HTTP 410 Gone", status)
    if status == 403 and headers.get("cf-mitigated", "").lower() == "challenge":
        return FetchFailed("blocked", "blocked by a bot challenge (Cloudflare)", status)
    if status in (429, 503):
        wait = retry_after(headers.get("retry-after"), now)
        reason = f"HTTP {status}" + (f", retry after {int(wait.total_seconds())}s" if wait else "")
        return FetchFailed("throttled", reason, status, retry_after=wait)
    return FetchFailed("http", f"HTTP {status}", status)


def _network_reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text and text[0] else type(error).__name__
