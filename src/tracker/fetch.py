"""Fetching feeds over HTTP, politely and within bounds: the one module that imports httpx.

feedparser can fetch by itself, but with no timeout and no size cap; here every fetch has
connect and read timeouts, a total deadline and a body limit (counted after gzip decoding, so
a compressed bomb stops at the limit too), sends the validators from the last 200 response,
and follows redirects itself so that a permanent one can move the feed (RFC 9110 §15.4).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin

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
                try:
                    seconds = int(value.strip('"'))
                except ValueError:
                    return None
                return timedelta(seconds=seconds) if seconds > 0 else None
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


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """Retry-After as seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


class Fetcher:
    """One HTTP client, shared by every fetch of a process (connections are reused)."""

    def __init__(
        self, limits: FetchLimits | None = None, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.limits = limits or FetchLimits()
        self._client = httpx.Client(
            headers={"User-Agent": USER_AGENT, "Accept": _ACCEPT},
            timeout=httpx.Timeout(
                self.limits.read_timeout_s, connect=self.limits.connect_timeout_s
            ),
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def fetch(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """GET a feed, conditionally; FetchFailed for anything but a usable 200 or a 304."""
        deadline = time.monotonic() + self.limits.deadline_s
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
                fetched = self._get(current, headers, deadline)
            except FetchFailed as failure:
                failure.moved_to, failure.moved_by = moved_to, moved_by
                raise
            except httpx.TimeoutException:
                raise FetchFailed("timeout", "timed out", None, None, moved_to, moved_by) from None
            except httpx.HTTPError as error:
                reason = _network_reason(error)
                raise FetchFailed("network", reason, None, None, moved_to, moved_by) from None
            if fetched.status not in _REDIRECTS:
                return Fetched(
                    fetched.status, current, fetched.body, fetched.headers, moved_to, moved_by
                )
            location = fetched.headers.get("location")
            if not location:
                raise FetchFailed(
                    "http", f"HTTP {fetched.status} without a Location", fetched.status
                )
            current = urljoin(current, location)
            if permanent_so_far and fetched.status in _PERMANENT:
                moved_to = current
                moved_by = moved_by or fetched.status
            else:
                permanent_so_far = False
        raise FetchFailed(
            "http", f"more than {MAX_REDIRECTS} redirects", None, None, moved_to, moved_by
        )

    def _get(self, url: str, headers: dict[str, str], deadline: float) -> Fetched:
        with self._client.stream("GET", url, headers=headers) as response:
            response_headers = {key.lower(): value for key, value in response.headers.items()}
            status = response.status_code
            if status in _REDIRECTS or status == 304:
                return Fetched(status, url, b"", response_headers)
            if status != 200:
                raise _failure(status, response_headers)
            declared = response_headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.limits.max_bytes:
                raise _too_large(self.limits.max_bytes)
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.limits.max_bytes:
                    raise _too_large(self.limits.max_bytes)
                if time.monotonic() > deadline:
                    raise FetchFailed("timeout", f"not done within {self.limits.deadline_s:g}s")
                chunks.append(chunk)
            # httpx has decoded gzip; the headers must not make feedparser think it is encoded.
            response_headers.pop("content-encoding", None)
            return Fetched(status, url, b"".join(chunks), response_headers)


_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)


def _too_large(limit: int) -> FetchFailed:
    return FetchFailed(
        "too_large",
        f"body larger than {limit // (1024 * 1024) or limit} "
        f"{'MB' if limit >= 1024 * 1024 else 'bytes'}: not read further",
    )


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


def _network_reason(error: httpx.HTTPError) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text and text[0] else type(error).__name__
