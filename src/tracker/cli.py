"""The `tracker` command line: a thin layer that parses options, calls the facade, prints."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from tracker import __version__
from tracker.errors import ConfigError, TrackerError
from tracker.records import RecordedEvent
from tracker.render import article_lines, status_lines, stories_lines, story_lines
from tracker.service import Tracker
from tracker.settings import (
    CONFIG_ENV,
    DATABASE_URL_ENV,
    DEFAULT_CONFIG_PATH,
    DEFAULT_DATABASE_URL,
    Settings,
)
from tracker.terminal import clip, printable

F = TypeVar("F", bound=Callable[..., Any])

database_url_option = click.option(
    "--database-url",
    envvar=DATABASE_URL_ENV,
    show_envvar=True,
    metavar="URL",
    help=f"Database to use: sqlite:///FILE or postgresql://USER@HOST/DB "
    f"[default: {DEFAULT_DATABASE_URL}]",
)
config_option = click.option(
    "--config",
    "config_path",
    envvar=CONFIG_ENV,
    show_envvar=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help=f"The feeds and storylines file [default: ./{DEFAULT_CONFIG_PATH}]",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of text."
)


@contextmanager
def _tracker(database_url: str | None = None, config_path: str | None = None) -> Iterator[Tracker]:
    with Tracker(Settings.resolve(database_url, config_path)) as tracker:
        yield tracker


@contextmanager
def _until_reader_leaves() -> Iterator[None]:
    """End quietly, exit 0, when the reader of our output goes away (`tracker events | head`).

    click would turn the broken pipe into exit 1, which breaks `set -o pipefail` scripts.
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so that the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise click.exceptions.Exit(0) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="tracker")
def cli() -> None:
    """Follow news storylines across outlets from their RSS/Atom feeds.

    Everything tracker sees is recorded as events in an append-only log (SQLite by default,
    PostgreSQL for several machines); every view is built from that log.

    \b
    Examples:
      tracker demo                     try it: sample feeds, no network needed
      tracker poll                     fetch the feeds in feeds.yaml that are due
      tracker stories                  the storylines followed, with article counts
      tracker story essequibo          where a storyline stands
      tracker events --limit 20        the first 20 events in the log
      tracker verify                   check the log's hash chain
      tracker config check             check feeds.yaml
    """


@cli.group()
def db() -> None:
    """Manage the database schema.

    Every command creates the schema in an empty database by itself; an existing database is
    only moved to a new schema by `tracker db upgrade`.

    \b
    Examples:
      tracker db upgrade
      tracker db current --json
    """


@db.command("upgrade")
@database_url_option
def db_upgrade(database_url: str | None) -> None:
    """Upgrade the database schema to the one this tracker needs.

    \b
    Example:
      tracker db upgrade --database-url postgresql://tracker@db.example/tracker
    """
    with _tracker(database_url) as tracker:
        report = tracker.upgrade_database()
    if report.changed:
        click.echo(f"{report.database}: upgraded from {report.before or 'empty'} to {report.after}")
    else:
        click.echo(f"{report.database}: already at {report.after}")


@db.command("current")
@database_url_option
@json_option
def db_current(database_url: str | None, as_json: bool) -> None:
    """Show the database's schema revision and the one this tracker expects.

    \b
    Example:
      tracker db current
    """
    with _tracker(database_url) as tracker:
        revision, expected = tracker.schema_revision()
    if as_json:
        click.echo(json.dumps({"revision": revision, "expected": expected}))
    else:
        click.echo(f"revision {revision or '(empty database)'}; this tracker expects {expected}")


@cli.command()
@click.option("--stream", "stream_id", metavar="STREAM", help="Only this stream's events.")
@click.option("--type", "event_type", metavar="TYPE", help="Only events of this type.")
@click.option(
    "--since-position",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Only events after position N.",
)
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N events.")
@json_option
@database_url_option
def events(
    stream_id: str | None,
    event_type: str | None,
    since_position: int,
    limit: int | None,
    as_json: bool,
    database_url: str | None,
) -> None:
    """Show the event log, oldest first.

    With --json, prints one JSON object per line: position, id, stream, version, type,
    schema_version, recorded_at, payload, metadata.

    \b
    Examples:
      tracker events --limit 20
      tracker events --since-position 1000 --type article.revised --json
    """
    with _tracker(database_url) as tracker, _until_reader_leaves():
        found = tracker.events(
            stream_id=stream_id,
            event_type=event_type,
            after_position=since_position,
            limit=limit,
        )
        shown = 0
        for event in found:
            click.echo(json.dumps(event.as_json_object()) if as_json else _event_line(event))
            shown += 1
        if not shown and not as_json:
            click.echo("no events", err=True)


def _event_line(event: RecordedEvent) -> str:
    payload = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"))
    return "  ".join(
        [
            f"{event.position:>8}",
            event.recorded_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            f"{printable(clip(event.stream_id, 40)):<40}",
            f"v{event.stream_version:<4}",
            f"{printable(clip(event.event_type, 24)):<24}",
            printable(clip(payload, 80)),
        ]
    )


@cli.command()
@click.option(
    "--feed",
    "feed_ids",
    multiple=True,
    metavar="ID",
    help="Poll this feed (repeatable), due or not, enabled or not.",
)
@click.option("--all", "every", is_flag=True, help="Poll every enabled feed, due or not.")
@json_option
@config_option
@database_url_option
def poll(
    feed_ids: tuple[str, ...],
    every: bool,
    as_json: bool,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Poll feeds once: by default every enabled feed that is due.

    Prints one line per feed: new and revised articles, unchanged, not modified, or failed
    with the reason. Exits 0 when the round ran, even if feeds failed (failures are recorded
    as data); 2 for a bad feeds.yaml or options.

    \b
    Examples:
      tracker poll
      tracker poll --feed upi-top --feed thehill-news
      tracker poll --all --json
    """
    if feed_ids and every:
        raise click.UsageError("give --feed or --all, not both")
    with _tracker(database_url, config_path) as tracker, _until_reader_leaves():
        results = tracker.poll(feed_ids, every)
        for result in results:
            click.echo(json.dumps(result.as_json_object()) if as_json else printable(result.line()))
        if not results and not as_json:
            click.echo("no feed is due (use --all to poll every feed now)", err=True)


@cli.command()
@click.option(
    "--parallel",
    type=click.IntRange(min=1, max=64),
    default=8,
    show_default=True,
    help="Fetch at most this many feeds at once.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@config_option
@database_url_option
def daemon(
    parallel: int, log_level: str, config_path: str | None, database_url: str | None
) -> None:
    """Poll feeds on their intervals until stopped (runs in the foreground).

    Each enabled feed in feeds.yaml is polled on its own interval, with jitter; one log line
    per poll goes to stderr. Several daemons can share one PostgreSQL database: each feed is
    polled by one of them per interval. SIGHUP re-reads feeds.yaml; SIGTERM or Ctrl-C lets
    the polls in flight finish and commit, then exits 0.

    \b
    Examples:
      tracker daemon
      tracker daemon --database-url postgresql://tracker@db.example/tracker --parallel 16
    """
    import logging

    from tracker.daemon import Daemon  # APScheduler only for the daemon

    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)sZ %(levelname)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    logging.Formatter.converter = time.gmtime
    # Our own lines at the chosen level; the libraries' chatter (a line per job run, per HTTP
    # request, per migration step) only when something is wrong.
    logging.getLogger("tracker").setLevel(getattr(logging, log_level.upper()))
    with _tracker(database_url, config_path) as tracker:
        code = Daemon(tracker, parallelism=parallel).run()
    raise click.exceptions.Exit(code)


@cli.command()
@json_option
@database_url_option
def verify(as_json: bool, database_url: str | None) -> None:
    """Check the log's hash chain from the first event to the last.

    Each event's hash covers its content and the previous event's hash, so an event changed or
    reordered behind tracker's back, or deleted from before the newest, breaks the chain there.
    Exits 1 if it is broken, naming the first bad position.

    \b
    Example:
      tracker verify
    """
    with _tracker(database_url) as tracker:
        if sys.stderr.isatty() and not as_json:
            with click.progressbar(
                length=tracker.head_position(), label="verifying", file=sys.stderr
            ) as bar:
                report = tracker.verify(progress=bar.update)
        else:
            report = tracker.verify()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "first_bad_position": report.first_bad_position,
                    "problem": report.problem,
                }
            )
        )
    elif report.ok:
        click.echo(f"verified {report.checked} events: the hash chain is intact")
    else:
        click.echo(
            f"chain broken at position {report.first_bad_position}: {report.problem} "
            f"({report.checked} events before it verified)"
        )
    if not report.ok:
        raise SystemExit(1)


@cli.group()
def config() -> None:
    """Check the feeds and storylines file (feeds.yaml).

    \b
    Example:
      tracker config check
    """


@config.command("check")
@config_option
@json_option
def config_check(config_path: str | None, as_json: bool) -> None:
    """Check feeds.yaml and summarise it; print one line per problem and exit 2 if any.

    With --json, prints the checked feeds and storylines, or {"ok": false, "problems": [...]}.

    \b
    Example:
      tracker config check --config /etc/tracker/feeds.yaml
    """
    try:
        with _tracker(config_path=config_path) as tracker:
            loaded = tracker.check_config()
    except ConfigError as error:
        if not as_json:
            raise
        click.echo(json.dumps({"ok": False, "problems": error.problems}))
        raise click.exceptions.Exit(error.exit_code) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "path": str(loaded.path),
                    "feeds": [
                        {
                            "id": feed.id,
                            "title": feed.title,
                            "url": feed.url,
                            "interval_seconds": feed.interval.total_seconds(),
                            "enabled": feed.enabled,
                        }
                        for feed in loaded.feeds
                    ],
                    "storylines": [
                        {
                            "id": story.id,
                            "title": story.title,
                            "match": {
                                "all": list(story.match.all),
                                "any": list(story.match.any),
                                "none": list(story.match.none),
                            },
                        }
                        for story in loaded.storylines
                    ],
                }
            )
        )
        return
    enabled = sum(feed.enabled for feed in loaded.feeds)
    click.echo(
        f"{loaded.path}: OK, {len(loaded.feeds)} feeds ({enabled} enabled), "
        f"{len(loaded.storylines)} storylines"
    )
    if not enabled:
        click.echo(
            f"warning: {loaded.path}: no enabled feeds, so there is nothing to poll", err=True
        )


# -- storylines and views --------------------------------------------------------------------


class _Moment(click.ParamType):  # type: ignore[type-arg]
    """An ISO 8601 date or date and time; UTC unless it gives an offset."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is not an ISO 8601 date or time "
                "(e.g. 2025-08-07, 2025-08-07T18:05, 2025-08-07T18:05:00-04:00)",
                param,
                ctx,
            )
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@cli.command()
@click.argument("storyline_id", metavar="ID")
@click.option(
    "--as-of",
    type=_Moment(),
    help="Show it as the log knew it at TIME (ISO 8601; UTC unless an offset is given; a "
    "date alone means its midnight).",
)
@click.option(
    "--as-of-position",
    type=click.IntRange(min=0),
    metavar="N",
    help="Show it as the log knew it at position N.",
)
@click.option(
    "--include",
    multiple=True,
    metavar="ARTICLE",
    help="Pin an article (id or URL) to the storyline, whatever the rules say. Repeatable.",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="ARTICLE",
    help="Keep an article (id or URL) out of the storyline, whatever the rules say. Repeatable.",
)
@click.option(
    "--reset",
    multiple=True,
    metavar="ARTICLE",
    help="Withdraw an earlier --include or --exclude: the rules decide again. Repeatable.",
)
@json_option
@database_url_option
def story(
    storyline_id: str,
    as_of: datetime | None,
    as_of_position: int | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    reset: tuple[str, ...],
    as_json: bool,
    database_url: str | None,
) -> None:
    """Show where a storyline stands: its span, sources, a short summary, key figures and how
    they changed, a timeline (revised articles marked) and the people, places and
    organisations named.

    Built from the log; --as-of and --as-of-position show it as it was known then (articles,
    revisions and rule changes recorded later are left out). --include, --exclude and --reset
    record your curation as events, which beat the rules from then on.

    With --json, prints one object: id, title, article_count, first_seen, last_updated,
    sources, summary, figures, figure_changes, articles, entities, per_day, rules, position,
    as_of (see the README).

    \b
    Examples:
      tracker story essequibo
      tracker story maduro-reward --as-of 2025-08-01 --json
      tracker story sky-group --include https://www.upi.com/Top_News/US/2025/08/15/sky/123/
    """
    curating = include or exclude or reset
    if curating and (as_of is not None or as_of_position is not None):
        raise click.UsageError("curation changes the storyline now: give it without --as-of")
    if as_of is not None and as_of_position is not None:
        raise click.UsageError("give --as-of or --as-of-position, not both")
    with _tracker(database_url) as tracker, _until_reader_leaves():
        if curating:
            for line in tracker.curate(storyline_id, include, exclude, reset):
                click.echo(printable(line), err=True)
            tracker.catch_up()
        found = tracker.story(storyline_id, as_of, as_of_position)
        if as_of_position is not None and as_of_position > found.position:
            click.echo(
                f"note: position {as_of_position} is past the end of the log "
                f"({found.position}): this is the log as it stands",
                err=True,
            )
        if found.as_of is None and as_of_position is None and found.position < found.head:
            click.echo(
                f"note: the views are {found.head - found.position} events behind the log "
                "(`tracker poll` and the daemon catch them up)",
                err=True,
            )
        if as_json:
            click.echo(json.dumps(found.as_json_object(), ensure_ascii=False))
        else:
            click.echo("\n".join(story_lines(found)))


@cli.command()
@json_option
@database_url_option
def stories(as_json: bool, database_url: str | None) -> None:
    """List every storyline with its article count, sources and last update.

    \b
    Examples:
      tracker stories
      tracker stories --json
    """
    with _tracker(database_url) as tracker, _until_reader_leaves():
        found = tracker.stories()
        if as_json:
            click.echo(json.dumps([s.as_json_object() for s in found], ensure_ascii=False))
        else:
            click.echo("\n".join(stories_lines(found)))


@cli.command()
@click.argument("reference", metavar="ID_OR_URL")
@json_option
@database_url_option
def article(reference: str, as_json: bool, database_url: str | None) -> None:
    """Show every version of an article, with a word-level diff between consecutive ones:
    [-removed words-] {+added words+}.

    \b
    Examples:
      tracker article article-3f2a9c0d41be6e07a5c81d92
      tracker article https://thehill.com/?p=5440418 --json
    """
    with _tracker(database_url) as tracker, _until_reader_leaves():
        found = tracker.article(reference)
        if as_json:
            click.echo(json.dumps(found.as_json_object(), ensure_ascii=False))
        else:
            click.echo("\n".join(article_lines(found)))


@cli.command()
@click.option(
    "--projection",
    "names",
    multiple=True,
    metavar="NAME",
    help="Rebuild only this projection (repeatable): articles, entities, feeds, figures, "
    "storylines.",
)
@click.option(
    "--no-config",
    is_flag=True,
    help="Do not record the storyline rules of feeds.yaml first.",
)
@json_option
@config_option
@database_url_option
def replay(
    names: tuple[str, ...],
    no_config: bool,
    as_json: bool,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """Rebuild the views from the whole log into fresh tables, then swap them in at once.

    Anyone reading meanwhile (tracker story, another tool) sees the old views or the new ones,
    never a half-built one; if the replay is interrupted the old views stay as they were.
    First the storyline rules in feeds.yaml are recorded if they changed (unless --no-config),
    so after editing the rules a replay shows what they change: at the end it says, per
    storyline, which articles were added and removed.

    \b
    Examples:
      tracker replay
      tracker replay --projection storylines
    """
    with _tracker(database_url, config_path) as tracker:
        recorded: list[str] = []
        if not no_config:
            if config_path is None and not tracker.settings.config_path.exists():
                click.echo(
                    f"note: no {tracker.settings.config_path} here: the storyline rules are "
                    "the log's as they stand (--config FILE to record new ones first)",
                    err=True,
                )
            recorded = tracker.record_rules(explicit=config_path is not None)
            for storyline_id in recorded:
                click.echo(
                    f"recorded the change to storyline {storyline_id} in "
                    f"{tracker.settings.config_path}",
                    err=True,
                )
        if sys.stderr.isatty() and not as_json:
            report = _replay_with_bar(tracker, names)
        else:
            report = tracker.replay(names)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "projections": list(report.projections),
                    "events": report.events,
                    "head": report.head,
                    "seconds": round(report.seconds, 3),
                    "events_per_second": round(report.rate, 1),
                    "recorded_rules": recorded,
                    "changes": list(report.changes),
                }
            )
        )
        return
    click.echo(
        f"replayed {report.events} events into {', '.join(report.projections)} in "
        f"{report.seconds:.1f}s ({report.rate:,.0f} events/s)"
    )
    if report.changes:
        click.echo("What changed:")
        for line in report.changes:
            click.echo(f"  {printable(line)}")
    else:
        click.echo("No storyline gained or lost an article.")


def _replay_with_bar(tracker: Tracker, names: tuple[str, ...]) -> Any:
    started = time.monotonic()
    done = 0
    with click.progressbar(
        length=max(tracker.head_position(), 1),
        label="replaying",
        file=sys.stderr,
        show_eta=True,
        item_show_func=lambda rate: rate,
    ) as bar:

        def progress(count: int) -> None:
            nonlocal done
            done += count
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(count, f"{rate:,.0f} events/s")

        return tracker.replay(names, progress)


@cli.command()
@json_option
@database_url_option
def status(as_json: bool, database_url: str | None) -> None:
    """Show each projection's checkpoint and lag behind the log, and each feed's health.

    \b
    Examples:
      tracker status
      tracker status --json
    """
    with _tracker(database_url) as tracker, _until_reader_leaves():
        found = tracker.status()
        if as_json:
            click.echo(json.dumps(_status_json(found), ensure_ascii=False))
        else:
            click.echo("\n".join(status_lines(found)))


def _status_json(found: Any) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {
        "database": found.database,
        "head": found.head,
        "projections": [
            {
                "name": p.name,
                "built": bool(p.generation),
                "generation": p.generation,
                "position": p.position,
                "lag": p.lag,
                "version": p.version,
                "built_at": iso(p.built_at),
                "updated_at": iso(p.updated_at),
            }
            for p in found.projections
        ],
        "feeds": [
            {
                "id": f.id,
                "title": f.title,
                "url": f.url,
                "state": f.state,
                "since": iso(f.since),
                "last_error": f.last_error,
                "article_count": f.article_count,
                "last_success_at": iso(f.last_success_at),
                "last_checked_at": iso(f.last_checked_at),
                "next_due_at": iso(f.next_due_at),
            }
            for f in found.feeds
        ],
    }


@cli.command()
@click.option(
    "--db",
    "database",
    type=click.Path(dir_okay=False),
    default="tracker-demo.db",
    show_default=True,
    metavar="FILE",
    help="The SQLite file to write; an existing demo database is started afresh, any other "
    "file is left alone.",
)
def demo(database: str) -> None:
    """Try tracker with no network: serve bundled sample feeds of three outlets on 127.0.0.1,
    poll them twice with the daemon's own code (one article is edited in between), and show
    the Essequibo storyline.

    The database it writes stays, so you can go on with tracker events, story, replay and
    time travel on it; it says how at the end.

    \b
    Examples:
      tracker demo
      tracker demo --db /tmp/demo.db
    """
    from pathlib import Path

    from tracker import demo as sample

    path = Path(database)
    result = sample.run(path, say=lambda line: click.echo(printable(line)))
    with _tracker(result.database_url) as tracker:
        found = tracker.story("essequibo")
    click.echo("")
    click.echo("$ tracker story essequibo")
    click.echo("\n".join(story_lines(found)))
    url = result.database_url
    click.echo("")
    click.echo(f"The demo's log is in {path}. To go on with it:")
    steps = [
        f"export TRACKER_DATABASE_URL={url}",
        "tracker stories",
        "tracker story maduro-reward",
        "tracker events --limit 20",
    ]
    if result.edited_article:
        steps.append(f"tracker article {result.edited_article}    # the article edited in round 2")
    if result.first_round_time is not None:
        moment = result.first_round_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        steps.append(f"tracker story maduro-reward --as-of {moment}    # before round 2")
    steps.append(f"tracker story maduro-reward --as-of-position {result.first_round_position}")
    steps += ["tracker replay", "tracker status", "tracker verify"]
    for step in steps:
        click.echo(f"  {step}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every TrackerError into one line and an exit code."""
    try:
        result = cli.main(args=argv, prog_name="tracker", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        # Bare `tracker`: help is what was asked for.
        click.echo(error.ctx.get_help())
        sys.exit(0)
    except click.ClickException as error:
        context = getattr(error, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        click.echo(f"error: {printable(error.format_message())}{hint}", err=True)
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except ConfigError as error:
        for problem in error.problems:
            click.echo(printable(problem), err=True)
        sys.exit(error.exit_code)
    except TrackerError as error:
        click.echo(f"error: {printable(str(error))}", err=True)
        sys.exit(error.exit_code)
    sys.exit(result if isinstance(result, int) else 0)
