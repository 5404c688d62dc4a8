"""Feed health events: one per change of a feed's state, never one per poll."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tracker.events import event_type

# The states a feed can be in; a poll that leaves the state as it was records nothing.
HEALTHY = "healthy"
FAILING = "failing"
BLOCKED = "blocked"  # e.g. a bot challenge (Cloudflare `cf-mitigated: challenge`)
GONE = "gone"  # 410: polling stops


@event_type
@dataclass(frozen=True)
class FeedFailing:
    """A feed that was healthy (or new) started failing, or failed in a new way."""

    TYPE: ClassVar[str] = "feed.failing"
    VERSION: ClassVar[int] = 1

    feed_id: str
    url: str
    state: str  # FAILING or BLOCKED
    error: str
    status: int | None = None


@event_type
@dataclass(frozen=True)
class FeedRecovered:
    TYPE: ClassVar[str] = "feed.recovered"
    VERSION: ClassVar[int] = 1

    feed_id: str
    url: str
    failures: int  # how many polls failed in a row before this success


@event_type
@dataclass(frozen=True)
class FeedMoved:
    """A permanent redirect (301, 308): the new URL is used from then on."""

    TYPE: ClassVar[str] = "feed.moved"
    VERSION: ClassVar[int] = 1

    feed_id: str
    old_url: str
    new_url: str
    status: int


@event_type
@dataclass(frozen=True)
class FeedGone:
    """410 Gone: tracker stops polling the feed."""

    TYPE: ClassVar[str] = "feed.gone"
    VERSION: ClassVar[int] = 1

    feed_id: str
    url: str


# -- What feeds.yaml says of a feed, recorded when new or changed, so that views built from the
# log alone can name a feed as its user does.


@event_type
@dataclass(frozen=True)
class FeedDefined:
    TYPE: ClassVar[str] = "feed.defined"
    VERSION: ClassVar[int] = 1

    feed_id: str
    title: str
    url: str


@event_type
@dataclass(frozen=True)
class FeedRemoved:
    """The feed left feeds.yaml; what it recorded stays in the log."""

    TYPE: ClassVar[str] = "feed.removed"
    VERSION: ClassVar[int] = 1

    feed_id: str
