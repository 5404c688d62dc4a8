"""One poll of one feed: fetch and parse (network, any thread), then decide and record
(one locked transaction). `tracker poll` and the daemon both run polls through here.
"""

from __future__ import annotations

import random
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from tracker.config import FeedConfig
from tracker.database import WRITE, storage_errors
from tracker.deciding import (
    FeedStatus,
    PollOutcome,
    Sighting,
    decide_health,
    decide_sightings,
    next_due,
    sightings,
)
from tracker.entries import ParsedFeed
from tracker.events import encode
from tracker.events.feeds import GONE
from tracker.eventstore import EventStore
from tracker.fetch import Fetched, Fetcher, FetchFailed
from tracker.owners import alive
from tracker.parse import FeedParseError
from tracker.parsepool import ParseCancelled, Parsed, parse_and_sight, parser_error
from tracker.pollstate import (
    FeedRow,
    claim,
    claim_holder,
    known_articles,
    load_feed,
    load_feeds,
    release,
    save_articles,
    save_claimed_feed,
    save_feed,
)

Clock = Callable[[], datetime]
# How long a daemon's claim on a feed lasts: past the fetch deadline, so a live poll keeps it,
# short enough that a crashed daemon's feeds are picked up again soon.
CLAIM_HOLD = timedelta(minutes=5)


@dataclass(frozen=True)
class Fetch:
    """What the network gave for one feed: a parsed feed, a 304, or a failure."""

    feed: FeedConfig
    url: str
    fetched: Fetched | None = None
    parsed: ParsedFeed | None = None
    failure: FetchFailed | FeedParseError | None = None
    # The parsed entries sighted (deciding.sightings), worked out with the parse so that the
    # recording, under the log's lock, has only deciding left to do.
    sightings: tuple[Sighting, ...] | None = None
    # The feed's bookkeeping as its poller read it on claiming the feed: while the claim holds,
    # no other poller writes it.
    state: FeedRow | None = None

    @property
    def cancelled(self) -> bool:
        return isinstance(self.failure, FetchFailed) and self.failure.kind == "cancelled"


@dataclass(frozen=True)
class PollResult:
    feed_id: str
    outcome: str  # "new", "revised", "unchanged", "not modified", "failed", "gone", "busy"
    new: int = 0
    revised: int = 0
    seen_elsewhere: int = 0
    reason: str | None = None
    moved_to: str | None = None

    def line(self) -> str:
        """One line for `tracker poll` and the daemon's log."""
        if self.outcome == "busy":
            text = "skipped: another poller is polling it right now"
        elif self.outcome == "failed":
            text = f"failed: {self.reason}"
        elif self.outcome == "gone":
            text = f"gone: {self.reason or 'HTTP 410'}; no longer polled"
        elif self.new or self.revised or self.seen_elsewhere:
            parts = [f"{self.new} new"] if self.new else []
            parts += [f"{self.revised} revised"] if self.revised else []
            parts += (
                [f"{self.seen_elsewhere} already seen in other feeds"]
                if self.seen_elsewhere
                else []
            )
            text = ", ".join(parts)
        else:
            text = self.outcome
        if self.moved_to:
            text += f" (moved to {self.moved_to})"
        return f"{self.feed_id}: {text}"

    def as_json_object(self) -> dict[str, Any]:
        return {
            "feed": self.feed_id,
            "outcome": self.outcome,
            "new": self.new,
            "revised": self.revised,
            "seen_elsewhere": self.seen_elsewhere,
            "reason": self.reason,
            "moved_to": self.moved_to,
        }


def fetch_feed(
    fetcher: Fetcher,
    feed: FeedConfig,
    state: FeedRow | None,
    parse: Callable[[bytes, Mapping[str, str], str], Parsed] = parse_and_sight,
) -> Fetch:
    """The network half of a poll, and the parse; touches no database, so it can run in any
    thread. `parse` may be a ParsePool's, to parse in another process. Once the fetcher is
    cancelled (the poller is stopping) nothing more is parsed: the fetch ends cancelled."""
    url = state.url if state is not None else feed.url
    etag = state.etag if state is not None else None
    last_modified = state.last_modified if state is not None else None
    try:
        fetched = fetcher.fetch(url, etag, last_modified)
    except FetchFailed as failure:
        return Fetch(feed, url, failure=failure, state=state)
    except Exception as error:  # noqa: BLE001 -- one feed's surprise must not end the round
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return Fetch(feed, url, failure=FetchFailed("error", reason.rstrip(": ")), state=state)
    if fetched.not_modified:
        return Fetch(feed, url, fetched, state=state)
    stopping = FetchFailed("cancelled", "cancelled: tracker is stopping")
    if fetcher.cancelled:
        return Fetch(feed, url, fetched, failure=stopping, state=state)
    try:
        parsed, seen = parse(fetched.body, fetched.headers, fetched.url)
    except FeedParseError as refused:
        return Fetch(feed, url, fetched, failure=refused, state=state)
    except ParseCancelled:
        return Fetch(feed, url, fetched, failure=stopping, state=state)
    except Exception as error:  # noqa: BLE001 -- a bug of the parsing, not of the round
        trace = traceback.format_exc()
        broken = parser_error(fetched.url, type(error).__name__, str(error), trace)
        return Fetch(feed, url, fetched, failure=broken, state=state)
    return Fetch(feed, url, fetched, parsed, sightings=seen, state=state)


def due_feeds(
    store: EventStore, feeds: Sequence[FeedConfig], now: datetime, every: bool = False
) -> list[FeedConfig]:
    """The feeds to poll now: never polled or due, and not gone (unless feeds.yaml moved it);
    with `every`, all of them but the gone."""
    with store.engine.connect() as connection:
        states = load_feeds(connection)
    chosen = []
    for feed in feeds:
        state = states.get(feed.id)
        if (
            state is None
            or state.configured_url != feed.url
            or state.state != GONE
            and (every or state.next_due_at is None or state.next_due_at <= now)
        ):
            chosen.append(feed)
    return chosen


def claim_feed(
    store: EventStore,
    feed: FeedConfig,
    owner: str,
    now: datetime,
    hold: timedelta = CLAIM_HOLD,
    only_if_due: bool = True,
) -> bool:
    """Claim a feed for this poller for at most `hold` (a crashed poller's claim expires);
    with `only_if_due`, only a feed that is due."""
    return claim_feed_state(store, feed, owner, now, hold, only_if_due) is not None


def claim_feed_state(
    store: EventStore,
    feed: FeedConfig,
    owner: str,
    now: datetime,
    hold: timedelta = CLAIM_HOLD,
    only_if_due: bool = True,
) -> FeedRow | None:
    """As claim_feed, in the same transaction reading the feed's bookkeeping (for
    fetch_feed); None when the feed was not claimed."""
    return claim_feeds(store, [feed], owner, now, hold, only_if_due)[feed.id]


def claim_feeds(
    store: EventStore,
    feeds: Sequence[FeedConfig],
    owner: str,
    now: datetime,
    hold: timedelta = CLAIM_HOLD,
    only_if_due: bool = True,
) -> dict[str, FeedRow | None]:
    """As claim_feed_state for several feeds in one transaction: each feed's bookkeeping, or
    None for a feed not claimed."""
    claimed: dict[str, FeedRow | None] = {}
    with storage_errors(store.engine), store.engine.connect() as connection:
        connection = connection.execution_options(**WRITE)
        with connection.begin():
            # Rows locked in one order by every poller: two rounds whose feeds.yaml list the
            # same feeds in other orders would otherwise deadlock on PostgreSQL.
            for feed in sorted(feeds, key=lambda feed: feed.id):
                # A scheduler's jitter may fire a moment before the feed is due: that still
                # counts, or the feed would wait a whole extra interval.
                due_within = min(feed.interval * 0.3, timedelta(minutes=1)) if only_if_due else None
                row = FeedRow.new(feed.id, feed.url)
                taken = claim(connection, row, owner, now, now + hold, due_within)
                if not taken:
                    # Held by a poller of this machine that died (killed mid-poll)? Its poll
                    # will never be recorded: take the feed rather than wait for the claim to
                    # run out. Looked at only when a claim fails, off the usual path.
                    holder = claim_holder(connection, feed.id)
                    if holder is not None and alive(holder) is False:
                        release(connection, feed.id, holder)
                        taken = claim(connection, row, owner, now, now + hold, due_within)
                claimed[feed.id] = (
                    _state_for(feed, load_feed(connection, feed.id)) if taken else None
                )
    return claimed


def release_claims(store: EventStore, feed_ids: Sequence[str], owner: str) -> None:
    with storage_errors(store.engine), store.engine.connect() as connection:
        connection = connection.execution_options(**WRITE)
        with connection.begin():
            for feed_id in feed_ids:
                release(connection, feed_id, owner)


def _state_for(feed: FeedConfig, state: FeedRow | None) -> FeedRow:
    return FeedRow.new(feed.id, feed.url) if state is None else state.for_config(feed.url)


class _ClaimLost(Exception):
    """The poller's claim on the feed ran out before its poll was recorded."""


class Recorder:
    """The database half of a poll: decide what the fetch means and record it atomically."""

    def __init__(
        self, store: EventStore, clock: Clock, source: str, rng: random.Random | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._source = source
        self._rng = rng or random.Random()

    def record(
        self, fetch: Fetch, started_at: datetime | None = None, owner: str | None = None
    ) -> PollResult:
        """Decide and record one fetch. The next poll is due an interval after `started_at`
        (when the poll began: its claim), so a feed keeps its rhythm however long it took.

        With `owner`, only while that poller still holds the feed's claim: a poll whose claim
        expired (it took too long) is dropped, since another poller may have recorded since.
        """
        feed = fetch.feed
        outcome = self._outcome(fetch)
        if owner is not None and fetch.state is not None and fetch.parsed is None:
            # No entries to decide on: unless the feed's health changed, nothing goes in the
            # log, and the poll writes its bookkeeping without taking the log's lock (on
            # PostgreSQL other pollers append meanwhile; SQLite has one write lock for all).
            quiet = self._record_quietly(fetch, outcome, started_at, owner)
            if quiet is not None:
                return quiet
        poll_id = str(uuid.uuid4())
        metadata = {
            "poll_id": poll_id,
            "correlation_id": poll_id,
            "feed_id": feed.id,
            "source": self._source,
        }
        try:
            with self._store.session() as session:
                connection = session.connection
                now = self._clock()
                if owner is not None and fetch.state is not None:
                    # Our claim kept the row as we read it; save_claimed_feed checks we still
                    # hold it.
                    state = _state_for(feed, fetch.state)
                else:
                    read = load_feed(connection, feed.id)
                    if owner is not None and (read is None or read.claimed_by != owner):
                        raise _ClaimLost
                    state = _state_for(feed, read)
                changes = self._changes(fetch, connection, now)
                health = decide_health(
                    feed.id,
                    FeedStatus(state.url, state.state, state.failures, state.last_error),
                    outcome,
                )
                for event in health.events:
                    session.append(f"feed-{feed.id}", [encode(event, metadata)])
                new = revised = seen = 0
                for change in changes:
                    if change.events:
                        session.append(
                            change.article_id,
                            [encode(event, metadata) for event in change.events],
                            change.expected_version,
                        )
                    new += change.kind == "new"
                    revised += change.kind == "revised"
                    seen += change.kind == "seen"
                save_articles(connection, [change.known for change in changes])
                next_state = self._next_state(
                    state, fetch, health.status, outcome, now, started_at or now, new
                )
                if owner is None:
                    save_feed(connection, next_state)
                elif not save_claimed_feed(connection, next_state, owner):
                    raise _ClaimLost  # rolls the whole poll back
        except _ClaimLost:
            return PollResult(feed.id, "busy", reason="claim expired before it was recorded")
        return self._result(feed.id, fetch, outcome, new, revised, seen)

    def _record_quietly(
        self, fetch: Fetch, outcome: PollOutcome, started_at: datetime | None, owner: str
    ) -> PollResult | None:
        """Record a poll with no entries whose feed's health stays as it was: one conditional
        UPDATE of its bookkeeping. None if the health changed (the poll has an event to
        record)."""
        assert fetch.state is not None
        feed = fetch.feed
        state = _state_for(feed, fetch.state)
        before = FeedStatus(state.url, state.state, state.failures, state.last_error)
        health = decide_health(feed.id, before, outcome)
        if health.events:
            return None
        now = self._clock()
        next_state = self._next_state(
            state, fetch, health.status, outcome, now, started_at or now, 0
        )
        engine = self._store.engine
        with storage_errors(engine), engine.connect() as connection:
            connection = connection.execution_options(**WRITE)
            with connection.begin():
                if not save_claimed_feed(connection, next_state, owner):
                    return PollResult(
                        feed.id, "busy", reason="claim expired before it was recorded"
                    )
        return self._result(feed.id, fetch, outcome, 0, 0, 0)

    @staticmethod
    def _outcome(fetch: Fetch) -> PollOutcome:
        failure = fetch.failure
        if isinstance(failure, FetchFailed):
            return PollOutcome(
                False,
                failure.kind,
                failure.reason,
                failure.status,
                failure.moved_to,
                failure.moved_by,
            )
        fetched = fetch.fetched
        moved_to = fetched.moved_to if fetched is not None else None
        moved_by = fetched.moved_by if fetched is not None else None
        if failure is not None:
            return PollOutcome(False, "parse", str(failure), None, moved_to, moved_by)
        return PollOutcome(True, moved_to=moved_to, moved_by=moved_by)

    def _changes(self, fetch: Fetch, connection: Any, now: datetime) -> list[Any]:
        if fetch.parsed is None or fetch.failure is not None:
            return []
        seen = fetch.sightings
        if seen is None:
            seen = tuple(sightings(fetch.parsed.entries))
        known = known_articles(connection, [sighting.article_id for sighting in seen])
        return decide_sightings(fetch.feed.id, seen, known, now)

    def _next_state(
        self,
        state: FeedRow,
        fetch: Fetch,
        status: FeedStatus,
        outcome: PollOutcome,
        now: datetime,
        started_at: datetime,
        new_articles: int,
    ) -> FeedRow:
        fetched = fetch.fetched
        retry_after: timedelta | None = None
        if fetched is not None and fetched.status == 200 and fetch.failure is None:
            # Keep the validators of every 200, changed entries or not: stale ones mean a full
            # refetch every time.
            state = replace(state, etag=fetched.etag, last_modified=fetched.last_modified)
            minimums = [
                m for m in (fetched.max_age, fetch.parsed.ttl if fetch.parsed else None) if m
            ]
            state = replace(
                state,
                min_interval_s=int(max(minimums).total_seconds()) if minimums else None,
            )
        elif fetched is not None and fetched.not_modified and fetched.max_age:
            state = replace(state, min_interval_s=int(fetched.max_age.total_seconds()))
        publisher_minimum = (
            timedelta(seconds=state.min_interval_s) if state.min_interval_s else None
        )
        if isinstance(fetch.failure, FetchFailed):
            retry_after = fetch.failure.retry_after
        due = (
            None
            if status.state == GONE
            else next_due(
                started_at,
                fetch.feed.interval,
                status.failures,
                retry_after=retry_after,
                publisher_minimum=publisher_minimum,
                rng=self._rng,
            )
        )
        return replace(
            state,
            url=status.url,
            state=status.state,
            failures=status.failures,
            last_error=status.error,
            last_checked_at=now,
            last_success_at=now if outcome.ok else state.last_success_at,
            next_due_at=due,
            article_count=state.article_count + new_articles,
            claimed_by=None,
            claimed_until=None,
        )

    @staticmethod
    def _result(
        feed_id: str, fetch: Fetch, outcome: PollOutcome, new: int, revised: int, seen: int
    ) -> PollResult:
        moved_to = outcome.moved_to
        if not outcome.ok:
            kind = "gone" if outcome.failure_kind == "gone" else "failed"
            return PollResult(feed_id, kind, reason=outcome.reason, moved_to=moved_to)
        if fetch.parsed is None:
            return PollResult(feed_id, "not modified", moved_to=moved_to)
        kind = "new" if new else "revised" if revised else "unchanged"
        return PollResult(feed_id, kind, new, revised, seen, moved_to=moved_to)
