"""`tracker daemon`: the long-running poller. It only schedules; the polls themselves are the
Tracker facade's, the same that `tracker poll` runs. The one module that imports APScheduler.

Each enabled feed is a job on its own interval with jitter; a job never overlaps itself
(max_instances=1) and fetches of different feeds run in parallel up to a limit. Before each
poll the feed is claimed in the database, so several daemons sharing one PostgreSQL poll each
feed once per interval between them. SIGHUP re-reads feeds.yaml; SIGTERM and SIGINT let the
polls in flight finish and commit, then exit; a catch-up of the views ends at its next batch,
and past the stop timeout the daemon exits without what still runs (its transactions roll
back). Feeds are parsed in worker processes (see tracker.parsepool), so that a parse has a
deadline and stopping never waits for one.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from tracker.config import Config, FeedConfig
from tracker.digests import DIGEST_EVERY_S
from tracker.errors import ConfigError, StorageError, TrackerError
from tracker.fetch import Fetcher
from tracker.owners import process_owner
from tracker.parsepool import ParsePool
from tracker.service import POLL_PARALLELISM, Tracker

log = logging.getLogger(__name__)
# After SIGTERM, polls in flight get this long to finish and commit; fetches and parses still
# running then are cancelled, unrecorded, and their claims released.
SHUTDOWN_GRACE_S = 4.0
# All the time SIGTERM gives in-flight work: past it the daemon exits without the threads
# still blocked (in the database, say), for a stop that hangs is worse than a rolled-back poll.
STOP_TIMEOUT_S = 30.0
# At most this much jitter (and never more than a tenth of the interval).
MAX_JITTER_S = 60.0
MAX_RETRY_S = 60.0  # the longest wait between tries while the database is unavailable


@dataclass
class DaemonStats:
    polls: int = 0


class Daemon:
    def __init__(
        self,
        tracker: Tracker,
        parallelism: int = POLL_PARALLELISM,
        owner: str | None = None,
        stop_timeout: float = STOP_TIMEOUT_S,
        digest_every: float = DIGEST_EVERY_S,
    ) -> None:
        self.tracker = tracker
        self.digest_every = digest_every
        self.owner = owner or process_owner()
        self.stats = DaemonStats()
        self.stop_timeout = stop_timeout
        # Jobs still running when run() returned: the caller must end the process without
        # joining their threads (interpreter exit would wait for them).
        self.abandoned = 0
        self._parallelism = parallelism
        self._fetcher = Fetcher()
        # Started at the first parse, one per core: at the daemon's start every feed is due at
        # once, and in a worker a parse has a deadline and can be stopped (see
        # tracker.parsepool).
        self._parsers = ParsePool()
        # A slow feed makes APScheduler warn at every interval that the job is still running;
        # that is max_instances=1 doing its work, not news.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(parallelism)}, timezone="UTC"
        )
        self._feeds: dict[str, FeedConfig] = {}
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition()
        self._catch_up_wanted = threading.Event()
        self._catching_up = threading.Lock()
        self._outage_since: float | None = None  # monotonic time of the first refused poll
        self._refused: dict[str, int] = {}  # polls refused in a row, by feed

    # -- scheduling ----------------------------------------------------------------------------

    def _schedule(self, config: Config) -> None:
        wanted = {feed.id: feed for feed in config.feeds if feed.enabled}
        for feed_id in set(self._feeds) - set(wanted):
            self._scheduler.remove_job(feed_id)
            log.info("%s: removed from feeds.yaml, no longer polled", feed_id)
        for feed_id, feed in wanted.items():
            if self._feeds.get(feed_id) == feed:
                continue
            seconds = feed.interval.total_seconds()
            trigger = IntervalTrigger(
                seconds=seconds, jitter=min(MAX_JITTER_S, seconds / 10) or None
            )
            # First run at once: the claim decides whether the feed is actually due.
            self._scheduler.add_job(
                self._poll,
                trigger,
                args=[feed],
                id=feed_id,
                replace_existing=True,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=_now(),
            )
            log.info("%s: polled every %s", feed_id, feed.interval)
        self._feeds = wanted

    def _poll(self, feed: FeedConfig) -> str | None:
        """The scheduler's job for one feed: poll it if due, then bring the views up to date.
        Returns the line it logged, if it polled."""
        with self._job() as started:
            return self._poll_now(feed) if started else None

    def _poll_now(self, feed: FeedConfig) -> str | None:
        try:
            result = self.tracker.poll_feed_if_due(
                feed, self.owner, self._fetcher, parsers=self._parsers
            )
            if result is None:
                return None
            self.stats.polls += 1
            self._database_back(feed)
            log.info("%s", result.line())
            self.catch_up()
            return result.line()
        except StorageError as error:
            # The database is down, read-only or full: nothing was recorded. Say so once per
            # outage and try this feed again soon, backing off, rather than an interval later.
            self._retry(feed, self._database_failed(feed, error))
            return f"{feed.id}: not polled: {error}"
        except TrackerError as error:
            log.error("%s: %s", feed.id, error)
            return f"{feed.id}: not polled: {error}"
        except Exception:
            log.exception("%s: poll failed unexpectedly", feed.id)
            return f"{feed.id}: poll failed unexpectedly (see the log)"

    def _catch_up_job(self, config: Config | None = None) -> None:
        """The views brought up to date in a worker (after recording the definitions of a
        reloaded `config`): a stop waits for it as for a poll, and never longer than the stop
        timeout, even if the database holds it."""
        with self._job() as started:
            if not started:
                return
            if config is not None:
                try:
                    changed = self.tracker.record_config(config, "tracker daemon")
                except TrackerError as error:
                    log.error("definitions of %s not recorded: %s", config.path, error)
                else:
                    if changed:
                        log.info("definitions recorded: %s", ", ".join(changed))
            self.catch_up()

    def _digest_job(self) -> None:
        """The storylines that changed since the last time digested (tracker.digests)."""
        with self._job() as started:
            if started:
                try:
                    self.tracker.digest(stopping=self._stop.is_set)
                except Exception:
                    log.exception("storyline digests not made")

    @contextmanager
    def _job(self) -> Iterator[bool]:
        """Count a job in flight, unless the stop has come: whether it may run. The check and
        the count are one step, so a stop never misses a job starting as it waits."""
        with self._idle:
            started = not self._stop.is_set()
            self._in_flight += started
        try:
            yield started
        finally:
            if started:
                with self._idle:
                    self._in_flight -= 1
                    self._idle.notify_all()

    def _database_failed(self, feed: FeedConfig, error: StorageError) -> float:
        """Note a poll the database refused; the seconds to wait before trying the feed again
        (2, 4, 8 ... up to a minute, with jitter, as its failures go on)."""
        with self._idle:
            failures = self._refused.get(feed.id, 0) + 1
            self._refused[feed.id] = failures
            first = self._outage_since is None
            if first:
                self._outage_since = time.monotonic()
        delay = min(MAX_RETRY_S, 2.0 ** min(failures, 6)) * random.uniform(0.8, 1.2)
        if first:
            log.error("%s: %s; polls are retried with backoff until it is back", feed.id, error)
        else:
            log.debug("%s: %s; retrying in %.0f s", feed.id, error, delay)
        return delay

    def _database_back(self, feed: FeedConfig) -> None:
        if self._outage_since is None and not self._refused:
            return
        with self._idle:
            self._refused.pop(feed.id, None)
            since, self._outage_since = self._outage_since, None
        if since is not None:
            log.warning("the database is back after %.0f s", time.monotonic() - since)

    def _retry(self, feed: FeedConfig, delay: float) -> None:
        """Run the feed's job again after `delay` seconds, unless it runs sooner anyway."""
        job = self._scheduler.get_job(feed.id)
        if job is None or self._stop.is_set():
            return  # not scheduled (a round run by hand), or stopping
        when = _now() + timedelta(seconds=delay)
        if job.next_run_time is None or when < job.next_run_time:
            job.modify(next_run_time=when)

    def poll_round(self) -> list[str]:
        """Run the poll job once for every enabled feed, in parallel, without the scheduler
        (`tracker demo` polls its rounds so): the lines logged, in feeds.yaml's order."""
        from concurrent.futures import ThreadPoolExecutor as Pool

        feeds = [feed for feed in self.tracker.check_config().feeds if feed.enabled]
        with Pool(max_workers=max(1, min(self._parallelism, len(feeds)))) as pool:
            lines = list(pool.map(self._poll, feeds))
        return [line for line in lines if line is not None]

    def close(self) -> None:
        self._fetcher.close()
        self._parsers.close()

    def catch_up(self) -> None:
        """Bring the views up to the log. Polls finishing together ask once: one thread runs
        the catch-up while the others' requests fold into its next pass."""
        self._catch_up_wanted.set()
        while self._catch_up_wanted.is_set():
            if not self._catching_up.acquire(blocking=False):
                return  # the thread catching up now will see the request
            try:
                while self._catch_up_wanted.is_set():
                    self._catch_up_wanted.clear()
                    try:
                        # Digests on their own interval (_digest_job), not after every poll.
                        report = self.tracker.catch_up(stopping=self._stop.is_set, digest=False)
                        if report.stopped:
                            log.info(
                                "stopping: views left at event %d, the next start goes on",
                                report.head,
                            )
                            return
                    except TrackerError as error:
                        log.error("views not brought up to date: %s", error)
                    except Exception:
                        log.exception("views not brought up to date")
            finally:
                self._catching_up.release()

    # -- running -------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; returns the exit code."""
        config = self.tracker.check_config()
        self.tracker.store  # noqa: B018 -- migrate and connect before scheduling anything
        self.tracker.record_config(config, "tracker daemon")
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            # The views are caught up in a worker, first, so that the main thread is always
            # free to act on a signal: a long catch-up ends at a batch when the stop comes.
            self._scheduler.add_job(self._catch_up_job, misfire_grace_time=None)
            self._scheduler.add_job(
                self._digest_job,
                IntervalTrigger(seconds=self.digest_every),
                id="digests:storylines",  # no feed id has a colon
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
            self._schedule(config)
            self._scheduler.start()
            log.info(
                "tracker daemon %s polling %d feeds from %s",
                self.owner,
                len(self._feeds),
                config.path,
            )
            while not self._stop.is_set():
                self._stop.wait(0.5)
                if self._reload.is_set():
                    self._reload.clear()
                    self._reconfigure()
            return self._shut_down()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._fetcher.close()
            self._parsers.close()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only set flags here: the main loop does the work outside the signal handler.
        if signum == signal.SIGHUP:
            self._reload.set()
        else:
            self._stop.set()

    def _reconfigure(self) -> None:
        try:
            config = self.tracker.check_config()
        except ConfigError as error:
            for problem in error.problems:
                log.error("%s", problem)
            log.error("feeds.yaml not reloaded: the daemon keeps polling what it had")
            return
        except Exception:  # noqa: BLE001 -- a reload must never take the poller down
            log.exception("feeds.yaml not reloaded: the daemon keeps polling what it had")
            return
        self._schedule(config)
        # The database part in a worker too: the main thread must stay free for a stop.
        self._scheduler.add_job(self._catch_up_job, args=[config], misfire_grace_time=None)
        log.info("reloaded %s: %d feeds", config.path, len(self._feeds))

    def _shut_down(self) -> int:
        log.info("stopping: %d job(s) in flight", self._in_flight)
        self._scheduler.shutdown(wait=False)
        deadline = time.monotonic() + self.stop_timeout
        # Half at most, so that cancelled fetches always get time to unwind and release.
        grace = min(SHUTDOWN_GRACE_S, self.stop_timeout / 2)
        with self._idle:
            done = self._idle.wait_for(lambda: self._in_flight == 0, grace)
        if not done:
            # A shutdown is not the feed's failure: these fetches end unrecorded and their
            # claims are released; polls already recording finish and commit.
            log.warning(
                "%d job(s) still running: cancelling their fetches and parses", self._in_flight
            )
            self._fetcher.cancel()
            self._parsers.cancel()
            with self._idle:
                done = self._idle.wait_for(
                    lambda: self._in_flight == 0, max(0.0, deadline - time.monotonic())
                )
        if not done:
            self.abandoned = self._in_flight
            log.warning(
                "%d job(s) still running %gs after the stop was asked for (blocked in the "
                "database?): exiting without them; what they had not committed rolls back",
                self.abandoned,
                self.stop_timeout,
            )
        log.info("stopped after %d polls", self.stats.polls)
        return 0


def _now() -> datetime:
    return datetime.now(UTC)
