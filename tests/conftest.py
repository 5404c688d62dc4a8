"""Shared fixtures: every store test runs on a real SQLite file and on a real PostgreSQL.

PostgreSQL tests use the server named by TRACKER_TEST_POSTGRES_URL, each in a schema of its
own that is dropped afterwards; without that variable they skip, saying so.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from feedserver import FeedServer
from sqlalchemy.engine import make_url

from tracker.database import create_engine, ensure_schema
from tracker.eventstore import EventStore
from tracker.settings import Settings

POSTGRES_URL = os.environ.get("TRACKER_TEST_POSTGRES_URL")
NO_POSTGRES = "TRACKER_TEST_POSTGRES_URL is not set: PostgreSQL tests need a server to run"

# A shell starts a background job (`nohup ... &`) with SIGINT ignored, and an ignored signal is
# inherited through exec: the Ctrl-C tests, here and in every tracker they start, would then
# test nothing. Python's own handler here is reset to the default in each child at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tracker.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema on the test PostgreSQL."""
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database, once SQLite and once PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """The database, migrated to head."""
    engine = create_engine(database_url)
    ensure_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> EventStore:
    return EventStore(engine)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url, tmp_path / "feeds.yaml")


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A real HTTP server on 127.0.0.1 serving scripted replies."""
    with FeedServer() as server:
        yield server
