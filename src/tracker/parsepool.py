"""Parsing fetched feeds in worker processes, beside the fetches and the recording.

feedparser is pure Python and CPU-bound: in threads, under the GIL, parsing takes one core
however many there are, and every other thread of a poll round (fetching, recording) waits for
it. A round of many feeds parses in a pool of processes, one per core, and sights the entries
there too (deciding.sightings: pure work as well). A round of a few feeds parses in its fetch
threads: starting the workers would cost more than they save.

The workers ignore SIGINT, SIGTERM and SIGHUP: a Ctrl-C or a service manager's stop is the
poller's to handle, and it lets the parses in flight finish. A pool that cannot start, or whose
worker died, is given up for parsing in the calling thread, as without a pool: a poll never
fails because of where it was parsed. A daemon polling many feeds keeps one pool while it runs:
at its start all its feeds are due at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Mapping
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

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


def _ignore_signals() -> None:
    # SIGHUP too: a daemon whose terminal closes carries on, and so do its workers.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


class ParsePool:
    """Worker processes for parse_and_sight, started at the first parse. Safe to share between
    threads; close() when done."""

    def __init__(self, processes: int | None = None) -> None:
        self._processes = processes or cores()
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._failed = False

    def parse(self, body: bytes, headers: Mapping[str, str], url: str) -> Parsed:
        pool = self._started()
        if pool is not None:
            try:
                return pool.submit(parse_and_sight, body, dict(headers), url).result()
            except (BrokenProcessPool, CancelledError) as error:
                # Cancelled: another thread found the pool broken and gave it up.
                self._give_up(f"a parsing worker died ({error})")
            except RuntimeError as error:  # closed meanwhile, or cannot start processes
                self._give_up(str(error))
        return parse_and_sight(body, headers, url)

    def _started(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._pool is None and not (self._closed or self._failed):
                try:
                    # Spawned, not forked: the poller has threads (and database connections)
                    # that a forked child would inherit in whatever state they were in.
                    self._pool = ProcessPoolExecutor(
                        self._processes,
                        mp_context=multiprocessing.get_context("spawn"),
                        initializer=_ignore_signals,
                    )
                except (OSError, ValueError) as error:
                    self._failed = True
                    log.warning("parsing in this process: no worker processes (%s)", error)
            return None if self._failed or self._closed else self._pool

    def _give_up(self, reason: str) -> None:
        with self._lock:
            if not (self._failed or self._closed):
                log.warning("parsing in this process from now on: %s", reason)
            self._failed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers once the parses in flight are done; later parses run in the
        calling thread."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
