"""Parsing in worker processes (tracker.parsepool): the same answers as parsing in the calling
thread, refusals carried back, and a pool that breaks or cannot start never fails a poll."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracker.parse import FeedParseError
from tracker.parsepool import ParsePool, parse_and_sight

FEEDS = Path(__file__).parent / "data" / "feeds"
HEADERS = {"content-type": "text/xml"}
BOMB = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><rss>&a;</rss>'


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    parsers = ParsePool(2)
    yield parsers
    parsers.close()


def _workers(pool: ParsePool) -> list[int]:
    workers = pool.processes()
    assert workers
    return workers


@pytest.mark.parametrize("name", sorted(p.name for p in FEEDS.glob("*.*") if p.suffix != ".json"))
def test_a_worker_parses_and_sights_as_the_calling_thread_does(pool: ParsePool, name: str) -> None:
    body = (FEEDS / name).read_bytes()
    url = f"https://example.com/{name}"
    assert pool.parse(body, HEADERS, url) == parse_and_sight(body, HEADERS, url)


def test_refusals_come_back_from_the_workers(pool: ParsePool) -> None:
    with pytest.raises(FeedParseError, match="declares XML entities"):
        pool.parse(BOMB, HEADERS, "https://example.com/bomb")
    with pytest.raises(FeedParseError, match="not a feed"):
        pool.parse(b"<html>maintenance</html>", {"content-type": "text/html"}, "https://x/")


def test_a_pool_whose_worker_died_parses_in_the_calling_thread(pool: ParsePool) -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    expected = parse_and_sight(body, HEADERS, "https://x/")
    assert pool.parse(body, HEADERS, "https://x/") == expected
    for pid in _workers(pool):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert pool.parse(body, HEADERS, "https://x/") == expected
    assert pool.processes() == []  # given up, not restarted for each parse
    assert pool.parse(body, HEADERS, "https://x/") == expected


def test_a_pool_that_cannot_start_parses_in_the_calling_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    parsers = ParsePool(2)
    assert parsers.parse(body, HEADERS, "https://x/") == parse_and_sight(
        body, HEADERS, "https://x/"
    )
    parsers.close()


def test_workers_leave_ctrl_c_to_the_poller(pool: ParsePool) -> None:
    body = (FEEDS / "upi-top.rss").read_bytes()
    pool.parse(body, HEADERS, "https://x/")
    workers = _workers(pool)
    for pid in workers:
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.2)
    assert pool.parse(body, HEADERS, "https://x/") == parse_and_sight(body, HEADERS, "https://x/")
    assert _workers(pool) == workers


def test_a_closed_pool_ends_its_workers_and_parses_in_the_calling_thread() -> None:
    parsers = ParsePool(2)
    body = (FEEDS / "upi-top.rss").read_bytes()
    parsers.parse(body, HEADERS, "https://x/")
    workers = _workers(parsers)
    parsers.close()
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert parsers.parse(body, HEADERS, "https://x/") == parse_and_sight(
        body, HEADERS, "https://x/"
    )


def test_a_worker_answers_each_request_in_turn_until_its_input_ends() -> None:
    import io
    import pickle

    from tracker.parsepool import serve

    body = (FEEDS / "upi-top.rss").read_bytes()
    requests = io.BytesIO()
    for request in ((body, HEADERS, "https://x/"), (BOMB, HEADERS, "https://x/bomb")):
        pickle.dump(request, requests)
    requests.seek(0)
    answers = io.BytesIO()
    serve(requests, answers)
    answers.seek(0)
    assert pickle.load(answers) == (True, parse_and_sight(body, HEADERS, "https://x/"))
    ok, refusal = pickle.load(answers)
    assert not ok and isinstance(refusal, FeedParseError)
    with pytest.raises(EOFError):
        pickle.load(answers)
