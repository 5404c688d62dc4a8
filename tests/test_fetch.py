"""Fetching against a real HTTP server on 127.0.0.1 (tracker.fetch)."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
from feedserver import FEEDS, FeedServer, Reply, conditional, feed, gzipped

from tracker import __version__
from tracker.fetch import Fetcher, FetchFailed, FetchLimits, retry_after


@pytest.fixture
def fetcher() -> Fetcher:
    fetcher = Fetcher(FetchLimits(connect_timeout_s=2, read_timeout_s=1, deadline_s=3))
    yield fetcher  # type: ignore[misc]
    fetcher.close()


def test_a_feed_with_its_validators_and_a_user_agent(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    feed_server.routes["/news.rss"] = conditional(
        body, etag='"v1"', last_modified="Fri, 15 Aug 2025 20:00:00 GMT"
    )
    fetched = fetcher.fetch(feed_server.url("/news.rss"))
    assert (fetched.status, fetched.body) == (200, body)
    assert fetched.etag == '"v1"' and fetched.last_modified == "Fri, 15 Aug 2025 20:00:00 GMT"
    (request,) = feed_server.requests_to("/news.rss")
    assert request.headers["user-agent"].startswith(f"tracker/{__version__}")
    assert "gzip" in request.headers["accept-encoding"]


def test_conditional_get_with_etag_gets_304(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.routes["/f"] = conditional(b"<rss/>", etag='"abc"')
    again = fetcher.fetch(feed_server.url("/f"), etag='"abc"')
    assert again.not_modified and again.body == b""
    assert feed_server.requests_to("/f")[0].headers["if-none-match"] == '"abc"'


def test_conditional_get_with_last_modified_only(feed_server: FeedServer, fetcher: Fetcher) -> None:
    stamp = "Thu, 14 Aug 2025 10:00:00 GMT"
    feed_server.routes["/f"] = conditional(b"<rss/>", last_modified=stamp)
    first = fetcher.fetch(feed_server.url("/f"))
    assert first.status == 200 and first.etag is None
    assert fetcher.fetch(feed_server.url("/f"), last_modified=first.last_modified).not_modified


def test_gzip_is_decoded(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.routes["/f"] = gzipped(feed("thehill-news.rss"))
    fetched = fetcher.fetch(feed_server.url("/f"))
    assert fetched.body == (FEEDS / "thehill-news.rss").read_bytes()
    assert "content-encoding" not in fetched.headers


@pytest.mark.parametrize("status", [301, 308])
def test_a_permanent_redirect_moves_the_feed(
    feed_server: FeedServer, fetcher: Fetcher, status: int
) -> None:
    feed_server.routes["/old"] = Reply(status, headers={"Location": "/new"})
    feed_server.routes["/new"] = feed("upi-top.rss")
    fetched = fetcher.fetch(feed_server.url("/old"))
    assert fetched.status == 200 and fetched.moved_to == feed_server.url("/new")
    assert fetched.url == feed_server.url("/new")


def test_a_temporary_redirect_does_not_move_the_feed(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    feed_server.routes["/old"] = Reply(302, headers={"Location": "/tmp"})
    feed_server.routes["/tmp"] = Reply(301, headers={"Location": "/new"})
    feed_server.routes["/new"] = feed("upi-top.rss")
    assert fetcher.fetch(feed_server.url("/old")).moved_to is None


def test_redirect_loops_end(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.routes["/a"] = Reply(302, headers={"Location": "/b"})
    feed_server.routes["/b"] = Reply(302, headers={"Location": "/a"})
    with pytest.raises(FetchFailed, match="redirects"):
        fetcher.fetch(feed_server.url("/a"))


@pytest.mark.parametrize(
    ("reply", "kind", "status"),
    [
        (Reply(404), "http", 404),
        (Reply(500), "http", 500),
        (Reply(410), "gone", 410),
        (Reply(403, headers={"cf-mitigated": "challenge"}), "blocked", 403),
        (Reply(403), "http", 403),
        (Reply(429, headers={"Retry-After": "120"}), "throttled", 429),
        (Reply(503, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}), "throttled", 503),
    ],
)
def test_failures_say_what_kind_they_are(
    feed_server: FeedServer, fetcher: Fetcher, reply: Reply, kind: str, status: int
) -> None:
    feed_server.routes["/f"] = reply
    with pytest.raises(FetchFailed) as caught:
        fetcher.fetch(feed_server.url("/f"))
    assert (caught.value.kind, caught.value.status) == (kind, status)
    if reply.headers.get("Retry-After") == "120":
        assert caught.value.retry_after == timedelta(seconds=120)


def test_retry_after_forms() -> None:
    now = datetime(2025, 8, 15, 12, tzinfo=UTC)
    assert retry_after("99999999999999999999", now) is None  # not a number we believe
    assert retry_after("999999999", now) == timedelta(days=1)
    assert retry_after("²", now) is None
    assert retry_after("30", now) == timedelta(seconds=30)
    assert retry_after("Fri, 15 Aug 2025 12:05:00 GMT", now) == timedelta(minutes=5)
    assert retry_after("Fri, 15 Aug 2025 11:00:00 GMT", now) == timedelta(0)
    assert retry_after("soon", now) is None and retry_after(None, now) is None


def test_a_server_slower_than_the_read_timeout(feed_server: FeedServer, fetcher: Fetcher) -> None:
    feed_server.routes["/slow"] = Reply(200, b"<rss/>", delay_s=2.5)
    started = time.monotonic()
    with pytest.raises(FetchFailed) as caught:
        fetcher.fetch(feed_server.url("/slow"))
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 2.5


def test_a_body_dripped_past_the_deadline(feed_server: FeedServer, fetcher: Fetcher) -> None:
    # Each chunk comes within the read timeout, but the whole would take 6 s.
    feed_server.routes["/drip"] = Reply(200, b"x" * 12, chunks=12, drip_s=0.5)
    started = time.monotonic()
    with pytest.raises(FetchFailed) as caught:
        fetcher.fetch(feed_server.url("/drip"))
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 4.5


def test_a_body_over_the_limit_is_refused_without_reading_it_all(feed_server: FeedServer) -> None:
    fetcher = Fetcher(FetchLimits(max_bytes=1024 * 1024))
    # 100 MB announced and streamed; also without Content-Length through gzip below.
    feed_server.routes["/huge"] = Reply(200, b"<rss>", stream_bytes=100 * 1024 * 1024)
    tracemalloc.start()
    with pytest.raises(FetchFailed, match="larger than 1 MB") as caught:
        fetcher.fetch(feed_server.url("/huge"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert caught.value.kind == "too_large"
    assert peak < 20 * 1024 * 1024
    fetcher.close()


def test_a_gzip_bomb_stops_at_the_limit_without_inflating_in_memory(
    feed_server: FeedServer,
) -> None:
    fetcher = Fetcher(FetchLimits(max_bytes=1024 * 1024))
    feed_server.routes["/bomb"] = gzipped(Reply(200, b"\0" * (300 * 1024 * 1024)))
    tracemalloc.start()
    with pytest.raises(FetchFailed, match="larger than"):
        fetcher.fetch(feed_server.url("/bomb"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 1024 * 1024
    fetcher.close()


def test_a_server_trickling_header_lines_cannot_outlast_the_deadline() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.wait(0.2):
                try:
                    connection.sendall(b"X-Slow: still here\r\n")
                except OSError:
                    return

    threading.Thread(target=trickle, daemon=True).start()
    fetcher = Fetcher(FetchLimits(read_timeout_s=1, deadline_s=2))
    started = time.monotonic()
    with pytest.raises(FetchFailed) as caught:
        fetcher.fetch(f"http://127.0.0.1:{listener.getsockname()[1]}/feed")
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 3
    # The worker thread and its connection end too, not whenever the server stops.
    time.sleep(0.5)
    assert not [t for t in threading.enumerate() if t.name.startswith("fetch http")]
    stop.set()
    listener.close()
    fetcher.close()


def test_a_body_trickled_a_byte_at_a_time_ends_at_the_deadline(feed_server: FeedServer) -> None:
    feed_server.routes["/drip"] = Reply(200, b"x" * 400, chunks=400, drip_s=0.05)
    fetcher = Fetcher(FetchLimits(read_timeout_s=1, deadline_s=1))
    with pytest.raises(FetchFailed):
        fetcher.fetch(feed_server.url("/drip"))
    time.sleep(0.5)
    assert not [t for t in threading.enumerate() if t.name.startswith("fetch http")]
    fetcher.close()


def test_cancel_ends_fetches_in_flight_at_once(feed_server: FeedServer) -> None:
    feed_server.routes["/slow"] = Reply(200, b"<rss/>", delay_s=5)
    fetcher = Fetcher()
    threading.Timer(0.3, fetcher.cancel).start()
    started = time.monotonic()
    with pytest.raises(FetchFailed) as caught:
        fetcher.fetch(feed_server.url("/slow"))
    assert caught.value.kind == "cancelled"
    assert time.monotonic() - started < 1.5
    fetcher.close()


def test_nothing_listening(fetcher: Fetcher) -> None:
    with pytest.raises(FetchFailed) as caught:
        fetcher.fetch("http://127.0.0.1:9/feed")
    assert caught.value.kind == "network"
