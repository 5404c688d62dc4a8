"""What `tracker status` reports: where each projection stands, and each feed's health."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tracker.projection import Checkpoint, utc


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    generation: int  # 0: never built
    position: int
    lag: int  # events in the log it has not applied yet
    version: int
    built_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class FeedStatus:
    id: str
    title: str | None
    url: str | None
    state: str
    since: datetime | None
    last_error: str | None
    article_count: int
    last_success_at: datetime | None  # the last poll that recorded something
    last_checked_at: datetime | None  # the last poll at all (the poller's bookkeeping)
    next_due_at: datetime | None


@dataclass(frozen=True)
class Status:
    database: str
    head: int
    projections: tuple[ProjectionStatus, ...]
    feeds: tuple[FeedStatus, ...]


def projection_status(name: str, checkpoint: Checkpoint | None, head: int) -> ProjectionStatus:
    if checkpoint is None or checkpoint.generation == 0:
        return ProjectionStatus(name, 0, 0, head, 0, None, None)
    return ProjectionStatus(
        name,
        checkpoint.generation,
        checkpoint.position,
        max(head - checkpoint.position, 0),
        checkpoint.version,
        checkpoint.built_at,
        checkpoint.updated_at,
    )


def feed_status(feed_id: str, viewed: dict[str, Any] | None, polled: Any) -> FeedStatus:
    """A feed as the feeds view tells it (`viewed`) and the poller's bookkeeping (`polled`)."""
    view = viewed or {}
    return FeedStatus(
        feed_id,
        view.get("title"),
        polled.url if polled is not None else view.get("url"),
        polled.state if polled is not None else view.get("state", "unknown"),
        utc(view.get("state_since")),
        polled.last_error if polled is not None else view.get("last_error"),
        view.get("article_count", polled.article_count if polled is not None else 0),
        utc(view.get("last_success_at")),
        polled.last_checked_at if polled is not None else None,
        polled.next_due_at if polled is not None else None,
    )
