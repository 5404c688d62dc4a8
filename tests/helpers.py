"""Helpers the tests share: running tracker as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
