"""Polling end to end: a real loopback HTTP server, a real database, the Tracker facade."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feedserver import FEEDS, FeedServer, Reply, conditional, feed
from helpers import assert_unanalysed, fill_unanalysed_log, polled, run_tracker

from tracker.events import decode
from tracker.fetch import Fetcher, FetchLimits
from tracker.polling import claim_feed
from tracker.service import Tracker
from tracker.settings import Settings


def configure(settings: Settings, server: FeedServer, *paths: str, interval: str = "15m") -> None:
    lines = ["feeds:"]
    for path in paths:
        feed_id = path.strip("/").split(".")[0]
        lines.append(f"  - {{id: {feed_id}, url: '{server.url(path)}', interval: {interval}}}")
    settings.config_path.write_text("\n".join(lines) + "\n")


def types(tracker: Tracker) -> Counter[str]:
    return Counter(event.event_type for event in polled(tracker))


def test_first_poll_records_articles_and_a_second_records_nothing(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/thehill-news.rss"] = feed("thehill-news.rss")
    feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
    configure(settings, feed_server, "/thehill-news.rss", "/upi-top.rss")
    with Tracker(settings) as tracker:
        first = tracker.poll()
        assert [r.line() for r in first] == ["thehill-news: 2 new", "upi-top: 2 new"]
        assert types(tracker) == {"article.published": 4}
        again = tracker.poll(every=True)
        assert [r.outcome for r in again] == ["unchanged", "unchanged"]
        assert len(polled(tracker)) == 4
        published = [decode(e) for e in polled(tracker)]
    hill = next(e for e in published if e.guid == "https://thehill.com/?p=5099870")
    assert hill.title_text == "State Department doubles reward for Maduro to $50 million"
    assert "$15 million" in hill.content_text and "<script" not in hill.content
    assert hill.published == "2025-08-07T18:05:00+00:00" and not hill.published_is_first_seen
    assert hill.authors == ("Laura Ibáñez",) and hill.feed_id == "thehill-news"


def test_validators_are_kept_and_sent_so_an_unchanged_feed_is_not_modified(
    settings: Settings, feed_server: FeedServer
) -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    feed_server.routes["/upi-top.rss"] = conditional(body, etag='"v1"')
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        tracker.poll()
        results = [tracker.poll(every=True)[0].outcome for _ in range(3)]
        assert results == ["not modified"] * 3
        assert len(polled(tracker)) == 2
    requests = feed_server.requests_to("/upi-top.rss")
    assert [r.headers.get("if-none-match") for r in requests] == [None, '"v1"', '"v1"', '"v1"']


def test_new_validators_are_stored_even_when_no_entry_changed(
    settings: Settings, feed_server: FeedServer
) -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    feed_server.routes["/upi-top.rss"] = conditional(body, etag='"v1"')
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        tracker.poll()
        # The publisher rebuilds the feed: new ETag, same entries.
        feed_server.routes["/upi-top.rss"] = conditional(body, etag='"v2"')
        assert tracker.poll(every=True)[0].outcome == "unchanged"
        assert tracker.poll(every=True)[0].outcome == "not modified"
    assert feed_server.requests_to("/upi-top.rss")[-1].headers["if-none-match"] == '"v2"'


def edited_hill() -> bytes:
    body = (FEEDS / "thehill-news.rss").read_bytes()
    # A WordPress edit: the headline and the link's slug change, the guid stays.
    return body.replace(
        b"State Department doubles reward for Maduro to $50 million",
        b"US doubles reward for Maduro's capture to $50 million",
    ).replace(b"5099870-maduro-reward-doubled/", b"5099870-us-doubles-maduro-reward/")


def test_an_edit_between_polls_is_exactly_one_revision_naming_what_changed(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/thehill-news.rss"] = feed("thehill-news.rss")
    configure(settings, feed_server, "/thehill-news.rss")
    with Tracker(settings) as tracker:
        tracker.poll()
        feed_server.routes["/thehill-news.rss"] = Reply(200, edited_hill())
        assert tracker.poll(every=True)[0].line() == "thehill-news: 1 revised"
        assert tracker.poll(every=True)[0].outcome == "unchanged"
        revisions = [decode(e) for e in polled(tracker, event_type="article.revised")]
        assert types(tracker) == {"article.published": 2, "article.revised": 1}
    (revision,) = revisions
    assert revision.changed == ("title", "link")
    assert revision.title_text == "US doubles reward for Maduro's capture to $50 million"


def test_whitespace_markup_and_tracking_noise_are_not_revisions(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/thehill-news.rss"] = feed("thehill-news.rss")
    configure(settings, feed_server, "/thehill-news.rss")
    noisy = (
        (FEEDS / "thehill-news.rss")
        .read_bytes()
        .replace(b"utm_source=rss&amp;utm_medium=feed", b"utm_source=twitter")
        .replace(b"<title>State Department", b"<title>  State   Department")
        .replace(b"on the ropes.", b"on the\n\t ropes.")
    )
    with Tracker(settings) as tracker:
        tracker.poll()
        feed_server.routes["/thehill-news.rss"] = Reply(200, noisy)
        assert tracker.poll(every=True)[0].outcome == "unchanged"
        assert len(polled(tracker)) == 2


def test_the_same_article_in_two_feeds_is_one_article(
    settings: Settings, feed_server: FeedServer
) -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    feed_server.routes["/upi-top.rss"] = Reply(200, body)
    # A section feed of the same outlet carrying the Essequibo story too.
    feed_server.routes["/upi-world.rss"] = Reply(
        200, body[: body.index(b"<item>", body.index(b"</item>"))] + b"</channel></rss>"
    )
    configure(settings, feed_server, "/upi-top.rss", "/upi-world.rss")
    with Tracker(settings) as tracker:
        tracker.poll(["upi-top"])
        assert tracker.poll(["upi-world"])[0].outcome == "unchanged"
        assert types(tracker) == {"article.published": 2, "article.seen_in_feed": 1}
        (seen,) = [decode(e) for e in polled(tracker, event_type="article.seen_in_feed")]
        assert seen.feed_id == "upi-world"


def test_duplicate_guids_within_one_feed_are_one_article(
    settings: Settings, feed_server: FeedServer
) -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    item = body[body.index(b"<item>") : body.index(b"</item>") + len(b"</item>")]
    feed_server.routes["/upi-top.rss"] = Reply(200, body.replace(item, item + item + item))
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        assert tracker.poll()[0].new == 2


def test_entries_without_a_date_take_their_first_seen_time(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/essequibo-watch.atom"] = feed(
        "essequibo-watch.atom", "application/atom+xml"
    )
    configure(settings, feed_server, "/essequibo-watch.atom")
    moment = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    with Tracker(settings, clock=lambda: moment) as tracker:
        tracker.poll()
        undated = next(
            decode(e) for e in polled(tracker) if decode(e).title_text.startswith("Sin fecha")
        )
    assert undated.published == moment.isoformat() and undated.published_is_first_seen


def test_feed_health_is_one_event_per_change_of_state(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/upi-top.rss"] = Reply(500)
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        assert tracker.poll()[0].line() == "upi-top: failed: HTTP 500"
        tracker.poll(every=True)
        tracker.poll(every=True)
        feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
        assert tracker.poll(every=True)[0].new == 2
        tracker.poll(every=True)
        feed_server.routes["/upi-top.rss"] = Reply(403, headers={"cf-mitigated": "challenge"})
        tracker.poll(every=True)
        tracker.poll(every=True)
        health = [decode(e) for e in polled(tracker, stream_id="feed-upi-top")]
    assert [type(e).__name__ for e in health] == ["FeedFailing", "FeedRecovered", "FeedFailing"]
    assert health[0].error == "HTTP 500" and health[1].failures == 3
    assert health[2].state == "blocked"


def test_a_permanent_redirect_moves_the_feed_for_good(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/upi-top.rss"] = Reply(301, headers={"Location": "/v2/upi-top.rss"})
    feed_server.routes["/v2/upi-top.rss"] = feed("upi-top.rss")
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        result = tracker.poll()[0]
        assert result.moved_to == feed_server.url("/v2/upi-top.rss") and result.new == 2
        tracker.poll(every=True)
        (moved,) = [decode(e) for e in polled(tracker, event_type="feed.moved")]
    assert moved.new_url == feed_server.url("/v2/upi-top.rss")
    assert len(feed_server.requests_to("/upi-top.rss")) == 1
    assert len(feed_server.requests_to("/v2/upi-top.rss")) == 2


def test_410_gone_stops_polling(settings: Settings, feed_server: FeedServer) -> None:
    feed_server.routes["/upi-top.rss"] = Reply(410)
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        assert tracker.poll()[0].outcome == "gone"
        assert tracker.poll(every=True) == []
        assert types(tracker) == {"feed.gone": 1}
    assert len(feed_server.requests_to("/upi-top.rss")) == 1


def test_retry_after_is_honoured(settings: Settings, feed_server: FeedServer) -> None:
    feed_server.routes["/upi-top.rss"] = Reply(429, headers={"Retry-After": "7200"})
    configure(settings, feed_server, "/upi-top.rss", interval="1m")
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    clock = [now]
    with Tracker(settings, clock=lambda: clock[0]) as tracker:
        tracker.poll()
        clock[0] = now + timedelta(minutes=119)
        assert tracker.poll() == []
        clock[0] = now + timedelta(minutes=121)
        assert len(tracker.poll()) == 1


def test_failures_back_off_and_recover(settings: Settings, feed_server: FeedServer) -> None:
    feed_server.routes["/upi-top.rss"] = Reply(500)
    configure(settings, feed_server, "/upi-top.rss", interval="1m")
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    clock = [now]
    with Tracker(settings, clock=lambda: clock[0]) as tracker:
        for _ in range(4):
            tracker.poll(every=True)
        # Four failures in a row: the next try waits 2^4 minutes (less up to 20 % jitter).
        clock[0] = now + timedelta(minutes=12)
        assert tracker.poll() == []
        clock[0] = now + timedelta(minutes=17)
        assert len(tracker.poll()) == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            Reply(200, b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><rss>&a;</rss>'),
            "entities",
        ),
        (Reply(200, b"<html>maintenance</html>"), "not a feed"),
        (Reply(200, b"<rss>", stream_bytes=12 * 1024 * 1024), "larger than 10 MB"),
    ],
    ids=["entity-bomb", "html", "too-large"],
)
def test_bad_bodies_are_recorded_failures_and_nothing_else(
    settings: Settings, feed_server: FeedServer, reply: Reply, reason: str
) -> None:
    feed_server.routes["/upi-top.rss"] = reply
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        (result,) = tracker.poll()
        assert result.outcome == "failed" and reason in (result.reason or "")
        assert types(tracker) == {"feed.failing": 1}


def test_poll_command(settings: Settings, feed_server: FeedServer, tmp_path: Path) -> None:
    feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
    feed_server.routes["/thehill-news.rss"] = Reply(500)
    configure(settings, feed_server, "/upi-top.rss", "/thehill-news.rss")
    env = {
        "TRACKER_DATABASE_URL": settings.database_url,
        "TRACKER_CONFIG": str(settings.config_path),
    }
    first = run_tracker("poll", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["upi-top: 2 new", "thehill-news: failed: HTTP 500"]
    nothing_due = run_tracker("poll", env=env)
    assert (nothing_due.returncode, nothing_due.stdout) == (0, "")
    assert "no feed is due" in nothing_due.stderr
    named = run_tracker("poll", "--feed", "upi-top", "--json", env=env)
    assert named.stdout.strip().startswith('{"feed": "upi-top", "outcome": "unchanged"')
    unknown = run_tracker("poll", "--feed", "nope", env=env)
    assert unknown.returncode == 2 and "no feed 'nope'" in unknown.stderr
    both = run_tracker("poll", "--feed", "upi-top", "--all", env=env)
    assert both.returncode == 2


def test_a_slow_server_is_a_recorded_timeout(settings: Settings, feed_server: FeedServer) -> None:
    feed_server.routes["/upi-top.rss"] = Reply(200, (FEEDS / "upi-top.rss").read_bytes(), delay_s=2)
    configure(settings, feed_server, "/upi-top.rss")
    fetcher = Fetcher(FetchLimits(read_timeout_s=0.5, deadline_s=1))
    with Tracker(settings) as tracker:
        (result,) = tracker.poll(fetcher=fetcher)
        assert result.line() == "upi-top: failed: timed out"
        (failing,) = [decode(e) for e in polled(tracker)]
    fetcher.close()
    assert failing.error == "timed out" and failing.state == "failing"


def test_a_truncated_feed_records_the_entries_before_the_cut(
    settings: Settings, feed_server: FeedServer
) -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    feed_server.routes["/upi-top.rss"] = Reply(
        200, body[: body.index(b"<item>", body.index(b"</item>"))] + b"<item><title>Cut off"
    )
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        assert tracker.poll()[0].new == 1  # the cut-off fragment is no article
        titles = [decode(e).title_text for e in polled(tracker, event_type="article.published")]
    assert titles == ["Guyana faces elections amid oil boom, Maduro's threats"]


def test_a_wrong_charset_header_still_reads_the_text(
    settings: Settings, feed_server: FeedServer
) -> None:
    # The body is windows-1252 (declared in its prolog); the server says UTF-8.
    feed_server.routes["/miamiherald-local.rss"] = feed(
        "miamiherald-local.rss", "application/rss+xml; charset=utf-8"
    )
    configure(settings, feed_server, "/miamiherald-local.rss")
    with Tracker(settings) as tracker:
        assert tracker.poll()[0].new == 2
        titles = {decode(e).title_text for e in polled(tracker)}
    assert "Café owners in Doral worry about Venezuelan TPS ending" in titles


def test_last_modified_alone_makes_unchanged_polls_not_modified(
    settings: Settings, feed_server: FeedServer
) -> None:
    stamp = "Fri, 15 Aug 2025 20:00:00 GMT"
    feed_server.routes["/upi-top.rss"] = conditional(
        (FEEDS / "upi-top.rss").read_bytes(), last_modified=stamp
    )
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        tracker.poll()
        assert tracker.poll(every=True)[0].outcome == "not modified"
    assert feed_server.requests_to("/upi-top.rss")[1].headers["if-modified-since"] == stamp


def test_ttl_and_max_age_are_a_lower_bound_on_the_interval(
    settings: Settings, feed_server: FeedServer
) -> None:
    # upi-top.rss says <ttl>30</ttl>; the thehill server says max-age=1200.
    feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
    feed_server.routes["/thehill-news.rss"] = feed(
        "thehill-news.rss", **{"Cache-Control": "public, max-age=1200"}
    )
    configure(settings, feed_server, "/upi-top.rss", "/thehill-news.rss", interval="1m")
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    clock = [now]
    with Tracker(settings, clock=lambda: clock[0]) as tracker:
        tracker.poll()
        clock[0] = now + timedelta(minutes=5)
        assert tracker.poll() == []
        clock[0] = now + timedelta(minutes=21)
        assert [r.feed_id for r in tracker.poll()] == ["thehill-news"]
        clock[0] = now + timedelta(minutes=31)
        assert [r.feed_id for r in tracker.poll()] == ["upi-top"]


def test_a_feed_another_poller_holds_is_skipped_not_polled_twice(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        config = tracker.check_config()
        assert claim_feed(tracker.store, config.feeds[0], "a daemon", datetime.now(UTC))
        (result,) = tracker.poll()
        assert result.line() == "upi-top: skipped: another poller is polling it right now"
        assert len(polled(tracker)) == 0
    assert feed_server.requests_to("/upi-top.rss") == []


def a_dead_process() -> int:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(ended.stdout)


@pytest.mark.parametrize(
    ("holder", "skipped"),
    [
        (lambda: f"{socket.gethostname()}:{a_dead_process()}:0a1b2c", False),
        (lambda: f"{socket.gethostname()}:{os.getpid()}:0a1b2c", True),
        (lambda: "another-machine:1:0a1b2c", True),
    ],
    ids=["dead-here", "alive-here", "another-machine"],
)
def test_the_claims_of_a_poller_killed_on_this_machine_do_not_hold_up_the_next(
    settings: Settings, feed_server: FeedServer, holder: Callable[[], str], skipped: bool
) -> None:
    feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        config = tracker.check_config()
        assert claim_feed(tracker.store, config.feeds[0], holder(), datetime.now(UTC))
        (result,) = tracker.poll()
    if skipped:
        assert result.outcome == "busy"
    else:
        assert result.line() == "upi-top: 2 new"


@pytest.mark.parametrize(
    ("reply", "line", "state"),
    [
        (Reply(404), "upi-top: failed: HTTP 404", "failing"),
        (Reply(500), "upi-top: failed: HTTP 500", "failing"),
        (
            Reply(503, headers={"Retry-After": "60"}),
            "upi-top: failed: HTTP 503, retry after 60s",
            "failing",
        ),
        (
            Reply(403, headers={"cf-mitigated": "challenge"}),
            "upi-top: failed: blocked by a bot challenge (Cloudflare)",
            "blocked",
        ),
    ],
)
def test_each_failure_is_recorded_once_with_its_reason(
    settings: Settings, feed_server: FeedServer, reply: Reply, line: str, state: str
) -> None:
    feed_server.routes["/upi-top.rss"] = reply
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        assert tracker.poll()[0].line() == line
        tracker.poll(every=True)
        (failing,) = [decode(e) for e in polled(tracker)]
    assert failing.state == state and failing.status == reply.status
    assert failing.url == feed_server.url("/upi-top.rss")


def test_a_308_moves_the_feed_like_a_301(settings: Settings, feed_server: FeedServer) -> None:
    feed_server.routes["/upi-top.rss"] = Reply(308, headers={"Location": "/moved.rss"})
    feed_server.routes["/moved.rss"] = conditional((FEEDS / "upi-top.rss").read_bytes(), etag='"m"')
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        tracker.poll()
        assert tracker.poll(every=True)[0].outcome == "not modified"
        (moved,) = [decode(e) for e in polled(tracker, event_type="feed.moved")]
    assert moved.status == 308 and moved.old_url == feed_server.url("/upi-top.rss")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(301, headers={"Location": "http://[bad"}), "without a usable Location"),
        (Reply(302, headers={"Location": "ftp://example.com/feed"}), "without a usable Location"),
        (
            Reply(200, b"<rss/>", headers={"Content-Encoding": "gzip, gzip"}),
            "unsupported Content-Encoding",
        ),
        (Reply(200, b"not gzip at all", headers={"Content-Encoding": "gzip"}), "corrupt gzip body"),
    ],
    ids=["bad-location", "ftp-location", "stacked-gzip", "corrupt-gzip"],
)
def test_odd_responses_are_recorded_failures_not_crashes(
    settings: Settings, feed_server: FeedServer, reply: Reply, reason: str
) -> None:
    feed_server.routes["/upi-top.rss"] = reply
    feed_server.routes["/thehill-news.rss"] = feed("thehill-news.rss")
    configure(settings, feed_server, "/upi-top.rss", "/thehill-news.rss")
    with Tracker(settings) as tracker:
        odd, fine = tracker.poll()
        assert odd.outcome == "failed" and reason in (odd.reason or "")
        assert fine.new == 2  # the rest of the round goes on
        # Nothing stays claimed: both can be polled again at once.
        assert [r.outcome for r in tracker.poll(every=True)] == ["failed", "unchanged"]


def test_huge_publisher_waits_are_capped_at_a_day(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/upi-top.rss"] = Reply(429, headers={"Retry-After": "999999999"})
    feed_server.routes["/thehill-news.rss"] = feed(
        "thehill-news.rss", **{"Cache-Control": "max-age=999999999999"}
    )
    configure(settings, feed_server, "/upi-top.rss", "/thehill-news.rss")
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    clock = [now]
    with Tracker(settings, clock=lambda: clock[0]) as tracker:
        assert [r.outcome for r in tracker.poll()] == ["failed", "new"]
        clock[0] = now + timedelta(hours=23)
        assert tracker.poll() == []
        clock[0] = now + timedelta(hours=24, minutes=1)
        assert len(tracker.poll()) == 2


def test_a_poll_whose_claim_expired_is_not_recorded(
    settings: Settings, feed_server: FeedServer
) -> None:
    from tracker.polling import Recorder, fetch_feed

    feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        upi = tracker.check_config().feeds[0]
        start = datetime.now(UTC)
        assert claim_feed(tracker.store, upi, "slow poller", start, timedelta(seconds=1))
        fetcher = Fetcher()
        stale = fetch_feed(fetcher, upi, None)
        # The slow poller's claim runs out; another poller takes the feed and records it.
        later = start + timedelta(seconds=2)
        assert claim_feed(tracker.store, upi, "other", later, only_if_due=False)
        recorder = Recorder(tracker.store, lambda: later, "test")
        assert recorder.record(fetch_feed(fetcher, upi, None), later, "other").new == 2
        dropped = recorder.record(stale, start, "slow poller")
        fetcher.close()
        assert dropped.outcome == "busy"
        assert len(polled(tracker)) == 2


def test_two_feeds_showing_one_article_differently_do_not_make_revisions(
    settings: Settings, feed_server: FeedServer
) -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    # The section feed carries the Essequibo story with a shorter summary.
    section = body.replace(
        b"a region that makes up more than 60% of Guyana's territory", b"a region of Guyana"
    )
    feed_server.routes["/upi-top.rss"] = Reply(200, body)
    feed_server.routes["/upi-world.rss"] = Reply(200, section)
    configure(settings, feed_server, "/upi-top.rss", "/upi-world.rss")
    with Tracker(settings) as tracker:
        for _ in range(3):
            tracker.poll(every=True)
        assert types(tracker) == {"article.published": 2, "article.seen_in_feed": 2}
        # A real edit, seen by both feeds, is one revision.
        edited = b"Guyana votes amid oil boom, Maduro's threats"
        feed_server.routes["/upi-top.rss"] = Reply(
            200, body.replace(b"Guyana faces elections amid oil boom, Maduro's threats", edited)
        )
        feed_server.routes["/upi-world.rss"] = Reply(
            200, section.replace(b"Guyana faces elections amid oil boom, Maduro's threats", edited)
        )
        tracker.poll(every=True)
        tracker.poll(every=True)
        assert types(tracker)["article.revised"] == 1


def test_the_publishers_minimum_holds_after_a_304_too(
    settings: Settings, feed_server: FeedServer
) -> None:
    # <ttl>30</ttl> in the body; the 304s that follow carry no body to repeat it.
    feed_server.routes["/upi-top.rss"] = conditional(
        (FEEDS / "upi-top.rss").read_bytes(), etag='"t"'
    )
    configure(settings, feed_server, "/upi-top.rss", interval="1m")
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    clock = [now]
    with Tracker(settings, clock=lambda: clock[0]) as tracker:
        tracker.poll()
        clock[0] = now + timedelta(minutes=31)
        assert tracker.poll()[0].outcome == "not modified"
        clock[0] = now + timedelta(minutes=33)
        assert tracker.poll() == []
        clock[0] = now + timedelta(minutes=62)
        assert len(tracker.poll()) == 1


def test_a_gone_feed_given_a_new_url_in_feeds_yaml_is_polled_again_and_recovers(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/old.rss"] = Reply(410)
    feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
    settings.config_path.write_text(
        f"feeds:\n  - {{id: upi, url: '{feed_server.url('/old.rss')}'}}\n"
    )
    with Tracker(settings) as tracker:
        assert tracker.poll()[0].outcome == "gone"
        assert tracker.poll(every=True) == []
        settings.config_path.write_text(
            f"feeds:\n  - {{id: upi, url: '{feed_server.url('/upi-top.rss')}'}}\n"
        )
        assert tracker.poll()[0].new == 2
        health = [decode(e) for e in polled(tracker, stream_id="feed-upi")]
    assert [type(e).__name__ for e in health] == ["FeedGone", "FeedRecovered"]
    assert health[1].url == feed_server.url("/upi-top.rss")


def test_throttling_is_recorded_once_and_recovers(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/upi-top.rss"] = Reply(429, headers={"Retry-After": "60"})
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        assert tracker.poll()[0].line() == "upi-top: failed: HTTP 429, retry after 60s"
        tracker.poll(every=True)
        feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
        assert tracker.poll(every=True)[0].new == 2
        health = [decode(e) for e in polled(tracker, stream_id="feed-upi-top")]
    assert [(type(e).__name__, getattr(e, "status", None)) for e in health] == [
        ("FeedFailing", 429),
        ("FeedRecovered", None),
    ]


def test_losing_the_bookkeeping_costs_nothing_but_a_read(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/thehill-news.rss"] = feed("thehill-news.rss")
    configure(settings, feed_server, "/thehill-news.rss")
    with Tracker(settings) as tracker:
        tracker.poll()
        with tracker.store.engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM article_state")
            connection.exec_driver_sql("DELETE FROM feed_state")
        assert tracker.poll()[0].outcome == "unchanged"
        feed_server.routes["/thehill-news.rss"] = Reply(200, edited_hill())
        assert tracker.poll(every=True)[0].line() == "thehill-news: 1 revised"
        assert types(tracker) == {"article.published": 2, "article.revised": 1}


def test_an_undeclared_charset_is_still_read(settings: Settings, feed_server: FeedServer) -> None:
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Herald</title>'
        "<item><title>Café owners fear TPS end; cafecito now €2</title><guid>h-1</guid></item>"
        "</channel></rss>"
    ).encode("cp1252")
    feed_server.routes["/herald.rss"] = Reply(200, body, {"Content-Type": "application/rss+xml"})
    configure(settings, feed_server, "/herald.rss")
    with Tracker(settings) as tracker:
        assert tracker.poll()[0].new == 1
        (published,) = [decode(e) for e in polled(tracker)]
    assert published.title_text == "Café owners fear TPS end; cafecito now €2"


def test_ctrl_c_stops_a_poll_at_once_records_nothing_and_releases_its_claims(
    settings: Settings, feed_server: FeedServer
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from helpers import clean_env

    feed_server.routes["/slow.rss"] = Reply(200, (FEEDS / "upi-top.rss").read_bytes(), delay_s=20)
    configure(settings, feed_server, "/slow.rss")
    env = {
        **clean_env(),
        "TRACKER_DATABASE_URL": settings.database_url,
        "TRACKER_CONFIG": str(settings.config_path),
    }
    poll = subprocess.Popen(
        [sys.executable, "-m", "tracker", "poll"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not feed_server.requests_to("/slow.rss") and time.monotonic() < deadline:
        time.sleep(0.05)
    poll.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = poll.communicate(timeout=30)
    assert poll.returncode == 130 and err.strip() == "aborted"
    assert time.monotonic() - started < 5
    feed_server.routes["/slow.rss"] = feed("upi-top.rss")
    with Tracker(settings) as tracker:
        assert len(polled(tracker)) == 0
        assert [r.outcome for r in tracker.poll()] == ["new"]  # not held as busy


def test_storyline_rules_are_recorded_when_new_changed_or_removed(settings: Settings) -> None:
    from tracker.events.storylines import StorylineDefined, StorylineRemoved

    def write(storylines: str) -> None:
        settings.config_path.write_text("feeds: []\nstorylines:\n" + storylines)

    essequibo = "  - {id: essequibo, title: Essequibo, match: {any: [Essequibo]}}\n"
    sky = "  - {id: sky-group, title: Sky Group, match: {any: [Sky Group]}}\n"
    with Tracker(settings) as tracker:
        write(essequibo + sky)
        assert tracker.record_storylines(tracker.check_config()) == ["essequibo", "sky-group"]
        assert tracker.record_storylines(tracker.check_config()) == []
        tracker.poll()  # a poll round records the rules in force too: nothing new here
        write(essequibo.replace("[Essequibo]", "[Essequibo, Esequibo]"))
        assert tracker.record_storylines(tracker.check_config()) == ["essequibo", "sky-group"]
        history = [decode(e) for e in tracker.events()]
    assert history[2] == StorylineDefined(
        "essequibo", "Essequibo", (), ("Essequibo", "Esequibo"), ()
    )
    assert history[3] == StorylineRemoved("sky-group")
    assert len(history) == 4


def two_feed_bodies() -> tuple[bytes, bytes]:
    body = (FEEDS / "upi-top.rss").read_bytes()
    return body, body.replace(
        b"a region that makes up more than 60% of Guyana's territory", b"a region of Guyana"
    )


def test_rebuilt_bookkeeping_makes_no_revision_from_two_feeds_differences(
    settings: Settings, feed_server: FeedServer
) -> None:
    top, section = two_feed_bodies()
    feed_server.routes["/upi-top.rss"] = Reply(200, top)
    feed_server.routes["/upi-world.rss"] = Reply(200, section)
    configure(settings, feed_server, "/upi-top.rss", "/upi-world.rss")
    with Tracker(settings) as tracker:
        tracker.poll(every=True)
        with tracker.store.engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM article_state")
        for _ in range(2):
            tracker.poll(every=True)
        assert "article.revised" not in types(tracker)


def test_an_edited_headline_first_seen_in_a_second_feed_is_a_revision(
    settings: Settings, feed_server: FeedServer
) -> None:
    top, section = two_feed_bodies()
    old = b"Guyana faces elections amid oil boom, Maduro's threats"
    feed_server.routes["/upi-top.rss"] = Reply(200, top)
    feed_server.routes["/upi-world.rss"] = Reply(
        200, b"<rss version='2.0'><channel><title>w</title></channel></rss>"
    )
    configure(settings, feed_server, "/upi-top.rss", "/upi-world.rss")
    with Tracker(settings) as tracker:
        tracker.poll(every=True)
        # The story leaves the top feed; the section feed picks it up with a new headline.
        feed_server.routes["/upi-world.rss"] = Reply(
            200, section.replace(old, b"Guyana votes as Maduro threatens")
        )
        tracker.poll(["upi-world"])
        tracker.poll(["upi-world"])
        (revision,) = [decode(e) for e in polled(tracker, event_type="article.revised")]
    assert revision.changed == ("title",) and revision.feed_id == "upi-world"


@pytest.mark.postgres
def test_a_poll_the_database_refuses_is_reported_and_its_claim_released(
    postgres_url: str, tmp_path: Path, feed_server: FeedServer
) -> None:
    from tracker.eventstore import EventStore

    settings = Settings(postgres_url, tmp_path / "feeds.yaml")
    feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker.open(settings) as tracker:
        tracker._store = EventStore(tracker.engine, lock_timeout_s=0.5)
        with tracker.engine.connect() as blocker:
            blocker.exec_driver_sql("LOCK TABLE events IN EXCLUSIVE MODE")
            (result,) = tracker.poll()
            blocker.rollback()
        assert result.outcome == "failed" and "not recorded" in (result.reason or "")
        assert [r.outcome for r in tracker.poll()] == ["new"]  # not held as busy


def test_feed_titles_and_urls_are_recorded_when_new_changed_or_removed(settings: Settings) -> None:
    from tracker.events.feeds import FeedDefined, FeedRemoved

    def write(feeds: str) -> None:
        settings.config_path.write_text("feeds:\n" + feeds)

    upi = "  - {id: upi-top, title: UPI Top News, url: 'https://rss.upi.com/news/news.rss'}\n"
    hill = "  - {id: thehill-news, url: 'https://thehill.com/news/feed/'}\n"
    with Tracker(settings) as tracker:
        write(upi + hill)
        assert tracker.record_feeds(tracker.check_config()) == ["thehill-news", "upi-top"]
        assert tracker.record_feeds(tracker.check_config()) == []
        write(upi.replace("UPI Top News", "UPI"))
        assert tracker.record_feeds(tracker.check_config()) == ["thehill-news", "upi-top"]
        history = [decode(e) for e in tracker.events()]
    assert history == [
        FeedDefined("upi-top", "UPI Top News", "https://rss.upi.com/news/news.rss"),
        FeedDefined("thehill-news", "thehill-news", "https://thehill.com/news/feed/"),
        FeedDefined("upi-top", "UPI", "https://rss.upi.com/news/news.rss"),
        FeedRemoved("thehill-news"),
    ]


def test_definitions_another_process_records_meanwhile_are_not_recorded_twice(
    settings: Settings,
) -> None:
    from tracker.events import encode
    from tracker.events.feeds import FeedDefined
    from tracker.eventstore import EventStore
    from tracker.records import RecordedEvent

    class Racing(EventStore):
        """Another process records upi-top's definition just after this one read the log."""

        def read_streams(
            self, stream_ids: Sequence[str], until_position: int | None = None
        ) -> list[RecordedEvent]:
            found = super().read_streams(stream_ids, until_position)
            defined = FeedDefined("upi-top", "UPI", "https://rss.upi.com/news/news.rss")
            self.append("feed-upi-top", [encode(defined, {"source": "other"})], 0)
            return found

    settings.config_path.write_text(
        "feeds:\n"
        "  - {id: upi-top, title: UPI, url: 'https://rss.upi.com/news/news.rss'}\n"
        "  - {id: thehill-news, url: 'https://thehill.com/news/feed/'}\n"
    )
    with Tracker.open(settings) as tracker:
        tracker._store = Racing(tracker.engine)
        assert tracker.record_feeds(tracker.check_config()) == ["thehill-news"]
        streams = [e.stream_id for e in tracker.events()]
    assert sorted(streams) == ["feed-thehill-news", "feed-upi-top"]


def test_a_poll_with_nothing_to_record_writes_its_bookkeeping_without_the_logs_lock(
    settings: Settings, feed_server: FeedServer
) -> None:
    import sqlalchemy as sa

    from tracker.polling import Recorder, claim_feed_state, fetch_feed

    feed_server.routes["/upi-top.rss"] = conditional(
        (FEEDS / "upi-top.rss").read_bytes(), etag='"v1"'
    )
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        tracker.poll()
        upi = tracker.check_config().feeds[0]
        now = datetime.now(UTC)
        state = claim_feed_state(tracker.store, upi, "me", now, only_if_due=False)
        fetcher = Fetcher()
        fetched = fetch_feed(fetcher, upi, state)
        fetcher.close()
        assert fetched.fetched is not None and fetched.fetched.not_modified
        statements: list[str] = []

        def seen(*args: object) -> None:
            statements.append(str(args[2]))

        sa.event.listen(tracker.engine, "before_cursor_execute", seen)
        try:
            result = Recorder(tracker.store, lambda: now, "test").record(fetched, now, "me")
        finally:
            sa.event.remove(tracker.engine, "before_cursor_execute", seen)
        assert result.outcome == "not modified"
        # One conditional UPDATE of the feed's row: no lock on the log, no read of it.
        assert [s.split()[:2] for s in statements] == [["UPDATE", "feed_state"]]
        (row,) = tracker.status().feeds
        assert row.last_checked_at == now


def test_a_304_after_failures_records_the_recovery(
    settings: Settings, feed_server: FeedServer
) -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    feed_server.routes["/upi-top.rss"] = conditional(body, etag='"v1"')
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        tracker.poll()
        feed_server.routes["/upi-top.rss"] = Reply(503)
        assert tracker.poll(every=True)[0].outcome == "failed"
        feed_server.routes["/upi-top.rss"] = conditional(body, etag='"v1"')
        assert tracker.poll(every=True)[0].outcome == "not modified"
        health = [decode(e) for e in polled(tracker, stream_id="feed-upi-top")]
    assert [type(e).__name__ for e in health] == ["FeedFailing", "FeedRecovered"]


@pytest.mark.parametrize("unchanged", [True, False], ids=["304", "200"])
def test_a_poll_whose_claim_was_taken_records_nothing_whatever_it_fetched(
    settings: Settings, feed_server: FeedServer, unchanged: bool
) -> None:
    from tracker.polling import Recorder, claim_feed_state, fetch_feed

    feed_server.routes["/upi-top.rss"] = conditional(
        (FEEDS / "upi-top.rss").read_bytes(), etag='"v1"'
    )
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker(settings) as tracker:
        if unchanged:
            tracker.poll()
        upi = tracker.check_config().feeds[0]
        start = datetime.now(UTC)
        state = claim_feed_state(tracker.store, upi, "slow", start, timedelta(seconds=1), False)
        fetcher = Fetcher()
        stale = fetch_feed(fetcher, upi, state)
        fetcher.close()
        later = start + timedelta(seconds=2)
        assert claim_feed(tracker.store, upi, "other", later, only_if_due=False)
        before = (len(polled(tracker)), tracker.status().feeds)
        dropped = Recorder(tracker.store, lambda: later, "test").record(stale, start, "slow")
        assert dropped.outcome == "busy"
        assert (len(polled(tracker)), tracker.status().feeds) == before


def _numbered_feed(number: int, items: int = 3) -> Reply:
    entries = "".join(
        f"<item><title>Story {number}-{n}</title><link>https://f{number}.example/{n}</link>"
        f"<guid>https://f{number}.example/?p={n}</guid>"
        f"<description>&lt;p&gt;Text {n} of feed {number}&lt;/p&gt;</description></item>"
        for n in range(items)
    )
    body = f"<rss version='2.0'><channel><title>Feed {number}</title>{entries}</channel></rss>"
    return Reply(200, body.encode(), {"Content-Type": "application/rss+xml"})


def test_a_round_of_many_feeds_parses_them_in_worker_processes(
    settings: Settings, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracker.parsepool import ParsePool
    from tracker.service import PARSE_PROCESSES_FROM

    paths = [f"/f{n}.rss" for n in range(PARSE_PROCESSES_FROM)]
    for n, path in enumerate(paths):
        feed_server.routes[path] = _numbered_feed(n)
    configure(settings, feed_server, *paths)
    in_workers: list[str] = []
    parse = ParsePool.parse

    def counted(pool: ParsePool, body: bytes, headers: dict[str, str], url: str) -> object:
        in_workers.append(url)
        return parse(pool, body, headers, url)

    monkeypatch.setattr(ParsePool, "parse", counted)
    with Tracker(settings) as tracker:
        results = tracker.poll()
        assert [r.line() for r in results] == [f"f{n}: 3 new" for n in range(len(paths))]
        titles = sorted(decode(e).title_text for e in polled(tracker))
    assert len(in_workers) == len(paths)
    assert titles == sorted(f"Story {n}-{i}" for n in range(len(paths)) for i in range(3))


def test_ctrl_c_in_a_terminal_stops_a_round_parsing_in_worker_processes(
    settings: Settings, feed_server: FeedServer
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from helpers import clean_env

    from tracker.service import PARSE_PROCESSES_FROM

    paths = [f"/f{n}.rss" for n in range(PARSE_PROCESSES_FROM)]
    for n, path in enumerate(paths):
        feed_server.routes[path] = _numbered_feed(n)
    feed_server.routes[paths[-1]] = Reply(200, b"<rss/>", delay_s=20)
    configure(settings, feed_server, *paths)
    env = {
        **clean_env(),
        "TRACKER_DATABASE_URL": settings.database_url,
        "TRACKER_CONFIG": str(settings.config_path),
    }
    poll = subprocess.Popen(
        [sys.executable, "-m", "tracker", "poll"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a shell gives a command
    )
    deadline = time.monotonic() + 20
    while not feed_server.requests_to(paths[-1]) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the other feeds parsed, in the workers
    os.killpg(poll.pid, signal.SIGINT)  # what Ctrl-C does: the whole group
    started = time.monotonic()
    _, err = poll.communicate(timeout=30)
    assert poll.returncode == 130 and err.strip() == "aborted"
    assert time.monotonic() - started < 5
    # No worker left behind (multiprocessing's resource tracker ends as its parent's pipe
    # closes: a moment after).
    deadline = time.monotonic() + 3
    with pytest.raises(ProcessLookupError):
        while time.monotonic() < deadline:
            os.killpg(poll.pid, 0)
            time.sleep(0.05)
    feed_server.routes[paths[-1]] = _numbered_feed(len(paths) - 1)
    with Tracker(settings) as tracker:
        # What was recorded before the Ctrl-C stays; the rest is polled now, not held busy.
        assert "busy" not in {r.outcome for r in tracker.poll(every=True)}


# A title on which feedparser 6.0 raises ValueError instead of flagging the feed malformed.
_RAISING = (
    b"<rss version='2.0'><channel><title>x</title><item><guid>g</guid>"
    b"<title>x &#1114112;</title></item></channel></rss>"
)


@pytest.mark.parametrize("feeds", [2, 8], ids=["in the poller", "in worker processes"])
def test_a_feed_whose_parse_raises_fails_alone_and_the_round_goes_on(
    settings: Settings, feed_server: FeedServer, feeds: int
) -> None:
    from tracker.service import PARSE_PROCESSES_FROM

    assert PARSE_PROCESSES_FROM <= 8
    paths = [f"/f{n}.rss" for n in range(feeds)]
    for n, path in enumerate(paths):
        feed_server.routes[path] = _numbered_feed(n)
    feed_server.routes[paths[0]] = Reply(200, _RAISING, {"Content-Type": "application/rss+xml"})
    configure(settings, feed_server, *paths)
    env = {
        "TRACKER_DATABASE_URL": settings.database_url,
        "TRACKER_CONFIG": str(settings.config_path),
    }
    polled_round = run_tracker("poll", env=env)
    assert polled_round.returncode == 0, polled_round.stderr
    lines = polled_round.stdout.splitlines()
    expected = "f0: failed: parser error: ValueError: chr() arg not in range(0x110000)"
    assert lines == [expected] + [f"f{n}: 3 new" for n in range(1, feeds)]
    with Tracker(settings) as tracker:
        (failing,) = [decode(e) for e in polled(tracker, event_type="feed.failing")]
        assert failing.error == expected.split("failed: ")[1]
        (row,) = [f for f in tracker.status().feeds if f.id == "f0"]
        # Backing off like any failing feed, not due again at the next round.
        assert row.state == "failing" and row.next_due_at is not None
        assert row.next_due_at > datetime.now(UTC) + timedelta(minutes=10)


def test_a_ctrl_c_as_the_claims_commit_still_releases_them(
    settings: Settings, feed_server: FeedServer
) -> None:
    import sqlalchemy as sa

    feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker.open(settings) as tracker:
        claiming: list[bool] = []

        def statement(_conn: object, _cursor: object, sql: str, *_: object) -> None:
            if sql.startswith("UPDATE feed_state SET claimed_by"):
                claiming.append(True)

        def commit(connection: sa.Connection) -> None:
            if claiming == [True]:
                # The claims commit; the Ctrl-C arrives before poll() hears back.
                claiming.append(False)
                connection.connection.dbapi_connection.commit()  # type: ignore[union-attr]
                raise KeyboardInterrupt

        sa.event.listen(tracker.engine, "before_cursor_execute", statement)
        sa.event.listen(tracker.engine, "commit", commit)
        try:
            with pytest.raises(KeyboardInterrupt):
                tracker.poll()
        finally:
            sa.event.remove(tracker.engine, "before_cursor_execute", statement)
            sa.event.remove(tracker.engine, "commit", commit)
        assert claiming[:2] == [True, False]
        # Released, not held for CLAIM_HOLD: a poll right away takes the feed.
        assert [r.outcome for r in tracker.poll()] == ["new"]


@pytest.mark.postgres
def test_pollers_claiming_the_same_feeds_in_other_orders_do_not_deadlock(
    postgres_url: str, tmp_path: Path
) -> None:
    import threading

    from tracker.polling import claim_feeds, release_claims

    settings = Settings(postgres_url, tmp_path / "feeds.yaml")
    settings.config_path.write_text(
        "feeds:\n" + "".join(f"  - {{id: f{n}, url: 'https://f{n}.example/'}}\n" for n in range(3))
    )
    with Tracker.open(settings) as tracker:
        feeds = tracker.check_config().feeds
        now = datetime.now(UTC)
        claim_feeds(tracker.store, feeds, "setup", now, only_if_due=False)
        release_claims(tracker.store, [f.id for f in feeds], "setup")
        with tracker.engine.begin() as connection:
            # Each claimed row held a while, so that two pollers' claims overlap for sure.
            connection.exec_driver_sql(
                "CREATE FUNCTION slow_claim() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER slow_claim AFTER UPDATE ON feed_state "
                "FOR EACH ROW EXECUTE FUNCTION slow_claim()"
            )
        outcomes: dict[str, object] = {}

        def claim_in(order: list[object], owner: str) -> None:
            try:
                outcomes[owner] = claim_feeds(tracker.store, order, owner, now, only_if_due=False)  # type: ignore[arg-type]
            except Exception as error:  # noqa: BLE001 -- the test's to report
                outcomes[owner] = error

        pollers = [
            threading.Thread(target=claim_in, args=(list(feeds), "one")),
            threading.Thread(target=claim_in, args=(list(reversed(feeds)), "two")),
        ]
        for poller in pollers:
            poller.start()
        for poller in pollers:
            poller.join(30)
    assert not [o for o in outcomes.values() if isinstance(o, Exception)], outcomes
    claimed = [
        {feed_id for feed_id, row in outcome.items() if row is not None}  # type: ignore[attr-defined]
        for outcome in outcomes.values()
    ]
    assert len(claimed) == 2 and not claimed[0] & claimed[1]
    assert claimed[0] | claimed[1] == {"f0", "f1", "f2"}


def test_a_definition_whose_feed_stream_got_a_health_event_meanwhile_is_recorded(
    settings: Settings,
) -> None:
    from tracker.events import encode
    from tracker.events.feeds import FAILING, FeedDefined, FeedFailing
    from tracker.eventstore import EventStore
    from tracker.records import RecordedEvent

    class Polled(EventStore):
        """A poller records upi-top failing just after this process read the log."""

        raced = False

        def read_streams(
            self, stream_ids: Sequence[str], until_position: int | None = None
        ) -> list[RecordedEvent]:
            found = super().read_streams(stream_ids, until_position)
            if not self.raced:
                self.raced = True
                failing = FeedFailing("upi-top", "https://rss.upi.com/news/news.rss", FAILING, "x")
                self.append("feed-upi-top", [encode(failing, {"source": "poller"})])
            return found

    def write(title: str) -> None:
        settings.config_path.write_text(
            f"feeds:\n  - {{id: upi-top, title: {title}, url: 'https://rss.upi.com/news/news.rss'}}\n"
        )

    with Tracker.open(settings) as tracker:
        write("UPI Top News")
        tracker.record_feeds(tracker.check_config())
        write("UPI")
        tracker._store = Polled(tracker.engine)
        assert tracker.record_feeds(tracker.check_config()) == ["upi-top"]
        history = [decode(e) for e in tracker.events(stream_id="feed-upi-top")]
    assert [type(e).__name__ for e in history] == ["FeedDefined", "FeedFailing", "FeedDefined"]
    assert history[-1] == FeedDefined("upi-top", "UPI", "https://rss.upi.com/news/news.rss")


def test_a_poll_whose_fetcher_is_cancelled_after_the_fetch_parses_and_records_nothing(
    settings: Settings, feed_server: FeedServer
) -> None:
    from tracker.fetch import Fetched

    class StoppedMeanwhile(Fetcher):
        """The daemon is told to stop just as this fetch completes."""

        def fetch(
            self, url: str, etag: str | None = None, last_modified: str | None = None
        ) -> Fetched:
            fetched = super().fetch(url, etag, last_modified)
            self.cancel()
            return fetched

    feed_server.routes["/upi-top.rss"] = feed("upi-top.rss")
    configure(settings, feed_server, "/upi-top.rss")
    with Tracker.open(settings) as tracker:
        (upi,) = tracker.check_config().feeds
        fetcher = StoppedMeanwhile()
        try:
            assert tracker.poll_feed_if_due(upi, "daemon", fetcher) is None
        finally:
            fetcher.close()
        assert polled(tracker) == []
        assert [r.outcome for r in tracker.poll()] == ["new"]  # its claim was released


def test_a_poll_looks_up_articles_in_a_big_never_analysed_log_by_index(postgres_url: str) -> None:
    """With autovacuum off (as on this machine's server) or before it has run, PostgreSQL
    knows nothing of stream_id and guesses that fifty ids match thousands of events: a list
    lookup then scans the whole log, half a second at a million events, for every poll with a
    new article (the old `stream_id IN (...)` statements planned so here). The lookups a poll
    runs must find each id through the log's index instead, and still answer rightly."""
    from tracker.database import create_engine, ensure_schema
    from tracker.eventstore import id_parameters, stream_versions
    from tracker.pollstate import _statements, known_articles

    engine = create_engine(postgres_url)
    try:
        ensure_schema(engine)
        fill_unanalysed_log(engine, 300000)  # 100,000 articles
        ids = [f"article-{n}" for n in range(1000, 1040)] + [f"new-{n}" for n in range(10)]
        with engine.connect() as connection:
            assert_unanalysed(connection)
            cursor = connection.connection.cursor()
            plans = {}
            for name, statement in [
                ("the streams' versions", stream_versions(True, len(ids))),
                ("the histories", _statements(connection).histories(len(ids))),
            ]:
                cursor.execute(f"EXPLAIN {statement}", id_parameters(True, ids), prepare=False)
                plans[name] = "\n".join(row[0] for row in cursor.fetchall())
            known = known_articles(connection, ids)
    finally:
        engine.dispose()

    def by_index(plan: str) -> bool:
        return any(
            line.strip().startswith("Index Cond:") and "= ids.stream_id" in line
            for line in plan.splitlines()
        )

    assert {name: plan for name, plan in plans.items() if not by_index(plan)} == {}
    assert {name: plan for name, plan in plans.items() if "Seq Scan on events" in plan} == {}
    # The fake articles' events are no real article's, but the log has them and says so.
    assert sorted(known) == sorted(ids[:40])
    assert {(article.version, *article.per_feed) for article in known.values()} == {(3, "upi-top")}
