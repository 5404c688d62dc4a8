"""`tracker demo`: two polling rounds over bundled sample feeds, with no network.

The feeds (feeds/round1, feeds/round2: invented articles of the three storylines and of
unrelated news sharing their words, with one article edited between the rounds) are served by
a local HTTP server on 127.0.0.1 with ETags, and polled by the daemon's own poll job, so the
demo runs exactly the code a `tracker daemon` runs. It writes to a SQLite file of its own and
never overwrites a database that is not a demo one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tracker.errors import UsageError
from tracker.service import Tracker
from tracker.settings import Settings

DEMO_SOURCE = "tracker demo"
FEEDS = Path(__file__).parent / "feeds"
STORYLINES = Path(__file__).parent / "storylines.yaml"
# (id, title, file): the three outlets of the sample feeds.
OUTLETS = (
    ("upi-top", "UPI Top News", "upi-top.rss"),
    ("thehill-news", "The Hill - News", "thehill-news.rss"),
    ("miamiherald-local", "Miami Herald - Local news", "miamiherald-local.rss"),
)
# Short, so that the second round finds the feeds due as a daemon would.
INTERVAL_S = 2


@dataclass(frozen=True)
class DemoResult:
    database: Path
    database_url: str
    rounds: tuple[tuple[str, ...], ...]  # each round's poll lines
    first_round_position: int  # the log's last position after the first round
    first_round_time: datetime | None  # a time between the rounds, for --as-of
    edited_article: str | None  # the article revised in the second round


def run(database: Path, say: Callable[[str], None] = lambda _line: None) -> DemoResult:
    """Poll the sample feeds twice into `database` (a fresh demo database each time)."""
    _make_room(database)
    url = f"sqlite:///{database}"
    with _server() as server, tempfile.TemporaryDirectory(prefix="tracker-demo-") as folder:
        config = Path(folder) / "feeds.yaml"
        config.write_text(_config(server), encoding="utf-8")
        with Tracker(Settings(url, config)) as tracker:
            from tracker.daemon import Daemon  # the daemon's own poll job

            daemon = Daemon(tracker, owner="tracker-demo")
            # The daemon logs each poll; the demo prints the same lines itself, and a failure
            # surfaces from its own catch-up below as a one-line error.
            quiet = logging.getLogger("tracker.daemon")
            quiet.propagate, propagate = False, quiet.propagate
            try:
                tracker.record_config(tracker.check_config(), DEMO_SOURCE)
                say(f"round 1: polling {len(OUTLETS)} sample feeds served on {server.base}")
                first = daemon.poll_round()
                tracker.catch_up()
                for line in first:
                    say(f"  {line}")
                position = tracker.head_position()
                between = _moment_after(tracker, position)
                server.round = "round2"
                _wait_until_due(tracker)
                say("round 2: the same feeds a little later (new articles, one edited)")
                second = daemon.poll_round()
                tracker.catch_up()
                for line in second:
                    say(f"  {line}")
            finally:
                quiet.propagate = propagate
                daemon.close()
            edited = _edited_article(tracker)
    return DemoResult(database, url, (tuple(first), tuple(second)), position, between, edited)


def is_demo_database(path: Path) -> bool:
    """Whether `path` is a SQLite file whose log was begun by tracker demo."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        row = connection.execute("SELECT metadata FROM events ORDER BY position LIMIT 1").fetchone()
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return row is not None and f'"source":"{DEMO_SOURCE}"' in row[0]


def _make_room(database: Path) -> None:
    if not database.parent.is_dir():
        raise UsageError(f"{database}: folder {str(database.parent)!r} does not exist")
    if not database.exists():
        return
    if database.is_dir():
        raise UsageError(f"{database}: is a folder; give a file name for the demo database")
    if database.stat().st_size and not is_demo_database(database):
        raise UsageError(
            f"{database}: exists and is not a tracker demo database; tracker demo never "
            "overwrites it (give another file: tracker demo --db FILE)"
        )
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{database}{suffix}").unlink()


def _config(server: _Server) -> str:
    lines = ["feeds:"]
    for feed_id, title, name in OUTLETS:
        lines += [
            f"  - id: {feed_id}",
            f'    title: "{title}"',
            f"    url: {server.base}/{name}",
            f"    interval: {INTERVAL_S}s",
        ]
    return "\n".join(lines) + "\n" + STORYLINES.read_text(encoding="utf-8")


def _moment_after(tracker: Tracker, position: int) -> datetime | None:
    """A whole second after the first round that still comes before the second."""
    last = next(iter(tracker.events(after_position=position - 1, limit=1)), None)
    if last is None:
        return None
    moment = last.recorded_at.replace(microsecond=0) + timedelta(seconds=1)
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.05)
    return moment


def _wait_until_due(tracker: Tracker) -> None:
    due = [feed.next_due_at for feed in tracker.status().feeds if feed.next_due_at is not None]
    if due:
        wait = (max(due) - datetime.now(UTC)).total_seconds()
        time.sleep(min(max(wait, 0.0) + 0.1, INTERVAL_S * 2))


def _edited_article(tracker: Tracker) -> str | None:
    revised = next(iter(tracker.events(event_type="article.revised", limit=1)), None)
    return revised.stream_id if revised is not None else None


class _Server:
    """The sample feeds over HTTP on 127.0.0.1, with ETags as a publisher sends them."""

    def __init__(self) -> None:
        self.round = "round1"
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 -- the name http.server calls
                path = FEEDS / server.round / self.path.lstrip("/")
                known = {name for _, _, name in OUTLETS}
                if self.path.lstrip("/") not in known or not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@contextlib.contextmanager
def _server() -> Iterator[_Server]:
    server = _Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()
