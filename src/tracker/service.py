"""The Tracker facade: every use case, called alike by the CLI, the daemon and the tests."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from tracker.checkpoints import Checkpoint, make_checkpoint
from tracker.config import Config, FeedConfig, load_config
from tracker.database import create_engine, current_revision, describe, ensure_schema
from tracker.errors import (
    CheckpointError,
    ConcurrencyError,
    StorageError,
    TrackerError,
    UsageError,
)
from tracker.eventstore import Clock, EventStore
from tracker.integrity import ChainReport, verify_chain
from tracker.owners import process_owner
from tracker.records import RecordedEvent
from tracker.schema import SCHEMA_REVISION
from tracker.settings import Settings

if TYPE_CHECKING:
    from tracker.fetch import Fetcher
    from tracker.history import ArticleHistory
    from tracker.parsepool import ParsePool
    from tracker.polling import Fetch, PollResult, Recorder
    from tracker.pollstate import FeedRow
    from tracker.projection import CatchUpReport, Progress
    from tracker.reading import Snapshot
    from tracker.rebuild import ReplayReport
    from tracker.status import Status
    from tracker.stories import Story, StorylineSummary

log = logging.getLogger(__name__)
# Fetches of different feeds run at once, up to this many.
POLL_PARALLELISM = 8
# A round of at least this many feeds parses them in worker processes, one per core (see
# tracker.parsepool); a smaller one in its fetch threads, since starting the workers (some
# 0.1 s each) would cost more than they save.
PARSE_PROCESSES_FROM = 8
# Tries at recording a definition whose stream other processes keep appending to.
DEFINITION_ATTEMPTS = 5


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

    def record_config(self, config: Config, source: str = "config") -> list[str]:
        """Record what `config` says of feeds and storylines that the log does not know yet:
        definitions new or changed, and removals. Returns what was recorded ("feed upi-top",
        "storyline essequibo")."""
        feeds = self.record_feeds(config, source)
        return [f"feed {f}" for f in feeds] + [
            f"storyline {s}" for s in self.record_storylines(config, source)
        ]

    def record_rules(self, explicit: bool = False, source: str = "tracker replay") -> list[str]:
        """Record the storyline rules of feeds.yaml if they changed (before a replay). A
        feeds.yaml that is not there is no error unless it was named (`explicit`)."""
        if not explicit and not self.settings.config_path.exists():
            return []
        return self.record_storylines(self.check_config(), source)

    def record_storylines(self, config: Config, source: str = "config") -> list[str]:
        """Record each storyline definition of `config` that is new or changed since the log
        last said, and each one removed; returns the ids recorded. Safe to run from several
        processes at once: a definition another process just recorded is not recorded again."""
        from tracker.events.storylines import StorylineDefined, StorylineRemoved

        wanted = {
            story.id: StorylineDefined(
                story.id, story.title, story.match.all, story.match.any, story.match.none
            )
            for story in config.storylines
        }
        return self._record_definitions(
            config, source, "storyline-", wanted, StorylineDefined, StorylineRemoved
        )

    def record_feeds(self, config: Config, source: str = "config") -> list[str]:
        """As record_storylines, for the feeds' titles and URLs (`feed.defined`)."""
        from tracker.events.feeds import FeedDefined, FeedRemoved

        wanted = {feed.id: FeedDefined(feed.id, feed.title, feed.url) for feed in config.feeds}
        return self._record_definitions(config, source, "feed-", wanted, FeedDefined, FeedRemoved)

    def _record_definitions(
        self,
        config: Config,
        source: str,
        prefix: str,
        wanted: Mapping[str, Any],
        defined: type,
        removed: Callable[[str], Any],
    ) -> list[str]:
        from tracker.events import decode, encode

        kinds = (defined.TYPE, removed.TYPE)  # type: ignore[attr-defined]
        # Each stream's version and newest definition (a feed's stream holds health events
        # too), all read in one go: a query or two per stream cost a poll round of 200 feeds a
        # tenth of a second.
        versions: dict[str, int] = {}
        newest: dict[str, RecordedEvent] = {}
        for event in self.store.read_streams(self.store.stream_ids(prefix)):
            versions[event.stream_id] = max(event.stream_version, versions.get(event.stream_id, 0))
            if event.event_type in kinds:
                newest[event.stream_id] = event  # read in position order: the last one wins
        current = {stream: decode(event) for stream, event in newest.items()}
        changes = {f"{prefix}{key}": definition for key, definition in wanted.items()}
        for stream, previous in current.items():
            if stream not in changes and isinstance(previous, defined):
                changes[stream] = removed(stream.removeprefix(prefix))
        metadata = {"source": source, "config": str(config.path)}
        due = [
            (stream, encode(change, metadata), versions.get(stream, 0))
            for stream, change in changes.items()
            if current.get(stream) != change
        ]
        try:
            # All in one transaction, as a poll's events are.
            with self.store.session() as session:
                for stream, definition, version in due:
                    session.append(stream, [definition], version)
            recorded = [stream for stream, _, _ in due]
        except ConcurrencyError:
            # Some streams moved since we looked: another process recorded a definition, or
            # (a feed's stream) a poller its health. One by one, each read again first.
            recorded = [
                stream
                for stream, change in changes.items()
                if current.get(stream) != change
                and self._record_definition(stream, change, metadata, kinds)
            ]
        return sorted(stream.removeprefix(prefix) for stream in recorded)

    def _record_definition(
        self, stream: str, change: Any, metadata: dict[str, str], kinds: tuple[str, str]
    ) -> bool:
        """Append `change` to `stream` unless its newest definition says it already; whether
        it was appended."""
        from tracker.events import decode, encode

        for _ in range(DEFINITION_ATTEMPTS):
            version, newest = 0, None
            for event in self.store.read_stream(stream):
                version = max(version, event.stream_version)
                if event.event_type in kinds:
                    newest = event
            if newest is not None and decode(newest) == change:
                return False  # another process recorded it
            try:
                self.store.append(stream, [encode(change, metadata)], version)
            except ConcurrencyError:
                continue  # the stream moved again
            return True
        log.warning("%s: definition not recorded, the stream kept moving: at the next load", stream)
        return False

    # -- views -----------------------------------------------------------------------------

    def catch_up(
        self,
        progress: Progress | None = None,
        stopping: Callable[[], bool] | None = None,
        digest: bool = True,
    ) -> CatchUpReport:
        """Apply every event the views have not seen yet (after each poll, and at daemon start),
        then (if `digest`) digest the storylines that changed; `stopping` is asked after each
        batch, and true ends the catch-up there."""
        from tracker.projection import catch_up
        from tracker.views import PROJECTORS

        report = catch_up(self.store, PROJECTORS, progress, stopping=stopping)
        if digest and not report.stopped:
            self.digest(stopping)
        return report

    def digest(self, stopping: Callable[[], bool] | None = None) -> list[str]:
        """Make the digests of the storylines that changed (tracker.digests); the storylines
        digested. A digest is a cache: failing to make one is logged, not raised, for the
        views it sums have been brought up to date and `tracker story` sums them meanwhile."""
        from tracker import digests

        try:
            return digests.refresh(self.store, stopping)
        except StorageError as error:
            log.warning("storyline digests not made (stories are summed meanwhile): %s", error)
            return []

    def replay(self, names: Sequence[str] = (), progress: Progress | None = None) -> ReplayReport:
        """Rebuild views from the whole log into fresh tables and swap them in atomically
        (`tracker replay`); `names` picks projections, all of them by default."""
        from tracker.rebuild import replay
        from tracker.views import BY_NAME, chosen

        unknown = sorted(set(names) - set(BY_NAME))
        if unknown:
            raise UsageError(
                f"no projection {', '.join(map(repr, unknown))} "
                f"(projections: {', '.join(sorted(BY_NAME))})"
            )
        report = replay(self.store, chosen(list(names)), progress)
        if names:
            self.catch_up()  # the others, so that every view stands at the same position
        else:
            self.digest()
        return report

    def status(self) -> Status:
        """Where each projection stands in the log, and each feed's health (`tracker status`)."""
        from tracker.database import describe
        from tracker.pollstate import load_feeds
        from tracker.projection import read_checkpoints
        from tracker.status import Status, feed_status, projection_status
        from tracker.views import PROJECTORS

        head = self.store.head_position()
        checkpoints = read_checkpoints(self.engine)
        projections = []
        for projector in PROJECTORS:
            checkpoint = checkpoints.get(projector.name)
            projections.append(projection_status(projector.name, checkpoint, head))
        with self.engine.connect() as connection:
            polled = load_feeds(connection)
        viewed = self._feed_view_rows() if checkpoints.get("feeds") else {}
        feeds = [
            feed_status(feed_id, viewed.get(feed_id), polled.get(feed_id))
            for feed_id in sorted(set(viewed) | set(polled))
        ]
        return Status(describe(self.engine.url), head, tuple(projections), tuple(feeds))

    def _feed_view_rows(self) -> dict[str, dict[str, Any]]:
        from tracker.reading import NotBuilt, read_views
        from tracker.views import BY_NAME
        from tracker.views.feeds import feed_rows

        try:
            rows = read_views(self.store, [BY_NAME["feeds"]], lambda s: feed_rows(s.views))
        except NotBuilt:
            return {}
        return {row["feed_id"]: row for row in rows}

    def story(
        self,
        storyline_id: str,
        as_of: datetime | None = None,
        as_of_position: int | None = None,
        newest: int | None = None,
    ) -> Story:
        """A storyline as the views show it now, or as the log knew it at a time or position
        (`tracker story ID [--as-of TIME | --as-of-position N]`). `newest`: only that many of
        its newest articles, all the terminal shows (stories.story)."""
        from tracker import stories
        from tracker.reading import read_past
        from tracker.views import BY_NAME

        # In the past, only the storylines view needs every article (to match it); the rest
        # are built for the storyline's own articles.
        main = [BY_NAME["feeds"], BY_NAME["storylines"]]
        per_article = [BY_NAME["articles"], BY_NAME["entities"], BY_NAME["figures"]]
        if as_of is None and as_of_position is None:
            return self._read_views(  # type: ignore[no-any-return]
                main + per_article,
                lambda s: stories.story(s, storyline_id, newest=newest),
                empty=lambda: stories.no_storyline(storyline_id),
            )
        if as_of is not None:
            as_of = _utc(as_of)
            position = self.store.position_at(as_of)
        else:
            assert as_of_position is not None
            position = min(as_of_position, self.store.head_position())
        if position == 0:
            first = next(iter(self.store.read_all(limit=1)), None)
            when = f"--as-of {as_of.isoformat()}" if as_of else "position 0"
            raise UsageError(
                f"{when} is before the log begins"
                + (
                    f" ({first.recorded_at.strftime('%Y-%m-%dT%H:%M:%SZ')}, position 1): "
                    "--as-of is the time tracker recorded things, not when the news was "
                    "published"
                    if first is not None
                    else ": the log is empty"
                )
            )
        return read_past(
            self.store,
            main,
            lambda s: stories.story(s, storyline_id, as_of, past=True, newest=newest),
            until_position=position,
            later=per_article,
            streams_for_later=lambda s: stories.member_ids(s, storyline_id),
        )

    def _read_views(
        self, projectors: Sequence[Any], read: Callable[[Snapshot], Any], empty: Callable[[], Any]
    ) -> Any:
        """Read the current views; on a database whose log is still empty (so no view was
        ever built) the answer is `empty()`, not an error."""
        from tracker.reading import NotBuilt, read_views

        try:
            return read_views(self.store, projectors, read)
        except NotBuilt:
            if self.store.head_position() == 0:
                return empty()
            raise

    def stories(self) -> list[StorylineSummary]:
        """Every storyline with its article count, sources and last update (`tracker stories`)."""
        from tracker import stories
        from tracker.views import BY_NAME

        chosen = [BY_NAME[name] for name in ("articles", "feeds", "storylines")]
        return self._read_views(chosen, stories.stories, empty=list)  # type: ignore[no-any-return]

    def read(self, names: Sequence[str], read: Callable[[Snapshot], Any]) -> Any:
        """Run `read` on a consistent snapshot of the named views (for tests and tools)."""
        from tracker.reading import read_views
        from tracker.views import BY_NAME

        return read_views(self.store, [BY_NAME[name] for name in names], read)

    def curate(
        self,
        storyline_id: str,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        clear: Sequence[str] = (),
    ) -> list[str]:
        """Pin articles to a storyline, keep them out, or give them back to the rules; each is
        an event, and beats the rules from then on. Returns a line per article."""
        from tracker.curation import curate

        return curate(self.store, storyline_id, include, exclude, clear, self.resolve_article)

    def resolve_article(self, reference: str) -> str:
        """An article's stream id from its id or its URL; UsageError when the log has none."""
        from tracker.identity import article_stream, link_variants

        candidates = [reference] if reference.startswith("article-") else []
        variants = link_variants(reference)
        candidates += [article_stream("link", variant) for variant in variants]
        for candidate in candidates:
            first = next(iter(self.store.read_stream(candidate, batch_size=1)), None)
            if first is not None and first.event_type == "article.published":
                return candidate
        if variants:
            found = self._article_by_link(*variants)
            if found is not None:
                return found
        raise UsageError(
            f"no article {reference!r} in the log (give an article id, as `tracker story ID "
            "--json` lists them, or the article's URL)"
        )

    def _article_by_link(self, *links: str) -> str | None:
        from tracker.reading import NotBuilt
        from tracker.views.articles import article_by_link

        try:
            return self.read(["articles"], lambda s: article_by_link(s.views, links))  # type: ignore[no-any-return]
        except NotBuilt:
            return None

    def article(self, reference: str) -> ArticleHistory:
        """Every version of one article with word-level diffs (`tracker article`)."""
        from tracker.history import history

        article_id = self.resolve_article(reference)
        found = history(self.store.read_stream(article_id))
        assert found is not None  # resolve_article saw its first sight
        return found

    # -- polling -------------------------------------------------------------------------------

    def poll(
        self,
        feed_ids: Sequence[str] = (),
        every: bool = False,
        fetcher: Fetcher | None = None,
        source: str = "tracker poll",
        catch_up_views: bool = True,
    ) -> list[PollResult]:
        """One round (`tracker poll`): the feeds due, or every enabled one, or those named.

        Fetches run in parallel; each feed's events and bookkeeping commit in one transaction.
        Failures of feeds are results, not exceptions. Then the views catch up (unless
        `catch_up_views` is false: the benchmarks time the two apart).
        """
        from tracker.fetch import Fetcher  # httpx and feedparser only when polling
        from tracker.parsepool import ParsePool, cores, parse_and_sight
        from tracker.polling import (
            PollResult,
            Recorder,
            claim_feeds,
            due_feeds,
            fetch_feed,
            release_claims,
        )

        config = self.check_config()
        try:
            self.record_config(config, source)
        except TrackerError as error:
            # The definitions are recorded by the next round; the polls themselves may
            # still get through (each one is its own transaction).
            log.warning("feed and storyline definitions not recorded: %s", error)
        feeds = self._select_feeds(config, feed_ids, every, due_feeds)
        if not feeds:
            if catch_up_views:
                self.catch_up()  # the definitions just recorded, or a daemon's polls
            return []
        own_fetcher = fetcher is None
        fetcher = fetcher or Fetcher()
        recorder = Recorder(self.store, self._now, source)
        owner = process_owner()
        # A feed a daemon is polling right now is skipped; one named or --all is polled even if
        # not due, but never twice at once.
        only_if_due = not (feed_ids or every)
        held: set[str] = set()  # claimed by this round and not yet recorded
        waiting = deque(feeds)
        claimed: deque[tuple[FeedConfig, datetime, FeedRow]] = deque()  # not fetching yet
        fetching: dict[Future[Fetch], tuple[FeedConfig, datetime]] = {}
        results: dict[str, PollResult] = {}
        parallel = min(POLL_PARALLELISM, len(feeds))
        parsers = ParsePool() if len(feeds) >= PARSE_PROCESSES_FROM and cores() > 1 else None
        parse = parsers.parse if parsers is not None else parse_and_sight

        def fetch_more(pool: ThreadPoolExecutor) -> None:
            # Claims are taken here, in this thread, a batch at a time just before the batch
            # is fetched: so a long round cannot outlive its claims (a batch waits at most
            # for the fetches before it), and the fetch threads never wait for the database's
            # write lock while this thread records.
            while len(fetching) < parallel and (claimed or waiting) and not fetcher.cancelled:
                if not claimed:
                    batch = [waiting.popleft() for _ in range(min(parallel, len(waiting)))]
                    started_at = self._now()
                    # Held from before the claims commit: a Ctrl-C as they return releases
                    # them too (releasing a feed not claimed does nothing).
                    held.update(feed.id for feed in batch)
                    states = claim_feeds(
                        self.store, batch, owner, started_at, only_if_due=only_if_due
                    )
                    for feed in batch:
                        state = states[feed.id]
                        if state is None:
                            held.discard(feed.id)
                            results[feed.id] = PollResult(feed.id, "busy")
                        else:
                            claimed.append((feed, started_at, state))
                    continue
                feed, started_at, state = claimed.popleft()
                future = pool.submit(fetch_feed, fetcher, feed, state, parse)
                fetching[future] = (feed, started_at)

        try:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                try:
                    fetch_more(pool)
                    while fetching:
                        done, _ = wait(fetching, return_when=FIRST_COMPLETED)
                        for future in done:
                            feed, started_at = fetching.pop(future)
                            fetch_more(pool)  # the next fetches run while this one records
                            results[feed.id], recorded = self._record(
                                recorder, future.result(), started_at, owner
                            )
                            if recorded:
                                held.discard(feed.id)
                    # Not fetched (the fetcher was cancelled): claims released below.
                    for feed in [*(c[0] for c in claimed), *waiting]:
                        results[feed.id] = PollResult(feed.id, "busy")
                except BaseException:
                    # Ctrl-C or a bug: stop the other fetches, and the parses, now.
                    fetcher.cancel()
                    if parsers is not None:
                        parsers.cancel()
                    raise
        finally:
            if parsers is not None:
                parsers.close()
            if held:
                release_claims(self.store, sorted(held), owner)
            if own_fetcher:
                fetcher.close()
        if catch_up_views:
            self.catch_up()
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
        self,
        feed: FeedConfig,
        owner: str,
        fetcher: Fetcher,
        source: str = "tracker daemon",
        parsers: ParsePool | None = None,
    ) -> PollResult | None:
        """Poll one feed if it is due and no other poller has it (the daemon's job); with
        `parsers`, parsed in their worker processes.

        None when it was not due, another daemon claimed it first, or the fetch was cancelled
        because the daemon is stopping (nothing is recorded then).
        """
        from tracker.parsepool import parse_and_sight
        from tracker.polling import Recorder, claim_feed_state, fetch_feed, release_claims

        started_at = self._now()
        state = claim_feed_state(self.store, feed, owner, started_at)
        if state is None:
            return None
        recorded = False
        try:
            parse = parsers.parse if parsers is not None else parse_and_sight
            fetched = fetch_feed(fetcher, feed, state, parse)
            if fetched.cancelled or fetcher.cancelled:
                return None  # stopping: even a poll done just now is not recorded
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

    def verify(
        self,
        progress: Callable[[int], None] | None = None,
        checkpoints: Sequence[Checkpoint] = (),
    ) -> ChainReport:
        """Walk the whole log checking the hash chain (`tracker verify`), and that it still
        holds, and reaches, the hashes the given checkpoints recorded.

        `progress` is called with the number of events checked since its last call.
        """
        anchors = {checkpoint.position: checkpoint.hash for checkpoint in checkpoints}
        return verify_chain(self.store.read_chain(), progress, anchors)

    def checkpoint(
        self,
        key: bytes | None,
        previous: Checkpoint | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Checkpoint:
        """A checkpoint of the newest event (`tracker checkpoint`), taken only once the chain up
        to it is verified: from the start, or on from `previous`, the newest checkpoint kept.

        CheckpointError, and no checkpoint, if the chain is broken; UsageError if the log is
        empty.
        """
        if previous is None:
            report = verify_chain(self.store.read_chain(), progress)
        else:
            rows = self.store.read_chain(after=previous.position - 1)
            first = next(rows, None)
            if first is None or first.position != previous.position:
                report = ChainReport(
                    0,
                    previous.position,
                    f"the log no longer reaches position {previous.position}, recorded by the "
                    "newest checkpoint (events were deleted)",
                )
            elif first.hash != previous.hash:
                report = ChainReport(
                    0,
                    previous.position,
                    f"event at position {previous.position} does not have the hash its "
                    "checkpoint recorded (the log was rewritten at or before it)",
                )
            else:
                after = (previous.position, previous.hash)
                report = verify_chain(rows, progress, after=after)
                report = replace(report, last=report.last or after)
        if not report.ok:
            raise CheckpointError(
                f"no checkpoint taken: the chain is broken at position "
                f"{report.first_bad_position}: {report.problem}"
            )
        if report.last is None:
            raise UsageError("the log is empty: there is nothing to checkpoint yet")
        return make_checkpoint(*report.last, self._now(), key)


def _utc(moment: datetime) -> datetime:
    """A time a user gave: UTC unless it says otherwise."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
