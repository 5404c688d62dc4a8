"""Crash safety: SIGKILL `tracker daemon` and `tracker replay` at random moments, start again,
and check after every trial that nothing was lost, duplicated or left inconsistent.

    python tests/stress/crash.py --trials 50                      # SQLite file
    python tests/stress/crash.py --trials 50 --database-url postgresql://postgres@127.0.0.1:5432/test

Each trial moves the fixture feeds (served from 127.0.0.1) on by one generation: new articles,
some articles edited, the oldest dropped from the feeds. Then it starts `tracker daemon` (feeds
due every 2 s) or `tracker replay`, kills it with SIGKILL after a random delay, and runs
`tracker poll --all` as a restarted poller would, so that the generation is seen whole. Then:

- every article the feeds have shown is in the log exactly once (one article.published), with
  exactly as many article.revised events as edits it went through while it was served;
- no other article is; the positions run 1..head with no gap and no event id twice;
- `tracker verify` passes;
- the views (`tracker stories --json`, `tracker story ID --json` for each storyline) equal
  those that `tracker replay` then rebuilds from the log.

Exit 0 when every trial passed, 1 at the first that did not (saying what was wrong); `--json`
prints a summary. tests/test_crash.py runs 5 trials on each database in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for feedserver

from feedserver import FeedServer, Reply, Request  # noqa: E402

from tracker.identity import article_stream  # noqa: E402
from tracker.service import Tracker  # noqa: E402
from tracker.settings import Settings  # noqa: E402

FEEDS = 20
SHOWN = 15  # the newest articles a feed shows
STORYLINES = ("essequibo", "maduro-reward", "sky-group")
CONFIG_TAIL = """storylines:
  - {id: essequibo, title: Essequibo dispute, match: {any: [Essequibo]}}
  - {id: maduro-reward, title: US reward for Maduro, match: {all: [Maduro], any: [reward]}}
  - {id: sky-group, title: Sky Group USA fraud case, match: {any: [Sky Group]}}
"""
TOPICS = (
    "Essequibo: Guyana and Venezuela argue their case at the ICJ",
    "US raises reward for Maduro's arrest to $50 million",
    "Sky Group USA founder charged in $300 million Ponzi case in Miami",
    "Caracas markets react to the Essequibo referendum",
)


class Fixture:
    """What each feed serves at each generation: a pure function, so the expected log can be
    worked out from it."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.generation = 0

    def articles(self, feed: int, generation: int) -> list[int]:
        """The article numbers feed `feed` shows at `generation`, newest last."""
        count = 3 + 2 * generation + (feed % 3)
        return list(range(max(0, count - SHOWN), count))

    def edits(self, feed: int, article: int, generation: int) -> int:
        """How many times the article was edited by `generation` (edits land while it is shown)."""
        return sum(
            1
            for g in range(1, generation + 1)
            if article in self.articles(feed, g) and article in self.articles(feed, g - 1)
            if random.Random(f"{self.seed}:{feed}:{article}:{g}").random() < 0.15
        )

    def body(self, feed: int, generation: int) -> bytes:
        items = []
        for article in reversed(self.articles(feed, generation)):
            edits = self.edits(feed, article, generation)
            topic = TOPICS[(feed + article) % len(TOPICS)]
            title = f"{topic} ({feed}-{article})" + (f" [update {edits}]" if edits else "")
            day = 1 + (article % 28)
            items.append(
                f"<item><guid isPermaLink='false'>stress-{feed}-{article}</guid>"
                f"<title>{title}</title><link>https://stress.example/{feed}/{article}</link>"
                f"<description>Report {article} of feed {feed}. {topic}.</description>"
                f"<pubDate>Mon, {day:02d} Dec 2025 10:00:00 GMT</pubDate></item>"
            )
        return (
            "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            f"<title>Stress feed {feed}</title><link>https://stress.example/{feed}</link>"
            + "".join(items)
            + "</channel></rss>"
        ).encode()

    def expected(self, generation: int) -> dict[str, int]:
        """Each article's stream id and the revisions it must have, once every generation up
        to `generation` has been polled whole."""
        found: dict[str, int] = {}
        for feed in range(FEEDS):
            first_seen: dict[int, int] = {}
            for g in range(generation + 1):
                for article in self.articles(feed, g):
                    first_seen.setdefault(article, g)
            for article, since in first_seen.items():
                revisions = self.edits(feed, article, generation) - self.edits(feed, article, since)
                found[article_stream("guid", f"stress-{feed}-{article}")] = revisions
        return found

    def current(self) -> int:
        """The generation served now."""
        return self.generation

    def route(self, feed: int) -> object:
        def reply(request: Request) -> Reply:
            body = self.body(feed, self.current())
            # Sent in pieces, so that a round takes long enough for kills to land inside it.
            headers = {"Content-Type": "application/rss+xml; charset=utf-8"}
            return Reply(200, body, headers, chunks=4, drip_s=0.04)

        return reply


@dataclass
class Trial:
    number: int
    kind: str  # "daemon" or "replay"
    killed_after_s: float
    events_before: int
    events_at_kill: int
    events_after: int
    problems: list[str] = field(default_factory=list)


class Failed(Exception):
    pass


def run(
    trials: int,
    database_url: str | None = None,
    seed: int = 1,
    workdir: Path | None = None,
    say: object = print,
) -> list[Trial]:
    """Run `trials` trials; raise Failed at the first whose checks fail."""
    rng = random.Random(seed)
    fixture = Fixture(seed)
    with work_folder(workdir) as folder, FeedServer() as server:
        url = database_url or f"sqlite:///{folder / 'tracker.db'}"
        config = folder / "feeds.yaml"
        lines = ["feeds:"]
        for feed in range(FEEDS):
            server.routes[f"/feed-{feed}.rss"] = fixture.route(feed)  # type: ignore[assignment]
            lines.append(
                f"  - {{id: feed-{feed}, url: '{server.url(f'/feed-{feed}.rss')}', interval: 2s}}"
            )
        config.write_text("\n".join(lines) + "\n" + CONFIG_TAIL)
        env = {**os.environ, "TRACKER_DATABASE_URL": url, "TRACKER_CONFIG": str(config)}
        env.pop("TRACKER_CHECKPOINT_KEY", None)
        settings = Settings(url, config)
        tracker_command(env, "poll", "--all")  # generation 0, seen whole
        done: list[Trial] = []
        for number in range(1, trials + 1):
            fixture.generation = number
            kind = "replay" if rng.random() < 0.3 else "daemon"
            before = _head(settings)
            if kind == "daemon" and rng.random() < 0.5:
                # Killed once the round has recorded a few feeds: in the middle of it.
                target = before + rng.randint(1, 50)
                delay = _killed(env, kind, 15.0, lambda t=target: _head(settings) >= t)
            else:
                delay = _killed(env, kind, rng.uniform(0.2, 2.5 if kind == "replay" else 3.0))
            at_kill = _head(settings)
            tracker_command(env, "poll", "--all")  # the restart: this generation seen whole
            trial = Trial(number, kind, round(delay, 2), before, at_kill, _head(settings))
            trial.problems = check(settings, env, fixture.expected(number))
            done.append(trial)
            say(  # type: ignore[operator]
                f"trial {number}/{trials}: {kind} killed after {delay:.2f} s "
                f"(events {before} -> {at_kill} at the kill -> {trial.events_after}): "
                + ("ok" if not trial.problems else "FAILED: " + "; ".join(trial.problems))
            )
            if trial.problems:
                raise Failed(f"trial {number}: " + "; ".join(trial.problems))
        return done


@contextmanager
def work_folder(folder: Path | None) -> Iterator[Path]:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="tracker-crash-") as made:
        yield Path(made)


def tracker_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise Failed(
            f"tracker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result


def _killed(
    env: dict[str, str], kind: str, delay: float, when: Callable[[], bool] | None = None
) -> float:
    """Start `tracker daemon` or `tracker replay` and SIGKILL it after `delay` seconds, or as
    soon as `when` holds; the seconds it ran."""
    args = ["daemon", "--log-level", "warning"] if kind == "daemon" else ["replay"]
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "tracker", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if when is None:
        time.sleep(delay)
    else:
        while time.monotonic() - started < delay and not when():
            time.sleep(0.01)
    ran = time.monotonic() - started
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    if process.returncode not in (-signal.SIGKILL, 0):
        raise Failed(f"tracker {kind} failed before it was killed: {stderr.strip()}")
    return ran


def _head(settings: Settings) -> int:
    with Tracker(settings) as tracker:
        return tracker.head_position()


def check(settings: Settings, env: dict[str, str], expected: dict[str, int]) -> list[str]:
    """What is wrong with the log, `tracker verify`, and the views against a fresh replay."""
    return (log_problems(settings, expected) + chain_and_view_problems(env))[:10]


def chain_and_view_problems(env: dict[str, str]) -> list[str]:
    """`tracker verify` failing, or views that differ from those `tracker replay` rebuilds."""
    problems = []
    verify = subprocess.run(
        [sys.executable, "-m", "tracker", "verify"], env=env, capture_output=True, text=True
    )
    if verify.returncode != 0:
        problems.append(f"tracker verify: {verify.stdout.strip()} {verify.stderr.strip()}")
    views = shown_views(env)
    tracker_command(env, "replay")
    if shown_views(env) != views:
        problems.append("the views differ from those a fresh replay builds")
    return problems


def log_problems(settings: Settings, expected: dict[str, int]) -> list[str]:
    """What is wrong with the log: articles missing, twice, unexpected, with other revision
    counts than `expected`; gaps or event ids twice."""
    problems: list[str] = []
    published: Counter[str] = Counter()
    revised: Counter[str] = Counter()
    ids: set[uuid.UUID] = set()
    positions = 0
    with Tracker(settings) as tracker:
        head = tracker.head_position()
        for event in tracker.events():
            positions += 1
            if event.position != positions:
                problems.append(f"position {positions} is missing (next is {event.position})")
                break
            if event.event_id in ids:
                problems.append(f"event id {event.event_id} recorded twice")
            ids.add(event.event_id)
            if event.event_type == "article.published":
                published[event.stream_id] += 1
            elif event.event_type == "article.revised":
                revised[event.stream_id] += 1
    if positions != head:
        problems.append(f"{positions} events read but the head is at {head}")
    for stream, count in published.items():
        if stream not in expected:
            problems.append(f"{stream}: recorded but never served")
        elif count != 1:
            problems.append(f"{stream}: published {count} times")
    for stream, revisions in expected.items():
        if published[stream] == 0:
            problems.append(f"{stream}: served but not recorded")
        elif revised[stream] != revisions:
            problems.append(f"{stream}: {revised[stream]} revisions, expected {revisions}")
    return problems


def shown_views(env: dict[str, str]) -> list[object]:
    shown = [json.loads(tracker_command(env, "stories", "--json").stdout)]
    shown += [
        json.loads(tracker_command(env, "story", name, "--json").stdout) for name in STORYLINES
    ]
    return shown


@contextmanager
def schema_of_its_own(url: str | None) -> Iterator[str | None]:
    """On PostgreSQL, a fresh schema for the run, dropped after it."""
    if url is None or not url.startswith("postgresql"):
        yield url
        return
    from sqlalchemy import make_url

    from tracker.database import create_engine

    schema = f"crash_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        own = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield own.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="how many kills (default 50)")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--seed", type=int, default=1, help="for the kills and the edits")
    parser.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    options = parser.parse_args()
    try:
        with schema_of_its_own(options.database_url) as url:
            done = run(
                options.trials,
                url,
                options.seed,
                say=(lambda line: print(line, file=sys.stderr)) if options.json else print,
            )
    except Failed as failure:
        print(f"crash stress failed: {failure}", file=sys.stderr)
        return 1
    if options.json:
        print(json.dumps({"trials": [asdict(trial) for trial in done], "ok": True}))
    else:
        mid = sum(1 for t in done if t.events_before < t.events_at_kill < t.events_after)
        print(f"{len(done)} trials passed ({mid} killed with the round part recorded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
