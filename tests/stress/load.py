"""Concurrent load: several daemons, readers and a follower on one database for minutes.

    python tests/stress/load.py --database-url postgresql://postgres@127.0.0.1:5432/test
        # 3 daemons, 2 readers, a follower, 500 feeds every 5 s, 3 minutes
    python tests/stress/load.py
        # SQLite: 1 daemon, 2 readers, a follower and `tracker replay` in a loop, 100 feeds

The fixture feeds (served from 127.0.0.1) move on every few seconds: new articles, edits.
Readers run `tracker story essequibo --json` and `tracker events --limit 20` in a loop as
processes of their own; the follower reads the log after the last position it saw, over and
over. At the end the daemons are stopped (SIGTERM) and a last `tracker poll --all` runs. Then:

- every reader and replay run exited 0 with nothing on stderr (no "database is locked");
- the daemons logged no error or warning (a feed failure would be one; these feeds never fail),
  no deadlock, and exited 0 when stopped;
- the follower never saw a gap: every read after position N started at N+1 with no hole,
  and the positions it saw are exactly 1..head at the end;
- each article was published once, each revision differs from the version before it (no edit
  recorded twice), and each article's last recorded title is the one the feeds show last;
- `tracker verify` passes, and the views equal those a fresh `tracker replay` builds.

Exit 0 when all held, 1 otherwise, listing what did not. tests/test_load.py runs a short
version on each database in CI.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/

from feedserver import FeedServer  # noqa: E402

from stress.crash import (  # noqa: E402
    CONFIG_TAIL,
    Fixture,
    chain_and_view_problems,
    schema_of_its_own,
    tracker_command,
    work_folder,
)
from tracker.identity import article_stream  # noqa: E402
from tracker.service import Tracker  # noqa: E402
from tracker.settings import Settings  # noqa: E402


@dataclass
class Report:
    seconds: float
    daemons: int
    feeds: int
    events: int = 0
    reader_runs: int = 0
    replays: int = 0
    follower_reads: int = 0
    problems: list[str] = field(default_factory=list)


class Moving(Fixture):
    """The crash fixture, moving on a generation every `period` seconds by itself until
    frozen."""

    def __init__(self, seed: int, period: float) -> None:
        super().__init__(seed)
        self.started = time.monotonic()
        self.period = period
        self.frozen: int | None = None

    def current(self) -> int:
        if self.frozen is not None:
            return self.frozen
        return int((time.monotonic() - self.started) / self.period)


def run(
    seconds: float,
    database_url: str | None = None,
    daemons: int | None = None,
    feeds: int | None = None,
    interval: str = "5s",
    workdir: Path | None = None,
    say: object = print,
) -> Report:
    postgres = bool(database_url and database_url.startswith("postgresql"))
    daemons = daemons or (3 if postgres else 1)
    feeds = feeds or (500 if postgres else 100)
    report = Report(seconds, daemons, feeds)
    fixture = Moving(seed=3, period=4.0)
    with work_folder(workdir) as folder, FeedServer() as server:
        url = database_url or f"sqlite:///{folder / 'tracker.db'}"
        config = folder / "feeds.yaml"
        lines = ["feeds:"]
        for feed in range(feeds):
            server.routes[f"/feed-{feed}.rss"] = fixture.route(feed)  # type: ignore[assignment]
            lines.append(
                f"  - {{id: feed-{feed}, url: '{server.url(f'/feed-{feed}.rss')}', "
                f"interval: {interval}}}"
            )
        config.write_text("\n".join(lines) + "\n" + CONFIG_TAIL)
        env = {**os.environ, "TRACKER_DATABASE_URL": url, "TRACKER_CONFIG": str(config)}
        env.pop("TRACKER_CHECKPOINT_KEY", None)
        settings = Settings(url, config)
        tracker_command(env, "poll", "--all")  # the first articles and views, before the readers
        stop = threading.Event()
        problems: list[str] = []
        logs = [folder / f"daemon-{n}.log" for n in range(daemons)]
        running = [_daemon(env, log) for log in logs]
        loops = [
            threading.Thread(target=_reader, args=(env, args, stop, problems, report))
            for args in (("story", "essequibo", "--json"), ("events", "--limit", "20"))
        ]
        if not postgres:
            loops.append(
                threading.Thread(target=_reader, args=(env, ("replay",), stop, problems, report))
            )
        seen: list[int] = []
        loops.append(
            threading.Thread(target=_follow, args=(settings, stop, seen, problems, report))
        )
        for loop in loops:
            loop.start()
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            time.sleep(min(10.0, seconds))
            say(  # type: ignore[operator]
                f"{time.monotonic() - started:5.0f} s: generation {fixture.current()}, "
                f"{len(seen)} events followed, {report.reader_runs} reader runs"
            )
        try:
            for process in running:
                process.send_signal(signal.SIGTERM)
            for process, log in zip(running, logs, strict=True):
                try:
                    code = process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    problems.append(f"{log.name}: the daemon did not exit within 120 s of SIGTERM")
                    continue
                if code != 0:
                    problems.append(f"{log.name}: the daemon exited {code} when stopped")
        finally:
            stop.set()
            for process in running:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            for loop in loops:
                loop.join()
        fixture.frozen = fixture.current()
        tracker_command(env, "poll", "--all")
        problems += _daemon_log_problems(logs)
        problems += _log_problems(settings, fixture, feeds, seen)
        problems += chain_and_view_problems(env)
        with Tracker(settings) as tracker:
            report.events = tracker.head_position()
    report.problems = problems
    return report


def _daemon(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "tracker", "daemon", "--log-level", "info"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


# What the commands say on stderr that is no error: the views a few events behind the log while
# the daemon catches them up, and a replay recording feeds.yaml's definitions first.
NOTES = ("note: the views are ", "recorded the change to ")


def _reader(
    env: dict[str, str],
    args: tuple[str, ...],
    stop: threading.Event,
    problems: list[str],
    report: Report,
) -> None:
    while not stop.is_set():
        result = subprocess.run(
            [sys.executable, "-m", "tracker", *args], env=env, capture_output=True, text=True
        )
        if args == ("replay",):
            report.replays += 1
        else:
            report.reader_runs += 1
        unexpected = [line for line in result.stderr.splitlines() if not line.startswith(NOTES)]
        if result.returncode != 0 or unexpected:
            said = result.stderr.strip()[:300]
            problems.append(f"tracker {' '.join(args)} exited {result.returncode}: {said}")
        if args == ("replay",):
            stop.wait(2.0)


def _follow(
    settings: Settings, stop: threading.Event, seen: list[int], problems: list[str], report: Report
) -> None:
    with Tracker(settings) as tracker:
        while True:
            last = seen[-1] if seen else 0
            read = [event.position for event in tracker.events(after_position=last)]
            report.follower_reads += 1
            if read and read != list(range(last + 1, last + 1 + len(read))):
                problems.append(f"the follower saw a gap after position {last}: {read[:5]}...")
                return
            seen.extend(read)
            if stop.is_set():
                return
            time.sleep(0.05)


def _daemon_log_problems(logs: list[Path]) -> list[str]:
    problems = []
    for log in logs:
        for line in log.read_text().splitlines():
            # Stopping cancels the fetches still running after its grace (nothing of them is
            # recorded; the next poll fetches again): the one warning that is no fault.
            if "still running: cancelling their fetches" in line:
                continue
            if (
                " ERROR " in line
                or " WARNING " in line
                or "Traceback" in line
                or "deadlock" in line
            ):
                problems.append(f"{log.name}: {line[:300]}")
    return problems[:20]


def _log_problems(settings: Settings, fixture: Fixture, feeds: int, seen: list[int]) -> list[str]:
    problems: list[str] = []
    titles: dict[str, list[str]] = defaultdict(list)
    published: dict[str, int] = defaultdict(int)
    with Tracker(settings) as tracker:
        head = tracker.head_position()
        for event in tracker.events():
            if event.event_type == "article.published":
                published[event.stream_id] += 1
            if event.event_type in ("article.published", "article.revised"):
                titles[event.stream_id].append(str(event.payload["title"]))
    if seen != list(range(1, len(seen) + 1)):
        problems.append("the follower's positions are not 1..N")
    if seen and seen[-1] > head:
        problems.append(f"the follower saw position {seen[-1]} past the head {head}")
    for stream, count in published.items():
        if count != 1:
            problems.append(f"{stream}: published {count} times")
    for stream, versions in titles.items():
        if any(a == b for a, b in zip(versions, versions[1:], strict=False)):
            problems.append(f"{stream}: the same version recorded twice in a row")
    final = fixture.current()
    for feed in range(feeds):
        body = fixture.body(feed, final).decode()
        for article in fixture.articles(feed, final):
            stream = article_stream("guid", f"stress-{feed}-{article}")
            shown = body.split(f"stress-{feed}-{article}</guid><title>", 1)[1].split("</title>", 1)[
                0
            ]
            if not titles.get(stream):
                problems.append(f"{stream}: shown by feed {feed} but never recorded")
            elif titles[stream][-1] != shown:
                problems.append(f"{stream}: last recorded {titles[stream][-1]!r}, shown {shown!r}")
    return problems[:20]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long (default 3)")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--daemons", type=int, help="default 3 on PostgreSQL, 1 on SQLite")
    parser.add_argument("--feeds", type=int, help="default 500 on PostgreSQL, 100 on SQLite")
    parser.add_argument("--interval", default="5s", help="each feed's interval (default 5s)")
    options = parser.parse_args()
    with schema_of_its_own(options.database_url) as url:
        report = run(options.minutes * 60, url, options.daemons, options.feeds, options.interval)
    print(
        f"{report.daemons} daemon(s), {report.feeds} feeds, {report.seconds:.0f} s: "
        f"{report.events} events, {report.reader_runs} reader runs, {report.replays} replays, "
        f"{report.follower_reads} follower reads"
    )
    for problem in report.problems:
        print(f"problem: {problem}")
    print("ok" if not report.problems else f"FAILED: {len(report.problems)} problem(s)")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
