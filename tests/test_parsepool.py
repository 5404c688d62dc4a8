"""Parsing in worker processes (tracker.parsepool): the same answers as parsing in the calling
thread, refusals carried back, a deadline on each parse, workers that die or hang replaced
without the body ever parsed in the poller, and a pool that cannot start never failing a poll."""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracker.parse import FeedParseError
from tracker.parsepool import ParseCancelled, ParsePool, parse_and_sight, serve_requests

FEEDS = Path(__file__).parent / "data" / "feeds"
HEADERS = {"content-type": "text/xml"}
BOMB = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><rss>&a;</rss>'
UPI = (FEEDS / "upi-top.rss").read_bytes()


def slow_feed(megabytes: float) -> bytes:
    """A legitimate feed that takes feedparser about 2 s per MB (dense markup to sanitise)."""
    content = "<b>x</b>" * 2000
    items = "".join(
        f"<item><title>Story {n}</title><guid>https://slow.example/?p={n}</guid>"
        f"<description><![CDATA[{content}]]></description></item>"
        for n in range(int(megabytes * 1024 * 1024 / len(content)))
    )
    return f"<rss version='2.0'><channel><title>Slow</title>{items}</channel></rss>".encode()


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    parsers = ParsePool(2)
    yield parsers
    parsers.close()


def _workers(pool: ParsePool) -> list[int]:
    workers = pool.processes()
    assert workers
    return workers


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _in_thread(work: object) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = work()  # type: ignore[operator]
        except BaseException as error:  # handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("name", sorted(p.name for p in FEEDS.glob("*.*") if p.suffix != ".json"))
def test_a_worker_parses_and_sights_as_the_calling_thread_does(pool: ParsePool, name: str) -> None:
    body = (FEEDS / name).read_bytes()
    url = f"https://example.com/{name}"
    assert pool.parse(body, HEADERS, url) == parse_and_sight(body, HEADERS, url)


@pytest.mark.parametrize("workers", [1, 2])
def test_more_threads_than_workers_take_turns(workers: int) -> None:
    parsers = ParsePool(workers)
    try:
        threads = [_in_thread(lambda: parsers.parse(UPI, HEADERS, "https://x/")) for _ in range(6)]
        for thread, _ in threads:
            thread.join(30)
        expected = parse_and_sight(UPI, HEADERS, "https://x/")
        assert [outcome.get("result") for _, outcome in threads] == [expected] * 6
        assert len(parsers.processes()) == workers
    finally:
        parsers.close()


def test_refusals_come_back_from_the_workers(pool: ParsePool) -> None:
    with pytest.raises(FeedParseError, match="declares XML entities"):
        pool.parse(BOMB, HEADERS, "https://example.com/bomb")
    with pytest.raises(FeedParseError, match="not a feed"):
        pool.parse(b"<html>maintenance</html>", {"content-type": "text/html"}, "https://x/")


# Bodies on which feedparser 6.0 raises instead of flagging the feed as malformed.
RAISING = {
    "ValueError": b"<rss version='2.0'><channel><title>x</title><item><guid>g</guid>"
    b"<title>x &#1114112;</title></item></channel></rss>",
    "UnicodeEncodeError": b"<rss version='2.0'><channel><title>x</title><item><guid>g</guid>"
    b"<title>x &#55296;</title></item></channel></rss>",
}


@pytest.mark.parametrize("kind", RAISING)
def test_what_feedparser_raises_is_that_feeds_parse_error_in_a_worker_too(
    pool: ParsePool, kind: str
) -> None:
    with pytest.raises(FeedParseError, match=f"^parser error: {kind}: "):
        pool.parse(RAISING[kind], HEADERS, "https://x/")
    assert pool.parse(UPI, HEADERS, "https://x/") == parse_and_sight(UPI, HEADERS, "https://x/")
    assert len(_workers(pool)) == 1  # the same worker, still serving


def test_a_parse_past_its_deadline_fails_that_feed_and_frees_its_worker() -> None:
    parsers = ParsePool(2, deadline=1, deadline_per_mb=0)
    try:
        parsers.parse(UPI, HEADERS, "https://x/")
        (first,) = _workers(parsers)
        slow = slow_feed(3)
        # Two slow feeds hold both workers, each until its deadline only; a third feed waits
        # for a worker no longer than that.
        hostile = [_in_thread(lambda: parsers.parse(slow, HEADERS, "https://slow/")) for _ in "ab"]
        time.sleep(0.3)
        started = time.monotonic()
        assert parsers.parse(UPI, HEADERS, "https://x/") == parse_and_sight(
            UPI, HEADERS, "https://x/"
        )
        assert time.monotonic() - started < 5
        for thread, outcome in hostile:
            thread.join(10)
            error = outcome["error"]
            assert isinstance(error, FeedParseError)
            assert str(error) == "parsing took longer than 1 s"
        assert _gone(first, within=2)  # killed, not left parsing
        assert first not in parsers.processes()
    finally:
        parsers.close()


def test_a_ctrl_c_while_a_worker_parses_loses_no_worker() -> None:
    parsers = ParsePool(1)
    try:
        parsers.parse(UPI, HEADERS, "https://x/")
        (worker,) = _workers(parsers)
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            parsers.parse(slow_feed(3), HEADERS, "https://slow/")
        assert _gone(worker, within=2)
        # The pool's only worker was lost with the Ctrl-C: the next parse gets a new one.
        thread, outcome = _in_thread(lambda: parsers.parse(UPI, HEADERS, "https://x/"))
        thread.join(20)
        assert outcome.get("result") == parse_and_sight(UPI, HEADERS, "https://x/")
    finally:
        parsers.close()


def test_a_worker_that_dies_while_parsing_fails_that_feed_and_is_replaced(pool: ParsePool) -> None:
    pool.parse(UPI, HEADERS, "https://x/")
    (worker,) = _workers(pool)
    thread, outcome = _in_thread(lambda: pool.parse(slow_feed(3), HEADERS, "https://slow/"))
    time.sleep(0.5)
    os.kill(worker, signal.SIGKILL)  # as the OOM killer would
    started = time.monotonic()
    thread.join(30)
    # Not parsed again in the calling thread (which would take seconds, and might kill the
    # poller as it killed the worker): that feed's poll fails.
    assert time.monotonic() - started < 2
    error = outcome["error"]
    assert isinstance(error, FeedParseError)
    assert str(error) == "parser process died: signal 9 (SIGKILL)"
    assert pool.parse(UPI, HEADERS, "https://x/") == parse_and_sight(UPI, HEADERS, "https://x/")
    assert _workers(pool) != [worker]  # in a new worker, not in this process


def test_workers_that_died_idle_are_replaced(pool: ParsePool) -> None:
    pool.parse(UPI, HEADERS, "https://x/")
    workers = _workers(pool)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert pool.parse(UPI, HEADERS, "https://x/") == parse_and_sight(UPI, HEADERS, "https://x/")
    assert _workers(pool) and not set(pool.processes()) & set(workers)


def test_a_pool_that_cannot_start_parses_in_the_calling_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    parsers = ParsePool(2)
    assert parsers.parse(UPI, HEADERS, "https://x/") == parse_and_sight(UPI, HEADERS, "https://x/")
    parsers.close()


def test_workers_that_die_as_they_start_make_the_pool_parse_in_the_calling_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(broken))
    parsers = ParsePool(2)
    assert parsers.parse(UPI, HEADERS, "https://x/") == parse_and_sight(UPI, HEADERS, "https://x/")
    assert parsers.processes() == []
    parsers.close()


def test_what_a_worker_prints_as_it_starts_does_not_garble_its_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Python imports sitecustomize at its start, before any of our code runs.
    (tmp_path / "sitecustomize.py").write_text("print('hello from a library')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    parsers = ParsePool(1)
    try:
        assert parsers.parse(UPI, HEADERS, "https://x/") == parse_and_sight(
            UPI, HEADERS, "https://x/"
        )
        assert _workers(parsers)  # parsed by the worker, not given up for this thread
    finally:
        parsers.close()


def test_a_worker_is_replaced_after_a_big_body() -> None:
    parsers = ParsePool(1, recycle_after_bytes=len(UPI))
    try:
        parsers.parse(b"<rss version='2.0'><channel><title>x</title></channel></rss>", HEADERS, "")
        (worker,) = _workers(parsers)
        parsers.parse(UPI, HEADERS, "https://x/")  # its memory stays at the high-water mark
        assert parsers.processes() == []
        assert _gone(worker, within=2)
        parsers.parse(UPI, HEADERS, "https://x/")
        assert parsers.processes() == []  # each body as big: a fresh worker each time
    finally:
        parsers.close()


def test_workers_leave_ctrl_c_to_the_poller(pool: ParsePool) -> None:
    pool.parse(UPI, HEADERS, "https://x/")
    workers = _workers(pool)
    for pid in workers:
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.2)
    assert pool.parse(UPI, HEADERS, "https://x/") == parse_and_sight(UPI, HEADERS, "https://x/")
    assert _workers(pool) == workers


def test_a_closed_pool_ends_its_workers_and_parses_nothing_more() -> None:
    parsers = ParsePool(2)
    parsers.parse(UPI, HEADERS, "https://x/")
    workers = _workers(parsers)
    parsers.close()
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(ParseCancelled):
        parsers.parse(UPI, HEADERS, "https://x/")


def test_cancelling_a_pool_kills_the_workers_parsing() -> None:
    parsers = ParsePool(1)
    parsers.parse(UPI, HEADERS, "https://x/")
    (worker,) = _workers(parsers)
    thread, outcome = _in_thread(lambda: parsers.parse(slow_feed(3), HEADERS, "https://slow/"))
    time.sleep(0.5)
    started = time.monotonic()
    parsers.cancel()
    thread.join(10)
    assert time.monotonic() - started < 2
    assert isinstance(outcome["error"], ParseCancelled)
    assert _gone(worker, within=1)
    with pytest.raises(ParseCancelled):
        parsers.parse(UPI, HEADERS, "https://x/")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc for the workers")
def test_workers_end_with_a_poller_killed_while_they_parse(tmp_path: Path) -> None:
    (tmp_path / "small.rss").write_bytes(UPI)
    (tmp_path / "slow.rss").write_bytes(slow_feed(4))
    program = (
        "import sys; from pathlib import Path; from tracker.parsepool import ParsePool\n"
        "pool = ParsePool(1)\n"
        "pool.parse((Path(sys.argv[1]) / 'small.rss').read_bytes(), {}, '')\n"
        "print(pool.processes()[0], flush=True)\n"
        "pool.parse((Path(sys.argv[1]) / 'slow.rss').read_bytes(), {}, '')\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", program, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as poller:
        assert poller.stdout is not None
        worker = int(poller.stdout.readline())
        time.sleep(1)  # the worker is parsing now, for several seconds
        poller.kill()
    assert _gone(worker, within=3)


def test_a_worker_answers_each_request_in_turn_until_its_input_ends() -> None:
    requests = io.BytesIO()
    for request in ((UPI, HEADERS, "https://x/"), (BOMB, HEADERS, "https://x/bomb")):
        pickle.dump(request, requests)
    requests.seek(0)
    answers = io.BytesIO()
    serve_requests(requests, answers)
    answers.seek(0)

    def frame() -> object:
        size = int.from_bytes(answers.read(8), "big")
        return pickle.loads(answers.read(size))

    assert frame() == (True, parse_and_sight(UPI, HEADERS, "https://x/"))
    ok, (kind, message, _) = frame()  # type: ignore[misc]
    assert not ok and kind == "FeedParseError" and "declares XML entities" in message
    assert answers.read() == b""
