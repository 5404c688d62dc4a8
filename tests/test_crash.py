"""Crash safety in CI: the stress script's trials, five on each database (the script itself
runs 50 or more: tests/stress/crash.py, docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

from stress.crash import run


def test_daemon_and_replay_killed_at_random_lose_and_duplicate_nothing(
    database_url: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    # Raises Failed, saying what was lost, duplicated or inconsistent, at the first bad trial.
    trials = run(5, database_url, seed=7, workdir=tmp_path, say=lines.append)
    assert len(trials) == 5 and not any(trial.problems for trial in trials), lines
    assert {trial.kind for trial in trials} == {"daemon", "replay"}, lines
