"""The Tracker facade: every use case, called alike by the CLI, the daemon and the tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from tracker.config import Config, FeedConfig, load_config
from tracker.database import create_engine, current_revision, describe, ensure_schema
from tracker.errors import ConcurrencyError, TrackerError, UsageError
from tracker.eventstore import Clock, EventStore
from tracker.integrity import ChainReport, verify_chain
from tracker.records import RecordedEvent
from tracker.schema import SCHEMA_REVISION
from tracker.settings import Settings

if TYPE_CHECKING:
    from tracker.fetch import Fetcher
    from tracker.polling import Fetch, PollResult, Recorder

# Fetches of different feeds run at once, up to this many.
POLL_PARALLELISM = 8


@dataclass(frozen=True)
class UpgradeReport:
    database: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


class Tracker:
    """tracker's use cases over one database and one feeds.yaml, as `settings` name them.

    Nothing is opened until a use case needs it; the first use of the event log migrates an
    empty database to the current schema.
    """

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self._clock = clock
        self._engine: Engine | None = None
        self._store: EventStore | None = None

    @classmethod
    def open(cls, settings: Settings, clock: Clock | None = None) -> Tracker:
        """A Tracker whose event log is ready: connected, and migrated if it was empty."""
        tracker = cls(settings, clock)
        try:
            tracker.store  # noqa: B018 -- connect and check the schema now, not on first use
        except BaseException:
            tracker.close()
            raise
        return tracker

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.settings.database_url)
        return self._engine

    @property
    def store(self) -> EventStore:
        if self._store is None:
            ensure_schema(self.engine)
            self._store = (
                EventStore(self.engine)
                if self._clock is None
                else EventStore(self.engine, self._clock)
            )
        return self._store

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the database --------------------------------------------------------------------------

    def upgrade_database(self) -> UpgradeReport:
        """Bring the database's schema to the head revision (`tracker db upgrade`)."""
        from tracker.migrate import upgrade  # Alembic is imported only when needed.

        before = current_revision(self.engine)
        upgrade(self.engine)
        return UpgradeReport(describe(self.engine.url), before, current_revision(self.engine))

    def schema_revision(self) -> tuple[str | None, str]:
        """The database's schema revision and the one this tracker expects."""
        return current_revision(self.engine), SCHEMA_REVISION

    # -- configuration -------------------------------------------------------------------------

    def check_config(self) -> Config:
        """Load feeds.yaml, raising ConfigError with every problem in it."""
        return load_config(self.settings.config_path)

    # -- the event log -------------------------------------------------------------------------

    def events(
        self,
        *,
        stream_id: str | None = None,
        event_type: str | None = None,
        after_position: int = 0,
        until_time: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[RecordedEvent]:
        """The log, filtered, in position order (`tracker events`)."""
        return self.store.read_all(
            after_position,
            stream_id=stream_id,
            event_type=event_type,
            until_time=until_time,
            limit=limit,
        )

    # -- storylines ----------------------------------------------------------------------------

    def record_storylines(self, config: Config, source: str = "config") -> list[str]:
        """Record each storyline definition of `config` that is new or changed since the log
        last said, and each one removed; returns the ids recorded. Safe to run from several
        processes at once: a definition another process just recorded is not recorded again."""
        from tracker.events import decode, encode
        from tracker.events.storylines import StorylineDefined, StorylineRemoved

        wanted: dict[str, object] = {
            story.id: StorylineDefined(
                story.id, story.title, story.match.all, story.match.any, story.match.none
            )
            for story in config.storylines
        }
        current: dict[str, tuple[int, object]] = {}
        for stream in self.store.stream_ids("storyline-"):
            newest = self.store.last_event(stream)
            if newest is not None:
                current[stream] = (newest.stream_version, decode(newest))
        recorded = []
        metadata = {"source": source, "config": str(config.path)}
        changes = {f"storyline-{sid}": definition for sid, definition in wanted.items()}
        for stream, (_, previous) in current.items():
            if stream not in changes and isinstance(previous, StorylineDefined):
                changes[stream] = StorylineRemoved(previous.storyline_id)
        for stream, change in changes.items():
            version, previous = current.get(stream, (0, None))
            if previous == change:
                continue
            try:
                self.store.append(stream, [encode(change, metadata)], version)
            except ConcurrencyError:
                continue  # another process recorded the change first
            recorded.append(stream.removeprefix("storyline-"))
        return sorted(recorded)

    # -- polling -------------------------------------------------------------------------------

    def poll(
        self,
        feed_ids: Sequence[str] = (),
        every: bool = False,
        fetcher: Fetcher | None = None,
        source: str = "tracker poll",
    ) -> list[PollResult]:
        """One round (`tracker poll`): the feeds due, or every enabled one, or those named.

        Fetches run in parallel; each feed's events and bookkeeping commit in one transaction.
        Failures of feeds are results, not exceptions.
        """
        from tracker.fetch import Fetcher  # httpx and feedparser only when polling
        from tracker.polling import (
            PollResult,
            Recorder,
            claim_feed,
            current_state,
            due_feeds,
            fetch_feed,
            release_claims,
        )

        config = self.check_config()
        self.record_storylines(config, source)
        feeds = self._select_feeds(config, feed_ids, every, due_feeds)
        if not feeds:
            return []
        own_fetcher = fetcher is None
        fetcher = fetcher or Fetcher()
        recorder = Recorder(self.store, self._now, source)
        owner = f"{source}:{uuid.uuid4().hex[:8]}"
        # A feed a daemon is polling right now is skipped; one named or --all is polled even if
        # not due, but never twice at once.
        only_if_due = not (feed_ids or every)
        held: set[str] = set()  # claimed by this round and not yet recorded

        def claim_and_fetch(feed: FeedConfig) -> tuple[FeedConfig, datetime, Fetch | None]:
            # Claimed just before its fetch, so a long round cannot outlive its claims.
            started_at = self._now()
            if fetcher.cancelled or not claim_feed(
                self.store, feed, owner, started_at, only_if_due=only_if_due
            ):
                return feed, started_at, None
            held.add(feed.id)
            return feed, started_at, fetch_feed(fetcher, feed, current_state(self.store, feed))

        results: dict[str, PollResult] = {}
        try:
            with ThreadPoolExecutor(max_workers=min(POLL_PARALLELISM, len(feeds))) as pool:
                try:
                    for done in as_completed([pool.submit(claim_and_fetch, f) for f in feeds]):
                        feed, started_at, fetched = done.result()
                        if fetched is None:
                            results[feed.id] = PollResult(feed.id, "busy")
                            continue
                        results[feed.id], recorded = self._record(
                            recorder, fetched, started_at, owner
                        )
                        if recorded:
                            held.discard(feed.id)
                except BaseException:
                    fetcher.cancel()  # Ctrl-C or a bug: stop the other fetches now
                    raise
        finally:
            if held:
                release_claims(self.store, sorted(held), owner)
            if own_fetcher:
                fetcher.close()
        return [results[feed.id] for feed in feeds]

    @staticmethod
    def _record(
        recorder: Recorder, fetched: Fetch, started_at: datetime, owner: str
    ) -> tuple[PollResult, bool]:
        """The poll's result, and whether it was recorded (its claim then went with it)."""
        from tracker.polling import PollResult

        try:
            return recorder.record(fetched, started_at, owner), True
        except TrackerError as error:
            # The database refused this feed's poll: report it, carry on with the others.
            return PollResult(fetched.feed.id, "failed", reason=f"not recorded: {error}"), False

    def poll_feed_if_due(
        self, feed: FeedConfig, owner: str, fetcher: Fetcher, source: str = "tracker daemon"
    ) -> PollResult | None:
        """Poll one feed if it is due and no other poller has it (the daemon's job).

        None when it was not due, another daemon claimed it first, or the fetch was cancelled
        because the daemon is stopping (nothing is recorded then).
        """
        from tracker.polling import Recorder, claim_feed, current_state, fetch_feed, release_claims

        started_at = self._now()
        if not claim_feed(self.store, feed, owner, started_at):
            return None
        recorded = False
        try:
            fetched = fetch_feed(fetcher, feed, current_state(self.store, feed))
            if fetched.cancelled:
                return None
            result = Recorder(self.store, self._now, source).record(fetched, started_at, owner)
            recorded = True
            return result
        finally:
            if not recorded:
                release_claims(self.store, [feed.id], owner)

    def _select_feeds(
        self,
        config: Config,
        feed_ids: Sequence[str],
        every: bool,
        due_feeds: Callable[[EventStore, Sequence[FeedConfig], datetime, bool], list[FeedConfig]],
    ) -> list[FeedConfig]:
        if feed_ids:
            unknown = [feed_id for feed_id in feed_ids if config.feed(feed_id) is None]
            if unknown:
                known = ", ".join(feed.id for feed in config.feeds) or "none"
                raise UsageError(
                    f"{config.path}: no feed {', '.join(map(repr, unknown))} (feeds: {known})"
                )
            return [feed for feed in config.feeds if feed.id in feed_ids]
        enabled = [feed for feed in config.feeds if feed.enabled]
        return due_feeds(self.store, enabled, self._now(), every)

    def _now(self) -> datetime:
        return self._clock() if self._clock is not None else datetime.now(UTC)

    def head_position(self) -> int:
        return self.store.head_position()

    def verify(self, progress: Callable[[int], None] | None = None) -> ChainReport:
        """Walk the whole log checking the hash chain (`tracker verify`).

        `progress` is called with the number of events checked since its last call.
        """
        return verify_chain(self.store.read_chain(), progress)
