"""`tracker demo`: the README's first command, as a user runs it, with no network."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, run_tracker

from tracker.demo import STORYLINES


def test_the_demo_follows_the_shipped_storylines() -> None:
    shipped = yaml.safe_load((REPO_ROOT / "feeds.yaml").read_text(encoding="utf-8"))
    demo = yaml.safe_load(STORYLINES.read_text(encoding="utf-8"))
    assert demo["storylines"] == shipped["storylines"]


def test_the_demo_polls_twice_shows_a_storyline_and_leaves_a_database_to_explore(
    tmp_path: Path,
) -> None:
    result = run_tracker("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "round 1: polling 3 sample feeds served on http://127.0.0.1:" in out
    assert "thehill-news: 2 new, 1 revised" in out  # the article edited between rounds
    assert "$ tracker story essequibo" in out
    assert "Essequibo dispute (essequibo)" in out and "Timeline" in out
    database = tmp_path / "tracker-demo.db"
    assert database.is_file()
    url = f"sqlite:///{database}"
    env = {"TRACKER_DATABASE_URL": url}

    # Every command the demo suggests works on what it left.
    suggested = [
        line.strip().split("    #")[0]
        for line in out.split("To go on with it:")[1].splitlines()
        if line.strip().startswith("tracker ")
    ]
    assert "tracker replay" in suggested and "tracker verify" in suggested
    for command in suggested:
        ran = run_tracker(*command.split()[1:], env=env, cwd=tmp_path)
        assert ran.returncode == 0, f"{command}: {ran.stderr}"

    # Time travel to before round 2 shows the edited article as it was first published.
    position = re.search(r"--as-of-position (\d+)", out)
    assert position is not None
    now = json.loads(run_tracker("story", "maduro-reward", "--json", env=env, cwd=tmp_path).stdout)
    then = json.loads(
        run_tracker(
            "story",
            "maduro-reward",
            "--as-of-position",
            position.group(1),
            "--json",
            env=env,
            cwd=tmp_path,
        ).stdout
    )
    edited = [a for a in now["articles"] if a["revisions"]]
    assert len(edited) == 1
    before = next(a for a in then["articles"] if a["id"] == edited[0]["id"])
    assert before["revisions"] == 0 and before["title"] != edited[0]["title"]
    assert then["article_count"] < now["article_count"]
    reward = next(c for c in now["figure_changes"] if c["label"] == "reward")
    assert [v["text"] for v in reward["values"]][-1] == "$50 million"

    # A second run starts the demo database afresh rather than adding to it.
    events = len(run_tracker("events", "--json", env=env, cwd=tmp_path).stdout.splitlines())
    again = run_tracker("demo", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(run_tracker("events", "--json", env=env, cwd=tmp_path).stdout.splitlines()) == events


def test_the_demo_never_overwrites_a_database_that_is_not_a_demo_one(tmp_path: Path) -> None:
    mine = tmp_path / "mine.db"
    connection = sqlite3.connect(mine)
    connection.execute("CREATE TABLE notes (text TEXT)")
    connection.execute("INSERT INTO notes VALUES ('keep me')")
    connection.commit()
    connection.close()
    result = run_tracker("demo", "--db", str(mine), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {mine}: exists and is not a tracker demo database; tracker demo never "
        "overwrites it (give another file: tracker demo --db FILE)"
    )
    connection = sqlite3.connect(mine)
    assert connection.execute("SELECT text FROM notes").fetchall() == [("keep me",)]
    connection.close()
    # Nor a tracker database of real polls.
    real = tmp_path / "real.db"
    polled = run_tracker("events", "--database-url", f"sqlite:///{real}", cwd=tmp_path)
    assert polled.returncode == 0
    (tmp_path / "feeds.yaml").write_text("feeds: []\nstorylines:\n  - {id: a, match: {any: [x]}}\n")
    run_tracker("poll", "--database-url", f"sqlite:///{real}", cwd=tmp_path)
    refused = run_tracker("demo", "--db", str(real), cwd=tmp_path)
    assert refused.returncode == 2 and "is not a tracker demo database" in refused.stderr


def test_the_demo_needs_no_network(tmp_path: Path) -> None:
    """In a network namespace with nothing but loopback, as on a machine with no network."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) to cut the network off")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"this machine does not allow network namespaces: {probe.stderr.decode()}")
    result = subprocess.run(
        [
            "unshare",
            "-n",
            "sh",
            "-c",
            f"ip link set lo up && exec {sys.executable} -m tracker demo",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "thehill-news: 2 new, 1 revised" in result.stdout
