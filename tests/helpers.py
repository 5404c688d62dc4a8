"""Helpers the tests share: running tracker as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tracker.records import RecordedEvent
from tracker.service import Tracker

REPO_ROOT = Path(__file__).resolve().parents[1]
# What loading feeds.yaml records, beside what polls record.
DEFINITIONS = frozenset({"feed.defined", "feed.removed", "storyline.defined", "storyline.removed"})


def polled(tracker: Tracker, **filters: Any) -> list[RecordedEvent]:
    """What polls recorded: the log without the definitions that loading feeds.yaml adds."""
    return [e for e in tracker.events(**filters) if e.event_type not in DEFINITIONS]


def clean_env() -> dict[str, str]:
    """This process's environment without TRACKER_* settings that would leak into a test."""
    dropped = ("TRACKER_DATABASE_URL", "TRACKER_CONFIG", "TRACKER_CHECKPOINT_KEY")
    return {k: v for k, v in os.environ.items() if k not in dropped}


def run_tracker(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m tracker` as a user would, in its own process.

    The caller's TRACKER_* settings are dropped so that each test says which database it means.
    """
    full_env = clean_env()
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
    )


def fill_unanalysed_log(engine: sa.Engine, events: int) -> None:
    """A PostgreSQL log of `events` fake article events (three per article, payloads of real
    size, hashes that do not chain: nothing verifies them) in one statement, with autovacuum
    off for it, so the planner knows nothing of it, as on a server before its first analyse."""
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE events SET (autovacuum_enabled = false)")
        payload = """'{"feed_id": "upi-top", "title": "' || repeat('x', 200) || '"}'"""
        connection.exec_driver_sql(
            "INSERT INTO events (position, event_id, stream_id, stream_version, event_type,"
            " schema_version, payload, metadata, recorded_at, hash)"
            " SELECT n, gen_random_uuid(), 'article-' || ((n + 2) / 3), mod(n + 2, 3) + 1,"
            f" 'article.published', 1, {payload}, '{{}}', now(), md5(n::text)"
            f" FROM generate_series(1, {int(events)}) AS n"
        )


def assert_unanalysed(connection: sa.Connection) -> None:
    """The log has no statistics: else a test of plans on an unanalysed log means nothing."""
    analysed = connection.exec_driver_sql(
        "SELECT count(*) FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'events'"
    ).scalar()
    assert analysed == 0, "the log must be unanalysed for this test to mean anything"
