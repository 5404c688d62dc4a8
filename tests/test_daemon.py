"""`tracker daemon` as a real process: polls on intervals, SIGHUP reload, SIGTERM stop, and
several daemons sharing one PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from feedserver import FeedServer, Reply
from helpers import clean_env, polled
from histories import append, dump, published

from tracker import digests
from tracker.projection import CATCH_UP_BATCH, lock_rows, writing
from tracker.service import Tracker
from tracker.settings import Settings
from tracker.views import PROJECTORS


def rss(feed_id: str, items: int = 2) -> bytes:
    entries = "".join(
        f"<item><title>{feed_id} story {n}: Essequibo update</title>"
        f"<link>https://news.example/{feed_id}/{n}</link>"
        f"<guid isPermaLink='false'>{feed_id}-{n}</guid>"
        f"<pubDate>Thu, 14 Aug 2025 10:{n:02d}:00 GMT</pubDate></item>"
        for n in range(items)
    )
    return f"<rss version='2.0'><channel><title>{feed_id}</title>{entries}</channel></rss>".encode()


def write_config(path: Path, server: FeedServer, feed_ids: list[str], interval: str) -> None:
    path.write_text(
        "feeds:\n"
        + "".join(
            f"  - {{id: {feed_id}, url: '{server.url('/' + feed_id)}', interval: {interval}}}\n"
            for feed_id in feed_ids
        )
    )


def start_daemon(settings: Settings, *options: str) -> subprocess.Popen[str]:
    env = {
        **clean_env(),
        "TRACKER_DATABASE_URL": settings.database_url,
        "TRACKER_CONFIG": str(settings.config_path),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tracker", "daemon", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def caught_up(tracker: Tracker) -> bool:
    status = tracker.status()
    return status.head > 0 and all(p.generation and p.lag == 0 for p in status.projections)


def stop(process: subprocess.Popen[str]) -> tuple[int, str, float]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    return process.returncode, err, time.monotonic() - started


def test_the_daemon_polls_reloads_on_sighup_and_stops_on_sigterm(
    settings: Settings, feed_server: FeedServer
) -> None:
    for feed_id in ("upi", "hill", "herald"):
        feed_server.routes[f"/{feed_id}"] = Reply(200, rss(feed_id))
    write_config(settings.config_path, feed_server, ["upi", "hill"], "1s")
    daemon = start_daemon(settings)
    try:
        wait_for(lambda: len(feed_server.requests_to("/upi")) >= 3)
        wait_for(lambda: len(feed_server.requests_to("/hill")) >= 3)
        write_config(settings.config_path, feed_server, ["upi", "herald"], "1s")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: len(feed_server.requests_to("/herald")) >= 2)
        hill_after_reload = len(feed_server.requests_to("/hill"))
        time.sleep(2.5)
        assert len(feed_server.requests_to("/hill")) <= hill_after_reload + 1
    finally:
        code, err, took = stop(daemon)
    assert code == 0, err
    assert took < 5
    lines = err.splitlines()
    assert any(line.endswith("INFO upi: 2 new") for line in lines)
    assert any("reloaded" in line for line in lines)
    # One line per poll: no per-request or per-job chatter from the libraries.
    assert not any("HTTP Request" in line or "Running job" in line for line in lines)
    with Tracker(settings) as tracker:
        published = Counter(e.stream_id for e in polled(tracker, event_type="article.published"))
        assert len(published) == 6 and set(published.values()) == {1}
        assert tracker.verify().ok


def test_sigterm_lets_a_poll_in_flight_commit(settings: Settings, feed_server: FeedServer) -> None:
    feed_server.routes["/slow"] = Reply(200, rss("slow"), delay_s=1.5)
    write_config(settings.config_path, feed_server, ["slow"], "1m")
    daemon = start_daemon(settings)
    try:
        wait_for(lambda: len(feed_server.requests_to("/slow")) >= 1)
    finally:
        code, err, took = stop(daemon)
    assert code == 0, err
    assert took < 5
    assert "slow: 2 new" in err
    with Tracker(settings) as tracker:
        assert len(polled(tracker)) == 2


def test_sigterm_cancels_a_fetch_that_would_take_long_and_records_nothing_for_it(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/stuck"] = Reply(200, rss("stuck"), delay_s=25)
    write_config(settings.config_path, feed_server, ["stuck"], "1m")
    daemon = start_daemon(settings)
    try:
        wait_for(lambda: len(feed_server.requests_to("/stuck")) >= 1)
    finally:
        code, err, took = stop(daemon)
    assert code == 0, err
    assert took < 10
    assert "1 job(s) still running: cancelling" in err and "failed" not in err
    with Tracker(settings) as tracker:
        assert len(polled(tracker)) == 0  # no feed.failing for a shutdown
        # And the claim is released: a poll right away may take the feed.
        feed_server.routes["/stuck"] = Reply(200, rss("stuck"))
        assert [r.outcome for r in tracker.poll()] == ["new"]


@pytest.mark.postgres
def test_three_daemons_share_one_postgres_without_double_polls(
    postgres_url: str, tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_ids = [f"feed-{n:02d}" for n in range(40)]
    for feed_id in feed_ids:
        # A little latency, so that two polls of one feed at once would overlap visibly.
        feed_server.routes[f"/{feed_id}"] = Reply(200, rss(feed_id, 3), delay_s=0.05)
    settings = Settings(postgres_url, tmp_path / "feeds.yaml")
    write_config(settings.config_path, feed_server, feed_ids, "2s")
    with Tracker.open(settings):
        pass  # migrated before the race, as an operator's first `tracker db upgrade` would
    daemons = [start_daemon(settings) for _ in range(3)]
    run_for = 12.0
    try:
        time.sleep(run_for)
    finally:
        outcomes = [stop(daemon) for daemon in daemons]
    for code, err, took in outcomes:
        assert code == 0, err
        assert took < 5
    for feed_id in feed_ids:
        requests = sorted(feed_server.requests_to(f"/{feed_id}"), key=lambda r: r.started)
        # On time: about one poll per 2 s interval over the run.
        assert len(requests) >= run_for / 2 - 2, (feed_id, len(requests))
        assert len(requests) <= run_for / 2 + 2, (feed_id, len(requests))
        for earlier, later in zip(requests, requests[1:], strict=False):
            assert later.started >= earlier.finished, f"{feed_id} polled twice at once"
    # Every daemon took part.
    polls = [err.count(" INFO feed-") for _, err, _ in outcomes]
    assert all(count > 0 for count in polls), polls
    with Tracker(settings) as tracker:
        published = Counter(e.stream_id for e in polled(tracker, event_type="article.published"))
        assert len(published) == 3 * len(feed_ids)
        assert set(published.values()) == {1}, "an article was published twice"
        assert tracker.verify().ok


def one_feed_about_essequibo(settings: Settings, feed_server: FeedServer) -> None:
    """feeds.yaml with one feed of three Essequibo articles, polled every second, and the
    essequibo storyline."""
    feed_server.routes["/upi"] = Reply(200, rss("upi", items=3))
    write_config(settings.config_path, feed_server, ["upi"], "1s")
    with settings.config_path.open("a") as config:
        config.write("storylines:\n  - {id: essequibo, match: {any: [Essequibo]}}\n")


def test_the_daemon_keeps_the_views_up_to_date_after_each_poll(
    settings: Settings, feed_server: FeedServer
) -> None:
    one_feed_about_essequibo(settings, feed_server)
    daemon = start_daemon(settings)
    try:
        with Tracker(settings) as tracker:
            wait_for(lambda: len(feed_server.requests_to("/upi")) >= 1)
            wait_for(lambda: caught_up(tracker))
            # A new article appears; the next poll records it and the views follow.
            feed_server.routes["/upi"] = Reply(200, rss("upi", items=4))
            wait_for(lambda: len(tracker.story("essequibo").articles) == 4)
    finally:
        code, err, _ = stop(daemon)
    assert code == 0, err


def test_the_daemon_digests_the_storylines_that_changed_on_its_own_interval(
    settings: Settings, feed_server: FeedServer
) -> None:
    one_feed_about_essequibo(settings, feed_server)
    daemon = start_daemon(settings, "--digest-every", "0.5")
    try:
        with Tracker(settings) as tracker:
            wait_for(lambda: caught_up(tracker) and stale(tracker) == [])
            feed_server.routes["/upi"] = Reply(200, rss("upi", items=4))
            wait_for(lambda: len(tracker.story("essequibo").articles) == 4)
            wait_for(lambda: stale(tracker) == [])  # digested again since
    finally:
        code, err, _ = stop(daemon)
    assert code == 0, err


def stale(tracker: Tracker) -> list[str] | None:
    """The storylines whose digest is missing or no longer holds (None: the views stand apart
    or are not built)."""
    return digests.stale(tracker.store)


def _workers(pid: int) -> list[int]:
    """The parsing workers (tracker.parsepool) of a process, running."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = status.read_text().rsplit(")", 1)[1].split()[:2]
            cmdline = (status.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(parent) == pid and state != "Z" and b"tracker.parsepool" in cmdline:
            found.append(int(status.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc for the daemon's children")
def test_a_daemon_of_many_feeds_parses_in_worker_processes_and_ends_them(
    settings: Settings, feed_server: FeedServer
) -> None:
    from tracker.parsepool import cores
    from tracker.service import PARSE_PROCESSES_FROM

    if cores() < 2:
        pytest.skip("one core: the daemon parses in its own threads")
    feed_ids = [f"feed{n}" for n in range(PARSE_PROCESSES_FROM)]
    for feed_id in feed_ids:
        feed_server.routes[f"/{feed_id}"] = Reply(200, rss(feed_id))
    write_config(settings.config_path, feed_server, feed_ids, "1m")
    daemon = start_daemon(settings)
    workers: list[int] = []
    try:
        wait_for(lambda: all(feed_server.requests_to(f"/{f}") for f in feed_ids))
        wait_for(lambda: bool(workers.extend(_workers(daemon.pid)) or workers))
    finally:
        code, err, took = stop(daemon)
    assert code == 0, err
    assert took < 5
    assert not [pid for pid in workers if _running(pid)]
    with Tracker(settings) as tracker:
        assert len(polled(tracker)) == 2 * len(feed_ids)


def slow_rss(megabytes: float) -> bytes:
    """A legitimate feed that takes feedparser about 2 s per MB (dense markup to sanitise)."""
    content = "<b>x</b>" * 2000
    items = "".join(
        f"<item><title>Story {n}</title><guid>https://slow.example/?p={n}</guid>"
        f"<description><![CDATA[{content}]]></description></item>"
        for n in range(int(megabytes * 1024 * 1024 / len(content)))
    )
    return f"<rss version='2.0'><channel><title>Slow</title>{items}</channel></rss>".encode()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc for the daemon's children")
def test_sigterm_stops_a_parse_in_flight_and_records_nothing_for_it(
    settings: Settings, feed_server: FeedServer
) -> None:
    from tracker.pollstate import load_feeds

    feed_server.routes["/slow"] = Reply(200, slow_rss(6))  # ten seconds and more to parse
    feed_server.routes["/upi"] = Reply(200, rss("upi"))
    write_config(settings.config_path, feed_server, ["slow", "upi"], "1m")
    daemon = start_daemon(settings)
    workers: list[int] = []
    try:
        wait_for(lambda: bool(feed_server.requests_to("/slow") and feed_server.requests_to("/upi")))
        time.sleep(1.5)  # parsing the slow feed now, for seconds more
        workers = _workers(daemon.pid)
    finally:
        code, err, took = stop(daemon)
    assert code == 0, err
    # The grace for polls in flight, then the parse is killed: the daemon does not wait for
    # it, nor records it once it said it stopped.
    assert took < 8, err
    assert "upi: 2 new" in err
    polls_of_slow = [line for line in err.splitlines() if " slow: " in line]
    assert len(polls_of_slow) == 1 and "polled every" in polls_of_slow[0]
    assert not [pid for pid in workers if _running(pid)]
    with Tracker(settings) as tracker:
        assert not polled(tracker, stream_id="feed-slow")
        with tracker.engine.connect() as connection:
            assert load_feeds(connection)["slow"].claimed_by is None


def test_sigterm_ends_a_long_catch_up_at_a_batch_and_the_next_start_goes_on(
    settings: Settings, feed_server: FeedServer
) -> None:
    # A stopping daemon used to chase the log to its end, however long that took (and with
    # other daemons still writing, it might never end).
    feed_server.routes["/upi"] = Reply(200, rss("upi"))
    write_config(settings.config_path, feed_server, ["upi"], "1h")
    daemon = start_daemon(settings)
    try:
        with Tracker(settings) as tracker:
            # The first poll recorded and the views caught up: nothing else runs for an hour.
            wait_for(lambda: len(polled(tracker, event_type="article.published")) == 2)
            wait_for(lambda: caught_up(tracker))
            before = tracker.status().head
            # A backlog the views have not seen, as another daemon's polls leave one: a dozen
            # of the catch-up's batches.
            backlog = 12 * CATCH_UP_BATCH
            for chunk in range(6):
                append(
                    tracker.store,
                    [
                        published(f"backlog-{chunk}-{n}", "upi", "Essequibo talks", day=n % 300)
                        for n in range(backlog // 6)
                    ],
                )
            daemon.send_signal(signal.SIGHUP)  # a reload brings the views up to date
            wait_for(lambda: min(p.position for p in tracker.status().projections) > before)
    finally:
        code, err, took = stop(daemon)
    assert code == 0, err
    assert took < 10
    assert "views left at event" in err
    with Tracker(settings) as tracker:
        status = tracker.status()
        assert status.head == before + backlog
        assert 0 < max(p.lag for p in status.projections) < backlog, "not stopped at a batch"
        # What the stopped daemon left, the next catch-up finishes, as a fresh replay builds.
        assert tracker.catch_up().head == status.head
        assert caught_up(tracker)
        views = dump(tracker.store)
        tracker.replay()
        assert dump(tracker.store) == views
        assert tracker.verify().ok


def test_a_daemon_blocked_in_the_database_still_exits_at_its_stop_timeout(
    settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.routes["/upi"] = Reply(200, rss("upi"))
    write_config(settings.config_path, feed_server, ["upi"], "1s")
    daemon = start_daemon(settings, "--stop-timeout", "3")
    with Tracker(settings) as tracker:
        try:
            wait_for(lambda: caught_up(tracker))
            # Another session holds the views' rows (PostgreSQL) or the write lock (SQLite)
            # for longer than the stop may take: the next poll or its catch-up waits on it.
            with writing(tracker.store.engine) as holder:
                lock_rows(holder, [p.name for p in PROJECTORS])
                time.sleep(2.5)
                code, err, took = stop(daemon)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        assert code == 0, err
        assert took < 10, err
        assert "1 job(s) still running 3s after the stop was asked for" in err
        # Whatever the blocked job had not committed rolled back: the log is whole.
        assert tracker.verify().ok
        tracker.catch_up()
        assert caught_up(tracker)
