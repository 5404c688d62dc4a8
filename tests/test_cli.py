"""The CLI spine, run as a user runs it: help, version, events, errors (point 10)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import click
import pytest
from helpers import REPO_ROOT, clean_env, run_tracker

from tracker import __version__
from tracker.cli import cli
from tracker.records import NewEvent
from tracker.service import Tracker
from tracker.settings import Settings


def all_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found.extend(all_commands(command, path))
        else:
            found.append(path)
    return found


@pytest.mark.parametrize("command", all_commands(), ids=" ".join)
def test_every_command_has_help_with_an_example_and_is_in_the_readme(
    command: tuple[str, ...],
) -> None:
    result = run_tracker(*command, "--help")
    assert result.returncode == 0
    assert "Example" in result.stdout
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"tracker {' '.join(command)}" in readme


def test_bare_tracker_shows_help() -> None:
    result = run_tracker()
    assert result.returncode == 0
    assert "Usage: tracker" in result.stdout and "Commands:" in result.stdout


def test_version_and_help() -> None:
    version = run_tracker("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"tracker, version {__version__}"
    top = run_tracker("--help")
    assert top.returncode == 0
    for name in ("events", "verify", "db", "config"):
        assert re.search(rf"^\s+{name}\s", top.stdout, re.M)


def seed_log(settings: Settings) -> None:
    with Tracker.open(settings) as tracker:
        store = tracker.store
        store.append(
            "article-maduro",
            [
                NewEvent(
                    "article.published",
                    {"title": "US doubles reward for Maduro to $50 million"},
                    metadata={"poll": "p1"},
                )
            ],
            0,
        )
        store.append(
            "article-essequibo",
            [NewEvent("article.published", {"title": "Essequibo: Guyana asks ICJ"})],
            0,
        )
        store.append(
            "article-maduro",
            [NewEvent("article.revised", {"title": "\x1b[2JUS reward now $50m"})],
            1,
        )


def test_events_as_a_table(settings: Settings) -> None:
    seed_log(settings)
    result = run_tracker("events", "--database-url", settings.database_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[0] == "1" and "article-maduro" in lines[0]
    assert "article.published" in lines[0] and "$50 million" in lines[0]
    # Text from feeds cannot drive the terminal.
    assert "\x1b" not in result.stdout and "[2JUS reward" in lines[2]


def test_events_as_json_lines_with_filters(settings: Settings) -> None:
    seed_log(settings)
    env = {"TRACKER_DATABASE_URL": settings.database_url}
    everything = [
        json.loads(line) for line in run_tracker("events", "--json", env=env).stdout.splitlines()
    ]
    assert [e["position"] for e in everything] == [1, 2, 3]
    assert set(everything[0]) == {
        "position",
        "id",
        "stream",
        "version",
        "type",
        "schema_version",
        "recorded_at",
        "payload",
        "metadata",
    }
    assert everything[0]["metadata"] == {"poll": "p1"}
    assert everything[2]["payload"]["title"] == "\x1b[2JUS reward now $50m"

    def positions(*args: str) -> list[int]:
        result = run_tracker("events", "--json", *args, env=env)
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["position"] for line in result.stdout.splitlines()]

    assert positions("--stream", "article-maduro") == [1, 3]
    assert positions("--type", "article.revised") == [3]
    assert positions("--since-position", "1") == [2, 3]
    assert positions("--limit", "2") == [1, 2]
    assert positions("--stream", "nothing-here") == []


def test_positions_past_any_64_bit_position_are_simply_past_the_end(settings: Settings) -> None:
    seed_log(settings)
    result = run_tracker(
        "events",
        "--since-position",
        str(10**30),
        "--limit",
        str(10**30),
        "--database-url",
        settings.database_url,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "no events\n")


def test_an_empty_log_says_so(settings: Settings) -> None:
    result = run_tracker("events", "--database-url", settings.database_url)
    assert result.returncode == 0
    assert result.stdout == "" and result.stderr.strip() == "no events"


@pytest.mark.parametrize(
    "args",
    [
        ("events", "--limit", "0"),
        ("events", "--since-position", "many"),
        ("events", "--frobnicate"),
        ("no-such-command",),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(args: tuple[str, ...], tmp_path) -> None:
    result = run_tracker(*args, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "--help" in line


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/tracker", "unsupported database 'mysql'"),
        ("not a url", "is not a URL"),
        ("postgresql+asyncpg://localhost/x", "only the psycopg (3) driver is supported"),
        ("postgresql://postgres@127.0.0.1:notaport/x", "is not a URL"),
    ],
)
def test_bad_database_urls_exit_2_with_one_line(url: str, message: str) -> None:
    result = run_tracker("events", "--database-url", url)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert message in line


def test_an_unreachable_database_exits_1_with_one_line() -> None:
    # Port 9 on loopback: nothing listens there.
    result = run_tracker("verify", "--database-url", "postgresql://nobody:secret@127.0.0.1:9/x")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: postgresql://nobody:***@127.0.0.1:9/x: ")
    assert "secret" not in line


def test_events_piped_into_head_ends_quietly_with_exit_0(settings: Settings) -> None:
    with Tracker.open(settings) as tracker:
        for i in range(40):
            tracker.store.append(
                f"article-{i}",
                [NewEvent("article.published", {"title": f"Sky Group USA {i}", "pad": "x" * 80})]
                * 1,
            )
    script = (
        f"{sys.executable} -m tracker events --database-url '{settings.database_url}' "
        f'--json | head -1; echo "exit=${{PIPESTATUS[0]}}"'
    )
    big = run_tracker("events", "--database-url", settings.database_url)
    assert big.returncode == 0
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, env=clean_env()
    )
    lines = result.stdout.splitlines()
    assert json.loads(lines[0])["position"] == 1
    assert lines[-1] == "exit=0"
    assert result.stderr == ""


def test_printable_escapes_every_kind_of_terminal_control() -> None:
    from tracker.terminal import printable

    text = "a\x1b[2Jb\x07c\u202ed\u2028e\x9bf é 中 $50m"
    assert printable(text) == "a\\x1b[2Jb\\x07c\\u202ed\\u2028e\\x9bf é 中 $50m"
