"""One measurement in a process of its own, so that its peak RSS is its own: prints JSON.

usage: python -m bench.child KIND DATABASE_URL [ARGS...]

Kinds: build N [SYNCHRONOUS], append N, replay, catch-up, verify, floor-insert, floor-scan,
peer-append N, peer-read, poll CONFIG, parse FOLDER, raw-append FIRST LAST.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.history import polls
from tracker import digests
from tracker.database import create_engine, ensure_schema
from tracker.events import encode
from tracker.eventstore import EventStore
from tracker.projection import catch_up, generations_present, tables_of
from tracker.rebuild import replay
from tracker.schema import projections
from tracker.views import PROJECTORS

Result = dict[str, Any]


def _store(url: str, clock: Callable[[], datetime] | None = None) -> EventStore:
    engine = create_engine(url)
    ensure_schema(engine)
    return EventStore(engine, clock) if clock is not None else EventStore(engine)


def _write_polls(store: EventStore, source: Iterator[Any], clock: list[datetime]) -> Result:
    """Write polls as the poller does, one transaction each; only the store's time counts."""
    spent = 0.0
    events = 0
    # The poller knows each article's version from its bookkeeping and says so; feed health
    # events are appended without one.
    versions: dict[str, int] = {}
    for poll in source:
        encoded = [(stream, encode(event, {"source": "bench"})) for stream, event in poll.events]
        clock[0] = poll.at
        started = time.perf_counter()
        with store.session() as session:
            for stream, event in encoded:
                if stream.startswith("article-"):
                    session.append(stream, [event], versions.get(stream, 0))
                    versions[stream] = versions.get(stream, 0) + 1
                else:
                    session.append(stream, [event])
        spent += time.perf_counter() - started
        events += len(encoded)
    return {"seconds": spent, "events": events}


def build(url: str, size: str, synchronous: str = "") -> Result:
    """The history, written as the poller writes it. `synchronous` FULL: SQLite syncs every
    commit to disk, as the peer does by default (tracker's own setting is NORMAL)."""
    clock = [datetime.now(UTC)]
    store = _store(url, lambda: clock[0])
    if synchronous:
        if not url.startswith("sqlite"):
            raise SystemExit("synchronous is a SQLite setting")
        store.engine.dispose()

        @sa.event.listens_for(store.engine, "connect")
        def _durable(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")

    return _write_polls(store, polls(int(size)), clock)


def append(url: str, size: str) -> Result:
    """More polls after the log's last one (another seed), as a poller adds to a big log."""
    store = _store(url)
    last = next(iter(store.read_all(store.head_position() - 1)), None)
    later = last.recorded_at if last is not None else datetime.now(UTC)
    clock = [later]

    def more() -> Iterator[Any]:
        for poll in polls(int(size), seed=os.getpid(), tag=f"p{os.getpid()}-", start=later):
            if poll.feed_id != "setup":  # the feeds and storylines are there already
                yield poll

    return _write_polls(EventStore(store.engine, lambda: clock[0]), more(), clock)


def _timed(work: Callable[[], Any]) -> Result:
    started = time.perf_counter()
    outcome = work()
    return {"seconds": time.perf_counter() - started, "outcome": str(outcome)[:200]}


def replay_all(url: str) -> Result:
    """`tracker replay`'s work: every view rebuilt, then the storylines digested."""
    store = _store(url)
    return _timed(lambda: (replay(store, PROJECTORS).events, digests.refresh(store)))


def catch_up_all(url: str) -> Result:
    """Catch-up of the whole log into views built from nothing: the same events a replay
    applies, in the daemon's batches."""
    store = _store(url)
    with store.engine.begin() as connection:
        for projector in PROJECTORS:
            for view in projector.tables:
                connection.exec_driver_sql(f'DROP VIEW IF EXISTS "{view.name}"')
            for generation in generations_present(connection, projector):
                for table in tables_of(projector, generation).values():
                    table.drop(connection)
        connection.execute(sa.delete(projections))
    return _timed(lambda: (catch_up(store, PROJECTORS).applied, digests.refresh(store)))


def verify(url: str) -> Result:
    from tracker.integrity import verify_chain

    store = _store(url)
    return _timed(lambda: verify_chain(store.read_chain()).checked)


_COLUMNS = (
    "position, event_id, stream_id, stream_version, event_type, schema_version, payload, "
    "metadata, recorded_at, hash"
)


def _rows(url: str, first: int = 0, last: int | None = None) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    bound = f" AND position <= {int(last)}" if last is not None else ""
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            f"SELECT {_COLUMNS} FROM events WHERE position > {int(first)}{bound} ORDER BY position"
        ).all()
    engine.dispose()
    return [tuple(str(v) if isinstance(v, uuid.UUID | datetime) else v for v in r) for r in rows]


def floor_insert(url: str, first: str = "0", last: str | None = None) -> Result:
    """The same rows, inserted by the bare driver in one transaction: sqlite3's executemany,
    or PostgreSQL's COPY."""
    rows = _rows(url, int(first), int(last) if last is not None else None)
    if url.startswith("sqlite"):
        scratch = Path(f"/tmp/bench-floor-{os.getpid()}.db")
        connection = sqlite3.connect(scratch)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            "CREATE TABLE events (position INTEGER PRIMARY KEY, event_id TEXT UNIQUE NOT NULL, "
            "stream_id TEXT NOT NULL, stream_version INTEGER NOT NULL, event_type TEXT NOT NULL, "
            "schema_version INTEGER NOT NULL, payload TEXT NOT NULL, metadata TEXT NOT NULL, "
            "recorded_at TEXT NOT NULL, hash TEXT NOT NULL, UNIQUE (stream_id, stream_version))"
        )
        started = time.perf_counter()
        with connection:
            connection.executemany(f"INSERT INTO events VALUES ({', '.join('?' * 10)})", rows)
        seconds = time.perf_counter() - started
        connection.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)
        return {"seconds": seconds, "events": len(rows)}
    with _connect(url) as connection:
        connection.execute(
            "CREATE TEMP TABLE floor_events (LIKE events INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
        started = time.perf_counter()
        with connection.cursor().copy(f"COPY floor_events ({_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        connection.commit()
        return {"seconds": time.perf_counter() - started, "events": len(rows)}


def floor_scan(url: str) -> Result:
    """Every event in position order with its payload and metadata decoded: the least any
    replay must do. sqlite3 or psycopg, no SQLAlchemy."""
    decode = json.JSONDecoder().decode
    query = f"SELECT {_COLUMNS} FROM events ORDER BY position"
    started = time.perf_counter()
    count = 0
    if url.startswith("sqlite"):
        connection = sqlite3.connect(create_engine(url).url.database or "")
        for row in connection.execute(query):
            decode(row[6])
            decode(row[7])
            count += 1
        connection.close()
    else:
        with _connect(url) as connection, connection.cursor(name="scan") as cursor:
            cursor.itersize = 10_000
            cursor.execute(query)
            for row in cursor:
                decode(row[6])
                decode(row[7])
                count += 1
    return {"seconds": time.perf_counter() - started, "events": count}


def _connect(url: str) -> Any:
    """A bare psycopg connection to the database (and schema) `url` names."""
    import psycopg

    parsed = create_engine(url).url
    return psycopg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        dbname=parsed.database,
        user=parsed.username,
        password=parsed.password or "",
        options=str(parsed.query.get("options", "")),
    )


def _peer(url: str, run: str) -> Any:
    """eventsourcing's application recorder on the same database: beside ours, in a file of
    its own on SQLite, in tables of its own on PostgreSQL; one table per run."""
    table = f"stored_events_{int(run)}"
    if url.startswith("sqlite"):
        from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

        path = Path(create_engine(url).url.database or "").with_suffix(".eventsourcing.db")
        recorder = SQLiteApplicationRecorder(SQLiteDatastore(str(path)), events_table_name=table)
    else:
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        parsed = create_engine(url).url
        schema = str(parsed.query.get("options", "")).removeprefix("-csearch_path=") or "public"
        datastore = PostgresDatastore(
            parsed.database or "",
            parsed.host or "127.0.0.1",
            parsed.port or 5432,
            parsed.username or "",
            parsed.password or "",
            schema=schema,
            pool_size=2,
        )
        recorder = PostgresApplicationRecorder(datastore, events_table_name=table)
    recorder.create_table()
    return recorder


def peer_append(url: str, size: str, run: str) -> Result:
    """The same polls through eventsourcing's recorder: one insert_events (a transaction) per
    poll, each event a StoredEvent with our encoded payload as its state."""
    from eventsourcing.persistence import StoredEvent

    recorder = _peer(url, run)
    versions: dict[str, int] = {}
    spent = 0.0
    events = 0
    for poll in polls(int(size)):
        encoded = [(stream, encode(event, {"source": "bench"})) for stream, event in poll.events]
        started = time.perf_counter()
        # Serialising is part of appending, as in our store: it is timed here too.
        stored = []
        for stream, event in encoded:
            versions[stream] = versions.get(stream, 0) + 1
            state = json.dumps(
                {"payload": event.payload, "metadata": event.metadata},
                separators=(",", ":"),
                sort_keys=True,
            ).encode()
            originator = uuid.uuid5(uuid.NAMESPACE_URL, stream)
            stored.append(StoredEvent(originator, versions[stream], event.event_type, state))
        recorder.insert_events(stored)
        spent += time.perf_counter() - started
        events += len(stored)
    return {"seconds": spent, "events": events}


def peer_read(url: str, run: str) -> Result:
    """Everything back through the notification log, a page at a time, states decoded."""
    recorder = _peer(url, run)
    decode = json.JSONDecoder().decode
    started = time.perf_counter()
    count = 0
    start = 1
    while True:
        page = recorder.select_notifications(start, 10_000)
        if not page:
            break
        for notification in page:
            decode(notification.state.decode())
            count += 1
        start = page[-1].id + 1
    return {"seconds": time.perf_counter() - started, "events": count}


def poll(url: str, config: str) -> Result:
    """One round of `tracker poll --all` without the views, then the views' catch-up."""
    from tracker.service import Tracker
    from tracker.settings import Settings

    with Tracker(Settings(url, Path(config))) as tracker:
        first = tracker.head_position()
        started, cpu_started = time.perf_counter(), time.process_time()
        results = tracker.poll(every=True, catch_up_views=False)
        polled, polled_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        started = time.perf_counter()
        tracker.catch_up()
        caught_up = time.perf_counter() - started
        last = tracker.head_position()
    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    # A round of many feeds parses in worker processes (tracker.parsepool): their CPU time and
    # memory count too. They are reaped by now, when the tracker has closed.
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "seconds": polled,
        "cpu_seconds": polled_cpu + workers.ru_utime + workers.ru_stime,
        "workers_rss_mb": workers.ru_maxrss / 1024,
        "catch_up_seconds": caught_up,
        "first": first,
        "last": last,
        "outcomes": outcomes,
    }


def parse(folder: str) -> Result:
    """feedparser's own parse of the same bytes the round fetched."""
    import feedparser

    bodies = [path.read_bytes() for path in sorted(Path(folder).glob("*.xml"))]
    started = time.perf_counter()
    entries = sum(len(feedparser.parse(body).entries) for body in bodies)
    return {"seconds": time.perf_counter() - started, "entries": entries}


KINDS: dict[str, Callable[..., Result]] = {
    "build": build,
    "append": append,
    "replay": replay_all,
    "catch-up": catch_up_all,
    "verify": verify,
    "floor-insert": floor_insert,
    "floor-scan": floor_scan,
    "peer-append": peer_append,
    "peer-read": peer_read,
    "poll": poll,
}


def main(argv: list[str]) -> None:
    kind, *args = argv
    result = parse(*args) if kind == "parse" else KINDS[kind](*args)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
