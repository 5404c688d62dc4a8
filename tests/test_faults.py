"""Database faults: PostgreSQL restarted under a running daemon; the SQLite file on a read-only
file system, or on a full disk. Each time: a clear one-line error naming the database, a
non-zero exit for commands, no partial events, and a daemon that retries rather than dies.

The SQLite cases mount a small tmpfs (root, as in CI); the PostgreSQL case restarts the local
server with pg_ctlcluster. Without those rights they skip, saying so.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedserver import FeedServer
from stress.crash import CONFIG_TAIL, FEEDS, Fixture, check, log_problems

from tracker.service import Tracker
from tracker.settings import Settings


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs of its own."""
    if not can_mount():
        pytest.skip("needs root to mount a small tmpfs (a full disk, a read-only file system)")
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


class Feeds:
    """The crash fixture's feeds on a real server, and the environment to run tracker in."""

    def __init__(self, server: FeedServer, folder: Path, url: str, interval: str) -> None:
        self.fixture = Fixture(seed=5)
        self.server = server
        for feed in range(FEEDS):
            server.routes[f"/feed-{feed}.rss"] = self.fixture.route(feed)  # type: ignore[assignment]
        config = folder / "feeds.yaml"
        self.settings = Settings(url, config)
        self.every(interval)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")},
            "TRACKER_DATABASE_URL": url,
            "TRACKER_CONFIG": str(config),
        }

    def every(self, interval: str) -> None:
        """Write feeds.yaml with each feed due every `interval`."""
        lines = ["feeds:"]
        for feed in range(FEEDS):
            url = self.server.url(f"/feed-{feed}.rss")
            lines.append(f"  - {{id: feed-{feed}, url: '{url}', interval: {interval}}}")
        self.settings.config_path.write_text("\n".join(lines) + "\n" + CONFIG_TAIL)

    def tracker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tracker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def head(self) -> int:
        with Tracker(self.settings) as tracker:
            return tracker.head_position()

    def whole_log(self, generation: int) -> list[str]:
        """What is wrong with the articles in the log alone (no commands run)."""
        return log_problems(self.settings, self.fixture.expected(generation))

    def whole(self, generation: int) -> list[str]:
        """What is wrong with the log, `tracker verify` and the views, once every generation up
        to `generation` was polled whole (the crash stress's checks)."""
        return check(self.settings, self.env, self.fixture.expected(generation))

    def daemon(self, log: Path) -> subprocess.Popen[bytes]:
        with log.open("w") as stderr:
            return subprocess.Popen(
                [sys.executable, "-m", "tracker", "daemon", "--log-level", "info"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"waited {seconds} s for {what}")


def stopped(daemon: subprocess.Popen[bytes]) -> int:
    daemon.send_signal(signal.SIGTERM)
    return daemon.wait(timeout=60)


def test_a_full_disk_fails_the_poll_with_one_line_and_records_nothing_partial(
    small_disk: Path, feed_server: FeedServer
) -> None:
    feeds = Feeds(feed_server, small_disk, f"sqlite:///{small_disk / 'tracker.db'}", "15m")
    assert feeds.tracker("poll", "--all").returncode == 0
    before = feeds.head()
    feeds.fixture.generation = 1
    filler = small_disk / "filler"
    with filler.open("wb") as fill:
        try:
            while True:
                fill.write(b"\0" * 65536)
                fill.flush()
        except OSError:
            pass
    result = feeds.tracker("poll", "--all")
    assert result.returncode == 1
    # SQLite says "disk I/O error" when its WAL or shared-memory file cannot grow, "database or
    # disk is full" when the database file cannot; either way the folder is named.
    assert result.stderr.splitlines()[-1] in (
        f"error: {small_disk / 'tracker.db'}: {said} (no space left on the file system of "
        f"{small_disk})"
        for said in ("disk I/O error", "database or disk is full")
    )
    assert "Traceback" not in result.stderr
    filler.unlink()  # even reading needs room for SQLite's shared-memory file
    assert feeds.head() == before, "nothing partial"
    assert feeds.tracker("poll", "--all").returncode == 0
    assert feeds.whole(1) == []


def read_only(path: Path, on: bool) -> None:
    """Make a file read-only, for root too (chattr +i), or writable again."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("needs chattr to make a file read-only for root")
        done = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make a file immutable here: {done.stderr.decode().strip()}")
    else:
        path.chmod(0o444 if on else 0o644)


def test_a_read_only_database_file_is_named_and_a_daemon_retries_until_it_is_writable(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    database = tmp_path / "tracker.db"
    feeds = Feeds(feed_server, tmp_path, f"sqlite:///{database}", "1s")
    assert feeds.tracker("poll", "--all").returncode == 0
    before = feeds.head()
    # Due again at once, but then once an hour: only the daemon's retries, not its schedule,
    # can bring them in once the file is writable.
    feeds.every("1h")
    feeds.fixture.generation = 1
    log = tmp_path / "daemon.log"
    read_only(database, True)
    try:
        polled = feeds.tracker("poll", "--all")
        assert polled.returncode == 1
        assert polled.stderr.splitlines()[-1] == (
            f"error: {database}: attempt to write a readonly database (the file is read-only)"
        )
        assert feeds.tracker("story", "essequibo").returncode == 0, "reading still works"
        daemon = feeds.daemon(log)
        wait_for(lambda: "retried with backoff" in log.read_text(), 60, "the daemon's error")
        time.sleep(5)  # a few retries
        assert daemon.poll() is None, "the daemon is still running"
        assert feeds.head() == before, "nothing partial"
    finally:
        read_only(database, False)
    wait_for(lambda: "the database is back" in log.read_text(), 90, "the daemon's retries")
    wait_for(lambda: not feeds.whole_log(1), 60, "generation 1 recorded by the daemon")
    assert stopped(daemon) == 0
    assert feeds.whole(1) == []
    assert "Traceback" not in log.read_text()


def test_a_read_only_file_system_is_named_by_every_command(
    small_disk: Path, feed_server: FeedServer
) -> None:
    database = small_disk / "tracker.db"
    feeds = Feeds(feed_server, small_disk, f"sqlite:///{database}", "15m")
    assert feeds.tracker("poll", "--all").returncode == 0
    before = feeds.head()
    remount(small_disk, "ro")
    try:
        for args in (("poll", "--all"), ("events",), ("story", "essequibo"), ("replay",)):
            result = feeds.tracker(*args)
            assert result.returncode == 1, args
            assert result.stderr.splitlines()[-1] == (
                f"error: {database}: unable to open database file "
                f"({small_disk} is on a read-only file system)"
            ), args
    finally:
        remount(small_disk, "rw")
    assert feeds.head() == before
    assert feeds.whole(0) == []


@pytest.mark.postgres
def test_postgresql_restarted_under_a_running_daemon_loses_nothing(
    postgres_url: str, feed_server: FeedServer, tmp_path: Path
) -> None:
    cluster = pg_cluster()
    feeds = Feeds(feed_server, tmp_path, postgres_url, "3s")
    log = tmp_path / "daemon.log"
    daemon = feeds.daemon(log)
    try:
        wait_for(lambda: feeds.head() > 100, 60, "the daemon's first round")
        feeds.fixture.generation = 1
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "stop", "-m", "fast"],
            check=True,
        )
        time.sleep(8)  # polls fail meanwhile
        assert daemon.poll() is None, "the daemon is still running"
    finally:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "start"], check=True
        )
        wait_for(postgres_ready, 30, "PostgreSQL to start again")
    wait_for(lambda: "the database is back" in log.read_text(), 90, "the daemon to reconnect")
    wait_for(lambda: not feeds.whole_log(1), 90, "generation 1 recorded by the daemon")
    assert stopped(daemon) == 0
    text = log.read_text()
    assert "polls are retried with backoff until it is back" in text
    assert "Traceback" not in text
    assert feeds.whole(1) == []


def pg_cluster() -> list[str]:
    if os.geteuid() != 0 or shutil.which("pg_ctlcluster") is None:
        pytest.skip("needs root and pg_ctlcluster to restart the local PostgreSQL")
    versions = os.listdir("/etc/postgresql")
    return [versions[0], "main"]


def postgres_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).returncode == 0


@pytest.mark.postgres
def test_a_pooled_connection_the_server_closed_while_idle_is_replaced_unseen(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pooled connections are not pinged at every use (a poll would pay a round trip per
    feed), but one that sat idle is: a server that closed it meanwhile (restarted, or an
    administrator ending idle sessions) costs the next command nothing but a new connection."""
    import tracker.database
    from tracker.database import create_engine

    monkeypatch.setattr(tracker.database, "PING_AFTER_IDLE_S", 0.2)
    engine = create_engine(postgres_url)
    admin = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            first = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with admin.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(first)})")
        time.sleep(0.5)
        with engine.connect() as connection:
            second = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    finally:
        engine.dispose()
        admin.dispose()
    assert second not in (None, first)
