"""Several processes writing at once while another follows the log (issue #2, points 6 and 8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tracker.service import Tracker
from tracker.settings import Settings

WORKERS = Path(__file__).parent / "workers"


def spawn(script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKERS / script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> list[str]:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out.split()


@pytest.mark.parametrize("writers", [4, 6])
def test_a_follower_sees_every_event_once_in_order_while_writers_append(
    settings: Settings, writers: int
) -> None:
    per_writer = 150
    total = writers * per_writer
    # The schema exists before the race starts, as it would for a running daemon.
    with Tracker.open(settings):
        pass
    follower = spawn("follower.py", settings.database_url, total, 240)
    writer_processes = [
        spawn("append_worker.py", settings.database_url, index, per_writer)
        for index in range(writers)
    ]
    appended = [event_id for process in writer_processes for event_id in finish(process)]
    seen_lines = finish(follower)
    positions = [int(p) for p in seen_lines[0::2]]
    seen_ids = seen_lines[1::2]

    assert len(appended) == len(set(appended)) == total
    assert positions == list(range(1, total + 1)), "the follower skipped or repeated events"
    assert sorted(seen_ids) == sorted(appended)
    with Tracker.open(settings) as tracker:
        report = tracker.verify()
        assert report.ok, report.problem
        assert report.checked == total
        shared = list(tracker.store.read_stream("shared"))
        assert [e.stream_version for e in shared] == list(range(1, len(shared) + 1))


def test_two_processes_append_to_one_sqlite_file_at_once(sqlite_url: str) -> None:
    with Tracker.open(Settings(sqlite_url, Path("feeds.yaml"))):
        pass
    first = spawn("append_worker.py", sqlite_url, 0, 300)
    second = spawn("append_worker.py", sqlite_url, 1, 300)
    ids = finish(first) + finish(second)
    with Tracker.open(Settings(sqlite_url, Path("feeds.yaml"))) as tracker:
        assert sorted(str(e.event_id) for e in tracker.events()) == sorted(ids)
        assert tracker.verify().checked == 600
