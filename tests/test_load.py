"""Concurrent load in CI: the stress script's short version on each database (the script runs
for minutes: tests/stress/load.py, docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from stress.load import run


@pytest.mark.postgres
def test_three_daemons_and_readers_on_postgresql_lose_duplicate_and_deadlock_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    report = run(
        45, postgres_url, daemons=3, feeds=500, interval="10s", workdir=tmp_path, say=lines.append
    )
    assert report.problems == [], lines
    assert report.events > 5000 and report.reader_runs >= 10 and report.follower_reads >= 50


def test_a_daemon_readers_and_replays_on_sqlite_never_meet_a_locked_database(
    sqlite_url: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    report = run(30, sqlite_url, workdir=tmp_path, say=lines.append)
    assert report.problems == [], lines
    assert report.events > 1000 and report.replays >= 3 and report.follower_reads >= 50
