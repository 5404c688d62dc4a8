"""Parsing fetched feeds in worker processes, beside the fetches and the recording.

feedparser is pure Python and CPU-bound: in threads, under the GIL, parsing takes one core
however many there are, and every other thread of a poll round (fetching, recording) waits for
it. A round of many feeds parses in worker processes, one per core, and sights the entries
there too (deciding.sightings: pure work as well). A round of a few feeds parses in its fetch
threads: starting the workers would cost more than they save. The daemon parses in workers
whatever it follows: there a parse has a deadline, and stopping never waits for one.

A worker is `python -c` running `serve` below: it imports only what parsing needs (about 0.1 s;
multiprocessing's spawned workers also re-import the poller's main module, 0.25 s more each)
and answers one request at a time, so each fetch thread talks to the worker it holds with no
thread in between. Requests go down its stdin; answers come up a pipe of their own, framed by
their length, so that the poller can wait for one with a deadline and nothing a library prints
(its stdout is the poller's stderr) can garble them. A worker runs in a session of its own and
ignores SIGINT, SIGTERM and SIGHUP: a Ctrl-C or a service manager's stop is the poller's to
handle, which kills busy workers when it stops (ParsePool.cancel). It ends when its stdin
closes, and within a second of the poller's death (SIGKILL included).

A parse that outlives its deadline, or whose worker dies (the OOM killer, a crash in C), fails
that feed's poll with FeedParseError, recorded as the feed failing so that it backs off; the
worker is replaced, and the body is never parsed again in the poller. Only workers that fail
to start, several times in a row, make the pool give up and parse in the calling thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any, BinaryIO

from tracker.deciding import Sighting, sightings
from tracker.entries import ParsedFeed
from tracker.parse import FeedParseError, parse_feed

log = logging.getLogger(__name__)

Parsed = tuple[ParsedFeed, tuple[Sighting, ...]]

# A parse's deadline: this much for any body, and this much more per MB of it. A legitimate
# 10 MB feed (the fetch limit) parses in about 75 s on one core of this 2-core machine; twice
# that and the base give 180 s. Anything slower is a body built to be slow, or a bug.
PARSE_DEADLINE_S = 30.0
PARSE_DEADLINE_PER_MB_S = 15.0
# A worker's imports take 0.1 s on a quiet machine.
START_DEADLINE_S = 60.0
# Failures to start a worker in a row before the pool is given up for the calling thread.
START_ATTEMPTS = 3
# A worker's memory stays at its high-water mark: one that parsed a body this big, or this
# many bodies, is replaced by a fresh one.
RECYCLE_AFTER_BYTES = 4 * 1024 * 1024
RECYCLE_AFTER_PARSES = 1000
# A worker's answers pass through a pipe this big (Linux's default is 64 KB): most answers
# in one write, without the two processes taking turns per 64 KB.
_PIPE_BYTES = 1024 * 1024
_FRAME_HEADER = 8
_MAX_ANSWER_BYTES = 1 << 34


class ParseCancelled(Exception):
    """The pool was closed or cancelled (the poller is stopping): nothing more is parsed."""


def parse_and_sight(body: bytes, headers: Mapping[str, str], url: str) -> Parsed:
    """A fetched body parsed, and its entries sighted. FeedParseError as parse_feed, and for
    any other exception in parsing (feedparser 6.0 raises ValueError for `&#1114112;`): one
    feed's body never ends a poll round."""
    try:
        return _parse_and_sight(body, headers, url)
    except FeedParseError:
        raise
    except Exception as error:
        raise parser_error(url, type(error).__name__, str(error), traceback.format_exc()) from None


def _parse_and_sight(body: bytes, headers: Mapping[str, str], url: str) -> Parsed:
    parsed = parse_feed(body, headers, url)
    return parsed, tuple(sightings(parsed.entries))


def parser_error(url: str, kind: str, message: str, trace: str) -> FeedParseError:
    """The failure recorded for a feed whose parse raised `kind`. The poll's result says it;
    the traceback, for whoever debugs the parser, is logged at debug level."""
    log.debug("%s: parser error\n%s", url, trace.rstrip())
    first = message.strip().splitlines()[0][:200] if message.strip() else ""
    return FeedParseError(f"parser error: {kind}: {first}".rstrip(": "))


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


class _TimedOut(Exception):
    pass


class _Unsent(Exception):
    """The worker was gone before it had the request: not the body's doing."""


def _died(code: int | None) -> str:
    if code is None:
        return "parser process closed its pipe"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"parser process died: signal {-code} ({signal.Signals(-code).name})"
        return f"parser process died: signal {-code}"
    return f"parser process died: exit status {code}"


class _Worker:
    def __init__(self) -> None:
        answers, self._answers_in = os.pipe()
        with contextlib.suppress(AttributeError, OSError):  # Linux only, and best effort
            fcntl.fcntl(self._answers_in, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        # The poller's import path, so that the worker imports the same tracker.
        program = (
            "import sys; sys.path[:] = sys.argv[3:]; import tracker.parsepool as p; "
            "p.serve(int(sys.argv[1]), int(sys.argv[2]))"
        )
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", program, str(self._answers_in), str(os.getpid())] + sys.path,
                stdin=subprocess.PIPE,
                # Whatever a library prints goes where the poller's own warnings go.
                stdout=2,
                pass_fds=(self._answers_in,),
                # A session of its own: a Ctrl-C or a closed terminal signals the poller's
                # process group, never a worker, not even one still importing.
                start_new_session=True,
            )
        except BaseException:
            os.close(answers)
            raise
        finally:
            os.close(self._answers_in)  # the worker has its own
        self._answers = answers
        self.parses = 0

    def wait_ready(self) -> None:
        """Wait for the worker's first answer (an empty frame): its imports are done."""
        _read_frame(self._answers, time.monotonic() + START_DEADLINE_S)

    def ask(self, request: tuple[bytes, dict[str, str], str], deadline: float) -> Any:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            pickle.dump(request, stdin, pickle.HIGHEST_PROTOCOL)
            stdin.flush()
        except OSError:
            raise _Unsent from None
        self.parses += 1
        return pickle.loads(_read_frame(self._answers, deadline))

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()

    def stop(self, kill: bool = False) -> None:
        """End the worker (at once with `kill`, else when it has read what it was sent) and
        reap it."""
        if kill:
            self.kill()
        if self.process.stdin is not None:
            # A pipe that broke with its worker has nothing left to flush.
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        if self._answers >= 0:
            os.close(self._answers)
            self._answers = -1  # closed once: the number may be another file's by now
        self.process.wait()

    def exit_status(self) -> int | None:
        """The worker's exit status once it ended (within a moment), or None."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.process.wait(2)
        return None


def _read_frame(fd: int, deadline: float) -> bytes:
    """One answer: its length in 8 bytes, then its bytes; _TimedOut past `deadline`, EOFError
    if the worker is gone."""
    header = _read(fd, _FRAME_HEADER, deadline)
    size = int.from_bytes(header, "big")
    if size > _MAX_ANSWER_BYTES:
        raise pickle.UnpicklingError(f"an answer of {size} bytes")
    return _read(fd, size, deadline) if size else b""


def _read(fd: int, size: int, deadline: float) -> bytes:
    data = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _TimedOut
        if not poller.poll(remaining * 1000):
            continue
        chunk = os.read(fd, min(size - len(data), _PIPE_BYTES))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


class ParsePool:
    """Worker processes for parse_and_sight, each started when a parse first needs it. Safe to
    share between threads; close() or cancel() when done."""

    def __init__(
        self,
        processes: int | None = None,
        deadline: float = PARSE_DEADLINE_S,
        deadline_per_mb: float = PARSE_DEADLINE_PER_MB_S,
        recycle_after_bytes: int = RECYCLE_AFTER_BYTES,
        recycle_after_parses: int = RECYCLE_AFTER_PARSES,
    ) -> None:
        self._size = max(1, processes or cores())
        self._deadline = deadline
        self._deadline_per_mb = deadline_per_mb
        self._recycle_after_bytes = recycle_after_bytes
        self._recycle_after_parses = recycle_after_parses
        self._idle: list[_Worker] = []
        self._busy: dict[_Worker, float] = {}  # each with the time its parse must end by
        self._started = 0  # idle, busy and starting
        self._failed_starts = 0
        self._ready = threading.Condition()
        self._closed = False
        self._cancelled = False
        self._failed = False

    def parse(self, body: bytes, headers: Mapping[str, str], url: str) -> Parsed:
        """parse_and_sight in a worker. FeedParseError for the body, and if the worker takes
        longer than the deadline or dies; ParseCancelled once the pool is closed."""
        for _ in range(START_ATTEMPTS):
            worker = self._take()
            if worker is None:
                return parse_and_sight(body, headers, url)
            deadline = self._deadline + self._deadline_per_mb * len(body) / (1024 * 1024)
            try:
                with self._ready:
                    # Busy from now on under the lock that cancel() takes: it kills this
                    # worker, or it came first and nothing more is parsed.
                    if self._closed:
                        raise ParseCancelled
                    self._busy[worker] = time.monotonic() + deadline
                ok, outcome = worker.ask((body, dict(headers), url), time.monotonic() + deadline)
            except BaseException as error:
                # Whatever happened (the deadline, a death, a garbled answer, a Ctrl-C in
                # this thread), the worker is not used again, and the pool knows it.
                died = isinstance(error, OSError | EOFError) and not self._cancelled
                status = worker.exit_status() if died else None
                self._lose(worker)
                if self._cancelled or isinstance(error, ParseCancelled):
                    raise ParseCancelled from None
                if isinstance(error, _Unsent):
                    continue  # it died before it had the body: another worker may parse it
                if isinstance(error, _TimedOut):
                    took = f"{round(deadline, 1):g}"
                    raise FeedParseError(f"parsing took longer than {took} s") from None
                if died:
                    raise FeedParseError(_died(status)) from None
                if isinstance(error, Exception):
                    reason = f"{type(error).__name__}: {error}".rstrip(": ")
                    raise FeedParseError(f"parser process failed: {reason}") from None
                raise
            self._put_back(worker, len(body))
            if ok:
                parsed: Parsed = outcome
                return parsed
            kind, message, trace = outcome
            if kind == FeedParseError.__name__:
                raise FeedParseError(message)
            raise parser_error(url, kind, message, trace)
        raise FeedParseError("no parser process could take the body")

    def processes(self) -> list[int]:
        """The process ids of the workers not busy right now (for tests and tools)."""
        with self._ready:
            return [worker.process.pid for worker in self._idle]

    def _take(self) -> _Worker | None:
        """A worker of our own until _put_back or _lose, or None to parse in the calling
        thread (the pool was given up)."""
        while True:
            with self._ready:
                while True:
                    if self._closed:
                        raise ParseCancelled
                    if self._failed:
                        return None
                    while self._idle:
                        worker = self._idle.pop()
                        if worker.process.poll() is None:
                            return worker
                        self._started -= 1  # died while idle: nothing of ours to blame
                        worker.stop()
                    if self._started < self._size:
                        self._started += 1
                        break
                    # Every worker is busy, each until its deadline at most (or starting):
                    # waiting longer than that would mean a worker nobody gives back.
                    now = time.monotonic()
                    until = max([now + START_DEADLINE_S, *self._busy.values()])
                    if not self._ready.wait(until - now + 10):
                        raise FeedParseError("no parser process free: the pool is stuck")
            started = self._start()
            if started is not None:
                return started

    def _start(self) -> _Worker | None:
        """A new worker, ready; None if it failed to start (the caller may try again)."""
        try:
            worker = _Worker()
        except BaseException as error:
            if not isinstance(error, OSError):
                self._failed_start(None)
                raise
            self._failed_start(f"cannot start a parser process ({error})")
            return None
        with self._ready:
            self._busy[worker] = time.monotonic() + START_DEADLINE_S  # cancel() kills it
        try:
            worker.wait_ready()
        except BaseException as error:
            with self._ready:
                self._busy.pop(worker, None)
            worker.stop(kill=True)
            if self._closed or not isinstance(error, Exception):
                self._failed_start(None)
                if self._closed:
                    raise ParseCancelled from None
                raise
            self._failed_start(_died(worker.process.returncode) + " as it started")
            return None
        with self._ready:
            self._failed_starts = 0
            if not self._closed:
                return worker
            self._busy.pop(worker, None)
            self._started -= 1
            self._ready.notify()
        worker.stop()
        raise ParseCancelled

    def _failed_start(self, reason: str | None) -> None:
        """A start that failed (for `reason`; None: not the worker's fault)."""
        with self._ready:
            self._started -= 1
            self._failed_starts += reason is not None
            given_up = self._failed_starts >= START_ATTEMPTS and not self._failed
            if given_up:
                self._failed = True
                idle, self._idle = self._idle, []
                self._started -= len(idle)
            else:
                idle = []
            self._ready.notify_all()
        if given_up and not self._closed:
            log.warning("parsing in this process from now on: %s", reason)
        for worker in idle:
            worker.stop()

    def _put_back(self, worker: _Worker, size: int) -> None:
        with self._ready:
            self._busy.pop(worker, None)
            keep = not (self._closed or self._failed) and (
                size < self._recycle_after_bytes and worker.parses < self._recycle_after_parses
            )
            if keep:
                self._idle.append(worker)
            else:
                self._started -= 1  # a fresh worker takes its place when one is needed
            self._ready.notify()
        if not keep:
            worker.stop()

    def _lose(self, worker: _Worker) -> None:
        worker.kill()
        with self._ready:
            self._busy.pop(worker, None)
            self._started -= 1
            self._ready.notify()
        worker.stop()

    def close(self) -> None:
        """End the idle workers now, and busy ones when their parse is done. Later parses
        raise ParseCancelled."""
        self._close(cancel=False)

    def cancel(self) -> None:
        """close(), and kill the busy workers (and those starting): the parses in flight raise
        ParseCancelled."""
        self._close(cancel=True)

    def _close(self, cancel: bool) -> None:
        with self._ready:
            self._closed = True
            self._cancelled = self._cancelled or cancel
            busy = list(self._busy) if cancel else []
            idle, self._idle = self._idle, []
            self._started -= len(idle)
            self._ready.notify_all()
        for worker in busy:
            worker.kill()
        for worker in idle:
            worker.stop()


def serve(answers_fd: int, parent: int) -> None:
    """A worker's life: ignore the signals that are the poller's, end with the poller, say it
    is ready, then answer requests on `answers_fd` until stdin ends."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)

    def watch() -> None:
        # Killed (SIGKILL, or a second Ctrl-C before it could cancel us), the poller closes
        # no pipe we would read from while parsing: see that it is gone, and go too.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="watch the poller", daemon=True).start()
    with os.fdopen(answers_fd, "wb") as answers:
        answers.write((0).to_bytes(_FRAME_HEADER, "big"))
        answers.flush()
        serve_requests(sys.stdin.buffer, answers)


def serve_requests(requests: BinaryIO, answers: BinaryIO) -> None:
    """Parse each request read from `requests` and answer on `answers`, until EOF. A failure
    goes back as (type name, message, traceback): an exception object might not survive
    pickling."""
    while True:
        try:
            body, headers, url = pickle.load(requests)
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, _parse_and_sight(body, headers, url))
        except FeedParseError as refusal:
            answer = (False, (FeedParseError.__name__, str(refusal), ""))
        except Exception as error:  # noqa: BLE001 -- handed to the poller, which records it
            answer = (False, (type(error).__name__, str(error), traceback.format_exc()))
        try:
            data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # noqa: BLE001 -- an answer pickle cannot carry
            failure = (type(error).__name__, str(error), traceback.format_exc())
            data = pickle.dumps((False, failure), pickle.HIGHEST_PROTOCOL)
        answers.write(len(data).to_bytes(_FRAME_HEADER, "big"))
        answers.write(data)
        answers.flush()
