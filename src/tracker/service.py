"""The Tracker facade: every use case, called alike by the CLI, the daemon and the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from tracker.config import Config, load_config
from tracker.database import create_engine, current_revision, describe, ensure_schema
from tracker.eventstore import Clock, EventStore
from tracker.integrity import ChainReport, verify_chain
from tracker.records import RecordedEvent
from tracker.schema import SCHEMA_REVISION
from tracker.settings import Settings


@dataclass(frozen=True)
class UpgradeReport:
    database: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def upgrade_database(settings: Settings) -> UpgradeReport:
    """Bring the database's schema to the head revision (`tracker db upgrade`)."""
    from tracker.migrate import upgrade

    engine = create_engine(settings.database_url)
    try:
        before = current_revision(engine)
        upgrade(engine)
        return UpgradeReport(describe(engine.url), before, current_revision(engine))
    finally:
        engine.dispose()


def database_revision(settings: Settings) -> tuple[str | None, str]:
    """The database's schema revision and the one this tracker expects."""
    engine = create_engine(settings.database_url)
    try:
        return current_revision(engine), SCHEMA_REVISION
    finally:
        engine.dispose()


def check_config(settings: Settings) -> Config:
    """Load feeds.yaml, raising ConfigError with every problem in it."""
    return load_config(settings.config_path)


class Tracker:
    """One open tracker database: the event log and, later, its projections."""

    def __init__(self, settings: Settings, store: EventStore) -> None:
        self.settings = settings
        self.store = store

    @classmethod
    def open(cls, settings: Settings, clock: Clock | None = None) -> Tracker:
        """Connect, migrating a brand-new database to the current schema first."""
        engine = create_engine(settings.database_url)
        try:
            ensure_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        store = EventStore(engine) if clock is None else EventStore(engine, clock)
        return cls(settings, store)

    def close(self) -> None:
        self.store.engine.dispose()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

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

    def head_position(self) -> int:
        return self.store.head_position()

    def verify(self, progress: Callable[[int], None] | None = None) -> ChainReport:
        """Walk the whole log checking the hash chain (`tracker verify`).

        `progress` is called with the number of events checked since its last call.
        """
        return verify_chain(self.store.read_chain(), progress)
