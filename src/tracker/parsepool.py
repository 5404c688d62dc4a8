"""Parsing fetched feeds in worker processes, beside the fetches and the recording.

feedparser is pure Python and CPU-bound: in threads, under the GIL, parsing takes one core
however many there are, and every other thread of a poll round (fetching, recording) waits for
it. A round of many feeds parses in worker processes, one per core, and sights the entries
there too (deciding.sightings: pure work as well). A round of a few feeds parses in its fetch
threads: starting the workers would cost more than they save. A daemon polling many feeds
keeps its workers while it runs: at its start all its feeds are due at once.

A worker is `python -c` running `serve` below: it imports only what parsing needs (about 0.1 s;
multiprocessing's spawned workers also re-import the poller's main module, 0.25 s more each)
and answers one request at a time over its stdin and stdout, so each fetch thread talks to
the worker it holds with no thread in between. It runs in a session of its own and ignores
SIGINT, SIGTERM and SIGHUP: a Ctrl-C or a service manager's stop is the poller's to handle.
It ends when its stdin closes, whether the poller closed the pool or died. A worker that
cannot start or that dies is given up with the rest of the pool, and parsing goes on in the
calling thread, as without a pool: a poll never fails because of where it was parsed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any, BinaryIO

from tracker.deciding import Sighting, sightings
from tracker.entries import ParsedFeed
from tracker.parse import parse_feed

log = logging.getLogger(__name__)

Parsed = tuple[ParsedFeed, tuple[Sighting, ...]]


def parse_and_sight(body: bytes, headers: Mapping[str, str], url: str) -> Parsed:
    """A fetched body parsed, and its entries sighted; FeedParseError as parse_feed."""
    parsed = parse_feed(body, headers, url)
    return parsed, tuple(sightings(parsed.entries))


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


class _WorkerLost(Exception):
    pass


class _Worker:
    def __init__(self) -> None:
        # The poller's import path, so that the worker imports the same tracker.
        program = "import sys; sys.path[:] = sys.argv[1:]; import tracker.parsepool as p; p.serve()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", program, *sys.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # A session of its own: a Ctrl-C or a closed terminal signals the poller's process
            # group, never a worker, not even one still importing (it would print a traceback).
            start_new_session=True,
        )

    def ask(self, request: tuple[bytes, dict[str, str], str]) -> tuple[bool, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            pickle.dump(request, stdin, pickle.HIGHEST_PROTOCOL)
            stdin.flush()
            answer: tuple[bool, Any] = pickle.load(stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as error:
            raise _WorkerLost(f"a parsing worker died ({type(error).__name__})") from None
        return answer

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                # A pipe that broke with its worker has nothing left to flush.
                with contextlib.suppress(OSError):
                    stream.close()
        self.process.wait()


class ParsePool:
    """Worker processes for parse_and_sight, each started when a parse first needs it. Safe to
    share between threads; close() when done."""

    def __init__(self, processes: int | None = None) -> None:
        self._size = max(1, processes or cores())
        self._idle: list[_Worker] = []
        self._started = 0
        self._ready = threading.Condition()
        self._closed = False
        self._failed = False

    def parse(self, body: bytes, headers: Mapping[str, str], url: str) -> Parsed:
        worker = self._take()
        if worker is None:
            return parse_and_sight(body, headers, url)
        try:
            ok, outcome = worker.ask((body, dict(headers), url))
        except _WorkerLost as lost:
            self._give_up(worker, str(lost))
            return parse_and_sight(body, headers, url)
        self._put_back(worker)
        if not ok:
            raise outcome  # FeedParseError, or the bug the calling thread would have met
        parsed: Parsed = outcome
        return parsed

    def processes(self) -> list[int]:
        """The process ids of the workers not busy right now (for tests and tools)."""
        with self._ready:
            return [worker.process.pid for worker in self._idle]

    def _take(self) -> _Worker | None:
        """A worker of our own until _put_back, or None to parse in the calling thread."""
        with self._ready:
            while True:
                if self._closed or self._failed:
                    return None
                if self._idle:
                    return self._idle.pop()
                if self._started < self._size:
                    self._started += 1
                    break
                self._ready.wait()
        try:
            return _Worker()
        except OSError as error:
            with self._ready:
                self._started -= 1
            self._give_up(None, f"cannot start a parsing worker ({error})")
            return None

    def _put_back(self, worker: _Worker) -> None:
        with self._ready:
            if not (self._closed or self._failed):
                self._idle.append(worker)
                self._ready.notify()
                return
        worker.stop()

    def _give_up(self, worker: _Worker | None, reason: str) -> None:
        with self._ready:
            if not (self._failed or self._closed):
                log.warning("parsing in this process from now on: %s", reason)
            self._failed = True
            idle, self._idle = self._idle, []
            self._ready.notify_all()
        if worker is not None:
            worker.stop(kill=True)
        for each in idle:
            each.stop()

    def close(self) -> None:
        """End the workers: the idle ones now, busy ones when their parse is done. Later
        parses run in the calling thread."""
        with self._ready:
            self._closed = True
            idle, self._idle = self._idle, []
            self._ready.notify_all()
        for worker in idle:
            worker.stop()


def serve(requests: BinaryIO | None = None, answers: BinaryIO | None = None) -> None:
    """A worker's loop: parse each request read from stdin, answer on stdout, until EOF.
    (Given streams, it serves those, in the calling process, as it is.)"""
    if requests is None or answers is None:
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
        # The answers get stdout's pipe to themselves: anything printed goes to stderr.
        requests = sys.stdin.buffer
        answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    while True:
        try:
            body, headers, url = pickle.load(requests)
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, parse_and_sight(body, headers, url))
        except Exception as error:  # noqa: BLE001 -- handed to the poller, which raises it
            answer = (False, error)
        try:
            data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # noqa: BLE001 -- an exception pickle cannot carry
            data = pickle.dumps((False, RuntimeError(f"{type(error).__name__}: {error}")))
        answers.write(data)
        answers.flush()
